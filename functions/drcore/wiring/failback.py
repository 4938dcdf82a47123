"""The `failback` action as the recovery function builds it, in either region: every client acts in the region of
what it addresses (the data bucket, the primary function and its probe in the primary region; the replica and the
secondary function in the secondary region), so the same plan is applied or resumed from either side."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from drcore.aws.alerts import AlertPublisher
from drcore.aws.aliases import AliasGateway
from drcore.aws.clients import client_factory, s3_client, single_attempt_clients
from drcore.aws.lambda_updates import LambdaUpdates
from drcore.aws.pipeline_notification import BucketNotifications
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.core.config import BackupSettings, ControllerSettings, FailoverSettings, RegionSettings
from drcore.core.errors import InvalidRequest
from drcore.region.divergence import ReplicaDivergence
from drcore.region.failback_action import Checkpoint, FailbackAction, Validation
from drcore.region.failback_hand_back import SecondaryHandBack
from drcore.region.failback_primary_uploads import PrimaryUploads
from drcore.region.failback_sites import FailbackSites
from drcore.region.function_environment import FunctionEnvironment
from drcore.region.replication_s3 import ReplicationGateway
from drcore.region.switch_gate import SwitchGate
from drcore.rollback.health_probe import HealthProbe
from drcore.state.backup_store import BackupStore
from drcore.state.region_record import RegionRecord


class ConfiguredFailback:
    """The failback action, built on first use once the regions are configured; refused (changing nothing) until
    they are."""

    kind = "failback"

    def __init__(self, build: Callable[[], FailbackAction]) -> None:
        self._build = cache(build)

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        return self._build().make_plan(request)

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._build().fingerprint(plan)

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return self._build().planned_fingerprint(plan)

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        return self._build().apply(plan, progress, remaining_ms, request)


def failback_action(settings: ControllerSettings, backup: BackupSettings, region: RegionSettings,
                    failover: FailoverSettings, alerts: AlertPublisher, checkpoint: Checkpoint,
                    validation: Validation = None) -> ConfiguredFailback:
    def build() -> FailbackAction:
        primary, secondary, replica = failover.primary_region, region.secondary_region, region.replica_bucket
        if not (primary and secondary and replica):
            missing = [name for name, value in (("primary_region", primary), ("secondary_region", secondary),
                                                ("replica_bucket", replica)) if not value]
            raise InvalidRequest(f"failback is not configured: set {', '.join(missing)} in cdk.json (dr) and deploy")
        here_clients, primary_clients = client_factory(), client_factory(primary)
        secondary_clients = client_factory(secondary)
        primary_lambda, secondary_lambda = primary_clients("lambda"), secondary_clients("lambda")
        # The account and partition of the LIVE targets, from the primary's own alias (read by the probe too).
        live = primary_lambda.get_alias(FunctionName=settings.protected_function, Name=settings.live_alias)
        partition, account = live["AliasArn"].split(":")[1], live["AliasArn"].split(":")[4]
        sites = FailbackSites(primary, secondary, here_clients("dynamodb").meta.region_name, account,
                              settings.protected_function, settings.live_alias, backup.data_bucket, replica, partition)
        primary_s3 = s3_client(backup.copy_concurrency, primary)
        secondary_s3 = s3_client(backup.copy_concurrency, secondary)
        store = BackupStore(primary_s3, backup.backup_bucket)
        divergence = ReplicaDivergence(
            primary_s3, secondary_s3, store, concurrency=backup.copy_concurrency,
            snapshots_of=lambda bucket: BucketSnapshotter(primary_s3, store, bucket,
                                                          concurrency=backup.copy_concurrency,
                                                          full_manifest_every=backup.full_manifest_every))
        probe_clients = single_attempt_clients("lambda", primary)
        probe = HealthProbe(AliasGateway(primary_lambda, settings.protected_function),
                            lambda seconds: AliasGateway(probe_clients(seconds), settings.protected_function),
                            primary_clients("cloudwatch"), settings.metrics_namespace, settings.protected_function,
                            settings.live_alias, settings.health_probe_timeout_seconds)
        replica_notifications = BucketNotifications(secondary_s3)
        return FailbackAction(
            sites, RegionRecord(here_clients("dynamodb"), settings.state_table, settings.protected_function, primary),
            divergence, store, BucketNotifications(primary_s3), replica_notifications,
            FunctionEnvironment(LambdaUpdates(secondary_lambda), secondary_lambda), probe.run, alerts,
            SecondaryHandBack(sites, replica_notifications, secondary_s3, secondary_lambda, store),
            validation=validation, checkpoint=checkpoint,
            gate=SwitchGate(secondary_clients("sqs"), failover.switch_gate_queue, failover.switch_gate_settle_seconds)
            if failover.switch_gate_queue else None,
            primary_uploads=PrimaryUploads(
                sites, BucketNotifications(primary_s3),
                SwitchGate(primary_clients("sqs"), failover.switch_gate_queue, failover.switch_gate_settle_seconds),
                ReplicationGateway(primary_s3), primary_lambda, store, region.replication_max_latency_seconds)
            if failover.switch_gate_queue else None)

    return ConfiguredFailback(build)
