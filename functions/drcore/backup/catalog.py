"""What backups exist, per component, with their time, size, status and age against the RPO, and whether
a bucket snapshot's stored content still matches its manifest.

Used by the recovery function's `status` (with a fanned-out snapshot's progress while it runs),
`list_backups` and `verify_backup` actions (and by restores to resolve ids). `list_backups` checks each
complete bucket snapshot it lists quickly: its manifest reads back (its SHA-256), and a random sample of
`QUICK_SAMPLE` of its content objects is there with the recorded size and checksum or ETag (one
HeadObject each; drcore.backup.content_check). A damaged one is listed with status "damaged".
`verify_backup` reads the content and compares it (a sample, or all).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drcore.backup.content_check import ContentChecker
from drcore.backup.logs_backup import log_subject
from drcore.backup.manifest import ManifestCorrupt, open_manifest
from drcore.backup.snapshot_shards import fan_out_progress
from drcore.core.config import BackupSettings, RecoverySettings
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_store import BackupListing, BackupStore, Component, backup_prefix

QUICK_SAMPLE = 32  # content objects of each listed bucket snapshot that `describe` checks


class BackupCatalog:
    def __init__(self, store: BackupStore, backup: BackupSettings, recovery: RecoverySettings,
                 clock: Clock = utc_now, content: ContentChecker | None = None) -> None:
        self._store = store
        self._recovery = recovery
        self._clock = clock
        self._content = content or ContentChecker(store)
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
        summary[Component.S3.value]["fan_out"] = self._fan_out_in_progress()
        return summary

    def _fan_out_in_progress(self) -> dict[str, Any] | None:
        """The newest snapshot, when it is fanned out and not complete: its shards done, objects listed, bytes."""
        newest = next(iter(reversed(self.listings(Component.S3))), None)
        if newest is None or newest.complete:
            return None
        return fan_out_progress(self._store, self._subjects[Component.S3], newest.backup_id)

    def describe(self, component: Component, limit: int = 20) -> list[dict[str, Any]]:
        """The newest `limit` backups of a component, newest first: id, time, status and stored size; a
        complete bucket snapshot with its quick content check ("damaged" when it fails)."""
        subject = self._subjects[component]
        described = []
        for listing in reversed(self.listings(component)[-limit:]):
            objects = list(self._store.keys(backup_prefix(component, subject, listing.backup_id)))
            entry: dict[str, Any] = {
                "backup_id": listing.backup_id,
                "created_at": to_iso(listing.created_at),
                "status": "complete" if listing.complete else "incomplete",
                "objects": len(objects),
                # S3 snapshots store bodies once, shared under content/: this is the manifest and checkpoints.
                "size_bytes": sum(entry["Size"] for entry in objects),
            }
            if component is Component.S3 and listing.complete:
                entry["content_check"] = self._quick_check(subject, listing.backup_id)
                if not entry["content_check"]["ok"]:
                    entry["status"] = "damaged"
            described.append(entry)
        return described

    def verify(self, component: Component, backup_id: str, sample: int | None) -> dict[str, Any]:
        """A backup's stored content read and compared with its manifest: `sample` content objects chosen at
        random, or all of them (None). Reads only."""
        if component is not Component.S3:
            raise InvalidRequest(f"verify_backup checks bucket snapshots (component s3), not {component.value}")
        bucket = self._subjects[component]
        try:
            manifest = open_manifest(self._store, bucket, backup_id)
        except ManifestCorrupt as error:
            return {"component": component.value, "bucket": bucket, "backup_id": backup_id, "ok": False,
                    "manifest_ok": False, "error": str(error)}
        report = self._content.check_snapshot(manifest, sample=sample, read=True)
        return {"component": component.value, **report.to_dict(), "manifest_ok": True}

    def _quick_check(self, bucket: str, backup_id: str) -> dict[str, Any]:
        try:
            manifest = open_manifest(self._store, bucket, backup_id)
        except ManifestCorrupt as error:
            return {"ok": False, "manifest_ok": False, "error": str(error)}
        report = self._content.check_snapshot(manifest, sample=QUICK_SAMPLE, read=False)
        return {"ok": report.ok, "manifest_ok": True, "checked": report.checked,
                "content_objects": report.content_objects, "damaged": report.damaged,
                "unverified": report.unverified, "damaged_keys": [item["key"] for item in report.damaged_keys[:20]],
                "checks": "a sample of content objects: present, with the recorded size and checksum or ETag"}

    def newest_before(self, component: Component, moment: datetime) -> BackupListing | None:
        complete = [listing for listing in self.listings(component)
                    if listing.complete and listing.created_at <= moment]
        return complete[-1] if complete else None
