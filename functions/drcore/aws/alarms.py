"""Alarm state changes, from the shapes AWS delivers them in and from CloudWatch itself.

Both shapes carry the same alarm data (the alarm action's `alarmData`, the EventBridge event's
`detail`), validated by one model; an event without usable alarm data is refused with
UnrecognisedEvent, naming the fields that were wrong, and is never acted on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, BeforeValidator, Field, StrictStr, ValidationError

from drcore.core.models import AlarmSignal, parse_time
from drcore.core.untrusted_input import describe_problems

ALARM = "ALARM"
OK = "OK"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
MAX_ALARM_NAME = 255  # CloudWatch's limits on an alarm's name and on its state's reason
MAX_STATE_REASON = 1023


class UnrecognisedEvent(ValueError):
    """The event is not one this function handles; the message says what was wrong with it."""


def _cloudwatch_time(value: object) -> datetime:
    """CloudWatch's timestamp (ISO 8601, `+0000` or `Z`) as an aware UTC time the records can hold.

    Text only: CloudWatch always sends text, and a number would need a guess at its unit."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("expected an ISO 8601 time as text, like 2026-11-26T12:00:00.000+0000")
    try:
        return parse_time(value).astimezone(timezone.utc)
    except OverflowError as error:  # a year-1 or year-9999 time shifted past the calendar's ends
        raise ValueError("timestamp out of range") from error


AlarmTimestamp = Annotated[datetime, BeforeValidator(_cloudwatch_time)]


class _AlarmState(BaseModel):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    timestamp: AlarmTimestamp
    reason: StrictStr | None = Field(None, max_length=MAX_STATE_REASON)


class _AlarmData(BaseModel):
    """What both shapes say about the transition; AWS's other fields are not needed and not checked."""

    alarm_name: StrictStr = Field(alias="alarmName", min_length=1, max_length=MAX_ALARM_NAME)
    state: _AlarmState

    def signal(self, source: str) -> AlarmSignal:
        return AlarmSignal(alarm_name=self.alarm_name, state=self.state.value,
                           changed_at=self.state.timestamp, reason=self.state.reason or "", source=source)


class _AlarmAction(BaseModel):
    """The payload CloudWatch sends when an alarm invokes a function directly (Powertools'
    CloudWatchAlarmEvent describes it, without validation)."""

    alarm_data: _AlarmData = Field(alias="alarmData")


class _AlarmStateChange(EventBridgeModel):
    detail: _AlarmData  # Powertools' way of typing an EventBridge detail


def signal_from_alarm_action(event: dict[str, Any]) -> AlarmSignal:
    """A CloudWatch alarm action invoking the function directly."""
    try:
        return _AlarmAction.model_validate(event).alarm_data.signal("alarm_action")
    except ValidationError as error:
        raise UnrecognisedEvent(f"alarm action event without a usable alarmData: {describe_problems(error)}") from error


def signal_from_eventbridge(event: dict[str, Any]) -> AlarmSignal:
    """An EventBridge "CloudWatch Alarm State Change" event."""
    try:
        return _AlarmStateChange.model_validate(event).detail.signal("eventbridge")
    except ValidationError as error:
        problems = describe_problems(error)
        raise UnrecognisedEvent(f"alarm state change event without a usable detail: {problems}") from error


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
