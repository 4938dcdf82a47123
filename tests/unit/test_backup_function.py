"""The backup function through its real handler: each component, configuration changes, continuations,
the journal and the RPO metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

import backup.handler as backup
from drcore.backup.manifest import list_snapshots, read_manifest
from drcore.backup.snapshot_census import BucketCensus
from drcore.state.backup_store import BackupStore, Component
from embedded.aws_events import LambdaContextStub, cloudtrail_event
from embedded.sample_system import SampleSystem, add_buckets, add_controller_function, put_sample_uploads
from tests.support import CallRecorder, fan_out_configured, s3_metric_sum

BACKUP_FUNCTION = "apilados-dr-backup"


@pytest.fixture
def buckets(system: SampleSystem) -> SampleSystem:
    add_buckets(system, boto3.session.Session(region_name="us-east-1"), objects=30)
    # The backup function itself exists so that it can invoke itself to continue a long snapshot.
    add_controller_function(system, BACKUP_FUNCTION)
    return system


@pytest.fixture
def run_backup(buckets: SampleSystem, monkeypatch: pytest.MonkeyPatch):
    def run(event: object, remaining_ms: int = 900_000) -> dict:
        for name, value in buckets.backup_environment().items():
            monkeypatch.setenv(name, value)
        return backup.handler(event, LambdaContextStub(BACKUP_FUNCTION, remaining_ms))

    return run


def store(system: SampleSystem) -> BackupStore:
    return BackupStore(system.clients["s3"], system.backup_bucket)


def good_backups(system: SampleSystem, component: str) -> list[float]:
    stats = system.clients["cloudwatch"].get_metric_statistics(
        Namespace="ApiladosDR", MetricName="BackupSucceeded", Dimensions=[{"Name": "Component", "Value": component}],
        Statistics=["Sum"], Period=3600, StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=5))
    return [point["Sum"] for point in stats["Datapoints"]]


def test_a_function_backup_is_complete_verified_journaled_and_counted(buckets, run_backup):
    # When the schedule asks for a function backup
    result = run_backup({"component": "lambda"})
    # Then the backup is complete with its code verified, and listed as such
    [outcome] = result["components"]
    assert outcome["status"] == "complete" and outcome["details"]["code_sha256_verified"] is True
    [listing] = store(buckets).list_backups(Component.LAMBDA, buckets.function_name)
    assert listing.complete and listing.backup_id == outcome["backup_id"]
    # And the RPO metric and the journal record it
    assert good_backups(buckets, "lambda") == [1.0]
    journal = buckets.clients["dynamodb"].query(
        TableName=buckets.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :j)",
        ExpressionAttributeValues={":pk": {"S": f"FUNCTION#{buckets.function_name}"}, ":j": {"S": "JOURNAL#"}})
    assert [item["action"]["S"] for item in journal["Items"]] == ["backup_lambda"]


def test_a_configuration_change_backs_up_the_function_within_the_invocation(buckets, run_backup):
    buckets.clients["lambda"].update_function_configuration(
        FunctionName=buckets.function_name, Environment={"Variables": {"STAGE": "production", "FEATURE_X": "on"}})
    result = run_backup(cloudtrail_event("UpdateFunctionConfiguration20150331v2", buckets.function_name))
    [outcome] = result["components"]
    assert outcome["status"] == "complete"
    configuration = store(buckets).get_json(
        f"backups/lambda/{buckets.function_name}/{outcome['backup_id']}/configuration.json")
    assert configuration["configuration"]["Environment"]["Variables"]["FEATURE_X"] == "on"


def test_a_change_of_another_function_is_ignored(buckets, run_backup, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = run_backup(cloudtrail_event("UpdateFunctionConfiguration20150331v2", "billing-api"))
    assert result["ok"] is True and result["ignored"] is True
    assert result["status"] == "ignored" and "another function" in result["reason"]
    assert calls.calls == []


@pytest.mark.parametrize("change", [
    lambda event: {key: value for key, value in event.items() if key != "detail"},
    lambda event: {**event, "detail": None},
    lambda event: {**event,
                   "detail": {**event["detail"], "requestParameters": "functionName=apilados-pipeline-ingest"}},
])
def test_a_cloudtrail_event_without_a_usable_detail_is_ignored_and_reads_nothing(buckets, run_backup, monkeypatch,
                                                                               change):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = run_backup(change(cloudtrail_event("UpdateFunctionConfiguration20150331v2", buckets.function_name)))
    assert result["status"] == "ignored" and "detail" in result["reason"], result
    assert calls.calls == []


def journal_actions(system: SampleSystem) -> list[str]:
    journal = system.clients["dynamodb"].query(
        TableName=system.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :j)",
        ExpressionAttributeValues={":pk": {"S": f"FUNCTION#{system.function_name}"}, ":j": {"S": "JOURNAL#"}})
    return [item["action"]["S"] for item in journal["Items"]]


@pytest.mark.parametrize("event, problem", [
    # an id that is not a backup id: before, the snapshot failed on it after a journal entry, and raised
    ({"component": "s3", "resume": "not-a-backup-id"}, "resume"),
    ({"component": "s3", "resume": "20261126T120000Z-abc123/../../backups"}, "resume"),
    # a component that has nothing to resume: before, it ran a whole backup
    ({"component": "lambda", "resume": "20261126T120000Z-abc123"}, "resume continues a bucket snapshot"),
    ({"component": "all", "resume": "20261126T120000Z-abc123"}, "resume continues a bucket snapshot"),
])
def test_a_resume_that_cannot_continue_a_snapshot_is_refused_and_writes_nothing(buckets, run_backup, monkeypatch,
                                                                              event, problem):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = run_backup(event)
    assert result["ok"] is False and problem in result["error"], result
    assert calls.mutating() == []
    assert journal_actions(buckets) == []


def test_a_bad_request_is_refused_and_writes_nothing(buckets, run_backup, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = run_backup({"component": "everything"})
    assert result["ok"] is False and "component" in result["error"]
    assert calls.mutating() == []


def test_a_bucket_snapshot_and_the_other_components_in_one_request(buckets, run_backup):
    result = run_backup({"component": "all"})
    statuses = {outcome["component"]: outcome["status"] for outcome in result["components"]}
    # the logs export completes on a later run (CloudWatch Logs exports take minutes)
    assert statuses == {"lambda": "complete", "stack": "complete", "logs": "pending", "s3": "complete"}
    [snapshot] = list_snapshots(store(buckets), buckets.data_bucket)
    assert len(read_manifest(store(buckets), buckets.data_bucket, snapshot.backup_id).objects) == 30
    assert good_backups(buckets, "s3") == [1.0] and good_backups(buckets, "logs") == []
    # later runs find the export still running (the moto fill answers RUNNING once), then finished:
    # that run writes its manifest; the next finds the day exported, current within the RPO
    statuses = [run_backup({"component": "logs"})["components"][0]["status"] for _ in range(3)]
    assert statuses == ["pending", "complete", "current"]
    assert good_backups(buckets, "logs") == [2.0]


def test_a_snapshot_out_of_time_continues_in_a_new_invocation(buckets, run_backup, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # Given too little time left to copy a page
    first = run_backup({"component": "s3"}, remaining_ms=10_000)
    [outcome] = first["components"]
    # Then it checkpoints and invokes itself asynchronously with the snapshot's id
    assert outcome["status"] == "continuing"
    assert calls.count()["Invoke"] == 1
    assert list_snapshots(store(buckets), buckets.data_bucket) == [] or not any(
        listing.complete for listing in list_snapshots(store(buckets), buckets.data_bucket))
    # When the continuation runs with time enough, the same snapshot completes
    second = run_backup({"component": "s3", "resume": outcome["backup_id"]})
    assert second["components"][0]["status"] == "complete"
    assert second["components"][0]["backup_id"] == outcome["backup_id"]


def test_a_big_snapshot_fans_out_its_shards_report_to_the_state_machine_and_its_merge_completes_it(
        buckets, run_backup, monkeypatch):
    # Given a bucket past the fan-out threshold (1,000 objects: the least it can be set to), a first snapshot of it,
    # and the snapshot fan-out state machine the stack deploys (moto does not run its map: this test is the map)
    put_sample_uploads(buckets, range(30, 1_030))
    assert run_backup({"component": "s3"})["components"][0]["status"] == "complete"
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(name="snapshot-fanout", definition='{"StartAt":"S","States":{"S":{"Type":'
                                       '"Succeed"}}}', roleArn="arn:aws:iam::123456789012:role/fanout")
    monkeypatch.setenv("DR_SNAPSHOT_FANOUT_STATE_MACHINE", machine["stateMachineArn"])
    monkeypatch.setenv("DR_FANOUT_THRESHOLD_OBJECTS", "1000")
    monkeypatch.setenv("DR_FANOUT_SHARD_OBJECTS", "1000")
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the schedule asks for the next snapshot
    [fanned] = run_backup({"component": "s3"})["components"]
    # Then it fans out into 2 shards and starts their execution, and does not continue itself
    assert fanned["status"] == "fanned_out" and fanned["details"]["shards"] == 2
    assert calls.count()["StartExecution"] == 1 and "Invoke" not in calls.count()
    backup_id = fanned["backup_id"]
    # When the map invokes the function for each shard, as its child executions do, with little time first
    short = run_backup({"component": "s3", "shard": {"backup_id": backup_id, "number": 1}}, remaining_ms=10_000)
    assert short["finished"] is False and short["components"][0]["status"] == "shard_continuing"
    answers = [run_backup({"component": "s3", "shard": {"backup_id": backup_id, "number": number}})
               for number in (1, 0)]
    # Then each answers `finished`, which the map's loop reads, and publishes its progress
    assert [answer["finished"] for answer in answers] == [True, True]
    # And a shard past the plan is refused with `ok: false`, on which the map's loop fails it, and writes nothing
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    past = run_backup({"component": "s3", "shard": {"backup_id": backup_id, "number": 2}})
    assert past == {"ok": False, "finished": False, "error": f"snapshot {backup_id} has shards 0 to 1, not 2"}
    assert calls.mutating() == []
    assert s3_metric_sum(buckets, "SnapshotShardsDone") == 2
    assert s3_metric_sum(buckets, "SnapshotObjectsListed") == 1_030
    # When the state machine's last step resumes the snapshot, Then it is merged: complete, journaled and counted
    [merged] = run_backup({"component": "s3", "resume": backup_id, "reason": "snapshot fan-out merge"})["components"]
    assert merged["status"] == "complete" and merged["backup_id"] == backup_id
    assert len(read_manifest(store(buckets), buckets.data_bucket, backup_id).objects) == 1_030
    assert good_backups(buckets, "s3") == [2.0]


def test_a_big_first_snapshot_counts_its_keys_then_fans_out_and_a_schedule_meanwhile_starts_nothing(
        buckets, run_backup, monkeypatch):
    # Given a bucket past the fan-out threshold and never snapshotted, and the snapshot fan-out state machine
    put_sample_uploads(buckets, range(30, 1_030))
    machine = fan_out_configured(monkeypatch, "DR_SNAPSHOT_FANOUT_STATE_MACHINE", "snapshot-fanout")
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the schedule asks for the first snapshot
    [fanned] = run_backup({"component": "s3"})["components"]
    # Then it counts the keys (2 pages of names), copies nothing, and fans out into 2 shards cut at the 1,000th key
    assert fanned["status"] == "fanned_out" and fanned["details"] == {
        "shards": 2, "base": None, "execution": f"{machine.arn.replace(':stateMachine:', ':execution:')}:"
                                                f"{fanned['backup_id']}"}
    counted = calls.count()
    assert counted["ListObjectsV2"] >= 2 and "CopyObject" not in counted and "Invoke" not in counted
    assert counted["StartExecution"] == 1
    # When the map invokes the function for each shard, and its last step resumes the snapshot
    for number in (1, 0):
        assert run_backup({"component": "s3", "shard": {"backup_id": fanned["backup_id"], "number": number}})[
            "finished"] is True
    [merged] = run_backup({"component": "s3", "resume": fanned["backup_id"],
                           "reason": "snapshot fan-out merge"})["components"]
    # Then the first snapshot is complete: every object, journaled and counted as a good backup
    assert merged["status"] == "complete" and merged["details"]["objects_copied"] == 1_030
    assert len(read_manifest(store(buckets), buckets.data_bucket, fanned["backup_id"]).objects) == 1_030
    assert good_backups(buckets, "s3") == [1.0]


def test_a_schedule_while_a_first_snapshot_counts_its_keys_answers_running_and_starts_nothing(
        buckets, run_backup, monkeypatch):
    # Given the fan-out configured and a first snapshot whose census stopped after its first page, as an invocation
    # out of time leaves it (its continuation on the way)
    put_sample_uploads(buckets, range(30, 1_030))
    fan_out_configured(monkeypatch, "DR_SNAPSHOT_FANOUT_STATE_MACHINE", "snapshot-fanout")
    counting = f"{(datetime.now(UTC) - timedelta(minutes=5)).strftime('%Y%m%dT%H%M%SZ')}-c0ffee"
    pages = iter([True])
    census = BucketCensus(boto3.client("s3", region_name="us-east-1"), store(buckets), buckets.data_bucket)
    assert census.count(counting, 1_000, lambda: next(pages, False)).objects == 1_000
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the schedule asks for a snapshot
    [outcome] = run_backup({"component": "s3"})["components"]
    # Then it answers that the first snapshot is running, and neither counts, copies nor invokes anything
    assert outcome["status"] == "running" and outcome["backup_id"] == counting
    assert outcome["details"]["census"] == {"objects_counted": 1_000, "pages": 1, "done": False}
    made = calls.count()
    assert not {"CopyObject", "Invoke", "StartExecution", "PutObject"} & set(made)
    assert store(buckets).backup_ids(Component.S3, buckets.data_bucket) == [counting]


def test_a_shard_of_a_snapshot_that_did_not_fan_out_is_refused_and_writes_nothing(buckets, run_backup, monkeypatch):
    # Given a complete snapshot, small enough to have been taken in one invocation
    [snapshot] = run_backup({"component": "s3"})["components"]
    assert snapshot["status"] == "complete"
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a shard of it is asked for, Then it is refused, naming why, and nothing is written or journaled (before, the
    # function raised, and the map retried it)
    answer = run_backup({"component": "s3", "shard": {"backup_id": snapshot["backup_id"], "number": 0}})
    assert answer["ok"] is False and answer["finished"] is False
    assert answer["error"] == (f"snapshot {snapshot['backup_id']} of {buckets.data_bucket} has no shard plan: "
                               "it is not fanned out")
    assert calls.mutating() == []
    assert journal_actions(buckets) == ["backup_s3"]


@pytest.mark.parametrize("event", [
    {"component": "lambda", "shard": {"backup_id": "20261126T120000Z-abc123", "number": 0}},
    {"component": "s3", "shard": {"backup_id": "20261126T120000Z-abc123", "number": -1}},
    {"component": "s3", "shard": {"backup_id": "../etc", "number": 0}},
    {"component": "s3", "shard": {"backup_id": "20261126T120000Z-abc123"}},
    {"component": "s3", "shard": {"backup_id": "20261126T120000Z-abc123", "number": 0},
     "resume": "20261126T120000Z-abc123"},
])
def test_a_bad_shard_request_is_refused_and_reads_nothing(buckets, run_backup, monkeypatch, event):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    answer = run_backup(event)
    assert answer["ok"] is False and ("shard" in answer["error"] or "resume" in answer["error"])
    assert calls.calls == []
