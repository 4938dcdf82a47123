"""The drill function's wiring: the catalog, the three restore engines and the report's recorder."""

from __future__ import annotations

from functools import lru_cache

from drcore.aws.alarms import AlarmBoard
from drcore.aws.clients import client_factory, s3_client
from drcore.aws.continuations import self_invoker
from drcore.backup.catalog import BackupCatalog
from drcore.core.config import BackupSettings, ControllerSettings, DrillSettings, RecoverySettings
from drcore.drill.runner import (
    RUN_TTL_SECONDS,
    DrillEngines,
    DrillRecorder,
    DrillRecords,
    DrillRunner,
    DrillSources,
    DrillTargets,
)
from drcore.restore.function_restore import FunctionRestorer
from drcore.restore.stack_recovery import StackRecovery
from drcore.state.backup_store import BackupStore
from drcore.state.plans import PlanBook
from drcore.state.store import ControllerStateStore
from drcore.wiring.restores import bucket_restorer
from drcore.wiring.shared import alert_publisher


@lru_cache(maxsize=4)
def drill_runner(settings: ControllerSettings, backup: BackupSettings, recovery: RecoverySettings, drill: DrillSettings,
                 function_name: str, endpoint_url: str | None = None) -> DrillRunner:
    """The drill function's runner; `function_name` is its own, to continue a drill in a new invocation."""
    client = client_factory()
    s3 = s3_client(backup.copy_concurrency)
    store = BackupStore(s3, backup.backup_bucket)
    state = ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope)
    lambda_client = client("lambda")
    targets = DrillTargets(
        protected_function=settings.protected_function, data_bucket=backup.data_bucket,
        watched_alarms=settings.watched_alarms, scratch_function=drill.scratch_function,
        scratch_bucket=drill.scratch_bucket, environment=drill.environment, rto_seconds=dict(drill.rto_seconds))
    sources = DrillSources(catalog=BackupCatalog(store, backup, recovery), alarm_board=AlarmBoard(client("cloudwatch")),
                           controller_state=state)
    engines = DrillEngines(
        function_restorer=FunctionRestorer(lambda_client, store, settings.protected_function),
        bucket_restorer=bucket_restorer(s3, store, backup.copy_concurrency, backup.full_manifest_every),
        stack_recovery=StackRecovery(client("cloudformation"), store, backup.pipeline_stack),
        s3_client=s3, lambda_client=lambda_client)
    recorder = DrillRecorder(store, state, settings.protected_function, client("cloudwatch"),
                             settings.metrics_namespace, alert_publisher(settings, client))
    records = DrillRecords(runs=PlanBook(state, settings.protected_function, RUN_TTL_SECONDS), recorder=recorder,
                           continue_later=self_invoker(lambda_client, function_name))
    return DrillRunner(targets, sources, engines, records)
