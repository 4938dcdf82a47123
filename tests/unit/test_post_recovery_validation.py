"""The post-recovery validation: each check passing in a world set up as the stacks set it, and failing (or
unknown) in a world damaged the way an incident or a mistake damages it; the result journaled, in `status`, as
the read-only `validate` action and as the final step of an applied restore."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine
from botocore.client import BaseClient
from botocore.exceptions import EndpointConnectionError
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.access_control import PermissionResult
from moto.s3.models import FakeBucket, s3_backends

import backup.handler as backup
from drcore.backup import manifest as manifest_module
from drcore.restore.validation_controls import CREATE_ONLY_STATEMENT_SID
from drcore.state.store import ControllerStateStore
from embedded.aws_events import LambdaContextStub
from embedded.moto_gaps import VersionBehaviour
from embedded.sample_system import SECONDARY_REGION, SampleSystem, add_replica
from tests.s3_gaps import copies_into_a_locked_bucket
from tests.support import WHO, CallRecorder, act

BACKUP_FUNCTION = "apilados-dr-backup"
LOCK_DAYS = 30


def back_up_everything() -> None:
    result = backup.handler({"component": "all"}, LambdaContextStub(BACKUP_FUNCTION))
    pending = [outcome["component"] for outcome in result["components"] if outcome["status"] != "complete"]
    for _ in range(5 if pending else 0):  # a logs export completes on a later backup (moto_gaps)
        [logs] = backup.handler({"component": "logs"}, LambdaContextStub(BACKUP_FUNCTION))["components"]
        if logs["status"] == "complete":
            return
    assert pending in ([], ["logs"]), result


def live_arn(world: SampleSystem, region: str = "us-east-1") -> str:
    arn = world.clients["lambda"].get_alias(FunctionName=world.function_name, Name="LIVE")["AliasArn"]
    return arn.replace(":us-east-1:", f":{region}:")


def notify_live(s3: Any, bucket: str, arn: str) -> None:
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"Id": "pipeline", "LambdaFunctionArn": arn,
                                          "Events": ["s3:ObjectCreated:*"]}]})


def create_only_policy(bucket: str) -> str:
    """The backup bucket's create-only statement as stacks/constructs/backup_bucket.py synthesizes it."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": CREATE_ONLY_STATEMENT_SID, "Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}}]})


@pytest.fixture
def copies_into_locked_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's gap (tests.s3_gaps.copies_into_a_locked_bucket) filled on every S3 client the functions build: the
    backup bucket has its default retention, as the stack configures it, before the first backup (moto takes a lock
    configuration only on an empty bucket)."""
    original = BaseClient.__init__

    def init(client: Any, *args: Any, **kwargs: Any) -> None:
        original(client, *args, **kwargs)
        if client.meta.service_model.service_name == "s3":
            copies_into_a_locked_bucket(client)

    monkeypatch.setattr(BaseClient, "__init__", init)


@pytest.fixture
def policy_conditions_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto applies a bucket policy's Deny to every object write whatever its conditions, so the create-only
    statement would refuse the backup store's writes, which carry the `If-None-Match: *` its condition lets through.
    No test here is about enforcing the policy (the IAM conformance test is): the policy is stored and read back, and
    moto's object-level enforcement of it is left out."""
    monkeypatch.setattr(FakeBucket, "get_permission", lambda bucket, action, resource: PermissionResult.NEUTRAL)


