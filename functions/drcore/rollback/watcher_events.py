"""The events a watcher is invoked with, recognised and checked field by field.

Three shapes: a CloudWatch alarm action (Powertools' CloudWatchAlarmEvent data class), an EventBridge
"CloudWatch Alarm State Change" and an EventBridge "Scheduled Event" (Powertools' EventBridgeEvent). The
data classes are typed views that trust what they wrap; anyone allowed to invoke a watcher can send
anything, so every field a watcher reads is checked first (its type, its length, its allowed values, a
time as ISO 8601 text). An event with any field wrong is refused with UnrecognisedEvent, naming each
wrong field (`alarmData.state.timestamp: ...`), and is never acted on.

The checks are written out rather than left to pydantic models: importing pydantic costs a watcher's cold
start about 60 ms, more than the whole budget of a watcher's own imports (50 ms above the floor every
function pays), and a rollback waits for its cold start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes.cloud_watch_alarm_event import (
    CloudWatchAlarmData,
    CloudWatchAlarmEvent,
)
from aws_lambda_powertools.utilities.data_classes.event_bridge_event import EventBridgeEvent

from drcore.aws.alarms import ALARM, INSUFFICIENT_DATA, OK
from drcore.core.models import AlarmSignal, parse_time
from drcore.core.untrusted_input import describe_findings, echo

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
SCHEDULED_EVENT = "Scheduled Event"
ALARM_STATES = (OK, ALARM, INSUFFICIENT_DATA)
MAX_ALARM_NAME = 255  # CloudWatch's limits on an alarm's name and on its state's reason
MAX_STATE_REASON = 1023
MAX_TIME_TEXT = 64  # far more than any ISO 8601 time needs; parsing is not offered anything longer
TIME_EXAMPLE = "2026-11-26T12:00:00.000+0000"

Location = tuple[str | int, ...]
_ABSENT = object()  # a field that is missing, or optional and null


class UnrecognisedEvent(ValueError):
    """The event is not one this function handles; the message says what was wrong with it."""


@dataclass(frozen=True)
class Tick:
    at: str


WatcherEvent = AlarmSignal | Tick


def recognise(event: Any) -> WatcherEvent:
    """Classify a raw Lambda event; UnrecognisedEvent says what is wrong with anything else."""
    if not isinstance(event, dict):
        raise UnrecognisedEvent(f"expected a JSON object, got {type(event).__name__}")
    if "alarmData" in event:
        return signal_from_alarm_action(event)
    detail_type = event.get("detail-type")
    if detail_type == ALARM_STATE_CHANGE:
        return signal_from_eventbridge(event)
    if detail_type == SCHEDULED_EVENT:
        return tick_from_schedule(event)
    raise UnrecognisedEvent(
        "not an alarm action, an alarm state change or a scheduled event "
        f"(keys: {echo(sorted(event)[:8])}, detail-type: {echo(detail_type)})"
    )


def signal_from_alarm_action(event: dict[str, Any]) -> AlarmSignal:
    """A CloudWatch alarm action invoking the function directly. Only its alarmData is read (and checked)."""
    action = CloudWatchAlarmEvent(event)
    findings = _Findings()
    signal = None
    if findings.mapping(action, "alarmData", ()) is not None:
        signal = _alarm_signal(findings, action.alarm_data, ("alarmData",), "alarm_action")
    if signal is None:
        raise UnrecognisedEvent(f"alarm action event without a usable alarmData: {findings}")
    return signal


def signal_from_eventbridge(event: dict[str, Any]) -> AlarmSignal:
    """An EventBridge "CloudWatch Alarm State Change" event: EventBridge's envelope, the alarm data as its detail."""
    envelope = EventBridgeEvent(event)
    findings = _Findings()
    _check_envelope(findings, envelope)
    signal = None
    if (detail := findings.mapping(envelope, "detail", ())) is not None:
        signal = _alarm_signal(findings, CloudWatchAlarmData(detail), ("detail",), "eventbridge")
    if signal is None or findings:
        raise UnrecognisedEvent(f"alarm state change event without a usable detail: {findings}")
    return signal


def tick_from_schedule(event: dict[str, Any]) -> Tick:
    """An EventBridge "Scheduled Event": only its envelope matters, and it must be EventBridge's."""
    envelope = EventBridgeEvent(event)
    findings = _Findings()
    at = _check_envelope(findings, envelope)
    # EventBridge Scheduler sends an empty detail as the text "{}" (Powertools' EventBridgeModel takes it too).
    if not (envelope.get("source") == "aws.scheduler" and envelope.get("detail") == "{}"):
        findings.mapping(envelope, "detail", ())
    if at is None or findings:
        raise UnrecognisedEvent(f"scheduled event without a usable envelope: {findings}")
    return Tick(at=at.isoformat())


