"""Retention of function, stack and logs backups: the snapshots' policy (drcore.backup.retention), per component.

Each component's complete backups are judged as the bucket's snapshots are, by the same `backup.retention` policy
and the same grandfather-father-son selection, so that every backup the catalog lists as restorable stays
restorable until that policy expires it: the newest `keep_last`, the newest of each of the last N hours, days,
weeks and months, and every backup a pending plan names (drcore.state.plans). The newest complete backup is
always among them. An unfinished backup (no manifest) younger than a day may still be written (a log export takes
minutes to hours) and is left alone; an older one is abandoned and removed.

An expired backup is removed as a snapshot is (drcore.backup.retention.remove_backup): its manifest record, its
manifest, then its files, each by a delete marker; one whose manifest is still under Object Lock is kept and
reported. What the kept backups need (their manifests, the records of the manifests' versions, and every file
their manifests list, each of the version written) is gathered for the lock extension. A kept backup whose
manifest does not read back as recorded is reported, not judged further: its files are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from drcore.backup.lock_extension import KeptObjects
from drcore.backup.retention import IN_PROGRESS_GRACE, backups_to_keep, remove_backup
from drcore.core.config import RetentionPolicy
from drcore.core.errors import InvalidRequest
from drcore.state.backup_files import BackupReader
from drcore.state.backup_store import BackupStore, Component

logger = Logger(child=True)

# The components pruned here; bucket snapshots share content across snapshots and are pruned on their own.
PRUNED_COMPONENTS = (Component.LAMBDA, Component.STACK, Component.LOGS)


@dataclass(frozen=True)
class ComponentPruneResult:
    component: str
    subject: str
    kept: tuple[str, ...]
    removed: tuple[str, ...]  # expired complete backups, removed
    abandoned: tuple[str, ...]  # unfinished backups older than the grace, removed
    in_progress: tuple[str, ...]  # unfinished and recent: left alone
    locked: tuple[str, ...]  # expired, but S3 refused to hide the manifest: still complete, kept
    pinned: tuple[str, ...] = ()  # kept only because a pending plan names them
    unreadable: dict[str, str] = field(default_factory=dict)  # kept backup id -> why its manifest did not read back


def prune_component(store: BackupStore, component: Component, subject: str, policy: RetentionPolicy, now: datetime,
                    kept: KeptObjects, pinned: Iterable[str] = ()) -> ComponentPruneResult:
    """Prune `subject`'s backups of `component` by `policy`, never one of the `pinned` ids; `kept` gathers what the
    backups that stay need locked."""
    listings = store.list_backups(component, subject)
    complete = [listing for listing in listings if listing.complete]
    unfinished = [listing for listing in listings if not listing.complete]
    in_progress = [listing.backup_id for listing in unfinished if now - listing.created_at < IN_PROGRESS_GRACE]
    abandoned = [listing.backup_id for listing in unfinished if listing.backup_id not in in_progress]
    by_policy = backups_to_keep(complete, policy)
    named = set(pinned)
    keep = by_policy | {listing.backup_id for listing in complete if listing.backup_id in named}

    unreadable: dict[str, str] = {}
    reader = BackupReader(store, component, subject)
    for backup_id in sorted(keep):
        problem = _gather(store, reader, component, subject, backup_id, kept)
        if problem:
            unreadable[backup_id] = problem

    removed, locked = [], []
    for listing in complete:
        if listing.backup_id in keep:
            continue
        if remove_backup(store, component, subject, listing.backup_id, now):
            removed.append(listing.backup_id)
        else:
            locked.append(listing.backup_id)
            problem = _gather(store, reader, component, subject, listing.backup_id, kept)
            if problem:
                unreadable[listing.backup_id] = problem
    for backup_id in abandoned:
        remove_backup(store, component, subject, backup_id, now)
    result = ComponentPruneResult(
        component=component.value, subject=subject, kept=tuple(sorted(keep)), removed=tuple(removed),
        abandoned=tuple(abandoned), in_progress=tuple(in_progress), locked=tuple(locked),
        pinned=tuple(sorted(keep - by_policy)), unreadable=unreadable)
    logger.info("backups pruned", extra={"component": component.value, "subject": subject, "kept": len(keep),
                                         "removed": len(removed), "abandoned": len(abandoned), "locked": len(locked),
                                         "pinned": len(result.pinned), "unreadable": len(unreadable)})
    return result


def _gather(store: BackupStore, reader: BackupReader, component: Component, subject: str, backup_id: str,
            kept: KeptObjects) -> str | None:
    """Add what one kept backup needs locked to `kept`; why not, if its manifest does not read back as recorded."""
    try:
        record = store.recorded_manifest(component, subject, backup_id)
        manifest = reader.open(backup_id).manifest
    # CorruptBackup, BackupNotFound: what the reader says is wrong with it; ValueError: a manifest of the previous
    # format (no record of its digest) that is not JSON.
    except (InvalidRequest, ValueError) as error:
        logger.warning("kept backup unreadable", extra={"component": component.value, "backup_id": backup_id,
                                                        "error": str(error)})
        return str(error)
    kept.add_backup(component, subject, backup_id, record.version_id if record else None, _files(manifest))
    return None


def _files(manifest: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """The files a backup's manifest lists, as (path, version, ETag): a function or stack backup's `files`
    (drcore.state.backup_files), a log export's `objects` (drcore.backup.logs_backup)."""
    listed = [*manifest.get("files", []), *manifest.get("objects", [])]
    return [(entry["path"], entry.get("version_id"), entry.get("etag")) for entry in listed]
