"""The recovery function's wiring: the operator's actions over the controller, the catalog and the engines."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from drcore.aws.clients import client_factory, s3_client
from drcore.aws.continuations import self_invoker
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
from drcore.restore.recovery import RecoveryService
from drcore.restore.stack_recovery import StackRecovery
from drcore.restore.validated_actions import Validated, validated_after
from drcore.restore.validation_controls import ValidationSettings
from drcore.state.backup_store import BackupStore
from drcore.state.plans import PlanBook, PlanJournal, TwoStepAction, TwoStepFlow
from drcore.state.region_record import RegionRecord
from drcore.state.store import ControllerStateStore
from drcore.wiring.failback import failback_action
from drcore.wiring.failover import failover_action
from drcore.wiring.replication import replication_parts
from drcore.wiring.restores import bucket_restorer, restore_fan_out
from drcore.wiring.shared import alert_publisher, alias_controller
from drcore.wiring.validation import post_recovery_validation


@lru_cache(maxsize=4)
def recovery_service(settings: ControllerSettings, backup: BackupSettings, recovery: RecoverySettings,
                     function_name: str, endpoint_url: str | None = None,
                     preflight: PreflightSettings | None = None, region: RegionSettings | None = None,
                     failover: FailoverSettings | None = None,
                     validation_settings: ValidationSettings | None = None) -> RecoveryService:
    """The recovery function's service; `function_name` is its own, to continue long actions."""
    client = client_factory()
    controller, _, alarm_board = alias_controller(settings, client)
    s3 = s3_client(backup.copy_concurrency)
    store = BackupStore(s3, backup.backup_bucket)
    state = ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope)
    # A region switch's plan and journal entry are kept where either region's recovery function finds them (the
    # primary's partition), so a failover or failback that stopped is resumed from either region.
    shared = ControllerStateStore(client("dynamodb"), settings.state_table)
    lambda_client = client("lambda")
    continue_later = self_invoker(lambda_client, function_name)

    def journal_in(journaled: ControllerStateStore) -> PlanJournal:
        def journal(kind: str, plan_id: str, request: Any, result: dict[str, Any], at: str) -> None:
            verified = result.get("ok", (result.get("verification") or {}).get("ok", True))
            journaled.append_journal(settings.protected_function, entry_id=plan_id, at=at, action=kind,
                                     cause=request.cause(),
                                     result="applied" if verified else "applied, verification failed",
                                     details={"plan_id": plan_id, **_figures(result)})
        return journal

    book = PlanBook(state, settings.protected_function, recovery.plan_ttl_seconds)
    flow = TwoStepFlow(book, journal_in(state), continue_later)
    shared_book = PlanBook(shared, settings.protected_function, recovery.plan_ttl_seconds)
    switch_flow = TwoStepFlow(shared_book, journal_in(shared), continue_later)
    restorer = bucket_restorer(s3, store, backup.copy_concurrency, backup.full_manifest_every,
                               restore_fan_out(backup, recovery, client))
    catalog = BackupCatalog(store, backup, recovery)
    data = S3RestoreAction(restorer, backup.data_bucket, recovery.restore_target_buckets,
                           VerificationAlerts(alert_publisher(settings, client), settings.protected_function))
    function = FunctionRestoreAction(FunctionRestorer(lambda_client, store, settings.protected_function),
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

    failback = failback_action(settings, backup, region, failover, alert_publisher(settings, client),
                               lambda plan_id, progress: shared_book.record(plan_id, progress=progress),
                               validation=validate_switch)
    # Every applied recovery ends with the post-recovery validation (drcore.restore.validated_actions); a failover
    # and a failback end with it too, as their own last step, with the region they made active.
    destructive: dict[type, TwoStepAction] = {
        RestoreS3: Validated(data, validation), RecoverFromBackup: Validated(function, validation),
        RecoverStack: Validated(stack, validation),
        ComprehensiveRollback: Validated(ComprehensiveRollbackAction(catalog, function, data, stack), validation),
        ConfigureReplication: configure_replication,
        # Each step of a failover is recorded in its plan as it is done, so a resumption continues after it.
        Failover: failover_action(settings, backup, region, failover, client, store,
                                  lambda plan_id, progress: shared_book.record(plan_id, progress=progress),
                                  validation=validate_switch),
        Failback: failback}
    target = PreflightTarget(preflight or PreflightSettings(), settings.protected_function, settings.live_alias,
                             settings.stable_alias, backup.data_bucket, backup.pipeline_stack,
                             tuple(dict.fromkeys((settings.alert_topic_arn, settings.emergency_topic_arn))))
    return RecoveryService(settings, controller, alarm_board, catalog, flow, destructive,
                           preflight=Preflight(client, target).run, replication=replication.report,
                           validation=validation, flows={Failover: switch_flow, Failback: switch_flow},
                           region=lambda: _region_status(record), restores_running=restorer.fan_outs_running)


def _region_status(record: RegionRecord) -> dict[str, Any]:
    """The region record as `status` shows it: the active region, and the switch that made it so (if any)."""
    current = record.current()
    return {"active_region": record.active_region(), "epoch": 0 if current is None else current.epoch,
            "last_switch": None if current is None else current.to_dict()}


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps a result's figures and ids, not its key lists."""
    return {key: value for key, value in result.items()
            if not isinstance(value, (list, tuple)) and len(str(value)) < 2000}
