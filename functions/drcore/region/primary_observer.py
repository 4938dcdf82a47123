"""The primary region as the secondary sees it: can it be reached, does its LIVE answer the health check, is any of
its watched alarms in ALARM. Every call goes to the other region through clients that make one attempt within a
bounded time, so a region that does not answer is a finding ("unreachable"), never a watcher timed out.

Nothing is published: the primary's own watchers publish its health-probe metric in its region, and a datapoint
sent from here would be counted by the secondary function's alarm of the same name in this region.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.aliases import AliasGateway
from drcore.rollback.health_probe import BoundedInvoker, probe_version

logger = Logger(child=True)

ALARM_STATE = "ALARM"


@dataclass(frozen=True)
class PrimaryReading:
    """One look at the primary. `problems` is empty when it is healthy; `reachable` is False when its APIs did
    not answer at all (the region or the network to it is down), which is also a problem."""

    reachable: bool
    problems: tuple[str, ...]
    alarms_in_alarm: tuple[str, ...] = ()
    probe: dict[str, str] | None = None  # version -> "answered" or why not

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"reachable": self.reachable, "healthy": self.healthy, "problems": list(self.problems),
                "alarms_in_alarm": list(self.alarms_in_alarm), "probe": self.probe}


class PrimaryObserver:
    """Reads the primary's LIVE alias, invokes what it serves with the runbook's health-check payload, and reads
    its watched alarms, each bounded by `seconds`."""

    def __init__(self, invoker: BoundedInvoker, cloudwatch_within: Callable[[int], Any], live_alias: str,
                 alarm_names: tuple[str, ...], seconds: int) -> None:
        self._invoker = invoker
        self._cloudwatch_within = cloudwatch_within
        self._live_alias = live_alias
        self._alarm_names = alarm_names
        self._seconds = seconds

    def read(self) -> PrimaryReading:
        problems: list[str] = []
        reachable = True
        probe: dict[str, str] | None = None
        try:
            live = self._gateway().read(self._live_alias)
        except Exception as error:  # noqa: BLE001  # a region that does not answer is the finding, not a crash
            live = None
            reachable = False
            problems.append(f"primary Lambda unreachable: {type(error).__name__}: {error}")
        else:
            if live is None:
                problems.append(f"alias {self._live_alias} does not exist in the primary region")
            else:
                answers = [probe_version(self._invoker, version, self._seconds)
                           for version in (live.version, *live.weights)]
                probe = {answer.version: answer.failure or "answered" for answer in answers}
                problems.extend(f"version {answer.version} failed the health check: {answer.failure}"
                                for answer in answers if answer.failure is not None)
        in_alarm: tuple[str, ...] = ()
        try:
            in_alarm = self._alarms_in_alarm()
        except Exception as error:  # noqa: BLE001  # as above
            reachable = False
            problems.append(f"primary CloudWatch unreachable: {type(error).__name__}: {error}")
        problems.extend(f"alarm {name} is in ALARM" for name in in_alarm)
        reading = PrimaryReading(reachable=reachable, problems=tuple(problems), alarms_in_alarm=in_alarm,
                                 probe=probe)
        if not reading.healthy:
            logger.warning("primary region unhealthy", extra=reading.to_dict())
        return reading

    def _gateway(self) -> AliasGateway:
        return self._invoker(self._seconds)

    def _alarms_in_alarm(self) -> tuple[str, ...]:
        if not self._alarm_names:
            return ()
        response = self._cloudwatch_within(self._seconds).describe_alarms(
            AlarmNames=list(self._alarm_names[:100]), AlarmTypes=["MetricAlarm"])
        return tuple(sorted(alarm["AlarmName"] for alarm in response["MetricAlarms"]
                            if alarm["StateValue"] == ALARM_STATE))
