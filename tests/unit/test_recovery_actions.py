"""The recovery function's alias actions and its refusal of bad requests, through the real handler."""

from __future__ import annotations

import boto3
import pytest

import backup.handler as backup
import recovery.handler as recovery
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem, add_buckets
from tests.support import CallRecorder, fan_out_configured

WHO = {"requested_by": "alice@example.com", "reason": "incident 42"}


@pytest.fixture
def act(system: SampleSystem, invoke_watcher, monkeypatch):
    add_buckets(system, boto3.session.Session(region_name="us-east-1"), objects=5)
    for name, value in system.backup_environment().items():
        monkeypatch.setenv(name, value)
    return lambda event: invoke_watcher(recovery, event)


def test_status_reports_versions_state_alarms_and_recent_actions(system: SampleSystem, act):
    act({"action": "release", "version": system.versions["fix"], **WHO})
    result = act({"action": "status"})
    assert result["ok"] is True
    status = result["result"]
    assert status["live_version"] == system.versions["fix"] and status["stable_version"] == system.versions["good"]
    assert status["state"] == "baking" and status["candidate"]["version"] == system.versions["fix"]
    assert set(status["alarms"]) == set(system.alarms.values())
    assert status["recent_actions"][0]["action"] == "release"
    assert "alice@example.com" in status["recent_actions"][0]["cause"]


def test_status_tells_each_components_last_backup_against_its_rpo_and_list_backups_lists_them(system, act):
    # Given no backup yet: nothing is within its RPO
    assert {c: entry["within_rpo"] for c, entry in act({"action": "status"})["result"]["backups"].items()} == {
        "lambda": False, "s3": False, "stack": False, "logs": False}
    # When the function and the bucket are backed up
    backup.handler({"component": "lambda"}, LambdaContextStub("apilados-dr-backup"))
    backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))
    backups = act({"action": "status"})["result"]["backups"]
    # Then those two are within their RPO, with their age and objective
    assert backups["lambda"]["within_rpo"] and backups["s3"]["within_rpo"] and not backups["stack"]["within_rpo"]
    assert backups["lambda"]["rpo_seconds"] == 300 and backups["lambda"]["age_seconds"] <= 300
    listed = act({"action": "list_backups", "component": "lambda"})["result"]["backups"]
    assert [entry["backup_id"] for entry in listed] == [backups["lambda"]["backup_id"]]
    assert listed[0]["status"] == "complete" and listed[0]["size_bytes"] > 0


def test_status_shows_the_last_drill(system, act):
    from drcore.core.models import Cause
    from drcore.drill.report import DrillReport, DrillStep
    from drcore.state.store import ControllerStateStore

    assert act({"action": "status"})["result"]["last_drill"] is None
    report = DrillReport("aws", "2026-11-26T10:00:00.000Z", "2026-11-26T10:05:00.000Z",
                         [DrillStep("restore_s3", True, 12.0, 1800), DrillStep("recover_stack", False, 3.0, 300)])
    ControllerStateStore(system.clients["dynamodb"], system.table).append_journal(
        system.function_name, entry_id="drill-1", at=report.finished_at, action="drill",
        cause=Cause(kind="drill", summary="DR drill"), result="failed", details=report.summary())
    last = act({"action": "status"})["result"]["last_drill"]
    assert last["result"] == "failed" and last["ok"] is False
    assert last["steps"] == {"restore_s3": True, "recover_stack": False}


def test_release_rollback_freeze_unfreeze_promote_are_journaled_with_who_and_why(system, act):
    assert act({"action": "release", "version": system.versions["bad"], "canary_percent": 10, **WHO})["ok"]
    assert act({"action": "rollback", **WHO})["result"]["action"] == "rolled_back"
    assert system.alias_version("LIVE") == system.versions["good"]
    assert act({"action": "freeze", **WHO})["result"]["action"] == "frozen"
    assert act({"action": "unfreeze", **WHO})["result"]["action"] == "unfrozen"
    assert act({"action": "release", "version": system.versions["fix"], **WHO})["ok"]
    assert act({"action": "promote", **WHO})["result"]["action"] == "promoted"
    assert system.alias_version("STABLE") == system.versions["fix"]
    actions = [entry["action"] for entry in act({"action": "status"})["result"]["recent_actions"]]
    assert actions[:6] == ["promote", "release", "unfreeze", "freeze", "rollback", "release"]


def test_recover_version_points_live_at_a_published_version(system, act):
    # The runbook's recover-lambda-version: LIVE to version "fix" (it bakes as a candidate)
    result = act({"action": "recover_version", "version": system.versions["fix"], **WHO})
    assert result["ok"] and system.alias_version("LIVE") == system.versions["fix"]
    # and back to STABLE's version: that is a rollback
    result = act({"action": "recover_version", "version": system.versions["good"], **WHO})
    assert result["result"]["action"] == "rolled_back"
    assert system.alias_version("LIVE") == system.versions["good"]


