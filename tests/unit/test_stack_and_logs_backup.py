"""Stack backups (everything recover_stack needs) and daily log exports (pending, then complete, once a day).

moto keeps no stack capabilities and finishes an export task at once, accepting any number; the
moto_gaps fills keep capabilities, and let an export run until it is next described, one at a time.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import boto3
import pytest

from drcore.backup.logs_backup import LogGroupNotFound, LogsBackup, log_subject
from drcore.backup.stack_backup import StackBackup, StackNotFound
from drcore.core.errors import InvalidRequest
from drcore.core.models import to_iso
from drcore.state.backup_store import BackupStore, Component, backup_prefix
from embedded.sample_system import PIPELINE_STACK_POLICY, PIPELINE_TEMPLATE, SampleSystem
from tests.support import CallRecorder, SimulatedClock

BACKUP_BUCKET = "apilados-dr-backups"


@pytest.fixture
def store(system: SampleSystem) -> BackupStore:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BACKUP_BUCKET)
    return BackupStore(s3, BACKUP_BUCKET)


def _files(store: BackupStore, component: Component, subject: str, backup_id: str) -> dict[str, bytes]:
    prefix = backup_prefix(component, subject, backup_id)
    return {entry["Key"][len(prefix):]: store.get_bytes(entry["Key"]) for entry in store.keys(prefix)}


# Stack


def test_stack_backup_keeps_what_recreating_the_stack_needs(system, store):
    cloudformation = system.clients["cloudformation"]
    # When the pipeline's stack is backed up
    result = StackBackup(cloudformation, store, system.stack_name, SimulatedClock()).run()
    # Then the template is kept, both stages
    files = _files(store, Component.STACK, system.stack_name, result.backup_id)
    assert json.loads(files["template.json"]) == PIPELINE_TEMPLATE
    assert json.loads(files["template-processed.json"]) == PIPELINE_TEMPLATE
    assert result.template_format == "json" and result.template_stages == ("Original", "Processed")
    # and everything else create-stack needs, and what the runbook lost
    stack = json.loads(files["stack.json"])
    assert {(p["ParameterKey"], p["ParameterValue"]) for p in stack["parameters"]} == {
        ("Stage", "production"), ("RetentionDays", "14")}
    assert {output["OutputKey"] for output in stack["outputs"]} == {"IngestQueueUrl", "IngestNotificationsArn"}
    assert stack["tags"] == [{"Key": "app", "Value": "apilados"}, {"Key": "cost-center", "Value": "data"}]
    assert stack["capabilities"] == ["CAPABILITY_IAM"]
    assert stack["stack_policy"] == PIPELINE_STACK_POLICY
    assert stack["termination_protection"] is True
    assert stack["description"] == PIPELINE_TEMPLATE["Description"] and stack["stack_status"] == "CREATE_COMPLETE"
    assert stack["no_echo_parameters"] == []
    assert {r["LogicalResourceId"]: r["ResourceType"] for r in stack["resources"]} == {
        "IngestNotifications": "AWS::SNS::Topic", "IngestQueue": "AWS::SQS::Queue", "IngestRole": "AWS::IAM::Role"}
    assert stack["template"] == {"original": "template.json", "processed": "template-processed.json", "format": "json",
                                 "stages_available": None}
    assert result.resources == 3 and result.stack_id == stack["stack_id"]
    # and the manifest, written last, lists each file with its digest
    manifest = store.get_json(result.manifest_key)
    assert [entry["path"] for entry in manifest["files"]] == ["template.json", "template-processed.json", "stack.json"]
    assert {entry["path"]: entry["size"] for entry in manifest["files"]} == {
        name: len(body) for name, body in files.items() if name not in ("manifest.json", "manifest-version.json")}
    assert [listing.complete for listing in store.list_backups(Component.STACK, system.stack_name)] == [True]


def test_a_yaml_template_is_kept_as_written(system, store):
    # Given a stack written in YAML without a stack policy
    body = "Description: yaml stack\nResources:\n  Topic:\n    Type: AWS::SNS::Topic  # kept as written\n"
    cloudformation = system.clients["cloudformation"]
    cloudformation.create_stack(StackName="YamlStack", TemplateBody=body)
    # When backed up, Then the text is kept byte for byte, and the missing policy is recorded as none
    result = StackBackup(cloudformation, store, "YamlStack", SimulatedClock()).run()
    files = _files(store, Component.STACK, "YamlStack", result.backup_id)
    assert files["template.yaml"].decode() == body and result.template_format == "yaml"
    stack = json.loads(files["stack.json"])
    assert stack["stack_policy"] is None and stack["termination_protection"] is False and stack["capabilities"] == []


def test_a_missing_stack_is_a_clear_error_and_writes_nothing(system, store):
    with pytest.raises(StackNotFound, match="NoSuchStack"):
        StackBackup(system.clients["cloudformation"], store, "NoSuchStack", SimulatedClock()).run()
    assert list(store.keys("backups/")) == []


# Logs


@pytest.fixture
def logs_clock() -> SimulatedClock:
    # The sample's log events follow the wall clock (CloudWatch Logs refuses events older than 14 days), so the
    # clock starts today, but at noon: the tests move it on by minutes, and from the wall clock's time a run close to
    # midnight would cross into tomorrow, where "yesterday" is another day.
    return SimulatedClock(datetime.combine(datetime.now(UTC).date(), dt_time(12), tzinfo=UTC))


@pytest.fixture
def logs(system: SampleSystem) -> Any:
    return system.clients["logs"]


def _yesterday(clock: SimulatedClock) -> date:
    return clock().date() - timedelta(days=1)


def _exported_messages(store: BackupStore, manifest: dict[str, Any]) -> list[str]:
    prefix = backup_prefix(Component.LOGS, manifest["subject"], manifest["backup_id"])
    text = "\n".join(gzip.decompress(store.get_bytes(prefix + entry["path"])).decode() for entry in manifest["objects"])
    return [line.split(" ", 1)[1] for line in text.splitlines() if line]


def test_an_export_is_pending_until_its_task_completes_then_gets_its_manifest(system, store, logs, logs_clock):
    backup = LogsBackup(logs, store, system.log_group, logs_clock)
    yesterday = _yesterday(logs_clock)
    # When the daily run starts yesterday's export
    started = backup.run()
    # Then it is pending: the task is recorded, the backup is not complete
    assert (started.status, started.day, started.manifest_key) == ("pending", yesterday.isoformat(), None)
    prefix = backup_prefix(Component.LOGS, "apilados-pipeline-ingest", started.backup_id)
    task = store.get_json(prefix + "export-task.json")
    assert task["task_id"] == started.task_id and task["day"] == yesterday.isoformat()
    assert task["to_ms"] - task["from_ms"] == 86_400_000 - 1
    assert [listing.complete for listing in store.list_backups(Component.LOGS, started.subject)] == [False]
    # When the next run finds the task still running, Then it is still pending
    logs_clock.advance(600)
    assert backup.run().status == "pending"
    # When a later run finds it COMPLETED
    logs_clock.advance(600)
    finished = backup.run()
    # Then the manifest lists the exported objects, which hold yesterday's events and none of today's
    assert (finished.status, finished.backup_id, finished.completed) == ("complete", started.backup_id,
                                                                         (started.backup_id,))
    manifest = store.get_json(finished.manifest_key)
    assert manifest["day"] == yesterday.isoformat() and manifest["task_status"]["code"] == "COMPLETED"
    assert manifest["object_count"] == finished.objects == len(manifest["objects"]) > 0
    assert all(entry["path"].endswith(".gz") for entry in manifest["objects"])
    assert sorted(_exported_messages(store, manifest)) == sorted(system.log_events[yesterday.isoformat()])
    assert [listing.complete for listing in store.list_backups(Component.LOGS, started.subject)] == [True]


def test_a_day_is_exported_once(system, store, logs, logs_clock):
    # Given yesterday's export is complete
    calls = CallRecorder().attach(logs)
    backup = LogsBackup(logs, store, system.log_group, logs_clock)
    for _ in range(3):
        backup.run()
    # When the daily run fires again (a duplicate delivery, a retry)
    again = backup.run()
    # Then nothing new is exported and the day's backup is the same
    assert again.status == "complete" and again.completed == ()
    assert calls.count()["CreateExportTask"] == 1
    assert len(store.list_backups(Component.LOGS, again.subject)) == 1
    # and another day is exported on its own
    earlier = backup.run(_yesterday(logs_clock) - timedelta(days=1))
    assert earlier.status == "pending" and earlier.backup_id != again.backup_id


def test_overlapping_runs_settle_an_export_once(system, store, logs, logs_clock, monkeypatch):
    # Given an export whose task has just completed, and a run that listed the backups before it was settled
    backup = LogsBackup(logs, store, system.log_group, logs_clock)
    started = backup.run()
    backup.run()
    listed_before = store.list_backups(Component.LOGS, started.subject)
    first = backup.run()
    # When that overlapping run settles it too
    monkeypatch.setattr(store, "list_backups", lambda component, subject: listed_before)
    second = backup.run()
    # Then the first run's manifest stands and the second reports the day complete without claiming it
    assert first.completed == (started.backup_id,) and second.completed == ()
    assert second.status == "complete" and second.manifest_key == first.manifest_key
    assert store.get_json(first.manifest_key)["completed_at"] == to_iso(logs_clock())


def test_a_busy_account_means_retry_later(system, store, logs, logs_clock):
    # Given another export task is running in the account (AWS allows one at a time)
    logs.create_log_group(logGroupName="/other/app")
    logs.create_export_task(logGroupName="/other/app", fromTime=0, to=1, destination=BACKUP_BUCKET,
                            destinationPrefix="elsewhere")
    backup = LogsBackup(logs, store, system.log_group, logs_clock)
    # When the daily run fires, Then it reports busy, without failing and without writing anything
    busy = backup.run()
    assert (busy.status, busy.backup_id, busy.task_id) == ("busy", None, None)
    assert store.list_backups(Component.LOGS, busy.subject) == []
    # When the other task has finished, Then the next run starts the export
    logs.describe_export_tasks()
    assert backup.run().status == "pending"


def test_a_cancelled_export_is_started_again(system, store, logs, logs_clock):
    # Given yesterday's export was cancelled after it started
    backup = LogsBackup(logs, store, system.log_group, logs_clock)
    first = backup.run()
    logs.cancel_export_task(taskId=first.task_id)
    # When the next run settles it
    second = backup.run()
    # Then the cancelled one is marked failed (never complete) and the day is exported again
    assert second.failed == (first.backup_id,)
    assert second.status == "pending" and second.backup_id != first.backup_id
    assert store.exists(backup_prefix(Component.LOGS, first.subject, first.backup_id) + "export-failed.json")
    listings = {listing.backup_id: listing.complete for listing in store.list_backups(Component.LOGS, first.subject)}
    assert listings == {first.backup_id: False, second.backup_id: False}


def test_only_whole_days_are_exported(system, store, logs, logs_clock):
    with pytest.raises(InvalidRequest, match="not over"):
        LogsBackup(logs, store, system.log_group, logs_clock).run(logs_clock().date())
    assert list(store.keys("backups/")) == []


def test_a_missing_log_group_is_a_clear_error(system, store, logs, logs_clock):
    with pytest.raises(LogGroupNotFound, match="/aws/lambda/nothing"):
        LogsBackup(logs, store, "/aws/lambda/nothing", logs_clock).run()
    assert list(store.keys("backups/")) == []


@pytest.mark.parametrize("log_group, subject", [
    ("/aws/lambda/apilados-pipeline-ingest", "apilados-pipeline-ingest"),
    ("/apilados/api/access", "apilados-api-access"),
])
def test_log_groups_are_filed_under_a_slash_free_subject(log_group, subject):
    assert log_subject(log_group) == subject