@pytest.fixture
def healthy(world: SampleSystem, monkeypatch: pytest.MonkeyPatch, copies_into_locked_buckets: None,
            policy_conditions_decided: None) -> SampleSystem:
    """The sample system as the stacks deploy it: the replica in the secondary region, the data bucket notifying
    LIVE, the LIVE alarms with their actions, every component backed up, the backup bucket and the topics with
    the controls the stack configures."""
    add_replica(world, boto3.session.Session(region_name="us-east-1"))
    s3, cloudwatch, sns = world.clients["s3"], world.clients["cloudwatch"], world.clients["sns"]
    notify_live(s3, world.data_bucket, live_arn(world))
    for alarm in cloudwatch.describe_alarms(AlarmNames=list(world.alarms.values()))["MetricAlarms"]:
        keep = {key: alarm[key] for key in ("AlarmName", "Namespace", "MetricName", "Dimensions", "Period",
                                            "EvaluationPeriods", "Threshold", "ComparisonOperator",
                                            "Statistic", "ExtendedStatistic") if key in alarm}
        cloudwatch.put_metric_alarm(**keep, AlarmActions=[world.alert_topic_arn], ActionsEnabled=True)
        cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="OK", StateReason="healthy")
    s3.put_object_lock_configuration(Bucket=world.backup_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": LOCK_DAYS}}})
    back_up_everything()
    key = boto3.client("kms", region_name="us-east-1").create_key(Description="backups")["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket=world.backup_bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
         "BucketKeyEnabled": True}]})
    s3.put_bucket_policy(Bucket=world.backup_bucket, Policy=create_only_policy(world.backup_bucket))
    for topic in (world.alert_topic_arn, world.emergency_topic_arn):
        sns.set_topic_attributes(TopicArn=topic, AttributeName="KmsMasterKeyId", AttributeValue=key)
    environment = {**world.region_environment(), "DR_BACKUP_KEY_ARN": key, "DR_OBJECT_LOCK_MODE": "GOVERNANCE",
                   "DR_OBJECT_LOCK_DAYS": str(LOCK_DAYS), "DR_VALIDATION_SAMPLE_SIZE": "1000"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    world.drain_alerts()
    return world


def read_whole(*_: Any, **__: Any) -> None:
    raise AssertionError("a manifest was read whole: the data check samples it a line at a time")


def validate() -> dict[str, Any]:
    answer = act({"action": "validate", **WHO})
    assert answer["ok"], answer
    return dict(answer["result"])


def checks_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in result["checks"]}


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks_of(result).items()}


ALL_CHECKS = ("health_check", "event_processing", "alarms", "metrics", "backups_within_rpo", "data_integrity",
              "security_controls")


def test_a_world_as_the_stacks_deploy_it_validates_and_the_result_is_journaled_and_in_status(healthy, monkeypatch):
    # Given the system as deployed and backed up; When the operator validates
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = validate()
    # Then every check is ok
    assert statuses(result) == dict.fromkeys(ALL_CHECKS, "ok"), json.dumps(result, default=str)[:3000]
    assert result["ok"] and result["status"] == "ok" and result["active_region"] == "us-east-1"
    checks = checks_of(result)
    assert checks["data_integrity"]["sampled"] == 20 and checks["data_integrity"]["matching"] == 20
    assert checks["event_processing"]["buckets"][SECONDARY_REGION]["processes"] is False
    # And it changed nothing but its journal entry (the probe's Invoke is by version: the health check)
    assert [call for call in calls.mutating() if call not in ("Invoke", "PutItem")] == []
    assert calls.count()["PutItem"] == 1
    # And the journal and status show it
    [entry] = [entry for entry in ControllerStateStore(healthy.clients["dynamodb"], healthy.table)
               .journal(healthy.function_name) if entry["action"] == "validate"]
    assert entry["result"] == "ok" and "alice@example.com" in entry["cause"]["summary"]
    status = act({"action": "status"})["result"]
    assert status["validation"]["status"] == "ok" and status["validation"]["at"] == result["at"]


# Event processing: the active region's bucket, and no other ---------------------------------------------------

def test_a_notification_on_both_buckets_fails_as_uploads_processed_twice(healthy):
    notify_live(healthy.clients["s3_secondary"], healthy.replica_bucket, live_arn(healthy, SECONDARY_REGION))
    check = checks_of(validate())["event_processing"]
    assert check["status"] == "failed" and "processed twice" in check["detail"]
    assert healthy.replica_bucket in check["detail"]