def _check_envelope(findings: _Findings, envelope: EventBridgeEvent) -> datetime | None:
    """EventBridge's fields (the detail is the caller's to check); the event's time, if it is one."""
    for key in ("version", "id", "source", "account"):
        findings.text(envelope, key, ())
    at = findings.time(envelope, "time", ())
    findings.text(envelope, "region", ())
    findings.texts(envelope, "resources", ())
    findings.text(envelope, "detail-type", ())
    findings.text(envelope, "replay-name", (), optional=True)
    return at


def _alarm_signal(findings: _Findings, data: CloudWatchAlarmData, at: Location, source: str) -> AlarmSignal | None:
    """What both alarm shapes say about the transition, or None with the findings noted. AWS's other
    fields (previous state, configuration) are not needed and not checked."""
    noted_before = len(findings)
    findings.text(data, "alarmName", at, min_length=1, max_length=MAX_ALARM_NAME)
    changed_at = None
    if (state := findings.mapping(data, "state", at)) is not None:
        findings.one_of(state, "value", (*at, "state"), ALARM_STATES)
        changed_at = findings.time(state, "timestamp", (*at, "state"))
        findings.text(state, "reason", (*at, "state"), max_length=MAX_STATE_REASON, optional=True)
    if changed_at is None or len(findings) > noted_before:
        return None
    return AlarmSignal(alarm_name=data.alarm_name, state=data.state.value, changed_at=changed_at,
                       reason=data.state.get("reason") or "", source=source)


class _Findings:
    """What is wrong with an event, field by field. Each check notes what it finds rather than raising, so
    that one answer names every wrong field; the wording is pydantic's, which these checks replace.
    `mapping` and `time` also return the field's value (None when it is wrong); the others only check."""

    def __init__(self) -> None:
        self._found: list[tuple[Location, str]] = []

    def __len__(self) -> int:
        return len(self._found)

    def __str__(self) -> str:
        return describe_findings(self._found)

    def text(self, parent: Mapping[str, Any], key: str, at: Location, *, min_length: int = 0,
             max_length: int | None = None, optional: bool = False) -> None:
        value = self._field(parent, key, at, optional=optional)
        if value is _ABSENT:
            return
        if not isinstance(value, str):
            self._note((*at, key), "Input should be a valid string")
        elif len(value) < min_length:
            self._note((*at, key), f"String should have at least {_count(min_length, 'character')}")
        elif max_length is not None and len(value) > max_length:
            self._note((*at, key), f"String should have at most {_count(max_length, 'character')}")

    def one_of(self, parent: Mapping[str, Any], key: str, at: Location, allowed: tuple[str, ...]) -> None:
        value = self._field(parent, key, at)
        if value is not _ABSENT and not (isinstance(value, str) and value in allowed):
            quoted = [repr(choice) for choice in allowed]
            self._note((*at, key), f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}")

    def texts(self, parent: Mapping[str, Any], key: str, at: Location) -> None:
        value = self._field(parent, key, at)
        if value is _ABSENT:
            return
        if not isinstance(value, list):
            self._note((*at, key), "Input should be a valid list")
            return
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self._note((*at, key, index), "Input should be a valid string")

    def mapping(self, parent: Mapping[str, Any], key: str, at: Location) -> dict[str, Any] | None:
        value = self._field(parent, key, at)
        if value is _ABSENT:
            return None
        if isinstance(value, dict):
            return value
        self._note((*at, key), "Input should be a valid dictionary")
        return None

    def time(self, parent: Mapping[str, Any], key: str, at: Location) -> datetime | None:
        """An ISO 8601 time as text (`Z`, `+00:00` or CloudWatch's `+0000`), as an aware UTC time. Text only:
        AWS always sends text, and a number would need a guess at its unit."""
        value = self._field(parent, key, at)
        if value is _ABSENT:
            return None
        if not isinstance(value, str) or len(value) > MAX_TIME_TEXT:
            self._note((*at, key), f"expected an ISO 8601 time as text, like {TIME_EXAMPLE}")
            return None
        try:
            return parse_time(value).astimezone(UTC)
        except ValueError as error:
            self._note((*at, key), str(error))  # Python's "Invalid isoformat string: '...'", the text bounded above
        except OverflowError:  # a year-1 or year-9999 time shifted past the calendar's ends
            self._note((*at, key), "timestamp out of range")
        return None

    def _note(self, at: Location, problem: str) -> None:
        self._found.append((at, problem))

    def _field(self, parent: Mapping[str, Any], key: str, at: Location, *, optional: bool = False) -> object:
        """The field's value, or _ABSENT: when it is missing (noted, unless the field is optional), and when an
        optional field is null."""
        if key not in parent:
            if not optional:
                self._note((*at, key), "Field required")
            return _ABSENT
        value = parent[key]
        return _ABSENT if optional and value is None else value


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