def test_recover_version_refuses_a_quarantined_version_unless_forced(system, act):
    act({"action": "release", "version": system.versions["bad"], **WHO})
    act({"action": "rollback", **WHO})
    refused = act({"action": "recover_version", "version": system.versions["bad"], **WHO})
    assert refused["ok"] is False and "quarantined" in refused["error"]
    forced = act({"action": "recover_version", "version": system.versions["bad"], "force": True, **WHO})
    assert forced["ok"] is True and system.alias_version("LIVE") == system.versions["bad"]


BAD_EVENTS = [
    ({}, "unknown action None"),
    ({"action": "nuke"}, "valid actions: status, list_backups, rollback"),
    ({"action": "ROLLBACK", **WHO}, "unknown action"),
    ([], "expected a JSON object"),
    ("rollback", "expected a JSON object"),
    ({"action": "rollback"}, "requested_by: Field required"),
    ({"action": "rollback", "requested_by": "alice"}, "reason: Field required"),
    ({"action": "rollback", "requested_by": "", "reason": "why not"}, "requested_by"),
    ({"action": "rollback", "requested_by": "alice", "reason": "x"}, "reason"),
    ({"action": "rollback", "dry_run": True, **WHO}, "dry_run: Extra inputs are not permitted"),
    ({"action": "status", "verbose": True}, "verbose"),
    ({"action": "list_backups"}, "component: Field required"),
    ({"action": "list_backups", "component": "database"}, "component"),
    ({"action": "list_backups", "component": "s3", "limit": 0}, "limit"),
    ({"action": "promote", "version": "3", **WHO}, "version: Extra inputs"),
    ({"action": "freeze", "requested_by": 7, "reason": "maintenance"}, "requested_by"),
    ({"action": "unfreeze", "requested_by": "alice"}, "reason"),
    ({"action": "release", **WHO}, "version: Field required"),
    ({"action": "release", "version": "$LATEST", **WHO}, "version"),
    ({"action": "release", "version": "latest", **WHO}, "version"),
    ({"action": "release", "version": "0", **WHO}, "version"),
    ({"action": "release", "version": "-1", **WHO}, "version"),
    ({"action": "release", "version": 3, **WHO}, "version"),
    ({"action": "release", "version": "3", "canary_percent": 0, **WHO}, "canary_percent"),
    ({"action": "release", "version": "3", "canary_percent": 100, **WHO}, "canary_percent"),
    ({"action": "release", "version": "3", "canary_percent": "ten", **WHO}, "canary_percent"),
    ({"action": "release", "version": "3", "force": "maybe", **WHO}, "force"),
    ({"action": "release", "version": "99", **WHO}, "no published version 99"),
    ({"action": "release", "version": "1", **WHO}, "already STABLE"),
    ({"action": "recover_version", **WHO}, "version: Field required"),
    ({"action": "recover_version", "version": "$LATEST", **WHO}, "version"),
    ({"action": "recover_version", "version": "2.0", **WHO}, "version"),
    ({"action": "recover_version", "version": "42", **WHO}, "no published version 42"),
    ({"action": "recover_version", "version": "3", "target": "other", **WHO}, "target"),
]


@pytest.mark.parametrize("event, problem", BAD_EVENTS, ids=[str(i) for i in range(len(BAD_EVENTS))])
def test_a_bad_request_gets_a_clear_error_and_changes_nothing(system, act, monkeypatch, event, problem):
    # Given the system known to the controller
    act({"action": "status"})
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the operator sends a bad request
    result = act(event)
    # Then it is refused, the error names the problem, and no mutating AWS call was made
    assert result["ok"] is False
    assert problem in result["error"]
    assert calls.mutating() == []
    assert system.alias_version("LIVE") == system.versions["good"]


def test_status_shows_a_fanned_out_snapshots_progress_while_it_runs(system, act, monkeypatch):
    from embedded.sample_system import put_sample_uploads

    # Given a bucket past the fan-out threshold, its first snapshot, and the next one fanned out into 2 shards
    put_sample_uploads(system, range(5, 1_005))
    backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))
    assert act({"action": "status"})["result"]["backups"]["s3"]["fan_out"] is None  # the newest is complete
    fan_out_configured(monkeypatch, "DR_SNAPSHOT_FANOUT_STATE_MACHINE", "snapshot-fanout")
    [fanned] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
    backup.handler({"component": "s3", "shard": {"backup_id": fanned["backup_id"], "number": 1}},
                   LambdaContextStub("apilados-dr-backup"))
    # When the operator asks for the status
    progress = act({"action": "status"})["result"]["backups"]["s3"]["fan_out"]
    # Then it shows the running snapshot's shards and what they did so far: shard 1 holds the last 5 keys
    assert progress["backup_id"] == fanned["backup_id"]
    assert {name: progress[name] for name in ("shards", "shards_done", "shards_started", "objects_listed")} == {
        "shards": 2, "shards_done": 1, "shards_started": 1, "objects_listed": 5}
