"""The backup function's wiring: the four component backups, the journal and the metrics (retention is the
retention function's: drcore.wiring.retention)."""

from __future__ import annotations

from functools import lru_cache

from drcore.aws.clients import client_factory, s3_client
from drcore.aws.continuations import self_invoker
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.function_backup import FunctionBackup
from drcore.backup.logs_backup import LogsBackup
from drcore.backup.requests import BackupRequest
from drcore.backup.runner import BackupMetrics, BackupRunner, component_runners
from drcore.backup.stack_backup import StackBackup
from drcore.core.config import BackupSettings
from drcore.state.backup_store import BackupStore
from drcore.state.store import ControllerStateStore
from drcore.wiring.fan_outs import fan_out


@lru_cache(maxsize=4)
def backup_runner(settings: BackupSettings, function_name: str, endpoint_url: str | None = None) -> BackupRunner:
    """The backup function's runner; `function_name` is the backup function's own, for continuations."""
    client = client_factory()
    s3 = s3_client(settings.copy_concurrency)
    store = BackupStore(s3, settings.backup_bucket)
    lambda_client = client("lambda")
    invoke_self = self_invoker(lambda_client, function_name)

    def continue_snapshot(request: BackupRequest) -> None:
        invoke_self(request.model_dump(mode="json", exclude_none=True))

    runners = component_runners(
        function_backup=FunctionBackup(lambda_client, store, settings.protected_function),
        stack_backup=StackBackup(client("cloudformation"), store, settings.pipeline_stack),
        logs_backup=LogsBackup(client("logs"), store, settings.function_log_group),
        snapshotter=BucketSnapshotter(s3, store, settings.data_bucket, concurrency=settings.copy_concurrency,
                                      full_manifest_every=settings.full_manifest_every,
                                      fan_out=fan_out(settings, settings.snapshot_fanout_state_machine, client)),
        publish_version=settings.publish_backup_version,
    )
    return BackupRunner(settings, run_component=runners,
                        journal=ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope),
                        metrics=BackupMetrics(client("cloudwatch"), settings.metrics_namespace),
                        continue_snapshot=continue_snapshot)
