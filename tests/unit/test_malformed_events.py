"""Events a function cannot use are answered, not raised: ignored with a reason (or refused, for an
operator's request), and nothing is written for them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import backup.handler as backup
import health_watcher.handler as health_watcher
import performance_watcher.handler as performance_watcher
import recovery.handler as recovery
from drcore.rollback.watcher_events import Tick, UnrecognisedEvent, recognise
from embedded.aws_events import LambdaContextStub, alarm_action_event, alarm_state_change_event, scheduled_event
from embedded.sample_system import SampleSystem
from tests.support import CallRecorder
from tests.unit.conftest import RECOVERY_FUNCTION


def with_alarm_state(event: dict[str, Any], **state: object) -> dict[str, Any]:
    """The event with its alarm's current state changed, in whichever shape it came."""
    data_key = "alarmData" if "alarmData" in event else "detail"
    data = event[data_key]
    return {**event, data_key: {**data, "state": {**data["state"], **state}}}


def alarm_events(system: SampleSystem, kind: str) -> list[dict[str, Any]]:
    name = system.alarms[kind]
    at = datetime.now(UTC)
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
    result = invoke_watcher(health_watcher, change(scheduled_event(datetime.now(UTC))))
    assert result["status"] == "ignored" and field in result["reason"], result
    assert calls.mutating() == []


def test_what_an_ignored_event_quotes_of_itself_is_bounded(system, invoke_watcher):
    # Given an event that is nothing a watcher knows, with a 200 KB key and detail-type
    huge = "x" * 200_000
    result = invoke_watcher(health_watcher, {huge: 1, "detail-type": huge})
    # Then the answer says what it was, in a few hundred characters
    assert result["status"] == "ignored" and "200002 characters" in result["reason"]
    assert len(result["reason"]) < 1000


# The rules each field of a watcher's events is held to, field by field (no AWS involved: the events are
# refused before anything is built for them)

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ALARM_NAME = "apilados-pipeline-ingest-LIVE-errors"


def both_alarm_shapes() -> list[tuple[dict[str, Any], str]]:
    """The two shapes an alarm's transition arrives in, each with the path to its alarm data."""
    return [(alarm_action_event(ALARM_NAME, "ALARM", AT, "f"), "alarmData"),
            (alarm_state_change_event(ALARM_NAME, "ALARM", AT, "f"), "detail")]


