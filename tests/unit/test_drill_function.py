"""The drill function through its real handler: the newest backups restored into scratch resources, each
step measured and reported honestly, continued across invocations, and production left untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import backup.handler as backup
import drill.handler as drill
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.manifest import read_manifest
from drcore.drill.runner import STEPS
from drcore.state.backup_store import BackupStore, Component
from drcore.state.store import ControllerStateStore
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem, add_controller_function, add_drill_scratch
from tests.support import CallRecorder

DRILL_FUNCTION = "apilados-dr-drill"
BACKUP_FUNCTION = "apilados-dr-backup"
START = {"action": "drill", "requested_by": "ops@example.com", "reason": "quarterly DR test"}


class DwindlingContext(LambdaContextStub):
    """An invocation whose remaining time is read from `remaining()` (the stub's is fixed)."""

    def __init__(self, function_name: str, remaining: Callable[[], int]) -> None:
        super().__init__(function_name)
        self._remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining()


@pytest.fixture
def drill_world(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    add_drill_scratch(world)
    add_controller_function(world, DRILL_FUNCTION)
    add_controller_function(world, BACKUP_FUNCTION)
    for name, value in world.drill_environment().items():
        monkeypatch.setenv(name, value)
    return world


def back_up_everything(system: SampleSystem) -> None:
    result = backup.handler({"component": "all"}, LambdaContextStub(BACKUP_FUNCTION))
    pending = [outcome["component"] for outcome in result["components"] if outcome["status"] != "complete"]
    # A logs export runs asynchronously (moto_gaps makes it take a while): a later logs backup completes it.
    assert pending in ([], ["logs"]), result
    for _ in range(5 if pending else 0):
        [logs] = backup.handler({"component": "logs"}, LambdaContextStub(BACKUP_FUNCTION))["components"]
        if logs["status"] == "complete":
            return
    assert not pending, "the logs export never completed"


def run_drill(event: dict, context: LambdaContextStub | None = None) -> dict:
    return drill.handler(event, context or LambdaContextStub(DRILL_FUNCTION))


def steps_of(result: dict) -> dict[str, dict]:
    return {step["name"]: step for step in result["report"]["steps"]}


def current_objects(system: SampleSystem, bucket: str) -> dict[str, str]:
    pages = system.clients["s3"].get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {entry["Key"]: entry["ETag"] for page in pages for entry in page.get("Contents", [])}


def production_state(system: SampleSystem) -> dict:
    lam, s3 = system.clients["lambda"], system.clients["s3"]
    configuration = lam.get_function_configuration(FunctionName=system.function_name)
    versions = s3.list_object_versions(Bucket=system.data_bucket)
    return {
        "function": {key: configuration.get(key)
                     for key in ("CodeSha256", "LastModified", "Environment", "MemorySize", "Timeout")},
        "aliases": {alias: system.alias_version(alias) for alias in ("LIVE", "STABLE")},
        "data": sorted((entry["Key"], entry["VersionId"]) for entry in versions.get("Versions", [])),
        "stacks": sorted(stack["StackName"] for stack in system.clients["cloudformation"].describe_stacks()["Stacks"]),
    }


def test_a_drill_restores_the_newest_backups_into_scratch_resources_and_reports_every_step(drill_world):
    system = drill_world
    system.set_alarm("errors", "OK")  # the sample system starts mid-incident; the drill runs on a calm day
    back_up_everything(system)
    before = production_state(system)
    # When an operator runs a drill
    result = run_drill(START)
    # Then every step ran and passed, within its objective
    assert result["ok"] is True and result["status"] == "finished" and result["passed"] is True, result
    steps = steps_of(result)
    assert list(steps) == list(STEPS)
    assert all(step["ok"] for step in steps.values()), steps
    assert steps["recover_lambda"]["objective_seconds"] == 900 and steps["restore_s3"]["objective_seconds"] == 1800
    # And the scratch bucket holds exactly the newest snapshot, by content
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    snapshot_id = steps["restore_s3"]["details"]["snapshot_id"]
    expected = {entry.key: entry.etag for entry in read_manifest(store, system.data_bucket, snapshot_id).objects}
    assert current_objects(system, system.scratch_bucket) == expected and len(expected) == 20
    assert steps["restore_s3"]["details"]["objects_copied"] == 20
    # And the scratch function runs the backed-up code with the backed-up environment
    lam = system.clients["lambda"]
    scratch = lam.get_function_configuration(FunctionName=f"{system.function_name}-drill")
    original = lam.get_function_configuration(FunctionName=system.function_name)
    assert scratch["CodeSha256"] == original["CodeSha256"]
    assert scratch["Environment"]["Variables"] == original["Environment"]["Variables"]
    assert steps["recover_lambda"]["details"]["code_sha256_verified"] is True
    # And, once verified, it holds none of the account's concurrency (its backup reserved 25)
    assert steps["recover_lambda"]["details"]["reserved_concurrency_released"] == 25
    scratch_concurrency = lam.get_function_concurrency(FunctionName=f"{system.function_name}-drill")
    assert "ReservedConcurrentExecutions" not in scratch_concurrency
    # And the stack backup was validated, not created beside the pipeline
    assert steps["validate_stack"]["details"]["template_valid"] is True
    assert steps["validate_stack"]["details"]["created"] is False
    # And production is exactly as it was
    assert production_state(system) == before


def test_the_report_is_written_once_journaled_and_published(drill_world):
    system = drill_world
    system.set_alarm("errors", "OK")
    back_up_everything(system)
    result = run_drill(START)
    drill_id = result["drill_id"]
    # The report is in the backup bucket, in JSON and Markdown, and says what the answer says
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    written = store.get_json(f"drills/{drill_id}/report.json")
    assert written["ok"] is True and written["environment"] == "embedded"
    assert [step["name"] for step in written["steps"]] == list(STEPS)
    assert "| restore_s3 | ok |" in store.get_bytes(f"drills/{drill_id}/report.md").decode()
    # The recovery function's status shows it as the last drill
    import recovery.handler as recovery
    status = recovery.handler({"action": "status"}, LambdaContextStub("apilados-dr-recovery"))["result"]
    assert status["last_drill"]["result"] == "passed" and status["last_drill"]["environment"] == "embedded"
    assert status["last_drill"]["report"] == f"s3://{system.backup_bucket}/drills/{drill_id}/report.json"
    # The dashboard's metric has the result, and nobody was alerted
    stats = system.clients["cloudwatch"].get_metric_statistics(
        Namespace="ApiladosDR", MetricName="DrillPassed", Dimensions=[{"Name": "Environment", "Value": "embedded"}],
        Statistics=["Minimum"], Period=60, StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=5))
    assert [point["Minimum"] for point in stats["Datapoints"]] == [1.0]
    assert system.drain_alerts() == []


def test_a_failing_step_is_reported_and_alerted_and_the_drill_goes_on(drill_world):
    system = drill_world
    back_up_everything(system)
    # Given LIVE's errors alarm is firing (the sample system's incident)
    system.set_alarm("errors", "ALARM")
    result = run_drill(START)
    # Then the drill fails on the health check alone, and still rehearsed every restore
    assert result["ok"] is True and result["passed"] is False  # the request was served; the drill failed
    steps = steps_of(result)
    assert not steps["health_check"]["ok"]
    assert steps["health_check"]["details"]["alarms_in_alarm"] == [system.alarms["errors"]]
    assert all(steps[name]["ok"] for name in STEPS if name != "health_check")
    # And a severity 3 alert names the failed step
    [alert] = system.drain_alerts()
    assert alert["severity"] == 3 and alert["subject"].endswith("DR drill failed: health_check")
    assert "health_check: FAILED" in alert["message"]


def test_a_drill_over_damaged_backup_content_fails_its_restore_naming_the_damaged_keys(drill_world):
    system = drill_world
    system.set_alarm("errors", "OK")
    back_up_everything(system)
    # Given the stored bodies of two objects of the newest snapshot gone: the versions it recorded deleted, as no
    # role of the stack may (a new version on their keys would change nothing it reads)
    s3, store = system.clients["s3"], BackupStore(system.clients["s3"], system.backup_bucket)
    newest = [listing for listing in store.list_backups(Component.S3, system.data_bucket) if listing.complete][-1]
    entries = {entry.key: entry for entry in read_manifest(store, system.data_bucket, newest.backup_id).objects}
    damaged = sorted(entries)[4:6]
    for key in damaged:
        s3.delete_object(Bucket=system.backup_bucket, Key=entries[key].content_key,
                         VersionId=entries[key].content_version_id)
    # When the drill runs
    result = run_drill(START)
    # Then its restore_s3 step fails, its verification naming those keys as damaged in the backup
    restore = steps_of(result)["restore_s3"]
    assert result["passed"] is False and restore["ok"] is False
    verification = restore["details"]["verification"]
    assert (verification["objects_expected"], verification["objects_matching"]) == (20, 18)
    assert list(verification["mismatched_keys"]) == damaged == list(verification["backup_damaged_keys"])
    assert f"backup content damaged for {', '.join(damaged)}" in restore["details"]["error"]
    # And every other step passed, and the drill's alert names the keys
    assert all(step["ok"] for name, step in steps_of(result).items() if name != "restore_s3")
    [alert] = system.drain_alerts()
    assert alert["subject"].endswith("DR drill failed: restore_s3") and all(key in alert["message"] for key in damaged)


def test_a_drill_without_backups_fails_each_restore_with_the_reason(drill_world):
    system = drill_world
    system.set_alarm("errors", "OK")
    result = run_drill(START)
    assert result["ok"] is True and result["passed"] is False  # the request was served; the drill failed
    steps = steps_of(result)
    assert steps["rpo_check"]["details"]["outside_rpo"] == ["lambda", "logs", "s3", "stack"]
    for name, component in (("recover_lambda", "lambda"), ("restore_s3", "s3"), ("validate_stack", "stack")):
        assert not steps[name]["ok"]
        assert f"there is no complete {component} backup" in steps[name]["details"]["error"]
    # Nothing was created in the attempt
    assert current_objects(system, system.scratch_bucket) == {}


def test_an_over_objective_step_fails_the_drill(drill_world, monkeypatch):
    system = drill_world
    system.set_alarm("errors", "OK")
    back_up_everything(system)
    # Given an objective no restore can meet
    monkeypatch.setenv("DR_RTO_SECONDS", json.dumps({"lambda": 900, "s3": 0, "configuration": 300}))
    result = run_drill(START)
    steps = steps_of(result)
    assert steps["restore_s3"]["ok"] is True and steps["restore_s3"]["seconds"] > 0
    assert result["ok"] is True and result["passed"] is False  # the request was served; the drill failed
    [alert] = system.drain_alerts()
    assert "restore_s3: over objective" in alert["message"]


def test_a_restore_that_outlasts_the_invocation_continues_in_a_new_one(drill_world, monkeypatch):
    system = drill_world
    system.set_alarm("errors", "OK")
    back_up_everything(system)
    # Given an invocation whose time runs out once the restore's safety snapshot of the scratch bucket is taken
    out_of_time = []
    take_snapshot = BucketSnapshotter.snapshot

    def snapshot_then_run_out(snapshotter, backup_id, remaining_ms, **options):
        progress = take_snapshot(snapshotter, backup_id, remaining_ms, **options)
        out_of_time.append(snapshotter._source == system.scratch_bucket and progress.finished)
        return progress

    monkeypatch.setattr(BucketSnapshotter, "snapshot", snapshot_then_run_out)
    continued: list[dict] = []
    monkeypatch.setattr("drcore.wiring.drill.self_invoker", lambda client, name: continued.append)
    first = run_drill(START, DwindlingContext(DRILL_FUNCTION, lambda: 1_000 if any(out_of_time) else 900_000))
    # Then the drill pauses before copying, and asks for a new invocation
    assert first["status"] == "in_progress", first
    assert continued == [{"resume": first["drill_id"]}]
    assert first["steps_done"] == ["rpo_check", "health_check", "recover_lambda"]
    assert current_objects(system, system.scratch_bucket) == {}
    # When the continuation runs, the drill finishes where it stopped, and says it took two invocations
    second = run_drill(continued[0])
    assert second["status"] == "finished" and second["passed"] is True, second
    steps = steps_of(second)
    assert list(steps) == list(STEPS)
    assert steps["restore_s3"]["details"]["invocations"] == 2
    assert steps["restore_s3"]["details"]["objects_matching"] == 20
    # And a repeated continuation finds the drill finished and records nothing again
    third = run_drill(continued[0])
    assert third["status"] == "finished" and third["report"]["finished_at"] == second["report"]["finished_at"]
    journal = [entry for entry in ControllerStateStore(system.clients["dynamodb"], system.table).journal(
        system.function_name) if entry["action"] == "drill"]
    assert len(journal) == 1


def test_a_duplicated_schedule_event_starts_one_drill(drill_world):
    system = drill_world
    system.set_alarm("errors", "OK")
    back_up_everything(system)
    scheduled = {"action": "drill", "requested_by": "schedule", "reason": "weekly DR drill",
                 "scheduled_at": "2026-11-30T06:00:00Z"}
    first = run_drill(scheduled)
    second = run_drill(scheduled)
    assert first["status"] == "finished" and first["drill_id"] == "drill-20261130T060000Z"
    assert second["status"] == "already_started" and second["drill_id"] == first["drill_id"]


@pytest.mark.parametrize("event, named", [
    ({}, "action"),
    ({"action": "restore"}, "action"),
    ({"action": "drill"}, "requested_by"),
    ({"action": "drill", "requested_by": ""}, "requested_by"),
    ({"action": "drill", "requested_by": "ops", "target": "apilados-pipeline-ingest"}, "target"),
    ({"action": "drill", "requested_by": "ops", "scheduled_at": "next monday"}, "scheduled_at"),
    ({"resume": "rp-123"}, "resume"),
    ({"resume": "drill-20261130T060000Z"}, "no plan"),
    (["drill"], "JSON object"),
])
def test_a_bad_event_is_refused_by_name_and_changes_nothing(drill_world, monkeypatch, event, named):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = run_drill(event)
    assert result["ok"] is False and named in result["error"], result
    assert calls.mutating() == []
