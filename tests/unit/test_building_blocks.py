"""The pieces under the controller: settings, the state store's conditional writes, alerts, the probe,
the regression check."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from drcore.aws.alerts import Alert
from drcore.aws.clients import s3_client
from drcore.core.config import ControllerSettings
from drcore.core.errors import ConcurrentUpdate, SettingsError
from drcore.core.metric_names import HEALTH_PROBE_METRIC
from drcore.core.models import Cause, ControllerState
from drcore.rollback.watcher import outcome_metrics
from drcore.state.backup_store import backup_time, gzip_json_lines, new_backup_id, read_gzip_json_lines
from tests.support import put_alias_metrics

OPERATOR = Cause(kind="manual", summary="operator request", requested_by="alice", reason="test")


@pytest.mark.parametrize("environ, problem", [
    ({}, "DR_PROTECTED_FUNCTION_NAME"),
    ({"DR_PROTECTED_FUNCTION_NAME": "f", "DR_STATE_TABLE_NAME": "t", "DR_ALERT_TOPIC_ARN": "a",
      "DR_EMERGENCY_TOPIC_ARN": "e", "DR_BAKE_SECONDS": "-5"}, "DR_BAKE_SECONDS"),
    ({"DR_PROTECTED_FUNCTION_NAME": "f", "DR_STATE_TABLE_NAME": "t", "DR_ALERT_TOPIC_ARN": "a",
      "DR_EMERGENCY_TOPIC_ARN": "e", "DR_REGRESSION_FACTOR": "0.9"}, "DR_REGRESSION_FACTOR"),
])
def test_bad_settings_name_the_variable(environ, problem):
    with pytest.raises(SettingsError, match=problem):
        ControllerSettings.from_environ(environ)


def test_alarm_name_lists_are_split(settings: ControllerSettings, system):
    assert settings.health_alarms == system.health_alarms
    assert set(settings.watched_alarms) == set(system.alarms.values())


def test_two_writers_never_both_win(system, controller):
    # Given two invocations that read the same record
    record = controller.record()
    first = record.evolve(state=ControllerState.FROZEN, frozen_reason="first")
    second = record.evolve(state=ControllerState.FROZEN, frozen_reason="second")
    # When both write a transition from it, Then only the first lands
    controller._store.replace(record, first)
    with pytest.raises(ConcurrentUpdate):
        controller._store.replace(record, second)
    assert controller.record().frozen_reason == "first"
    assert controller.record().generation == record.generation + 1


def test_journal_entries_are_written_once(system, controller):
    store = controller._store
    kwargs = {"entry_id": "incident-1", "at": "2026-11-26T12:00:00.000Z", "action": "rollback", "cause": OPERATOR,
              "result": "ok"}
    assert store.append_journal(system.function_name, **kwargs) is True
    assert store.append_journal(system.function_name, **kwargs) is False
    assert len(store.journal(system.function_name)) == 1


def test_alert_follows_the_runbook_template():
    alert = Alert(severity=2, brief="f rolled back", occurred_at="2026-11-26T12:00:00.000Z", impact="errors",
                  components=("Lambda f:LIVE",), status="LIVE on STABLE", actions_taken=("rolled back",),
                  next_steps=("investigate",), event_type="rollback", function_name="f")
    text = alert.render()
    assert alert.subject == "[SEVERITY 2] Apilados Pipeline Incident - f rolled back"
    for heading in ("INCIDENT DETAILS:", "- Time: 2026-11-26", "- Severity: 2", "- Impact: errors",
                    "- Affected Components: Lambda f:LIVE", "CURRENT STATUS:", "ACTIONS TAKEN:", "NEXT STEPS:"):
        assert heading in text
    long = Alert(**{**alert.__dict__, "brief": "x" * 200})
    assert len(long.subject) == 100


def test_health_probe_publishes_failure_of_a_failing_version(system, health_probe, versions_behaviour):
    cloudwatch = system.clients["cloudwatch"]
    # Given LIVE on a version that fails
    versions_behaviour.set_failing(system.function_name, system.versions["good"])
    # When probed
    result = health_probe.run()
    # Then the failure is a metric datapoint of 1 for the alarm to see
    assert result.facts["healthy"] is False and "Unhandled" in result.detail
    metric = cloudwatch.list_metrics(Namespace="ApiladosDR", MetricName=HEALTH_PROBE_METRIC)["Metrics"]
    dimensions = {d["Name"]: d["Value"] for d in metric[0]["Dimensions"]}
    assert dimensions == {"FunctionName": system.function_name, "Alias": "LIVE"}
    # And a healthy version reports healthy
    versions_behaviour.set_failing(system.function_name, system.versions["good"], failing=False)
    assert health_probe.run().facts["healthy"] is True


def test_regression_against_stables_baseline_rolls_back(system, controller, clock):
    # Given STABLE promoted with a p99 baseline of about 200 ms, and the bad version baking
    controller.release(system.versions["fix"], OPERATOR)
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, system.versions["fix"],
                      clock.now + timedelta(seconds=30), invocations=30, durations_ms=[200.0] * 30)
    clock.advance(120)
    controller.promote(OPERATOR)
    assert controller.record().stable_p99_ms == 200.0  # measured over the candidate's time on LIVE
    controller.release(system.versions["bad"], OPERATOR)
    # When the candidate's p99 is 1.4x the baseline: within the 1.5x factor
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, system.versions["bad"],
                      clock.now + timedelta(seconds=30), invocations=30, durations_ms=[280.0] * 30)
    clock.advance(120)
    assert controller.regression_check().action == "within_baseline"
    # When it reaches 2x: rolled back
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, system.versions["bad"],
                      clock.now - timedelta(seconds=30), invocations=30, durations_ms=[400.0] * 300)
    outcome = controller.regression_check()
    assert outcome.action == "rolled_back" and outcome.facts["p99_ms"] == 400.0
    assert system.alias_version("LIVE") == system.versions["fix"]


def test_regression_check_waits_for_enough_traffic(system, controller):
    record = controller.record()
    controller._store.replace(record, record.evolve(stable_p99_ms=200.0))
    controller.release(system.versions["fix"], OPERATOR)
    assert controller.regression_check().action == "measuring"


def test_outcome_metrics_count_the_event_and_each_change():
    assert outcome_metrics({"status": "handled", "outcome": {"action": "rolled_back"}}) == ["AlarmEvents", "Rollbacks"]
    assert outcome_metrics({"status": "ticked", "outcomes": [{"action": "probed"}, {"action": "promoted"}]}) == [
        "Ticks", "Promotions"]
    assert outcome_metrics({"status": "ignored", "reason": "x"}) == ["IgnoredEvents"]


def test_backup_ids_sort_in_time_order_within_a_second():
    moment = datetime(2026, 11, 26, 9, 30, 0, 5000, tzinfo=UTC)
    ids = [new_backup_id(moment + timedelta(milliseconds=ms)) for ms in (0, 1, 17, 500, 994)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(backup_time(backup_id) == moment.replace(microsecond=0) for backup_id in ids)
    assert new_backup_id(moment) < new_backup_id(moment + timedelta(seconds=1))


def test_the_snapshot_client_parses_timestamps_as_botocore_does():
    # Given an object in a versioned bucket
    with mock_aws():
        plain = boto3.client("s3", region_name="us-east-1")
        plain.create_bucket(Bucket="data")
        plain.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        plain.put_object(Bucket="data", Key="a.csv", Body=b"x")
        # When it is listed with the snapshots' client (standard-library ISO 8601 parsing) and with botocore's
        fast = s3_client(4).list_object_versions(Bucket="data")["Versions"][0]["LastModified"]
        slow = plain.list_object_versions(Bucket="data")["Versions"][0]["LastModified"]
    # Then both give the same moment, in UTC
    assert fast == slow and fast.utcoffset() == timedelta(0)


# Documents as manifests and slices hold them: keys may hold any character, line breaks of every kind included.
JSON_DOCUMENTS = st.lists(st.dictionaries(st.text(max_size=8), st.one_of(
    st.text(), st.integers(), st.none(), st.booleans(), st.lists(st.text(max_size=4), max_size=3)), max_size=4),
    max_size=20)


@given(JSON_DOCUMENTS)
def test_gzip_json_lines_read_back_as_written_whatever_the_keys_hold(documents: list[dict[str, Any]]) -> None:
    assert list(read_gzip_json_lines(gzip_json_lines(documents))) == documents
    # and they are gzip JSON lines any reader reads: one compact line per document
    text = gzip.decompress(gzip_json_lines(documents)).decode()
    assert text == "".join(json.dumps(document, separators=(",", ":")) + "\n" for document in documents)


@pytest.mark.parametrize("damage", [
    lambda body: body[: len(body) // 2],  # cut short
    lambda body: body[:12] + bytes(byte ^ 0xFF for byte in body[12:20]) + body[20:],  # corrupt inside
    lambda body: gzip.decompress(body),  # not gzip
    lambda body: gzip.compress(b'{"key": "a"}\n{"key": \n'),  # a line that is not JSON
])
def test_damaged_gzip_json_lines_raise_value_error(damage: Callable[[bytes], bytes]) -> None:
    body = gzip_json_lines({"key": f"uploads/{number}.csv", "etag": f'"{number:032x}"'} for number in range(200))
    with pytest.raises(ValueError):
        list(read_gzip_json_lines(damage(body)))
