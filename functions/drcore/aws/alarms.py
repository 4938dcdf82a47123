"""The watched alarms as CloudWatch holds them: their states, and the board that reads them.

The events that announce a state change (an alarm action, an EventBridge state change) are the watchers'
to parse: drcore.rollback.watcher_events. The functions that only read the board (recovery, drill) load
none of that parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drcore.core.models import AlarmSignal

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class AlarmBoard:
    """Reads the current state of the watched alarms (the level the edges may have missed)."""

    def __init__(self, cloudwatch_client: Any) -> None:
        self._cloudwatch = cloudwatch_client

    def states(self, alarm_names: tuple[str, ...]) -> dict[str, AlarmSignal]:
        signals: dict[str, AlarmSignal] = {}
        names = list(alarm_names)
        # DescribeAlarms takes at most 100 names per call.
        for start in range(0, len(names), 100):
            paginator = self._cloudwatch.get_paginator("describe_alarms")
            for page in paginator.paginate(AlarmNames=names[start : start + 100], AlarmTypes=["MetricAlarm"]):
                for alarm in page["MetricAlarms"]:
                    changed_at = alarm.get("StateTransitionedTimestamp") or alarm["StateUpdatedTimestamp"]
                    signals[alarm["AlarmName"]] = AlarmSignal(
                        alarm_name=alarm["AlarmName"],
                        state=alarm["StateValue"],
                        changed_at=changed_at,
                        reason=alarm.get("StateReason", ""),
                        source="reconcile",
                    )
        return signals


@dataclass(frozen=True)
class AlarmDefinition:
    """What an alarm watches and does, as DescribeAlarms answers it: the post-recovery validation checks that it
    can act (actions enabled, somewhere to send them) and reads its metric against its own threshold."""

    name: str
    state: str
    actions_enabled: bool
    alarm_actions: tuple[str, ...]
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str  # "Sum", "Average", ... or an extended statistic such as "p99"
    period_seconds: int
    threshold: float
    comparison: str

    def breaches(self, value: float) -> bool:
        """Whether a datapoint crosses the threshold, as the alarm compares it."""
        comparisons = {
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
            "GreaterThanThreshold": value > self.threshold,
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
        }
        return comparisons.get(self.comparison, False)


def alarm_definitions(cloudwatch_client: Any, alarm_names: tuple[str, ...]) -> dict[str, AlarmDefinition]:
    """The named metric alarms that exist, by name (a missing name is absent from the answer)."""
    definitions: dict[str, AlarmDefinition] = {}
    names = list(alarm_names)
    for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names per call
        paginator = cloudwatch_client.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNames=names[start : start + 100], AlarmTypes=["MetricAlarm"]):
            for alarm in page["MetricAlarms"]:
                definitions[alarm["AlarmName"]] = AlarmDefinition(
                    name=alarm["AlarmName"], state=alarm["StateValue"],
                    actions_enabled=bool(alarm.get("ActionsEnabled")),
                    alarm_actions=tuple(alarm.get("AlarmActions", [])),
                    namespace=alarm.get("Namespace", ""), metric_name=alarm.get("MetricName", ""),
                    dimensions=tuple((item["Name"], item["Value"]) for item in alarm.get("Dimensions", [])),
                    statistic=alarm.get("Statistic") or alarm.get("ExtendedStatistic", ""),
                    period_seconds=int(alarm.get("Period", 60)), threshold=float(alarm.get("Threshold", 0)),
                    comparison=alarm.get("ComparisonOperator", ""))
    return definitions