def with_alarm_field(event: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    """The event with one field of its alarm data (`alarmName`, `state`, or `state.<field>`) changed."""
    if path[:-1] == ("state",):
        return with_alarm_state(event, **{path[-1]: value})
    data_key = "alarmData" if "alarmData" in event else "detail"
    return {**event, data_key: {**event[data_key], path[0]: value}}


def refusal(event: object) -> str:
    with pytest.raises(UnrecognisedEvent) as refused:
        recognise(event)
    return str(refused.value)


@pytest.mark.parametrize("path, value, problem", [
    (("alarmName",), "", "String should have at least 1 character"),
    (("alarmName",), "x" * 256, "String should have at most 255 characters"),
    (("alarmName",), 7, "Input should be a valid string"),
    (("state",), "ALARM", "Input should be a valid dictionary"),
    (("state", "value"), "alarm", "Input should be 'OK', 'ALARM' or 'INSUFFICIENT_DATA'"),
    (("state", "value"), ["ALARM"], "Input should be 'OK', 'ALARM' or 'INSUFFICIENT_DATA'"),
    (("state", "reason"), "x" * 1024, "String should have at most 1023 characters"),
    (("state", "reason"), 7, "Input should be a valid string"),
    (("state", "timestamp"), "yesterday", "Invalid isoformat string: 'yesterday'"),
    (("state", "timestamp"), "2026-11-26T12:00:00.000+0000" + "0" * 60, "expected an ISO 8601 time as text"),
    (("state", "timestamp"), "9999-12-31T23:59:59-01:00", "timestamp out of range"),
])
def test_each_field_of_an_alarms_data_is_held_to_its_rule_in_both_shapes(path, value, problem):
    for event, data_key in both_alarm_shapes():
        # Given a real alarm event with one field of its alarm data changed
        changed = with_alarm_field(event, path, value)
        # Then the event is refused, naming the field and what is wrong with it
        assert f"{'.'.join((data_key, *path))}: {problem}" in refusal(changed)


def test_an_alarm_without_a_reason_or_the_fields_a_watcher_does_not_read_is_accepted():
    state = {"value": "ALARM", "timestamp": "2026-11-26T12:00:00.000+0000"}
    for event, data_key in both_alarm_shapes():
        for reason in ({}, {"reason": None}):
            # Given the alarm data cut to its name and a state without a reason (AWS's other fields left out)
            signal = recognise({**event, data_key: {"alarmName": ALARM_NAME, "state": {**state, **reason}}})
            # Then it is the alarm's transition, with an empty reason, at CloudWatch's time in UTC
            assert (signal.alarm_name, signal.state, signal.reason, signal.changed_at) == (ALARM_NAME, "ALARM", "", AT)


@pytest.mark.parametrize("field, value, problem", [
    ("version", 0, "version: Input should be a valid string"),
    ("resources", "arn", "resources: Input should be a valid list"),
    ("resources", ["arn", 7], "resources.1: Input should be a valid string"),
    ("time", 1764158400, "time: expected an ISO 8601 time as text"),
    ("replay-name", 7, "replay-name: Input should be a valid string"),
    ("detail", "{}", "detail: Input should be a valid dictionary"),
])
def test_each_field_of_eventbridges_envelope_is_held_to_its_rule(field, value, problem):
    # Given an alarm state change and a tick, each with one field of EventBridge's envelope wrong; Then it is named
    for event in (alarm_state_change_event(ALARM_NAME, "ALARM", AT, "f"), scheduled_event(AT)):
        assert problem in refusal({**event, field: value})


def test_what_eventbridge_may_send_in_its_envelope_is_accepted():
    # A replayed event names its replay; EventBridge Scheduler sends an empty detail as the text "{}"
    assert recognise({**scheduled_event(AT), "replay-name": "replay-1"}) == Tick(at=AT.isoformat())
    assert recognise({**scheduled_event(AT), "source": "aws.scheduler", "detail": "{}"}) == Tick(at=AT.isoformat())
    assert recognise({**scheduled_event(AT), "replay-name": None}) == Tick(at=AT.isoformat())


def test_one_refusal_names_every_wrong_field():
    # Given a state change with a wrong envelope field and two wrong alarm fields
    event = with_alarm_field(alarm_state_change_event(ALARM_NAME, "ALARM", AT, "f"), ("state", "value"), "FIRE")
    event = {**with_alarm_field(event, ("alarmName",), ""), "account": None}
    # Then the one answer names all three
    reason = refusal(event)
    for field in ("account: ", "detail.alarmName: ", "detail.state.value: "):
        assert field in reason, reason


# The operator's manual events (the recovery function)

WHO = {"requested_by": "alice@example.com", "reason": "INC-7 bad upload overwrote data"}


def act(event: object) -> dict[str, Any]:
    return recovery.handler(event, LambdaContextStub(RECOVERY_FUNCTION))


@pytest.fixture
def snapshot_id(world: SampleSystem) -> str:
    [outcome] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
    return str(outcome["backup_id"])


@pytest.mark.parametrize("action, at", [
    ("restore_s3", lambda: "2999-01-01T00:00:00Z"),
    ("restore_s3", lambda: (datetime.now(UTC) + timedelta(minutes=5)).isoformat()),
    ("comprehensive_rollback", lambda: "2999-01-01T00:00:00+02:00"),
])
def test_a_restore_point_in_the_future_is_refused(world, monkeypatch, action, at):
    event = {"action": action, "at": at(), **WHO}  # the time taken when the test runs, not when it is collected
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act(event)
    assert result["ok"] is False and "at: " in result["error"] and "in the past" in result["error"], result
    assert calls.mutating() == []


@pytest.mark.parametrize("prefix, problem", [
    ("../uploads/", "'..'"),
    ("uploads/../backups/", "'..'"),
    ("uploads/..", "'..'"),
    ("/uploads/", "starts with '/'"),
    ("uploads/\x00", "control character"),
    ("uploads/2026\n11/", "control character"),
    ("uploads/\x7f", "control character"),
    ("uploads/\u0085", "control character"),
])
def test_a_prefix_that_could_name_something_else_is_refused_before_anything_is_written(snapshot_id, monkeypatch,
                                                                                      prefix, problem):
    # Given a snapshot to restore from; when a restore of it is asked for such a prefix
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act({"action": "restore_s3", "snapshot_id": snapshot_id, "prefix": prefix, **WHO})
    # Then it is refused naming the prefix, and no plan (nor anything else) is written
    assert result["ok"] is False and "prefix" in result["error"] and problem in result["error"], result
    assert calls.mutating() == []


def test_prefixes_that_only_look_odd_are_still_planned(snapshot_id):
    # dots inside a segment, a lone dot, unicode: ordinary S3 keys, planned like any prefix
    for prefix in ("uploads/v1..2/", "uploads/./", "uploads/.hidden/", "uploads/2026-11/", "uploads/données/"):
        result = act({"action": "restore_s3", "snapshot_id": snapshot_id, "prefix": prefix, **WHO})
        assert result["ok"] is True and result["result"]["status"] == "planned", result


@pytest.mark.parametrize("event", [
    {"action": "x" * 200_000},
    {"action": ["x" * 200_000]},
    {"action": "status", "x" * 200_000: True},
    {"action": "rollback", "requested_by": "alice", "reason": "x" * 200_000},
    {"action": "restore_s3", **WHO, **{f"extra{n}": n for n in range(2000)}},
])
def test_what_a_refusal_echoes_of_the_request_is_bounded(world, monkeypatch, event):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act(event)
    assert result["ok"] is False and len(result["error"]) < 2000, len(result["error"])
    assert calls.mutating() == []


def test_a_version_number_longer_than_any_published_one_is_refused_by_its_form(world, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act({"action": "recover_version", "version": "9" * 5000, **WHO})
    assert result["ok"] is False and "version: String should match pattern" in result["error"], result
    assert len(result["error"]) < 1000 and calls.calls == []


def test_parameter_values_are_bounded_so_a_plan_always_fits_its_record(world, monkeypatch):
    # Given a stack backup to recover from
    [stack] = backup.handler({"component": "stack"}, LambdaContextStub("apilados-dr-backup"))["components"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a recovery is asked with a parameter value larger than any CloudFormation takes
    result = act({"action": "recover_stack", "backup_id": stack["backup_id"], "mode": "new",
                  "parameter_values": {"Stage": "x" * 500_000}, **WHO})
    # Then it is refused by its form, before anything is planned or written
    assert result["ok"] is False and "parameter_values.Stage" in result["error"], result
    assert calls.mutating() == []


@pytest.mark.parametrize("shard, problem", [
    ({"plan_id": "rp-0123456789", "target_bucket": "someone-elses-bucket", "number": 0},
     "'someone-elses-bucket' is not one this controller restores into"),
    ({"plan_id": "rp-01234/../x", "target_bucket": "apilados-production-data", "number": 0}, "shard.plan_id"),
    ({"plan_id": "rp-0123456789", "target_bucket": "apilados-production-data", "number": -1}, "shard.number"),
    ({"plan_id": "rp-0123456789", "target_bucket": "apilados-production-data", "number": "0"}, "shard.number"),
    ({"plan_id": "rp-0123456789", "target_bucket": "apilados-production-data", "number": 0, "all": True},
     "shard.all"),
])
def test_a_restore_shard_request_is_held_to_its_form_and_to_the_allowed_targets(shard, problem):
    from drcore.core.errors import InvalidRequest
    from drcore.restore.shard_requests import parse_restore_shard_request

    with pytest.raises(InvalidRequest, match=re.escape(problem)):
        parse_restore_shard_request({"shard": shard}, ("apilados-production-data", "apilados-scratch-restore"))
