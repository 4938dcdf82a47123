"""The recovery function's engines: the backup catalog, the restores, the stack recovery, the region switches and
the post-recovery validation. drcore.wiring.recovery imports this module when an action first needs one of them,
so a rollback or a promote from a cold start waits for none of them to import."""

from __future__ import annotations

from typing import Any

from drcore.aws.clients import ClientFactory, s3_client
from drcore.backup.catalog import BackupCatalog
from drcore.core.config import (
    BackupSettings,
    ControllerSettings,
    FailoverSettings,
    RecoverySettings,
    RegionSettings,
)
from drcore.core.models import Cause
from drcore.restore.actions import (
    ComprehensiveRollbackAction,
    FunctionRestoreAction,
    S3RestoreAction,
    StackRecoveryAction,
)
from drcore.restore.bucket_verification import VerificationAlerts
from drcore.restore.function_restore import FunctionRestorer
from drcore.restore.manual_actions import (
    ComprehensiveRollback,
    ConfigureReplication,
    Failback,
    Failover,
    RecoverFromBackup,
    RecoverStack,
    RestoreS3,
)
from drcore.restore.preflight import Preflight, PreflightSettings, PreflightTarget
from drcore.restore.recovery import RecoveryEngines
from drcore.restore.stack_recovery import StackRecovery
from drcore.restore.validated_actions import Validated, validated_after
from drcore.restore.validation_controls import ValidationSettings
from drcore.rollback.controller import AliasController
from drcore.state.backup_store import BackupStore
from drcore.state.plans import PlanBook, TwoStepAction
from drcore.state.region_record import RegionRecord
from drcore.wiring.failback import failback_action
from drcore.wiring.failover import failover_action
from drcore.wiring.fan_outs import fan_out
from drcore.wiring.replication import replication_parts
from drcore.wiring.restores import bucket_restorer
from drcore.wiring.shared import alert_publisher
from drcore.wiring.validation import post_recovery_validation


def recovery_engines(settings: ControllerSettings, backup: BackupSettings, recovery: RecoverySettings,
                     client: ClientFactory, controller: AliasController, switch_book: PlanBook,
                     preflight: PreflightSettings | None, region: RegionSettings | None,
                     failover: FailoverSettings | None,
                     validation_settings: ValidationSettings | None) -> RecoveryEngines:
    """`switch_book`: where a failover's and a failback's plans are kept (either region's recovery function finds
    them), each step recorded in its plan as it is done, so a resumption continues after it."""
    s3 = s3_client(backup.copy_concurrency)
    store = BackupStore(s3, backup.backup_bucket)
    # A restore's safety snapshot of the data bucket fans out when big, as the data bucket's scheduled snapshots do.
    snapshots = fan_out(backup, backup.snapshot_fanout_state_machine, client)
    restorer = bucket_restorer(s3, store, backup.copy_concurrency, backup.full_manifest_every,
                               fan_out(backup, recovery.restore_fanout_state_machine, client),
                               (backup.data_bucket, snapshots) if snapshots is not None else None)
    catalog = BackupCatalog(store, backup, recovery)
    data = S3RestoreAction(restorer, backup.data_bucket, recovery.restore_target_buckets,
                           VerificationAlerts(alert_publisher(settings, client), settings.protected_function))
    function = FunctionRestoreAction(FunctionRestorer(client("lambda"), store, settings.protected_function),
                                     controller, settings.protected_function)
    stack = StackRecoveryAction(StackRecovery(client("cloudformation"), store, backup.pipeline_stack,
                                              stack_role_arn=recovery.stack_role_arn))
    region = region or RegionSettings()
    failover = failover or FailoverSettings()
    configure_replication, replication = replication_parts(client, backup.data_bucket, region)
    # Which region processes uploads: the region record's answer, read when a validation runs.
    record = RegionRecord(client("dynamodb"), settings.state_table, settings.protected_function,
                          failover.primary_region or client("dynamodb").meta.region_name)
    validation = post_recovery_validation(settings, backup, region, validation_settings or ValidationSettings(),
                                          client, s3, store, catalog, active_region=record.active_region,
                                          primary_region=failover.primary_region)

    def validate_switch(action: str, plan_id: str, active_region: str) -> dict[str, Any]:
        return validated_after(validation, action, plan_id, Cause(kind="manual", summary=action), active_region)

    def record_progress(plan_id: str, progress: dict[str, Any]) -> None:
        switch_book.record(plan_id, progress=progress)

    # Every applied recovery ends with the post-recovery validation (drcore.restore.validated_actions); a failover
    # and a failback end with it too, as their own last step, with the region they made active.
    destructive: dict[type, TwoStepAction] = {
        RestoreS3: Validated(data, validation), RecoverFromBackup: Validated(function, validation),
        RecoverStack: Validated(stack, validation),
        ComprehensiveRollback: Validated(ComprehensiveRollbackAction(catalog, function, data, stack), validation),
        ConfigureReplication: configure_replication,
        Failover: failover_action(settings, backup, region, failover, client, store, record_progress,
                                  validation=validate_switch),
        Failback: failback_action(settings, backup, region, failover, alert_publisher(settings, client),
                                  record_progress, validation=validate_switch)}
    target = PreflightTarget(preflight or PreflightSettings(), settings.protected_function, settings.live_alias,
                             settings.stable_alias, backup.data_bucket, backup.pipeline_stack,
                             tuple(dict.fromkeys((settings.alert_topic_arn, settings.emergency_topic_arn))))
    return RecoveryEngines(catalog=catalog, destructive=destructive, preflight=Preflight(client, target).run,
                           replication=replication.report, validation=validation,
                           region=lambda: _region_status(record), restores_running=restorer.fan_outs_running)


def _region_status(record: RegionRecord) -> dict[str, Any]:
    """The region record as `status` shows it: the active region, and the switch that made it so (if any)."""
    current = record.current()
    return {"active_region": record.active_region(), "epoch": 0 if current is None else current.epoch,
            "last_switch": None if current is None else current.to_dict()}
