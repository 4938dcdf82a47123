"""The world after a failover, for the failback tests (drcore.region.failback_action): both regions in one moto, the
secondary processing uploads to the replica (its LIVE notified by the replica bucket), the primary not, the region
record naming the secondary, the secondary function carrying the failover's variables, and S3's replication from
the data bucket to the replica filled in (embedded/s3_replication.py). Which region processed which upload is read
back from the invocations S3's notifications (and direct invokes) made, as the embedded world records them
(embedded/s3_notifications.py)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import time_machine

from drcore.aws.alerts import AlertPublisher
from drcore.aws.lambda_updates import LambdaUpdates
from drcore.aws.pipeline_notification import BucketNotifications
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.region.divergence import ReplicaDivergence
from drcore.region.failback_action import FailbackAction
from drcore.region.failback_hand_back import SecondaryHandBack
from drcore.region.failback_primary_uploads import PrimaryUploads
from drcore.region.failback_sites import FailbackSites
from drcore.region.function_environment import FunctionEnvironment
from drcore.region.replication_s3 import ReplicationGateway
from drcore.region.switch_gate import SwitchGate
from drcore.rollback.outcome import Outcome
from drcore.state.backup_store import BackupStore
from drcore.state.region_record import RegionRecord
from embedded.moto_gaps import VersionBehaviour
from embedded.sample_system import SampleSystem, add_buckets, add_replica, execution_role_name

PRIMARY, SECONDARY = "us-east-1", "us-west-2"
ACCOUNT = "123456789012"
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PLENTY = lambda: 15 * 60 * 1000  # noqa: E731 (the remaining time of a fresh invocation)
OTHERS_ENTRY = {"Id": "audit", "LambdaFunctionArn": f"arn:aws:lambda:{SECONDARY}:{ACCOUNT}:function:audit",
                "Events": ["s3:ObjectRemoved:*"]}
GATE_QUEUE = "apilados-dr-switch-gate"
CSV_ONLY = {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}


def healthy() -> Outcome:
    return Outcome("probed", "LIVE answered the health check", facts={"healthy": True})


class FailedOver:
    """The world after a failover: the secondary processes uploads to the replica, the primary does not, the region
    record says the secondary is active, the secondary function carries the failover's variables."""

    def __init__(self, system: SampleSystem, behaviour: VersionBehaviour) -> None:
        self.system, self.replication, self.invocations = system, behaviour.replication, behaviour.invocations
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
        version = self.secondary_lambda.publish_version(FunctionName=self.function)["Version"]
        self.secondary_lambda.create_alias(FunctionName=self.function, Name="LIVE", FunctionVersion=version)
        self.sites = FailbackSites(PRIMARY, SECONDARY, PRIMARY, ACCOUNT, self.function, "LIVE", self.data, self.replica)
        self.primary_s3.put_bucket_replication(Bucket=self.data, ReplicationConfiguration={
            "Role": system.replication_role_arn,
            "Rules": [{"ID": "apilados-dr-replica", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": f"arn:aws:s3:::{self.replica}"}}]})
        for key in ("uploads/a.csv", "uploads/b.csv"):
            self.primary_s3.put_object(Bucket=self.data, Key=key, Body=b"before", ContentType="text/csv")
        self.replication.catch_up()
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
        divergence = options.get("divergence") or ReplicaDivergence(
            primary_s3, secondary_s3, self.store,
            snapshots_of=lambda bucket: BucketSnapshotter(primary_s3, self.store, bucket))
        sns = boto3.client("sns", region_name=PRIMARY)
        alerts = AlertPublisher(sns, self.system.alert_topic_arn, self.system.emergency_topic_arn)
        sites = FailbackSites(PRIMARY, SECONDARY, here, ACCOUNT, self.function, "LIVE", self.data, self.replica)
        replica_notifications = options.get("replica_notifications") or BucketNotifications(secondary_s3)
        return FailbackAction(
            sites, self.record_in(here), divergence, self.store, BucketNotifications(primary_s3), replica_notifications,
            FunctionEnvironment(LambdaUpdates(self.secondary_lambda, wait=lambda _: None), self.secondary_lambda),
            lambda: self.health(), alerts,
            SecondaryHandBack(sites, replica_notifications, secondary_s3, self.secondary_lambda, self.store),
            validation=options.get("validation"),
            checkpoint=lambda plan_id, progress: self.checkpoints.append(json.loads(json.dumps(progress))),
            gate=options.get("gate"), primary_uploads=options.get("primary_uploads"))

    def gated(self) -> dict[str, Any]:
        """The action's options with the switch gates of both regions (a queue each, as the stacks make them),
        draining without waiting to settle."""
        for region in (PRIMARY, SECONDARY):
            boto3.client("sqs", region_name=region).create_queue(QueueName=GATE_QUEUE)
        primary_s3 = boto3.client("s3", region_name=PRIMARY)
        return {"gate": SwitchGate(boto3.client("sqs", region_name=SECONDARY), GATE_QUEUE, settle_seconds=0),
                "primary_uploads": PrimaryUploads(
                    self.sites, BucketNotifications(primary_s3),
                    SwitchGate(boto3.client("sqs", region_name=PRIMARY), GATE_QUEUE, settle_seconds=0),
                    ReplicationGateway(primary_s3), boto3.client("lambda", region_name=PRIMARY), self.store,
                    max_latency_seconds=900)}

    def upload_to_primary(self, key: str, body: bytes) -> None:
        self.primary_s3.put_object(Bucket=self.data, Key=key, Body=body, ContentType="text/csv")

    def upload_to_replica(self, key: str, body: bytes) -> None:
        self.secondary_s3.put_object(Bucket=self.replica, Key=key, Body=body, ContentType="text/csv")

    def processing(self) -> tuple[bool, bool]:
        """(the primary processes, the replica processes)."""
        return (BucketNotifications(self.primary_s3).processing(self.data, self.sites.live_arn(PRIMARY)),
                BucketNotifications(self.secondary_s3).processing(self.replica, self.sites.live_arn(SECONDARY)))

    def processed(self, key: str) -> list[str]:
        """Where and how each processing of `key` came: `region:notification` or `region:invoke`."""
        return [f"{found.region}:{found.source}" for found in self.invocations.all(self.function) if found.key == key]

    def body(self, key: str) -> bytes | None:
        try:
            return bytes(self.primary_s3.get_object(Bucket=self.data, Key=key)["Body"].read())
        except self.primary_s3.exceptions.NoSuchKey:
            return None


@contextmanager
def failed_over_world(system: SampleSystem, behaviour: VersionBehaviour) -> Iterator[FailedOver]:
    """The failover at START, the failback half an hour later (clocks ticking)."""
    with time_machine.travel(START, tick=True):
        session = boto3.session.Session(region_name=PRIMARY)
        add_buckets(system, session, objects=0)
        add_replica(system, session)
        world = FailedOver(system, behaviour)
    with time_machine.travel(START + timedelta(minutes=30), tick=True):
        yield world
