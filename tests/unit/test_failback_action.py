"""The `failback` action (drcore.region.failback_action) against both regions in one moto: refused while the
primary fails its probe, a no-op when the primary is active, the copy-back then the switch in an order that never
leaves both regions processing, uploads that land during the switch caught up, conflicts, and a crash between any
two steps completed by applying the plan again (from either region)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import time_machine

from drcore.aws.alerts import AlertPublisher
from drcore.aws.lambda_updates import LambdaUpdates
from drcore.aws.pipeline_notification import BucketNotifications, pipeline_entries
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.core.config import FailoverEnvVar
from drcore.region.divergence import ReplicaDivergence
from drcore.region.divergence_plan import ConflictsUnresolved
from drcore.region.failback_action import (
    FAILOVER_VARIABLES,
    STEPS,
    VALIDATION_NOT_BUILT,
    FailbackAction,
    FailbackRefused,
    FailbackSites,
)
from drcore.region.function_environment import FunctionEnvironment
from drcore.rollback.outcome import Outcome
from drcore.state.backup_store import BackupStore
from drcore.state.region_record import RegionRecord
from embedded.sample_system import SampleSystem, add_buckets, add_replica, execution_role_name
from tests.support import WHO, CallRecorder, act

PRIMARY, SECONDARY = "us-east-1", "us-west-2"
ACCOUNT = "123456789012"
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PLENTY = lambda: 15 * 60 * 1000  # noqa: E731 (the remaining time of a fresh invocation)
OTHERS_ENTRY = {"Id": "audit", "LambdaFunctionArn": f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:audit",
                "Events": ["s3:ObjectRemoved:*"]}
CSV_ONLY = {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}


def healthy() -> Outcome:
    return Outcome("probed", "LIVE answered the health check", facts={"healthy": True})


class FailedOver:
    """The world after a failover: the secondary processes uploads to the replica, the primary does not, the region
    record says the secondary is active, the secondary function carries the failover's variables."""

    def __init__(self, system: SampleSystem, replication: Any) -> None:
        self.system, self.replication = system, replication
        self.primary_s3 = system.clients["s3"]
        self.secondary_s3 = system.clients["s3_secondary"]
        self.data, self.replica, self.function = system.data_bucket, system.replica_bucket, system.function_name
        self.secondary_lambda = boto3.client("lambda", region_name=SECONDARY)
        role = system.clients["iam"].get_role(RoleName=execution_role_name(self.function))["Role"]["Arn"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as built:
            built.writestr("index.py", "def handler(event, context):\n    return {}\n")
        self.secondary_lambda.create_function(
            FunctionName=self.function, Runtime="python3.13", Role=role, Handler="index.handler",
            Code={"ZipFile": archive.getvalue()},
            Environment={"Variables": {"TABLE": "ingest", "ACTIVE_REGION": SECONDARY, "FAILOVER_MODE": "true"}})
        self.sites = FailbackSites(PRIMARY, SECONDARY, PRIMARY, ACCOUNT, self.function, "LIVE", self.data, self.replica)
        self.primary_s3.put_bucket_replication(Bucket=self.data, ReplicationConfiguration={
            "Role": system.replication_role_arn,
            "Rules": [{"ID": "apilados-dr-replica", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": f"arn:aws:s3:::{self.replica}"}}]})
        for key in ("uploads/a.csv", "uploads/b.csv"):
            self.primary_s3.put_object(Bucket=self.data, Key=key, Body=b"before", ContentType="text/csv")
        replication.catch_up()
        # The failover: the replica processes (beside another owner's entry), the primary does not, record moved
        self.secondary_s3.put_bucket_notification_configuration(Bucket=self.replica, NotificationConfiguration={
            "LambdaFunctionConfigurations": [OTHERS_ENTRY, {
                "Id": "dr-pipeline-live", "LambdaFunctionArn": self.sites.live_arn(SECONDARY),
                "Events": ["s3:ObjectCreated:*"], "Filter": CSV_ONLY}]})
        self.record = self.record_in(PRIMARY)
        self.record.claim(SECONDARY, "failover", "fo-0123456789", SECONDARY, 0)
        self.store = BackupStore(self.primary_s3, system.backup_bucket)
        self.checkpoints: list[dict[str, Any]] = []  # the progress recorded in the plan after each step
        self.health = healthy

    def record_in(self, region: str) -> RegionRecord:
        return RegionRecord(boto3.client("dynamodb", region_name=PRIMARY), self.system.table, self.function, PRIMARY)

    def action(self, here: str = PRIMARY, **options: Any) -> FailbackAction:
        primary_s3, secondary_s3 = boto3.client("s3", region_name=PRIMARY), boto3.client("s3", region_name=SECONDARY)
        divergence = ReplicaDivergence(primary_s3, secondary_s3, self.store,
                                       snapshots_of=lambda bucket: BucketSnapshotter(primary_s3, self.store, bucket))
        sns = boto3.client("sns", region_name=PRIMARY)
        alerts = AlertPublisher(sns, self.system.alert_topic_arn, self.system.emergency_topic_arn)
        return FailbackAction(
            FailbackSites(PRIMARY, SECONDARY, here, ACCOUNT, self.function, "LIVE", self.data, self.replica),
            self.record_in(here), divergence, self.store, BucketNotifications(primary_s3),
            options.get("replica_notifications") or BucketNotifications(secondary_s3),
            FunctionEnvironment(LambdaUpdates(self.secondary_lambda, wait=lambda _: None), self.secondary_lambda),
            lambda: self.health(), alerts, checkpoint=lambda plan_id, progress: self.checkpoints.append(
                json.loads(json.dumps(progress))))

    def upload_to_replica(self, key: str, body: bytes) -> None:
        self.secondary_s3.put_object(Bucket=self.replica, Key=key, Body=body, ContentType="text/csv")

    def processing(self) -> tuple[bool, bool]:
        """(the primary processes, the replica processes)."""
        return (BucketNotifications(self.primary_s3).processing(self.data, self.sites.live_arn(PRIMARY)),
                BucketNotifications(self.secondary_s3).processing(self.replica, self.sites.live_arn(SECONDARY)))

    def body(self, key: str) -> bytes | None:
        try:
            return bytes(self.primary_s3.get_object(Bucket=self.data, Key=key)["Body"].read())
        except self.primary_s3.exceptions.NoSuchKey:
            return None


@pytest.fixture
def failed_over(system: SampleSystem, versions_behaviour: Any) -> Iterator[FailedOver]:
    with time_machine.travel(START, tick=True):
        session = boto3.session.Session(region_name=PRIMARY)
        add_buckets(system, session, objects=0)
        add_replica(system, session)
        world = FailedOver(system, versions_behaviour.replication)
    with time_machine.travel(START + timedelta(minutes=30), tick=True):
        yield world


def request(**fields: Any) -> Any:
    return SimpleNamespace(prefer=fields.get("prefer"))


def test_a_primary_that_fails_its_probe_refuses_the_plan(failed_over):
    failed_over.health = lambda: Outcome("probed", "version 3: timeout", facts={"healthy": False})
    with pytest.raises(FailbackRefused, match="failed its health probe"):
        failed_over.action().make_plan(request())
    assert failed_over.processing() == (False, True)


def test_a_failback_with_the_primary_active_is_a_no_op(failed_over):
    failed_over.record.claim(PRIMARY, "failback", "fb-0000000001", PRIMARY, 1)
    action = failed_over.action()
    _, plan, summary = action.make_plan(request())
    assert summary["noop"] is True
    assert action.apply(plan, None, PLENTY) == (True, {}, {"ok": True, "noop": True, "active_region": PRIMARY})
    assert failed_over.processing() == (False, True)  # nothing touched


def test_failback_copies_back_then_switches_and_catches_up_uploads_of_the_switch(failed_over):
    world = failed_over
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    world.secondary_s3.delete_object(Bucket=world.replica, Key="uploads/b.csv")
    action = world.action()
    plan_id, plan, summary = action.make_plan(request())
    assert (summary["divergence"]["created"], summary["divergence"]["deleted"]) == (1, 1)
    assert summary["blocked"] is None and summary["steps"] == list(STEPS)
    # Uploads land in the replica just before and just after its notification entry is removed
    removals = BucketNotifications(world.secondary_s3)

    class Racing(BucketNotifications):
        def remove(self, bucket: str, target_arn: str) -> Any:
            with time_machine.travel(datetime.now(UTC) - timedelta(seconds=2)):
                world.upload_to_replica("uploads/just-before.csv", b"processed by the secondary")
            change = removals.remove(bucket, target_arn)
            world.upload_to_replica("uploads/between.csv", b"processed by no one yet")
            return change

    action = world.action(replica_notifications=Racing(world.secondary_s3))
    finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"] is True, result
    # The primary holds what the secondary wrote: the upload, the deletion, both switch-time uploads
    assert world.body("uploads/during.csv") == b"written in the secondary" and world.body("uploads/b.csv") is None
    assert result["copy"]["copied"] == 1 and result["copy"]["deleted"] == 1 and result["copy"]["verification"]["ok"]
    # The one processed by the secondary copied before the primary processes; the other one after
    assert result["catch_up_before"]["copied"] == 1 and result["catch_up_after"]["copied"] == 1
    assert world.body("uploads/just-before.csv") and world.body("uploads/between.csv")
    # Exactly one region processes: the primary, with the replica's events and filter; the other owner's entry kept
    assert world.processing() == (True, False)
    entry = pipeline_entries(BucketNotifications(world.primary_s3).configuration(world.data),
                             world.sites.live_arn(PRIMARY))[0]
    assert entry["Filter"] == CSV_ONLY
    kept = BucketNotifications(world.secondary_s3).configuration(world.replica)["LambdaFunctionConfigurations"]
    assert kept == [OTHERS_ENTRY]
    # The record says the primary, the environment lost the failover's variables and only those
    current = world.record.current()
    assert current is not None and (current.active_region, current.kind, current.plan_id) == (PRIMARY, "failback",
                                                                                               plan_id)
    variables = world.secondary_lambda.get_function_configuration(FunctionName=world.function)["Environment"]
    assert variables["Variables"] == {"TABLE": "ingest"}
    assert not set(FAILOVER_VARIABLES) & set(variables["Variables"])
    # The alert went out; the validation is named as not built, never faked
    inbox = world.system.clients["sqs"].receive_message(QueueUrl=world.system.alert_queue_url,
                                                        MaxNumberOfMessages=10)["Messages"]
    assert any("Regional Failback" in json.loads(message["Body"])["Subject"] for message in inbox)
    assert result["validation"] == {"ran": False, "reason": VALIDATION_NOT_BUILT}
    # And a second failback is a no-op
    assert world.action().make_plan(request())[2]["noop"] is True


def test_conflicts_block_the_apply_until_a_side_is_preferred(failed_over):
    world = failed_over
    world.upload_to_replica("uploads/a.csv", b"secondary's")
    world.primary_s3.put_object(Bucket=world.data, Key="uploads/a.csv", Body=b"primary's")
    action = world.action()
    _, plan, summary = action.make_plan(request())
    assert list(summary["divergence"]["conflict_keys"]) == ["uploads/a.csv"] and "prefer" in summary["blocked"]
    with pytest.raises(ConflictsUnresolved):
        action.apply(plan, None, PLENTY)
    assert world.processing() == (False, True) and world.body("uploads/a.csv") == b"primary's"
    _, plan, summary = action.make_plan(request(prefer="secondary"))
    finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"] and world.body("uploads/a.csv") == b"secondary's"


@pytest.mark.parametrize("recorded", [True, False], ids=["progress recorded", "progress lost"])
@pytest.mark.parametrize("crash_at", STEPS[1:8])
def test_a_crash_before_any_step_is_completed_by_applying_again_from_either_region(failed_over, crash_at, recorded):
    world = failed_over
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    action = world.action()
    _, plan, _ = action.make_plan(request())

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the invocation died")

    original = getattr(FailbackAction, f"_step_{crash_at}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FailbackAction, f"_step_{crash_at}", crash)
        with pytest.raises(RuntimeError):
            action.apply(plan, None, PLENTY)
    assert getattr(FailbackAction, f"_step_{crash_at}") is original
    # Never both regions processing, whatever step died
    assert world.processing() != (True, True)
    # Resumed from the other region, with the progress recorded after each step (or none, had it been lost)
    progress = world.checkpoints[-1] if recorded else None
    assert recorded is False or list(progress["done"]) == list(STEPS[:STEPS.index(crash_at)])
    finished, _, result = world.action(here=SECONDARY).apply(plan, progress, PLENTY)
    assert finished and result["ok"], result
    assert world.processing() == (True, False) and world.body("uploads/during.csv") == b"written in the secondary"
    claims = world.record.claims()
    assert [(claim.epoch, claim.kind) for claim in claims] == [(1, "failover"), (2, "failback")]


# Through the recovery function ------------------------------------------------------------------

BAD_EVENTS = [
    ({"action": "failback"}, "requested_by: Field required"),
    ({"action": "failback", **WHO, "prefer": "both"}, "prefer"),
    ({"action": "failback", **WHO, "prefer": None, "since": "2026-01-01T00:00:00Z"}, "since: Extra inputs"),
    ({"action": "failback", **WHO, "confirm": "fb-0123456789"}, "no plan 'fb-0123456789'"),
    ({"action": "failback", **WHO, "resume": "rp-0123456789"}, "no plan 'rp-0123456789'"),
    ({"action": "failback", **WHO}, "failback is not configured: set primary_region"),
]


@pytest.mark.parametrize("event, problem", BAD_EVENTS, ids=[str(i) for i in range(len(BAD_EVENTS))])
def test_a_bad_or_unconfigured_request_is_refused_with_no_mutating_call(world, monkeypatch, event, problem):
    add_replica(world, boto3.session.Session(region_name=PRIMARY))
    for name, value in world.region_environment().items():
        monkeypatch.setenv(name, value)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(event)
    assert refused["ok"] is False and problem in refused["error"], refused
    assert calls.mutating() == []


def test_through_the_recovery_function_a_failback_never_failed_over_is_a_no_op(world, monkeypatch):
    add_replica(world, boto3.session.Session(region_name=PRIMARY))
    for name, value in {**world.region_environment(), FailoverEnvVar.PRIMARY_REGION: PRIMARY}.items():
        monkeypatch.setenv(name, value)
    planned = act({"action": "failback", **WHO})
    assert planned["ok"] is True and planned["result"]["plan"]["noop"] is True, planned
    applied = act({"action": "failback", **WHO, "confirm": planned["result"]["plan_id"]})
    assert applied["ok"] is True and applied["result"]["result"] == {"ok": True, "noop": True,
                                                                     "active_region": PRIMARY}
