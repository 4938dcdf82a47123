"""Object Lock extended for as long as a kept backup needs what it locks: a batched, idempotent pass of the
retention function whose cost grows with what is about to expire, not with the bucket.

S3 locks each object for the bucket's default retention from its creation, and content is stored once and
shared: a body a monthly snapshot still needs may have been stored a year ago, its lock long over. Every
run, each object a kept snapshot needs (its content, its manifest and the record of the manifest's
version) must stay locked at least `horizon` beyond the run, so that whatever happens until the next runs,
it is locked until at least the moment its last snapshot is pruned. What an object's lock is known to last
comes without a request from:

- the manifests: each stored body's creation plus the default retention, as the snapshot that stored it
  knew them (`content_locked_until`), and the manifest's own (`locked_until`);
- the lock index, `locks/<run id>.json.gz` (gzip JSON lines, written once by each run that changed
  something, the previous ones then hidden): what earlier runs found or set.

Only an object known to be released before the horizon, or not known at all (a backup of the previous
format, content found rather than stored by its snapshot), costs requests: one HeadObject of the version the
manifest names, for the retention S3 holds, and, if it ends before the horizon, one PutObjectRetention that
takes it to `extend_to` from the run. Retention is only ever extended: the new date is never earlier than the
one S3 holds, and an object in COMPLIANCE mode stays in it (S3 refuses both anyway). A run that runs out of
time records what it did and leaves the rest to the next run, which finds it exactly as it left it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import SOURCE_CHANGED, error_code, retrying
from drcore.backup.manifest import ManifestEntry, StoredManifest
from drcore.core.config import ObjectLockMode
from drcore.core.models import parse_time, to_iso
from drcore.state.backup_store import (
    LOCKS_PREFIX,
    BackupStore,
    Component,
    backup_prefix,
    gzip_json_lines,
    manifest_key,
    manifest_record_key,
    new_backup_id,
    read_gzip_json_lines,
    readable_version,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import (
        HeadObjectRequestTypeDef,
        ObjectIdentifierTypeDef,
        PutObjectRetentionRequestTypeDef,
    )

logger = Logger(child=True)

INDEX_FORMAT = "lock-index/1"
# A run keeps what kept snapshots need locked at least this far ahead: retention runs every hour, so a week
# of failed runs (each alarmed through the failed-events queue) passes before a lock can lapse.
LOCK_HORIZON = timedelta(days=7)
BATCH = 256  # objects looked at between two looks at the remaining time
SAFETY_MARGIN_MS = 60_000  # a batch and the index must fit in what is left
REPORTED_MISSING = 100


@dataclass(frozen=True)
class LockPolicy:
    """The mode retention sets, and how far ahead of a run it extends (the bucket's default retention, and
    at least twice the horizon, so that an object is extended at most about once per horizon)."""

    mode: ObjectLockMode
    days: int
    horizon: timedelta = LOCK_HORIZON

    def extend_to(self, now: datetime) -> datetime:
        return now + max(timedelta(days=self.days), 2 * self.horizon)


@dataclass(frozen=True)
class NeededObject:
    """An object a kept backup needs: its version (None: named only by its key, a backup of the previous
    format), the ETag that pins a read by key, and the earliest its lock can end as its backup recorded it."""

    key: str
    version_id: str | None
    etag: str | None = None
    locked_until: datetime | None = None

    @property
    def identity(self) -> tuple[str, str | None]:
        """A key can hold two needed versions: a body hidden by retention, and stored again."""
        return self.key, self.version_id

    def merged(self, other: NeededObject) -> NeededObject:
        """The same object as two backups describe it: the earliest release either knows is the one trusted."""
        known = [until for until in (self.locked_until, other.locked_until) if until is not None]
        return NeededObject(self.key, self.version_id, self.etag or other.etag, min(known) if known else None)


class KeptObjects:
    """What the kept backups need locked, gathered as retention reads their manifests: each one's manifest, the
    record of its version, and the content (a snapshot) or the files (a function, stack or logs backup) it lists."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None], NeededObject] = {}

    def add_backup(self, component: Component, subject: str, backup_id: str, manifest_version_id: str | None,
                   files: Iterable[tuple[str, str | None, str | None]]) -> None:
        """A function, stack or logs backup: its manifest (the version recorded when it was written), the record of
        that version, and each file its manifest lists under the backup's prefix, as (path, version id, ETag).
        Their manifests record no lock dates: each is looked at once, then known from the index."""
        where = (component, subject, backup_id)
        self._add(NeededObject(manifest_key(*where), manifest_version_id))
        if manifest_version_id is not None:
            self._add(NeededObject(manifest_record_key(*where), None))
        prefix = backup_prefix(*where)
        for path, version_id, etag in files:
            self._add(NeededObject(prefix + path, version_id, etag))

    def add_manifest(self, manifest: StoredManifest) -> None:
        """A snapshot's manifest and the record of its version; its content goes by `add_content`, entry by entry."""
        locked = parse_time(manifest.locked_until) if manifest.locked_until else None
        where = (Component.S3, manifest.bucket, manifest.backup_id)
        self._add(NeededObject(manifest_key(*where), manifest.version_id, None, locked))
        if manifest.version_id is not None:  # a manifest of the previous format has no record
            # The record is written after the manifest: its lock lasts at least as long.
            self._add(NeededObject(manifest_record_key(*where), None, None, locked))

    def add_content(self, entry: ManifestEntry) -> None:
        """The content object a kept snapshot's entry names, if its body is stored."""
        if entry.content_key:
            until = parse_time(entry.content_locked_until) if entry.content_locked_until else None
            self._add(NeededObject(entry.content_key, entry.content_version_id, entry.content_etag, until))

    def _add(self, needed: NeededObject) -> None:
        known = self.objects.get(needed.identity)
        self.objects[needed.identity] = known.merged(needed) if known else needed


