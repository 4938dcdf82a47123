"""What backups exist, per component, with their time, size, status and age against the RPO.

Used by the recovery function's `status` and `list_backups` actions (and by restores to resolve ids).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drcore.backup.logs_backup import log_subject
from drcore.core.config import BackupSettings, RecoverySettings
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_store import BackupListing, BackupStore, Component, backup_prefix


class BackupCatalog:
    def __init__(self, store: BackupStore, backup: BackupSettings, recovery: RecoverySettings,
                 clock: Clock = utc_now) -> None:
        self._store = store
        self._recovery = recovery
        self._clock = clock
        self._subjects = {
            Component.LAMBDA: backup.protected_function,
            Component.S3: backup.data_bucket,
            Component.STACK: backup.pipeline_stack,
            Component.LOGS: log_subject(backup.function_log_group),
        }

    def subject(self, component: Component) -> str:
        return self._subjects[component]

    def listings(self, component: Component) -> list[BackupListing]:
        return self._store.list_backups(component, self._subjects[component])

    def latest(self) -> dict[str, Any]:
        """The newest complete backup of each component and its age against the component's RPO."""
        now = self._clock()
        summary: dict[str, Any] = {}
        for component in Component:
            complete = [listing for listing in self.listings(component) if listing.complete]
            rpo = self._recovery.rpo_of(component.value)
            newest = complete[-1] if complete else None
            age = None if newest is None else round((now - newest.created_at).total_seconds())
            summary[component.value] = {
                "backup_id": newest.backup_id if newest else None,
                "created_at": to_iso(newest.created_at) if newest else None,
                "age_seconds": age,
                "rpo_seconds": rpo,
                "within_rpo": age is not None and (rpo is None or age <= rpo),
            }
        return summary

    def describe(self, component: Component, limit: int = 20) -> list[dict[str, Any]]:
        """The newest `limit` backups of a component, newest first: id, time, status and stored size."""
        subject = self._subjects[component]
        described = []
        for listing in reversed(self.listings(component)[-limit:]):
            objects = list(self._store.keys(backup_prefix(component, subject, listing.backup_id)))
            described.append({
                "backup_id": listing.backup_id,
                "created_at": to_iso(listing.created_at),
                "status": "complete" if listing.complete else "incomplete",
                "objects": len(objects),
                # S3 snapshots store bodies once, shared under content/: this is the manifest and checkpoints.
                "size_bytes": sum(entry["Size"] for entry in objects),
            })
        return described

    def newest_before(self, component: Component, moment: datetime) -> BackupListing | None:
        complete = [listing for listing in self.listings(component)
                    if listing.complete and listing.created_at <= moment]
        return complete[-1] if complete else None
