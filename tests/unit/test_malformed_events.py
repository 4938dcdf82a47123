"""Events a function cannot use are answered, not raised: ignored with a reason (or refused, for an
operator's request), and nothing is written for them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

import health_watcher.handler as health_watcher
import performance_watcher.handler as performance_watcher
from embedded.aws_events import alarm_action_event, alarm_state_change_event, scheduled_event
from embedded.sample_system import SampleSystem
from tests.support import CallRecorder


def with_alarm_state(event: dict[str, Any], **state: object) -> dict[str, Any]:
    """The event with its alarm's current state changed, in whichever shape it came."""
    data_key = "alarmData" if "alarmData" in event else "detail"
    data = event[data_key]
    return {**event, data_key: {**data, "state": {**data["state"], **state}}}


def alarm_events(system: SampleSystem, kind: str) -> list[dict[str, Any]]:
    name = system.alarms[kind]
    at = datetime.now(timezone.utc)
    return [alarm_action_event(name, "ALARM", at, system.function_name),
            alarm_state_change_event(name, "ALARM", at, system.function_name)]


@pytest.mark.parametrize("watcher, kind", [(health_watcher, "errors"), (performance_watcher, "p99-duration")])
@pytest.mark.parametrize("timestamp", [1764158400, 1764158400.5, None, "", "0001-01-01T00:00:00+01:00"])
def test_an_alarm_whose_timestamp_is_not_a_time_is_ignored_in_both_shapes(system, invoke_watcher, monkeypatch,
                                                                          watcher, kind, timestamp):
    # Given LIVE on a candidate whose alarm fires, with its state's timestamp not a time
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    for event in alarm_events(system, kind):
        # When the watcher receives it (as alarm action, and through EventBridge)
        result = invoke_watcher(watcher, with_alarm_state(event, timestamp=timestamp))
        # Then it is ignored, saying which field was wrong, and nothing is written
        assert result["status"] == "ignored" and "timestamp" in result["reason"], result
    assert calls.mutating() == []
    assert system.alias_version("LIVE") == system.versions["bad"]


@pytest.mark.parametrize("change, field", [
    (lambda event: {key: value for key, value in event.items() if key != "id"}, "id"),
    (lambda event: {**event, "time": None}, "time"),
    (lambda event: {**event, "resources": "arn"}, "resources"),
])
def test_a_scheduled_event_without_eventbridges_envelope_is_ignored(system, invoke_watcher, monkeypatch, change, field):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = invoke_watcher(health_watcher, change(scheduled_event(datetime.now(timezone.utc))))
    assert result["status"] == "ignored" and field in result["reason"], result
    assert calls.mutating() == []


def test_what_an_ignored_event_quotes_of_itself_is_bounded(system, invoke_watcher):
    # Given an event that is nothing a watcher knows, with a 200 KB key and detail-type
    huge = "x" * 200_000
    result = invoke_watcher(health_watcher, {huge: 1, "detail-type": huge})
    # Then the answer says what it was, in a few hundred characters
    assert result["status"] == "ignored" and "200002 characters" in result["reason"]
    assert len(result["reason"]) < 1000
