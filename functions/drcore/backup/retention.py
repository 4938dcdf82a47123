"""Retention of bucket snapshots: which to keep (grandfather-father-son), then removing the rest. The selection
and the removal of one backup serve every component (function, stack and logs backups: drcore.backup.
component_retention).

Kept: the newest `keep_last` complete snapshots, plus the newest snapshot of each of the `hourly` most
recent hours that have one, and likewise per day, ISO week and month (UTC), as restic and borg count
them, so a pause in backups never expires everything, and every snapshot a pending restore plan names.
A kept snapshot whose manifest is a delta keeps every snapshot it is read through (its chain, down to a
full manifest: drcore.backup.manifest), and so does an expired one S3 will not yet let go of. Each manifest
is read once as stored, a line at a time (a delta's own entries, not its chain's again): a run's time grows
with the lines the kept manifests hold, not with the kept snapshots times their objects. Expired snapshots
go newest first (a delta never outlives its base), each losing its manifest first (so a half-removed
snapshot is incomplete, never a corrupt restorable one), then its checkpoints.

Content (`content/...`) is shared by every snapshot of every bucket in the store; a body is removed
only when no remaining manifest of any bucket references it, no snapshot in progress has checkpointed
it, and it is older than a day (a running snapshot may have copied it before its next checkpoint).
What the snapshots that stay need is gathered as their manifests are read, so that the retention run can
keep it locked (drcore.backup.lock_extension). Removals are delete markers (DeleteObject without a version
id): the controller never deletes a version itself, so a pruned backup stays recoverable until the backup
bucket's lifecycle rule expires noncurrent versions, which S3 never does while Object Lock protects them.
An object still under Object Lock retention or legal hold is not even hidden: it is reported and left for
a later prune.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from drcore.backup.lock_extension import KeptObjects
from drcore.backup.manifest import CONTENT_PREFIX, ManifestCorrupt, read_stored_manifest
from drcore.backup.snapshot_checkpoints import snapshot_in_progress_content
from drcore.core.config import RetentionPolicy
from drcore.state.backup_store import (
    BackupListing,
    BackupStore,
    Component,
    backup_prefix,
    manifest_key,
    manifest_record_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef, ObjectTypeDef

logger = Logger(child=True)

# An unfinished snapshot younger than this may still be running (continuations, retries): left alone,
# and so is content younger than this that no checkpoint names yet.
IN_PROGRESS_GRACE = timedelta(days=1)
DELETE_BATCH = 1000  # DeleteObjects' limit
S3_SNAPSHOTS_ROOT = backup_prefix(Component.S3, "", "")[: -len("//")]  # "snapshots/s3/"


@dataclass(frozen=True)
class PruneResult:
    kept: tuple[str, ...]
    removed: tuple[str, ...]  # expired complete snapshots, removed
    abandoned: tuple[str, ...]  # unfinished snapshots older than the grace, removed
    in_progress: tuple[str, ...]  # unfinished and recent: left alone
    # expired, but S3 refused to delete the manifest (or that of a newer one read through it): complete, kept
    locked: tuple[str, ...]
    content_removed: int = 0
    bytes_removed: int = 0
    content_refused: dict[str, str] = field(default_factory=dict)  # content key -> S3's error (AccessDenied: locked)


def _hour(moment: datetime) -> Hashable:
    return moment.year, moment.month, moment.day, moment.hour


def _day(moment: datetime) -> Hashable:
    return moment.date()


def _week(moment: datetime) -> Hashable:
    return tuple(moment.isocalendar())[:2]


def _month(moment: datetime) -> Hashable:
    return moment.year, moment.month


def backups_to_keep(complete: Iterable[BackupListing], policy: RetentionPolicy) -> set[str]:
    """The ids of the complete backups (of one subject) `policy` keeps; the newest is always among them."""
    newest_first = sorted(complete, key=lambda listing: listing.backup_id, reverse=True)
    keep = {listing.backup_id for listing in newest_first[:policy.keep_last]}
    periods: tuple[tuple[int, Callable[[datetime], Hashable]], ...] = (
        (policy.hourly, _hour), (policy.daily, _day), (policy.weekly, _week), (policy.monthly, _month))
    for count, period_of in periods:
        seen: set[Hashable] = set()
        for listing in newest_first:
            if len(seen) == count:
                break
            period = period_of(listing.created_at)
            if period not in seen:
                seen.add(period)
                keep.add(listing.backup_id)
    return keep


def prune(store: BackupStore, bucket: str, policy: RetentionPolicy, now: datetime,
          kept: KeptObjects | None = None, pinned: Iterable[str] = ()) -> PruneResult:
    """Prune `bucket`'s snapshots by `policy`, never one of the `pinned` ids (named by a pending plan); `kept`, when
    given, gathers what the snapshots that stay need locked (every complete snapshot of every other bucket stays)."""
    kept = kept if kept is not None else KeptObjects()
    listings = store.list_backups(Component.S3, bucket)
    complete = [listing for listing in listings if listing.complete]
    unfinished = [listing for listing in listings if not listing.complete]
    in_progress = [listing for listing in unfinished if now - listing.created_at < IN_PROGRESS_GRACE]
    abandoned = [listing for listing in unfinished if listing not in in_progress]
    named = set(pinned)
    keep = backups_to_keep(complete, policy) | {listing.backup_id for listing in complete if listing.backup_id in named}
    for running in in_progress:
        # A running snapshot carries entries over from the newest complete one before it without asking
        # the store whether their content is still there: that one must outlive it.
        bases = [listing.backup_id for listing in complete if listing.backup_id < running.backup_id]
        keep.update(bases[-1:])
    # Everything that stays referenced is read before anything is removed: an unreadable manifest
    # (ManifestCorrupt) stops the prune here, with nothing removed. Each manifest is read once, as stored: a kept
    # snapshot whose manifest is a delta keeps the snapshot it is read through, which is read as a kept one.
    referenced: set[str] = set()
    _read_other_buckets(store, bucket, now, kept, referenced)
    complete_ids = {listing.backup_id for listing in complete}
    to_read = sorted(keep)
    while to_read:
        backup_id = to_read.pop()
        base_id = _read_kept(store, bucket, backup_id, referenced, kept)
        if base_id is not None and base_id not in complete_ids:
            raise ManifestCorrupt(f"snapshot {backup_id} of bucket {bucket} is a delta on {base_id}, which is gone")
        if base_id is not None and base_id not in keep:
            keep.add(base_id)
            to_read.append(base_id)
    expired = [listing.backup_id for listing in complete if listing.backup_id not in keep]
    for running in in_progress:
        referenced |= snapshot_in_progress_content(store, bucket, running.backup_id)

    # Newest first: a snapshot S3 will not let go of keeps the expired snapshots it is read through, and a delta
    # is never left without its base by a run that stops half-way.
    removed, locked = [], []
    held: set[str] = set()  # expired, and a locked one's manifest is read through theirs
    for backup_id in reversed(expired):
        if backup_id not in held and remove_backup(store, Component.S3, bucket, backup_id, now):
            removed.append(backup_id)
            continue
        locked.append(backup_id)
        base_id = _read_kept(store, bucket, backup_id, referenced)
        if base_id is not None:
            held.add(base_id)
    removed.sort()
    locked.sort()
    for listing in abandoned:
        remove_backup(store, Component.S3, bucket, listing.backup_id, now)
    content_removed, bytes_removed, refused = _remove_unreferenced_content(store, referenced, now)
    result = PruneResult(kept=tuple(sorted(keep)), removed=tuple(removed),
                         abandoned=tuple(listing.backup_id for listing in abandoned),
                         in_progress=tuple(listing.backup_id for listing in in_progress), locked=tuple(locked),
                         content_removed=content_removed, bytes_removed=bytes_removed, content_refused=refused)
    logger.info("snapshots pruned", extra={"bucket": bucket, "kept": len(result.kept), "removed": len(removed),
                                           "abandoned": len(abandoned), "locked": len(locked),
                                           "content_removed": content_removed, "content_refused": len(refused)})
    return result


def _read_kept(store: BackupStore, bucket: str, backup_id: str, referenced: set[str],
               kept: KeptObjects | None = None) -> str | None:
    """Read a snapshot that stays, its manifest as stored: the content its entries name joins `referenced`, and
    `kept` learns what it needs locked. Returns the snapshot it is read through (its base), if any."""
    manifest = read_stored_manifest(store, bucket, backup_id)
    if kept is not None:
        kept.add_manifest(manifest)
    for entry in manifest.entries():
        if entry.content_key:
            referenced.add(entry.content_key)
            if kept is not None:
                kept.add_content(entry)
    return manifest.base_id


def _read_other_buckets(store: BackupStore, bucket: str, now: datetime, kept: KeptObjects,
                        referenced: set[str]) -> None:
    """Every complete snapshot of every other bucket stays (this run prunes only `bucket`), and what their running
    ones have stored so far."""
    pages = store.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=S3_SNAPSHOTS_ROOT,
                                                                Delimiter="/")
    subjects = [entry["Prefix"][len(S3_SNAPSHOTS_ROOT):-1]
                for page in pages for entry in page.get("CommonPrefixes", [])]
    for subject in subjects:
        if subject == bucket:
            continue
        listings = store.list_backups(Component.S3, subject)
        complete = {listing.backup_id for listing in listings if listing.complete}
        for listing in listings:
            if listing.complete:
                base_id = _read_kept(store, subject, listing.backup_id, referenced, kept)
                if base_id is not None and base_id not in complete:
                    raise ManifestCorrupt(f"snapshot {listing.backup_id} of bucket {subject} is a delta on {base_id}, "
                                          "which is gone")
            elif now - listing.created_at < IN_PROGRESS_GRACE:
                referenced |= snapshot_in_progress_content(store, subject, listing.backup_id)


def _current(store: BackupStore, prefix: str) -> list[ObjectTypeDef]:
    """The visible objects under `prefix` (hidden ones already carry a delete marker)."""
    return list(store.keys(prefix))


def _lock(store: BackupStore, key: str, now: datetime) -> str | None:
    """Why S3 Object Lock still protects `key`, or None (HeadObject reports both retention and legal hold)."""
    head = store.s3.head_object(Bucket=store.bucket, Key=key)
    # The stubs type every answer field as present; S3 leaves out the date of an object without retention.
    until: datetime | None = head.get("ObjectLockRetainUntilDate")
    if until is not None and until > now:
        return f"ObjectLocked: {head.get('ObjectLockMode', 'retention')} until {until:%Y-%m-%d}"
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return "ObjectLocked: legal hold"
    return None


def _hide(store: BackupStore, keys: list[str], now: datetime) -> dict[str, str]:
    """Place delete markers on these keys, except those Object Lock protects; returns the keys left, and why."""
    refused: dict[str, str] = {}
    removable = []
    for key in keys:
        reason = _lock(store, key, now)
        if reason:
            refused[key] = reason
        else:
            removable.append(key)
    for start in range(0, len(removable), DELETE_BATCH):
        objects: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in removable[start:start + DELETE_BATCH]]
        response = store.s3.delete_objects(Bucket=store.bucket, Delete={"Objects": objects, "Quiet": True})
        refused.update({error["Key"]: error.get("Code", "Unknown") for error in response.get("Errors", [])})
    return refused


def remove_backup(store: BackupStore, component: Component, subject: str, backup_id: str, now: datetime) -> bool:
    """Remove a backup's manifest record, its manifest, then its other files (a snapshot's checkpoints); False if
    the first two are still locked. The record goes first: readers name the manifest's version through it, and a
    version read would find a hidden manifest; without the record, a manifest left by an interrupted run reads by
    its key, and a hidden one is gone."""
    firsts = [manifest_record_key(component, subject, backup_id), manifest_key(component, subject, backup_id)]
    keys = [entry["Key"] for entry in _current(store, backup_prefix(component, subject, backup_id))]
    # Both are looked at before either is hidden: a locked manifest keeps its record.
    locked = any(_lock(store, key, now) for key in firsts if key in keys)
    if locked or any(_hide(store, [key for key in keys if key == first], now) for first in firsts):
        logger.warning("backup manifest under Object Lock; backup kept",
                       extra={"component": component.value, "backup_id": backup_id})
        return False
    refused = _hide(store, [key for key in keys if key not in firsts], now)
    if refused:  # the backup is incomplete now; a later prune removes what is left
        logger.warning("backup files not removed", extra={"component": component.value, "backup_id": backup_id,
                                                          "refused": len(refused)})
    return True


def _remove_unreferenced_content(store: BackupStore, referenced: set[str],
                                 now: datetime) -> tuple[int, int, dict[str, str]]:
    """Hide the stored bodies nothing references, older than the grace, a batch at a time as the listing goes."""
    removed, bytes_removed, refused = 0, 0, {}
    batch: list[ObjectTypeDef] = []

    def hide_batch() -> None:
        nonlocal removed, bytes_removed
        batch_refused = _hide(store, [entry["Key"] for entry in batch], now)
        hidden = [entry for entry in batch if entry["Key"] not in batch_refused]
        removed += len(hidden)
        bytes_removed += sum(entry.get("Size", 0) for entry in hidden)
        refused.update(batch_refused)
        batch.clear()

    for entry in store.keys(CONTENT_PREFIX):
        if entry["Key"] not in referenced and now - entry["LastModified"] >= IN_PROGRESS_GRACE:
            batch.append(entry)
            if len(batch) == DELETE_BATCH:
                hide_batch()
    if batch:
        hide_batch()
    return removed, bytes_removed, refused
