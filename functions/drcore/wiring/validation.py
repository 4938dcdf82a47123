"""The post-recovery validation as the recovery function builds it: its checks, each reading the region it names
through clients of that region (the function's own region through the function's clients)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from drcore.aws.aliases import AliasGateway
from drcore.aws.clients import ClientFactory, client_factory, single_attempt_clients
from drcore.backup.catalog import BackupCatalog
from drcore.core.config import BackupSettings, ControllerSettings, RegionSettings
from drcore.restore.bucket_verification import RestoreVerifier
from drcore.restore.validation import ActiveRegion, PostRecoveryValidation, ValidationCheck, ValidationJournal
from drcore.restore.validation_controls import SecurityControlsCheck, ValidationSettings
from drcore.restore.validation_data import BackupsWithinRpoCheck, DataSampleCheck, EventProcessingCheck
from drcore.restore.validation_function import AlarmsCheck, HealthAnswerCheck, MetricsCheck
from drcore.rollback.health_probe import HealthProbe
from drcore.state.backup_store import BackupStore
from drcore.state.store import ControllerStateStore
from drcore.wiring.shared import alert_publisher


def post_recovery_validation(settings: ControllerSettings, backup: BackupSettings, region: RegionSettings,
                             validation: ValidationSettings, client: ClientFactory, s3: Any, store: BackupStore,
                             catalog: BackupCatalog, active_region: ActiveRegion | None = None,
                             primary_region: str | None = None) -> PostRecoveryValidation:
    """`active_region` says which region processes uploads (the region record's, once it exists); by default this
    function's own region, where the controller that runs it is the active one. `primary_region` is the data
    bucket's (by default this function's own: a standby in the secondary region names the primary)."""
    own_region: str = client("lambda").meta.region_name

    @cache
    def clients_in(name: str) -> ClientFactory:
        return client if name == own_region else client_factory(name)

    def s3_in(name: str) -> Any:
        return s3 if name == own_region else clients_in(name)("s3")

    def probe_in(name: str) -> HealthProbe:
        bounded = single_attempt_clients("lambda", name)
        return HealthProbe(AliasGateway(clients_in(name)("lambda"), settings.protected_function),
                           lambda seconds: AliasGateway(bounded(seconds), settings.protected_function),
                           clients_in(name)("cloudwatch"), settings.metrics_namespace, settings.protected_function,
                           settings.live_alias, settings.health_probe_timeout_seconds)

    def cloudwatch_in(name: str) -> Any:
        return clients_in(name)("cloudwatch")

    verifier_in: Callable[[str], RestoreVerifier] = cache(lambda name: RestoreVerifier(s3_in(name), store))
    # The data bucket is in the primary region; the replica, when configured, in the secondary.
    buckets = {primary_region or own_region: backup.data_bucket}
    if region.secondary_region and region.replica_bucket and region.secondary_region not in buckets:
        buckets[region.secondary_region] = region.replica_bucket
    alarms = settings.watched_alarms
    topics = tuple(dict.fromkeys((settings.alert_topic_arn, settings.emergency_topic_arn)))
    checks: list[ValidationCheck] = [
        HealthAnswerCheck(probe_in),
        EventProcessingCheck(s3_in, buckets, settings.protected_function, settings.live_alias),
        AlarmsCheck(cloudwatch_in, alarms),
        MetricsCheck(cloudwatch_in, alarms, settings.protected_function, settings.live_alias),
        BackupsWithinRpoCheck(catalog),
        DataSampleCheck(catalog, store, s3_in, verifier_in, buckets, backup.data_bucket, validation.sample_size),
        SecurityControlsCheck(s3, client("sns"), backup.backup_bucket, topics, validation),
    ]
    journal = ValidationJournal(ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope),
                                settings.protected_function)
    return PostRecoveryValidation(checks, journal, alert_publisher(settings, client), settings.protected_function,
                                  active_region or (lambda: own_region))
