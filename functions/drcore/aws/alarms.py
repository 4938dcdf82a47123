"""Alarm state changes, from the shapes AWS delivers them in and from CloudWatch itself."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import CloudWatchAlarmEvent, EventBridgeEvent

from drcore.core.models import AlarmSignal, parse_time

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


class UnrecognisedEvent(ValueError):
    """The event is not one this function handles; the message says what was wrong with it."""


def signal_from_alarm_action(event: dict[str, Any]) -> AlarmSignal:
    """A CloudWatch alarm action invoking the function directly."""
    alarm = CloudWatchAlarmEvent(event)
    try:
        data = alarm.alarm_data
        return AlarmSignal(
            alarm_name=data.alarm_name,
            state=data.state.value,
            changed_at=parse_time(data.state.timestamp),
            reason=data.state.reason or "",
            source="alarm_action",
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UnrecognisedEvent(f"alarm action event without a usable alarmData: {error!r}") from error


def signal_from_eventbridge(event: dict[str, Any]) -> AlarmSignal:
    """An EventBridge "CloudWatch Alarm State Change" event."""
    envelope = EventBridgeEvent(event)
    try:
        detail = envelope.detail
        state = detail["state"]
        return AlarmSignal(
            alarm_name=detail["alarmName"],
            state=state["value"],
            changed_at=parse_time(state["timestamp"]),
            reason=state.get("reason", ""),
            source="eventbridge",
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UnrecognisedEvent(f"alarm state change event without a usable detail: {error!r}") from error


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
