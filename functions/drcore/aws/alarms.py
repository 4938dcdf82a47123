"""The watched alarms as CloudWatch holds them: their states, and the board that reads them.

The events that announce a state change (an alarm action, an EventBridge state change) are the watchers'
to parse: drcore.rollback.watcher_events. The functions that only read the board (recovery, drill) load
none of that parsing.
"""

from __future__ import annotations

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
