"""The retention function's wiring: the backup store, the retention policy, the lock extension and the journal."""

from __future__ import annotations

from functools import lru_cache

from drcore.aws.clients import client_factory, s3_client
from drcore.backup.lock_extension import LockExtender, LockPolicy
from drcore.backup.logs_backup import log_subject
from drcore.backup.retention_run import RetentionRun
from drcore.core.config import BackupSettings, RetentionSettings
from drcore.state.backup_store import BackupStore, Component
from drcore.state.store import ControllerStateStore


@lru_cache(maxsize=4)
def retention_run(settings: BackupSettings, retention: RetentionSettings,
                  endpoint_url: str | None = None) -> RetentionRun:
    client = client_factory()
    store = BackupStore(s3_client(settings.copy_concurrency), settings.backup_bucket)
    locks = LockExtender(store, LockPolicy(retention.object_lock_mode, retention.object_lock_days),
                         concurrency=settings.copy_concurrency)
    # What each component backs up, as the backup function files it (drcore.backup.catalog names the same).
    subjects = {Component.S3: settings.data_bucket, Component.LAMBDA: settings.protected_function,
                Component.STACK: settings.pipeline_stack, Component.LOGS: log_subject(settings.function_log_group)}
    return RetentionRun(store, subjects, retention.policy, locks,
                        ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope),
                        settings.protected_function)