def test_a_notification_on_neither_bucket_fails_as_uploads_not_processed(healthy):
    healthy.clients["s3"].put_bucket_notification_configuration(Bucket=healthy.data_bucket,
                                                                NotificationConfiguration={})
    check = checks_of(validate())["event_processing"]
    assert check["status"] == "failed" and "not processed" in check["detail"]


def test_a_notification_to_another_alias_does_not_count_as_processing(healthy):
    notify_live(healthy.clients["s3"], healthy.data_bucket, live_arn(healthy).replace(":LIVE", ":STABLE"))
    assert checks_of(validate())["event_processing"]["status"] == "failed"


@pytest.fixture
def secondary_region_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call to the secondary region fails to connect, as when the region is down."""
    original = BaseClient._make_api_call

    def unreachable(client: Any, operation_name: str, params: Any) -> Any:
        if client.meta.region_name == SECONDARY_REGION:
            raise EndpointConnectionError(endpoint_url=f"https://s3.{SECONDARY_REGION}.amazonaws.com")
        return original(client, operation_name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", unreachable)


def test_an_unreachable_other_region_leaves_event_processing_unknown_not_ok(healthy, secondary_region_down):
    result = validate()
    check = checks_of(result)["event_processing"]
    assert check["status"] == "unknown" and "unreadable" in check["detail"]
    assert result["ok"] is False and result["status"] == "unknown" and result["unknown"] == ["event_processing"]


# Alarms and metrics -------------------------------------------------------------------------------------------

def test_an_alarm_in_alarm_fails(healthy):
    healthy.set_alarm("errors", "ALARM")
    check = checks_of(validate())["alarms"]
    assert check["status"] == "failed" and check["in_alarm"] == [healthy.alarms["errors"]]


def test_an_alarm_whose_actions_are_disabled_fails(healthy):
    healthy.clients["cloudwatch"].disable_alarm_actions(AlarmNames=[healthy.alarms["p99-duration"]])
    check = checks_of(validate())["alarms"]
    assert check["status"] == "failed" and check["actions_disabled"] == [healthy.alarms["p99-duration"]]
    assert "enable-alarm-actions" in check["detail"]


def test_a_missing_alarm_fails(healthy):
    healthy.clients["cloudwatch"].delete_alarms(AlarmNames=[healthy.alarms["health-probe"]])
    check = checks_of(validate())["alarms"]
    assert check["status"] == "failed" and check["missing"] == [healthy.alarms["health-probe"]]


def test_errors_over_the_last_minutes_fail_the_metrics_against_the_alarms_threshold(
        healthy, versions_behaviour: VersionBehaviour):
    # Given LIVE's version failing the uploads S3 sends it (through the alias, as the notification does)
    live = healthy.alias_version("LIVE")
    versions_behaviour.set_failing(healthy.function_name, live)
    for _ in range(3):
        healthy.clients["lambda"].invoke(FunctionName=healthy.function_name, Qualifier="LIVE", Payload=b"{}")
    versions_behaviour.set_failing(healthy.function_name, live, failing=False)
    # When validated (the alarm itself has not evaluated yet: it is still OK)
    check = checks_of(validate())["metrics"]
    # Then the errors breach the errors alarm's own threshold, and the error rate is reported
    assert check["status"] == "failed" and healthy.alarms["errors"] in check["detail"]
    assert check["errors"] == 3 and check["invocations"] == 3 and check["error_rate"] == 1.0


def test_errors_in_the_same_second_as_the_validation_are_counted(healthy, versions_behaviour: VersionBehaviour):
    # Given errors published within the second the validation runs in (the clock stands still mid-second)
    live = healthy.alias_version("LIVE")
    versions_behaviour.set_failing(healthy.function_name, live)
    mid_second = datetime.now(UTC).replace(microsecond=500_000) + timedelta(seconds=1)
    with time_machine.travel(mid_second, tick=False):
        for _ in range(3):
            healthy.clients["lambda"].invoke(FunctionName=healthy.function_name, Qualifier="LIVE", Payload=b"{}")
        check = checks_of(validate())["metrics"]
    # Then the window reaches past them (it ends at the next whole minute, as the alarms' periods do)
    assert check["status"] == "failed" and check["errors"] == 3, check


def test_a_p99_duration_above_the_alarms_threshold_fails_the_metrics(healthy):
    dimensions = [{"Name": "FunctionName", "Value": healthy.function_name},
                  {"Name": "Resource", "Value": f"{healthy.function_name}:LIVE"}]
    healthy.clients["cloudwatch"].put_metric_data(Namespace="AWS/Lambda", MetricData=[
        {"MetricName": "Duration", "Dimensions": dimensions, "Value": 700_000.0, "Unit": "Milliseconds",
         "Timestamp": datetime.now(UTC) - timedelta(minutes=1)}])
    check = checks_of(validate())["metrics"]
    assert check["status"] == "failed" and healthy.alarms["p99-duration"] in check["detail"]
    assert check["readings"][healthy.alarms["p99-duration"]]["worst"] == 700_000.0


# Health check -------------------------------------------------------------------------------------------------

def test_a_live_that_fails_its_health_check_fails(healthy, versions_behaviour: VersionBehaviour):
    versions_behaviour.set_failing(healthy.function_name, healthy.alias_version("LIVE"))
    check = checks_of(validate())["health_check"]
    assert check["status"] == "failed" and "function error" in check["detail"]


def test_the_health_check_is_counted_apart_and_publishes_nothing_for_the_probe_alarm(healthy, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    validate()
    assert "PutMetricData" not in calls.calls
    # The invocation is by version number (Resource <function>:<version>), not through LIVE's metrics
    listed = healthy.clients["cloudwatch"].list_metrics(Namespace="AWS/Lambda", MetricName="Invocations")
    resources = {dimension["Value"] for metric in listed["Metrics"] for dimension in metric["Dimensions"]
                 if dimension["Name"] == "Resource"}
    assert resources == {f"{healthy.function_name}:{healthy.alias_version('LIVE')}"}


# Backups within RPO -------------------------------------------------------------------------------------------

def test_a_stale_backup_fails(healthy):
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
        check = checks_of(validate())["backups_within_rpo"]
    assert check["status"] == "failed" and check["detail"].startswith("lambda: newest ")
    assert "s3: newest" in check["detail"] and "stack:" not in check["detail"]


# Data against the newest snapshot -----------------------------------------------------------------------------

def test_objects_that_differ_from_the_snapshot_without_a_later_change_fail(healthy, monkeypatch):
    # Given a key rewritten (new bytes and metadata) and a key written once, both before a snapshot
    s3, bucket = healthy.clients["s3"], healthy.data_bucket
    rewritten, lost = "uploads/2026/11/batch-00003.csv", "uploads/2026/11/batch-00004.csv"
    newer = s3.put_object(Bucket=bucket, Key=rewritten, Body=b"id,amount\n3,31\n", ContentType="text/csv",
                          Metadata={"source": "fix"})["VersionId"]
    time.sleep(1.1)  # the snapshot's time has whole seconds: the versions above are before it
    snapshot_id = backup.handler({"component": "s3"}, LambdaContextStub(BACKUP_FUNCTION))["components"][0]["backup_id"]
    # When the rewrite is deleted for good (the older bytes and metadata become current again, with their old time)
    # and every version of the other key too
    s3.delete_object(Bucket=bucket, Key=rewritten, VersionId=newer)
    for version in s3.list_object_versions(Bucket=bucket, Prefix=lost)["Versions"]:
        s3.delete_object(Bucket=bucket, Key=lost, VersionId=version["VersionId"])
    # (and the check samples the snapshot as its manifest goes by: reading it whole fails the test)
    monkeypatch.setattr(manifest_module, "read_manifest", read_whole)
    monkeypatch.setattr(manifest_module.ManifestStream, "read", read_whole)
    check = checks_of(validate())["data_integrity"]
    # Then both are failures no later change explains
    assert check["status"] == "failed" and check["snapshot_id"] == snapshot_id
    assert check["different_keys"] == [rewritten] and check["lost_keys"] == [lost]
    assert check["matching"] == 18


def test_metadata_alone_that_differs_from_the_snapshot_fails(healthy):
    s3, bucket, key = healthy.clients["s3"], healthy.data_bucket, "uploads/2026/11/batch-00005.csv"
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    newer = s3.put_object(Bucket=bucket, Key=key, Body=original, ContentType="text/csv",
                          Metadata={"source": "relabelled"})["VersionId"]
    time.sleep(1.1)
    backup.handler({"component": "s3"}, LambdaContextStub(BACKUP_FUNCTION))
    s3.delete_object(Bucket=bucket, Key=key, VersionId=newer)
    check = checks_of(validate())["data_integrity"]
    assert check["status"] == "failed" and check["different_keys"] == [key]


def test_objects_changed_after_the_snapshot_are_expected_differences(healthy):
    s3, bucket = healthy.clients["s3"], healthy.data_bucket
    time.sleep(1.1)  # after the snapshot's second
    s3.put_object(Bucket=bucket, Key="uploads/2026/11/batch-00001.csv", Body=b"id,amount\n1,11\n")
    s3.delete_object(Bucket=bucket, Key="uploads/2026/11/batch-00002.csv")
    check = checks_of(validate())["data_integrity"]
    assert check["status"] == "ok" and check["changed_since"] == 2 and check["matching"] == 18
    assert check["changed_since_keys"] == ["uploads/2026/11/batch-00001.csv", "uploads/2026/11/batch-00002.csv"]


# Security controls --------------------------------------------------------------------------------------------

def test_backup_bucket_versioning_suspended_fails(healthy):
    healthy.clients["s3"].put_bucket_versioning(Bucket=healthy.backup_bucket,
                                                VersioningConfiguration={"Status": "Suspended"})
    check = checks_of(validate())["security_controls"]
    assert check["status"] == "failed" and check["controls"]["backup_versioning"]["status"] == "failed"


def default_retention(bucket: str, mode: str | None, days: int | None) -> None:
    """What PutObjectLockConfiguration sets, set on moto's bucket: moto refuses the call on a bucket that holds
    objects, which S3 accepts."""
    held = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_bucket(bucket)
    held.default_lock_mode, held.default_lock_days = mode, days


def test_backup_bucket_without_a_default_lock_fails(healthy):
    default_retention(healthy.backup_bucket, None, None)
    check = checks_of(validate())["security_controls"]
    assert check["status"] == "failed" and "no default retention" in check["controls"]["backup_object_lock"]["detail"]


def test_backup_bucket_lock_shorter_than_configured_fails(healthy):
    default_retention(healthy.backup_bucket, "GOVERNANCE", 1)
    lock = checks_of(validate())["security_controls"]["controls"]["backup_object_lock"]
    assert lock["status"] == "failed" and f"configured {LOCK_DAYS}" in lock["detail"]


def test_backup_bucket_encrypted_with_another_key_or_without_its_policy_fails(healthy):
    s3 = healthy.clients["s3"]
    other = boto3.client("kms", region_name="us-east-1").create_key(Description="not the backup key")
    s3.put_bucket_encryption(Bucket=healthy.backup_bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                "KMSMasterKeyID": other["KeyMetadata"]["Arn"]}}]})
    s3.delete_bucket_policy(Bucket=healthy.backup_bucket)
    controls = checks_of(validate())["security_controls"]["controls"]
    assert controls["backup_encryption"]["status"] == "failed" and "not the backup key" in \
        controls["backup_encryption"]["detail"]
    assert controls["backup_create_only_policy"]["status"] == "failed"


def test_an_unencrypted_alert_topic_fails(healthy):
    healthy.clients["sns"].set_topic_attributes(TopicArn=healthy.emergency_topic_arn,
                                                AttributeName="KmsMasterKeyId", AttributeValue="")
    controls = checks_of(validate())["security_controls"]["controls"]
    assert controls["topic_encryption:apilados-dr-emergency"]["status"] == "failed"
    assert controls["topic_encryption:apilados-dr-alerts"]["status"] == "ok"


# The final step of an applied recovery ------------------------------------------------------------------------

def restore(snapshot_id: str) -> dict[str, Any]:
    request = {"action": "restore_s3", "snapshot_id": snapshot_id, **WHO}
    planned = act(request)
    applied = act({**request, "confirm": planned["result"]["plan_id"]})
    assert applied["ok"] and applied["result"]["status"] == "applied", applied
    return dict(applied["result"]["result"])


def newest_snapshot() -> str:
    return str(backup.handler({"component": "s3"}, LambdaContextStub(BACKUP_FUNCTION))["components"][0]["backup_id"])


def test_an_applied_restore_ends_with_the_validation_in_its_result_and_journal(healthy):
    result = restore(newest_snapshot())
    assert result["verification"]["ok"] and result["validation"]["ok"], json.dumps(result["validation"])[:3000]
    assert result["validation_status"] == "ok" and set(statuses(result["validation"])) == set(ALL_CHECKS)
    assert healthy.drain_alerts() == []
    latest = act({"action": "status"})["result"]["validation"]
    assert latest["status"] == "ok" and latest["cause"].startswith("after restore_s3 rp-")


def test_a_failed_validation_after_an_applied_restore_is_alerted(healthy):
    snapshot_id = newest_snapshot()
    healthy.set_alarm("errors", "ALARM")
    result = restore(snapshot_id)
    assert result["verification"]["ok"] and result["validation"]["failed"] == ["alarms"]
    [alert] = healthy.drain_alerts()
    assert alert["severity"] == 2 and "Validation after restore_s3 failed: alarms" in alert["subject"]
    assert healthy.alarms["errors"] in alert["message"] and '{"action": "validate"}' in alert["message"]


def test_a_validation_that_cannot_run_keeps_the_applied_restore_and_says_so(healthy, monkeypatch):
    snapshot_id = newest_snapshot()
    original = ControllerStateStore.append_journal

    def journal_refuses_validations(store: Any, function_name: str, **entry: Any) -> bool:
        if entry["action"] == "validate":
            raise RuntimeError("the journal is unavailable")
        return original(store, function_name, **entry)

    monkeypatch.setattr(ControllerStateStore, "append_journal", journal_refuses_validations)
    result = restore(snapshot_id)
    assert result["verification"]["ok"] and result["validation_status"] == "unknown"
    assert "the journal is unavailable" in result["validation"]["error"]


# Bad events ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("event, problem", [
    ({"action": "validate", "region": "us-west-2"}, "region"),
    ({"action": "validate", "requested_by": ""}, "requested_by"),
    ({"action": "validate", "reason": "x"}, "reason"),
    ({"action": "validate", "requested_by": 7}, "requested_by"),
])
def test_a_bad_validate_event_is_refused_and_changes_nothing(healthy, monkeypatch, event, problem):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    answer = act(event)
    assert answer["ok"] is False and problem in answer["error"]
    assert calls.calls == []


@pytest.fixture
def no_secondary(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("DR_SECONDARY_REGION", "DR_REPLICA_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_without_a_replica_only_the_data_bucket_is_checked(healthy, no_secondary):
    check = checks_of(validate())["event_processing"]
    assert check["status"] == "ok" and list(check["buckets"]) == ["us-east-1"]