@dataclass(frozen=True)
class _Indexed:
    key: str
    version_id: str | None
    etag: str | None
    until: datetime

    def describes(self, needed: NeededObject) -> bool:
        if needed.version_id is not None:
            return self.version_id == needed.version_id
        return needed.etag is None or self.etag == needed.etag


@dataclass
class LockExtension:
    needed: int = 0  # objects the kept backups need
    locked_ahead: int = 0  # known, without a request, to stay locked past the horizon
    looked_at: int = 0  # a HeadObject each
    extended: int = 0  # a PutObjectRetention each
    missing: list[str] = field(default_factory=list)  # needed, and not there (at most REPORTED_MISSING named)
    refused: dict[str, str] = field(default_factory=dict)  # needed, S3 refused to show or extend its lock: key -> why
    unfinished: int = 0  # left for the next run (out of time)
    index: str | None = None  # the index this run wrote
    indexes_hidden: int = 0


class LockExtender:
    """Extends the Object Lock retention of objects in `store` by `policy`, `concurrency` at a time."""

    def __init__(self, store: BackupStore, policy: LockPolicy, *, concurrency: int = 16,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._policy = policy
        self._concurrency = concurrency
        self._sleep = sleep

    def extend(self, needed: Iterable[NeededObject], now: datetime,
               remaining_ms: Callable[[], int]) -> LockExtension:
        index_keys, indexed = self._read_index()
        horizon = now + self._policy.horizon
        kept: list[_Indexed] = []
        due: list[NeededObject] = []
        result = LockExtension()
        for wanted in needed:
            result.needed += 1
            entry = next((entry for entry in indexed.get(wanted.key, ()) if entry.describes(wanted)), None)
            if entry is not None:
                kept.append(entry)
            known = [until for until in (wanted.locked_until, entry.until if entry else None) if until is not None]
            if known and max(known) >= horizon:
                result.locked_ahead += 1
            else:
                due.append(wanted)
        changed = False
        with ThreadPoolExecutor(self._concurrency) as pool:
            for start in range(0, len(due), BATCH):
                if remaining_ms() < SAFETY_MARGIN_MS:
                    result.unfinished = len(due) - start
                    break
                batch = due[start:start + BATCH]
                for wanted, locked in zip(batch, pool.map(lambda one: self._lock(one, now), batch), strict=True):
                    result.looked_at += 1
                    if isinstance(locked, str):
                        if len(result.refused) < REPORTED_MISSING:
                            result.refused[wanted.key] = locked
                        continue
                    if locked is None:
                        if len(result.missing) < REPORTED_MISSING:
                            result.missing.append(wanted.key)
                        continue
                    entry, extended = locked
                    result.extended += extended
                    kept.append(entry)
                    changed = True
        if changed:
            result.index = self._write_index(kept, now)
            result.indexes_hidden = self._hide(index_keys)
        if result.missing:
            logger.warning("objects kept backups need are missing", extra={"missing": result.missing[:10]})
        if result.refused:
            logger.warning("S3 refused to extend locks kept backups need",
                           extra={"refused": dict(list(result.refused.items())[:10])})
        logger.info("locks extended", extra={"needed": result.needed, "locked_ahead": result.locked_ahead,
                                             "looked_at": result.looked_at, "extended": result.extended,
                                             "unfinished": result.unfinished})
        return result

    # One object ---------------------------------------------------------------------------------

    def _lock(self, wanted: NeededObject, now: datetime) -> tuple[_Indexed, bool] | str | None:
        """The object's lock as S3 holds it, extended past the horizon if it ends before; None if it is gone, or S3's
        error code if it refused to show or extend the lock (reported; the next run tries again)."""
        request: HeadObjectRequestTypeDef = {"Bucket": self._store.bucket, "Key": wanted.key}
        if wanted.version_id is not None:
            request["VersionId"] = wanted.version_id
        elif wanted.etag is not None:
            request["IfMatch"] = wanted.etag
        try:
            head = retrying(lambda: self._store.s3.head_object(**request), sleep=self._sleep)
        except ClientError as error:
            if error_code(error) in SOURCE_CHANGED:
                return None
            return f"HeadObject: {error_code(error)}"
        version_id = wanted.version_id or readable_version(head.get("VersionId"))
        # The stubs type every answer field as present; S3 leaves out the date of an object without retention.
        held: datetime | None = head.get("ObjectLockRetainUntilDate")
        if held is not None and held >= now + self._policy.horizon:
            return _Indexed(wanted.key, version_id, head.get("ETag"), held), False
        until = max(held or now, self._policy.extend_to(now))  # only ever later
        # COMPLIANCE is never weakened to GOVERNANCE (S3 would refuse it too).
        mode: ObjectLockMode = "COMPLIANCE" if head.get("ObjectLockMode") == "COMPLIANCE" else self._policy.mode
        extension: PutObjectRetentionRequestTypeDef = {
            "Bucket": self._store.bucket, "Key": wanted.key, "Retention": {"Mode": mode, "RetainUntilDate": until}}
        if version_id is not None:
            extension["VersionId"] = version_id
        try:
            retrying(lambda: self._store.s3.put_object_retention(**extension), sleep=self._sleep)
        except ClientError as error:
            return f"PutObjectRetention: {error_code(error)}"
        return _Indexed(wanted.key, version_id, head.get("ETag"), until), True

    # The index ----------------------------------------------------------------------------------

    def _read_index(self) -> tuple[list[str], dict[str, list[_Indexed]]]:
        """The index keys there are, and the newest index's entries by key (written last: run ids sort by time)."""
        keys = sorted(entry["Key"] for entry in self._store.keys(LOCKS_PREFIX))
        indexed: dict[str, list[_Indexed]] = {}
        if keys:
            documents = read_gzip_json_lines(self._store.get_bytes(keys[-1]))
            next(documents)  # the header
            for entry in documents:
                indexed.setdefault(entry["key"], []).append(
                    _Indexed(entry["key"], entry["version_id"], entry["etag"], parse_time(entry["until"])))
        return keys, indexed

    def _write_index(self, kept: Iterable[_Indexed], now: datetime) -> str:
        key = f"{LOCKS_PREFIX}{new_backup_id(now)}.json.gz"
        unique = {(entry.key, entry.version_id): entry for entry in kept if entry.until > now}
        header = {"format": INDEX_FORMAT, "written_at": to_iso(now), "objects": len(unique)}
        lines = ({"key": entry.key, "version_id": entry.version_id, "etag": entry.etag, "until": to_iso(entry.until)}
                 for _, entry in sorted(unique.items(), key=lambda item: (item[0][0], item[0][1] or "")))
        self._store.put_once(key, gzip_json_lines(itertools.chain([header], lines)), "application/gzip")
        return key

    def _hide(self, keys: Iterable[str]) -> int:
        """Hide the indexes this run's replaces (its own bookkeeping, no backup: their lock does not matter)."""
        objects: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys]
        for start in range(0, len(objects), 1000):
            self._store.s3.delete_objects(Bucket=self._store.bucket,
                                          Delete={"Objects": objects[start:start + 1000], "Quiet": True})
        return len(objects)
