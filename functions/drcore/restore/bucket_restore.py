"""Point-in-time restore of a bucket from its snapshots (and its own object versions), planned, undoable.

A restore is two steps. `plan` compares the desired state with the target bucket's current state and
says what would change; `apply` makes exactly those changes, and `verify` checks the result.

**Desired state.** The entries of a complete snapshot's manifest under `prefix` (`source: snapshot`).
With `at` instead of a snapshot id, the newest complete snapshot not after `at` is the base; on a
bucket whose versioning is Enabled, the versions and delete markers listed by ListObjectVersions then
say which version of each key was current at `at` (`source: versions`), reaching moments between
snapshots. Versions are used only when the history since the snapshot is complete: versioning Enabled
and no lifecycle rule that can have expired a noncurrent version since the snapshot started.

**By content, never by size and time.** A target object matches its desired entry when it is the same
version of the same bucket, or has the same ETag and size, or (same size, different ETag) the same
full-object SHA-256 checksum (one HeadObject), or is a version this plan's apply wrote for that key.
The last rule is what recognises restored objects whose ETag is not the original's: an SSE-KMS ETag
is not a digest of the body, and a multipart original gets a new ETag when it is copied back.

**Plan.** Counts (to copy, of which missing and changed; to remove; unchanged; archived; bytes), the
first `LISTED_KEYS` keys of each kind, the target's fingerprint (a SHA-256 over key, version id and
ETag of every current version under the prefix) and a digest of the desired state. The plan is JSON
(`to_dict`/`from_dict`) small enough for a DynamoDB item; when a list is longer than `LISTED_KEYS`,
the full lists are written once to `restores/s3/<target>/<plan id>/changes.json.gz` in the backup
store (`changes_key`). Apply does not need them: it recomputes the changes from the same two states.

**Apply.** First a safety snapshot of the whole target bucket (continued by id over invocations); its
manifest is the target's state before the restore, so apply refuses (`TargetChanged`) when the
fingerprint of that state differs from the plan's: the world changed since the plan. Then it lists
the target, recomputes what still differs and changes only that: copies (CopyObject, or UploadPartCopy
over `multipart_threshold`) from the backup store's content, or from the data bucket's own version,
concurrently, retrying throttling with backoff; removals as DeleteObject without a version id (delete
markers, in a bucket whose versioning is Enabled; never a version deleted). After each batch it
records the versions it wrote in `restores/s3/<target>/<plan id>/applied/` (write-once). Called again
with the same plan and safety snapshot id, an interrupted apply does only what is still missing.
Undo: plan a restore of the target from the safety snapshot id.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.state.backup_store import AlreadyWritten, BackupStore, Component, backup_prefix, backup_time
from drcore.backup.bucket_snapshots import (
    BucketSnapshotter,
    ManifestEntry,
    SnapshotManifest,
    list_snapshots,
    read_manifest,
)
from drcore.core.errors import ConcurrentUpdate, DrError, InvalidRequest
from drcore.core.models import Clock, parse_time, to_iso, utc_now

logger = Logger(child=True)

PLAN_FORMAT = "s3-restore-plan/1"
RESTORE_ROOT = "restores/s3/"
LISTED_KEYS = 50  # keys of each kind named in the plan itself (a DynamoDB item stays small); all in its changes object
REPORTED_KEYS = 100  # keys of each kind named in a verification
BATCH_SIZE = 512  # changes between two restore records and two looks at the remaining time
# Stop starting batches with less than this left: a batch of copies and its record must fit.
SAFETY_MARGIN_MS = 30_000
THROTTLING_CODES = frozenset({"SlowDown", "ThrottlingException", "Throttling", "RequestLimitExceeded",
                              "ServiceUnavailable", "503"})
NOT_FOUND = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NotFound"})
ARCHIVE_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})  # need an S3 restore before any read
MAX_ATTEMPTS = 7
BASE_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
MIN_PART_SIZE = 5 * 1024**2
MAX_PARTS = 10_000


class RestoreRefused(InvalidRequest):
    """The restore would have to do something a restore never does (remove without a delete marker)."""


class NoRestorePoint(InvalidRequest):
    """No complete snapshot of the bucket at or before the moment asked for."""


class TargetChanged(ConcurrentUpdate):
    """The target bucket is no longer in the state the plan was made against: plan again."""


class DesiredStateChanged(ConcurrentUpdate):
    """The state the plan restores can no longer be rebuilt as planned (versions expired): plan again."""


class RestoreSourceMissing(DrError):
    """A version the restore copies from no longer exists."""


@dataclass(frozen=True)
class RestorePlan:
    plan_id: str
    created_at: str
    source_bucket: str  # whose snapshots (and versions) give the desired state
    target_bucket: str
    prefix: str
    source: str  # "snapshot" | "versions": where the desired state comes from
    snapshot_id: str  # the snapshot restored, or the base the versions at `at` build on
    at: str | None  # the moment asked for (clamped to the plan's time); None when a snapshot id was given
    target_versioning: str  # "Enabled" | "Suspended" | "Disabled" when planned
    objects_desired: int
    to_copy: int  # missing + changed
    missing: int  # desired keys absent from the target
    changed: int  # desired keys present with other content
    to_remove: int  # keys under the prefix that the desired state does not have (delete markers)
    unchanged: int
    archived: int  # differing desired objects in an archive storage class: need an S3 restore first
    bytes_to_copy: int
    from_versions: int  # desired keys whose state comes from versions newer than the snapshot
    copy_keys: tuple[str, ...]  # the first LISTED_KEYS of each list; all of them in `changes_key`
    remove_keys: tuple[str, ...]
    archived_keys: tuple[str, ...]
    changes_key: str | None  # backup-store key of the full lists when one is longer than LISTED_KEYS
    fingerprint: str  # the target's state under the prefix when planned
    desired_digest: str
    notes: tuple[str, ...] = ()
    format: str = PLAN_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RestorePlan:
        if document.get("format") != PLAN_FORMAT:
            raise InvalidRequest(f"not a {PLAN_FORMAT} restore plan (format {document.get('format')!r})")
        values = {item.name: document[item.name] for item in fields(cls) if item.name in document}
        for name in ("copy_keys", "remove_keys", "archived_keys", "notes"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


@dataclass(frozen=True)
class Verification:
    objects_expected: int
    objects_matching: int
    mismatched: int  # desired keys absent from the target or holding other content
    unexpected: int  # keys under the prefix the desired state does not have
    mismatched_keys: tuple[str, ...] = ()  # the first REPORTED_KEYS of each
    unexpected_keys: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.unexpected == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class RestoreProgress:
    plan_id: str
    finished: bool  # False: call apply again with the same plan and `safety_snapshot_id`
    safety_snapshot_id: str | None  # undo: restore the target bucket from this snapshot (None: not begun yet)
    copied: int  # by this invocation
    removed: int
    bytes_copied: int
    verification: Verification | None  # when finished

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["verification"] = self.verification.to_dict() if self.verification else None
        return document


@dataclass(frozen=True)
class _Listed:
    """One version or delete marker as ListObjectVersions lists it."""

    key: str
    version_id: str
    etag: str
    size: int
    last_modified: datetime
    storage_class: str
    is_latest: bool
    delete_marker: bool
    checksum_algorithm: str | None = None


@dataclass(frozen=True)
class _Desired:
    """What a key should hold, and where its content is copied from."""

    key: str
    version_id: str
    etag: str
    size: int
    home_bucket: str  # the bucket whose version this is
    from_store: bool  # True: the backup store's `content_key`; False: `home_bucket`'s version
    content_key: str | None
    archived: bool
    checksum: dict[str, str] | None = None
    checksum_algorithm: str | None = None  # of a listed version (the listing has no checksum values)
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: str | None = None  # of a snapshot's entry

    @classmethod
    def of_entry(cls, bucket: str, entry: ManifestEntry) -> _Desired:
        return cls(key=entry.key, version_id=entry.version_id, etag=entry.etag, size=entry.size, home_bucket=bucket,
                   from_store=True, content_key=entry.content_key, archived=entry.archived or not entry.content_key,
                   checksum=entry.checksum, content_type=entry.content_type, metadata=dict(entry.metadata),
                   last_modified=entry.last_modified)

    @classmethod
    def of_version(cls, bucket: str, version: _Listed) -> _Desired:
        return cls(key=version.key, version_id=version.version_id, etag=version.etag, size=version.size,
                   home_bucket=bucket, from_store=False, content_key=None,
                   archived=version.storage_class in ARCHIVE_STORAGE_CLASSES,
                   checksum_algorithm=version.checksum_algorithm)

    def identity(self) -> list[Any]:
        return [self.key, self.home_bucket, self.from_store, self.version_id, self.etag, self.size, self.content_key]


@dataclass
class _Diff:
    copy: list[_Desired] = field(default_factory=list)
    missing: int = 0
    changed: int = 0
    remove: list[str] = field(default_factory=list)
    unchanged: int = 0
    archived: list[str] = field(default_factory=list)

    @property
    def mismatched(self) -> list[str]:
        return sorted([entry.key for entry in self.copy] + self.archived)


Written = dict[str, set[tuple[str, str]]]  # key -> {(version id, ETag)} that an apply of the plan wrote


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _throttled(error: ClientError) -> bool:
    return _code(error) in THROTTLING_CODES or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 503


def _digest(rows: Iterable[list[Any]]) -> str:
    digest = hashlib.sha256()
    for row in sorted(json.dumps(row, separators=(",", ":")) for row in rows):
        digest.update(row.encode() + b"\n")
    return digest.hexdigest()


def state_fingerprint(objects: Iterable[tuple[str, str, str]]) -> str:
    """A hash of a bucket's state: (key, version id, ETag) of every current version, in any order."""
    return _digest([list(row) for row in objects])


def _full_sha256(checksum: dict[str, str] | None) -> str | None:
    """The base64 SHA-256 of the whole body, when S3 holds one (a composite checksum is not)."""
    if checksum and checksum["algorithm"] == "SHA256" and "-" not in checksum["value"] \
            and checksum.get("type", "FULL_OBJECT") == "FULL_OBJECT":
        return checksum["value"]
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sample(keys: Iterable[str], count: int) -> tuple[str, ...]:
    return tuple(sorted(keys)[:count])


class BucketRestorer:
    """Plans, applies and verifies restores of buckets from their snapshots in `store`.

    `s3_client` lists and writes the target, reads the data bucket's versions and the backup store's
    content (copies are requests to the target made with it); give it `max_pool_connections` of at
    least `concurrency`. `snapshots_of(bucket)` builds the snapshotter that takes safety snapshots.
    """

    def __init__(
        self,
        s3_client: Any,
        store: BackupStore,
        *,
        snapshots_of: Callable[[str], BucketSnapshotter],
        concurrency: int = 16,
        clock: Clock = utc_now,
        multipart_threshold: int = 5 * 1024**3,
        part_size: int = 512 * 1024**2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's smallest part)")
        self._s3 = s3_client
        self._store = store
        self._snapshots_of = snapshots_of
        self._concurrency = concurrency
        self._clock = clock
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._sleep = sleep
        self._manifests: dict[tuple[str, str], SnapshotManifest] = {}  # complete manifests never change

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, *, source_bucket: str, snapshot_id: str | None = None, at: datetime | None = None,
             prefix: str = "", target_bucket: str | None = None) -> RestorePlan:
        if (snapshot_id is None) == (at is None):
            raise InvalidRequest("give exactly one of snapshot_id or at")
        target = target_bucket or source_bucket
        now = self._clock()
        plan_id = f"rp-{secrets.token_hex(5)}"
        listings: dict[str, list[_Listed]] = {}

        def listing(bucket: str) -> list[_Listed]:  # the source's history doubles as the target's state
            if bucket not in listings:
                listings[bucket] = self._list_versions(bucket, prefix)
            return listings[bucket]

        notes: list[str] = []
        moment: datetime | None = None
        if snapshot_id is not None:
            manifest = self._manifest(source_bucket, snapshot_id)
            desired, source, from_versions = self._from_snapshot(manifest, prefix), "snapshot", 0
        else:
            moment = _aware(at)  # type: ignore[arg-type]
            if moment > now:
                notes.append(f"at {to_iso(moment)} is in the future: restoring to the plan's time")
                moment = now
            manifest = self._manifest(source_bucket, self._snapshot_at(source_bucket, moment))
            desired, from_versions, note = self._state_at(source_bucket, manifest, moment, prefix, now, listing)
            source = "versions" if from_versions else "snapshot"
            notes += [note] if note else []
        versioning = self._versioning(target)
        current = self._current(listing(target))
        with ThreadPoolExecutor(self._concurrency) as pool:
            diff = self._diff(desired, current, target, {}, pool)
        if diff.remove and versioning != "Enabled":
            raise RestoreRefused(
                f"restoring s3://{target}/{prefix} would remove {len(diff.remove)} objects (such as "
                f"{', '.join(diff.remove[:3])}) but the bucket's versioning is {versioning}: a restore removes objects "
                "only as delete markers. Enable versioning on the bucket, or restore into another bucket.")
        changes_key = None
        if max(len(diff.copy), len(diff.remove), len(diff.archived)) > LISTED_KEYS:
            changes_key = f"{RESTORE_ROOT}{target}/{plan_id}/changes.json.gz"
            lists = {"copy": sorted(entry.key for entry in diff.copy), "remove": diff.remove, "archived": diff.archived}
            self._store.put_once(changes_key, gzip.compress(json.dumps(lists).encode(), mtime=0), "application/json",
                                 ContentEncoding="gzip")
        plan = RestorePlan(
            plan_id=plan_id, created_at=to_iso(now), source_bucket=source_bucket, target_bucket=target, prefix=prefix,
            source=source, snapshot_id=manifest.backup_id, at=to_iso(moment) if moment else None,
            target_versioning=versioning, objects_desired=len(desired), to_copy=len(diff.copy), missing=diff.missing,
            changed=diff.changed, to_remove=len(diff.remove), unchanged=diff.unchanged, archived=len(diff.archived),
            bytes_to_copy=sum(entry.size for entry in diff.copy), from_versions=from_versions,
            copy_keys=_sample((entry.key for entry in diff.copy), LISTED_KEYS),
            remove_keys=_sample(diff.remove, LISTED_KEYS), archived_keys=_sample(diff.archived, LISTED_KEYS),
            changes_key=changes_key, fingerprint=self._fingerprint_of(current),
            desired_digest=_digest(item.identity() for item in desired.values()), notes=tuple(notes),
        )
        logger.info("restore planned", extra={"plan_id": plan_id, "source": source, "snapshot_id": plan.snapshot_id,
                                              "target": target, "prefix": prefix, "to_copy": plan.to_copy,
                                              "to_remove": plan.to_remove, "unchanged": plan.unchanged,
                                              "archived": plan.archived, "bytes_to_copy": plan.bytes_to_copy})
        return plan

    def fingerprint(self, plan: RestorePlan) -> str:
        """The target's current fingerprint under the plan's prefix; differs from `plan.fingerprint`
        when the world changed since the plan."""
        return self._fingerprint_of(self._current(self._list_versions(plan.target_bucket, plan.prefix)))

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: RestorePlan, remaining_ms: Callable[[], int], *,
              safety_snapshot_id: str | None = None) -> RestoreProgress:
        desired = self._desired(plan)
        if plan.to_remove:
            self._require_versioning(plan)  # before a safety snapshot that could only be wasted
        if safety_snapshot_id is not None:
            self._require_snapshot_started(plan.target_bucket, safety_snapshot_id)
        safety = self._snapshots_of(plan.target_bucket).snapshot(safety_snapshot_id, remaining_ms)
        if not safety.finished:
            # A snapshot that wrote no checkpoint yet cannot be continued by id: the next call starts one.
            started = next(iter(self._store.keys(backup_prefix(Component.S3, plan.target_bucket, safety.backup_id))), None)
            logger.info("restore waits for its safety snapshot", extra={"plan_id": plan.plan_id,
                                                                        "safety_snapshot_id": safety.backup_id})
            return RestoreProgress(plan.plan_id, False, safety.backup_id if started else None, 0, 0, 0, None)
        self._require_unchanged_since_plan(plan, safety.backup_id)
        written = self._written(plan)
        copied = removed = bytes_copied = 0
        with ThreadPoolExecutor(self._concurrency) as pool:
            diff = self._diff(desired, self._current(self._list_versions(plan.target_bucket, plan.prefix)),
                              plan.target_bucket, written, pool)
            logger.info("restore applying", extra={"plan_id": plan.plan_id, "safety_snapshot_id": safety.backup_id,
                                                   "to_copy": len(diff.copy), "to_remove": len(diff.remove),
                                                   "already_done": diff.unchanged})
            # Every copy before the first removal: data comes back before anything goes.
            batches = [[("copy", entry) for entry in diff.copy[start:start + BATCH_SIZE]]
                       for start in range(0, len(diff.copy), BATCH_SIZE)]
            batches += [[("remove", key) for key in diff.remove[start:start + BATCH_SIZE]]
                        for start in range(0, len(diff.remove), BATCH_SIZE)]
            versioning_checked = False
            for batch in batches:
                if remaining_ms() < SAFETY_MARGIN_MS:
                    logger.info("restore paused", extra={"plan_id": plan.plan_id, "copied": copied, "removed": removed})
                    return RestoreProgress(plan.plan_id, False, safety.backup_id, copied, removed, bytes_copied, None)
                if not versioning_checked and batch[0][0] == "remove":
                    self._require_versioning(plan)  # checked again just before the first delete marker
                    versioning_checked = True
                done = self._apply_batch(plan, batch, written, pool)
                copied += sum(kind == "copy" for kind, _ in done)
                removed += sum(kind == "remove" for kind, _ in done)
                bytes_copied += sum(item.size for kind, item in done if kind == "copy")
            if remaining_ms() < SAFETY_MARGIN_MS:
                return RestoreProgress(plan.plan_id, False, safety.backup_id, copied, removed, bytes_copied, None)
            verification = self._verify(plan, desired, written, pool)
        logger.info("restore applied", extra={"plan_id": plan.plan_id, "safety_snapshot_id": safety.backup_id,
                                              "copied": copied, "removed": removed, "bytes_copied": bytes_copied,
                                              "objects_expected": verification.objects_expected,
                                              "objects_matching": verification.objects_matching,
                                              "unexpected": verification.unexpected})
        return RestoreProgress(plan.plan_id, True, safety.backup_id, copied, removed, bytes_copied, verification)

    def verify(self, plan: RestorePlan) -> Verification:
        """Every desired key checked against the target by content; extra keys under the prefix reported."""
        with ThreadPoolExecutor(self._concurrency) as pool:
            return self._verify(plan, self._desired(plan), self._written(plan), pool)

    # Desired state -------------------------------------------------------------------------------

    def _manifest(self, bucket: str, snapshot_id: str) -> SnapshotManifest:
        if (bucket, snapshot_id) not in self._manifests:
            self._manifests[(bucket, snapshot_id)] = read_manifest(self._store, bucket, snapshot_id)
        return self._manifests[(bucket, snapshot_id)]

    def _snapshot_at(self, bucket: str, moment: datetime) -> str:
        """The newest complete snapshot started at or before `moment` (an unfinished one is never listed)."""
        complete = list_snapshots(self._store, bucket)
        eligible = [listing for listing in complete if listing.created_at <= moment]
        if eligible:
            return eligible[-1].backup_id
        if complete:
            oldest = complete[0]
            raise NoRestorePoint(f"no complete snapshot of {bucket} at or before {to_iso(moment)}; the oldest is "
                                 f"{oldest.backup_id} ({to_iso(oldest.created_at)})")
        raise NoRestorePoint(f"bucket {bucket} has no complete snapshot to restore from")

    @staticmethod
    def _from_snapshot(manifest: SnapshotManifest, prefix: str) -> dict[str, _Desired]:
        return {entry.key: _Desired.of_entry(manifest.bucket, entry) for entry in manifest.objects
                if entry.key.startswith(prefix)}

    def _state_at(self, bucket: str, manifest: SnapshotManifest, moment: datetime, prefix: str, now: datetime,
                  listing: Callable[[str], list[_Listed]]) -> tuple[dict[str, _Desired], int, str | None]:
        """The state at `moment`: the snapshot's, with each key's latest version or delete marker up to
        `moment` from the bucket's history where that is newer. Returns it, how many keys the history
        changed, and why the history was not used if it was not."""
        snapshot = self._from_snapshot(manifest, prefix)
        started = backup_time(manifest.backup_id)
        if moment <= started:
            return snapshot, 0, None
        unusable = self._history_unusable(bucket, started, now)
        if unusable:
            return snapshot, 0, f"object versions not used ({unusable}): the state is snapshot {manifest.backup_id}'s"
        latest_at: dict[str, _Listed] = {}
        for item in listing(bucket):
            if item.last_modified > moment:
                continue
            seen = latest_at.get(item.key)
            # Listing times have one-second resolution: on a tie the listing's IsLatest decides, then a
            # version wins over a delete marker (restoring data, never hiding it, when in doubt).
            if seen is None or ((item.last_modified, item.is_latest, not item.delete_marker)
                                > (seen.last_modified, seen.is_latest, not seen.delete_marker)):
                latest_at[item.key] = item
        state: dict[str, _Desired] = {}
        for key in snapshot.keys() | latest_at.keys():
            version, entry = latest_at.get(key), snapshot.get(key)
            if version is None:
                # No history up to `moment` (versions removed by hand, or written before versioning):
                # the snapshot's entry stands if it existed by then.
                if entry and entry.last_modified and parse_time(entry.last_modified) <= moment:
                    state[key] = entry
            elif not version.delete_marker:
                same = entry and entry.version_id == version.version_id and entry.etag == version.etag
                state[key] = entry if same else _Desired.of_version(bucket, version)  # type: ignore[assignment]
        changed = sum(1 for key in snapshot.keys() | state.keys()
                      if (snapshot.get(key) and snapshot[key].identity()) != (state.get(key) and state[key].identity()))
        if not changed:
            return snapshot, 0, None
        return state, changed, None

    def _history_unusable(self, bucket: str, since: datetime, now: datetime) -> str | None:
        """Why the bucket's version history since `since` may be incomplete, or None if it is complete."""
        try:
            versioning = self._s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        except ClientError as error:
            return f"versioning of {bucket} unreadable: {_code(error)}"
        if versioning != "Enabled":
            return f"versioning of {bucket} is {versioning}"
        try:
            rules = self._s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as error:
            if _code(error) != "NoSuchLifecycleConfiguration":
                return f"lifecycle of {bucket} unreadable: {_code(error)}"
            rules = []
        for rule in rules:
            expiry = rule.get("NoncurrentVersionExpiration")
            if rule.get("Status") == "Enabled" and expiry \
                    and now - since >= timedelta(days=expiry.get("NoncurrentDays", 0)):
                return f"lifecycle rule {rule.get('ID', '')!r} expires noncurrent versions"
        return None

    def _desired(self, plan: RestorePlan) -> dict[str, _Desired]:
        manifest = self._manifest(plan.source_bucket, plan.snapshot_id)
        if plan.source == "versions":
            assert plan.at is not None
            history = self._list_versions(plan.source_bucket, plan.prefix)
            desired, _, unusable = self._state_at(plan.source_bucket, manifest, parse_time(plan.at), plan.prefix,
                                                  self._clock(), lambda _: history)
            if unusable:
                raise DesiredStateChanged(f"plan {plan.plan_id} restores object versions that can no longer be "
                                          f"relied on ({unusable}); plan again")
        else:
            desired = self._from_snapshot(manifest, plan.prefix)
        if _digest(item.identity() for item in desired.values()) != plan.desired_digest:
            raise DesiredStateChanged(f"the state plan {plan.plan_id} restores has changed since it was planned "
                                      "(versions removed or expired); plan again")
        return desired

    # Current state and comparison ----------------------------------------------------------------

    def _list_versions(self, bucket: str, prefix: str) -> list[_Listed]:
        items: list[_Listed] = []
        for page in self._s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                algorithms = version.get("ChecksumAlgorithm") or [None]
                items.append(_Listed(version["Key"], version["VersionId"], version["ETag"], version["Size"],
                                     version["LastModified"], version.get("StorageClass", "STANDARD"),
                                     version["IsLatest"], False, algorithms[0]))
            for marker in page.get("DeleteMarkers", []):
                items.append(_Listed(marker["Key"], marker["VersionId"], "", 0, marker["LastModified"], "",
                                     marker["IsLatest"], True))
        return items

    @staticmethod
    def _current(listing: list[_Listed]) -> dict[str, _Listed]:
        return {item.key: item for item in listing if item.is_latest and not item.delete_marker}

    @staticmethod
    def _fingerprint_of(current: dict[str, _Listed]) -> str:
        return state_fingerprint((item.key, item.version_id, item.etag) for item in current.values())

    def _versioning(self, bucket: str) -> str:
        try:
            return self._s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        except ClientError as error:
            if _code(error) == "NoSuchBucket":
                raise InvalidRequest(f"bucket {bucket} does not exist; create a restore target first") from error
            raise

    def _require_versioning(self, plan: RestorePlan) -> None:
        versioning = self._versioning(plan.target_bucket)
        if versioning != "Enabled":
            raise RestoreRefused(f"plan {plan.plan_id} removes objects from s3://{plan.target_bucket} but its "
                                 f"versioning is now {versioning}: a restore removes objects only as delete markers")

    def _require_snapshot_started(self, bucket: str, snapshot_id: str) -> None:
        """A snapshot is continued by id only if it exists: an unknown id would start a new snapshot of the
        present state under that id's (past) time, which `at` could later take for the past."""
        backup_time(snapshot_id)  # a malformed id fails here
        if next(iter(self._store.keys(backup_prefix(Component.S3, bucket, snapshot_id))), None) is None:
            raise InvalidRequest(f"no safety snapshot {snapshot_id} of bucket {bucket}: continue an apply with the "
                                 "safety_snapshot_id it returned, or start it without one")

    def _require_unchanged_since_plan(self, plan: RestorePlan, safety_snapshot_id: str) -> None:
        """The safety snapshot is the target's state before this restore changed anything: it must be the
        state the plan was made against. (A resumed apply checks the same immutable manifest again.)"""
        before = self._manifest(plan.target_bucket, safety_snapshot_id)
        state = state_fingerprint((entry.key, entry.version_id, entry.etag) for entry in before.objects
                                  if entry.key.startswith(plan.prefix))
        if state != plan.fingerprint:
            raise TargetChanged(f"s3://{plan.target_bucket}/{plan.prefix} changed since plan {plan.plan_id} was made "
                                f"(safety snapshot {safety_snapshot_id} differs from the planned state); plan again")

    def _diff(self, desired: dict[str, _Desired], current: dict[str, _Listed], target: str, written: Written,
              pool: ThreadPoolExecutor) -> _Diff:
        diff = _Diff()
        same_size: list[tuple[_Desired, _Listed]] = []
        for key, want in desired.items():
            have = current.get(key)
            if have is None:
                diff.missing += 1
                self._differs(diff, want)
            elif self._same_listed(want, have, target, written):
                diff.unchanged += 1
            elif want.size == have.size and _full_sha256(want.checksum):
                same_size.append((want, have))
            else:
                diff.changed += 1
                self._differs(diff, want)
        for (want, _), same in zip(same_size, pool.map(lambda pair: self._same_checksum(target, *pair), same_size)):
            if same:
                diff.unchanged += 1
            else:
                diff.changed += 1
                self._differs(diff, want)
        diff.remove = sorted(current.keys() - desired.keys())
        diff.archived.sort()
        return diff

    @staticmethod
    def _differs(diff: _Diff, want: _Desired) -> None:
        if want.archived:
            diff.archived.append(want.key)  # a copy would fail until the object is restored from archive
        else:
            diff.copy.append(want)

    @staticmethod
    def _same_listed(want: _Desired, have: _Listed, target: str, written: Written) -> bool:
        """Same content, decided from the listing: the same version of the same bucket, the same ETag and
        size, or a version this plan's apply wrote. A `null` version id alone proves nothing."""
        if want.home_bucket == target and want.version_id == have.version_id != "null":
            return True
        if want.etag == have.etag and want.size == have.size:
            return True
        return (have.version_id, have.etag) in written.get(have.key, ())

    def _same_checksum(self, target: str, want: _Desired, have: _Listed) -> bool:
        """Same size, other ETag (SSE-KMS, multipart): the full-object SHA-256 S3 holds decides."""
        address = {"Key": have.key} if have.version_id == "null" else {"Key": have.key, "VersionId": have.version_id}
        try:
            head = self._retrying(self._s3.head_object, Bucket=target, ChecksumMode="ENABLED", **address)
        except ClientError as error:
            if _code(error) in NOT_FOUND:
                return False
            raise
        held = {"algorithm": "SHA256", "value": head.get("ChecksumSHA256", ""),
                "type": head.get("ChecksumType", "FULL_OBJECT")}
        return _full_sha256(held) == _full_sha256(want.checksum)

    def _verify(self, plan: RestorePlan, desired: dict[str, _Desired], written: Written,
                pool: ThreadPoolExecutor) -> Verification:
        diff = self._diff(desired, self._current(self._list_versions(plan.target_bucket, plan.prefix)),
                          plan.target_bucket, written, pool)
        mismatched = diff.mismatched
        verification = Verification(
            objects_expected=len(desired), objects_matching=len(desired) - len(mismatched), mismatched=len(mismatched),
            unexpected=len(diff.remove), mismatched_keys=_sample(mismatched, REPORTED_KEYS),
            unexpected_keys=_sample(diff.remove, REPORTED_KEYS))
        if not verification.ok:
            logger.warning("restore verification found differences", extra={
                "plan_id": plan.plan_id, "mismatched": verification.mismatched, "unexpected": verification.unexpected,
                "mismatched_keys": list(verification.mismatched_keys[:10])})
        return verification

    # Changes -------------------------------------------------------------------------------------

    def _apply_batch(self, plan: RestorePlan, batch: list[tuple[str, Any]], written: Written,
                     pool: ThreadPoolExecutor) -> list[tuple[str, Any]]:
        """Run one batch concurrently; record the versions written even when some change failed."""
        target = plan.target_bucket

        def change(kind: str, item: Any) -> tuple[str, str] | None:
            return self._copy(target, item) if kind == "copy" else self._remove(target, item)

        futures: list[Future] = [pool.submit(change, kind, item) for kind, item in batch]
        wait(futures)
        done: list[tuple[str, Any]] = []
        records: list[list[str]] = []
        failure: BaseException | None = None
        for (kind, item), future in zip(batch, futures):
            if future.exception() is not None:
                failure = failure or future.exception()
                continue
            result = future.result()
            if kind == "copy" and result is None:
                continue  # archived at the source after all: left for the verification to report
            done.append((kind, item))
            if kind == "copy":
                records.append([item.key, *result])
                written.setdefault(item.key, set()).add(result)
        if records:
            self._record_written(plan, records)
        if failure is not None:
            raise failure
        return done

    def _copy(self, target: str, want: _Desired) -> tuple[str, str] | None:
        """Copy `want`'s content to its key in `target`; the (version id, ETag) written, or None when the
        source turns out to be archived."""
        if want.from_store:
            source = {"Bucket": self._store.bucket, "Key": want.content_key}
            # The manifest's content type and user metadata, not the stored body's (shared by every key
            # with that content); no tags, which the manifest does not record.
            headers: dict[str, Any] = {"MetadataDirective": "REPLACE", "Metadata": want.metadata,
                                       "TaggingDirective": "REPLACE"}
            if want.content_type:
                headers["ContentType"] = want.content_type
            whole = want.checksum and want.checksum.get("type") != "COMPOSITE"
            algorithm = want.checksum["algorithm"] if whole else None  # type: ignore[index]
        else:
            # A version id pins the source (a `null` one too, with its ETag); its own metadata comes along.
            source = {"Bucket": want.home_bucket, "Key": want.key, "VersionId": want.version_id}
            headers = {"CopySourceIfMatch": want.etag}
            algorithm = want.checksum_algorithm
        try:
            if want.size > self._multipart_threshold:
                response = self._copy_in_parts(target, want, source, headers)
            else:
                extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
                response = self._retrying(self._s3.copy_object, Bucket=target, Key=want.key, CopySource=source,
                                          **headers, **extra)
                response = {**response, "ETag": response["CopyObjectResult"]["ETag"]}
        except ClientError as error:
            if _code(error) == "InvalidObjectState":
                logger.warning("restore source is archived; not copied", extra={"key": want.key})
                return None
            if _code(error) in NOT_FOUND | {"PreconditionFailed", "412"}:
                raise RestoreSourceMissing(f"the content of {want.key} ({source}) is no longer there") from error
            raise
        return response.get("VersionId", "null"), response["ETag"]

    def _copy_in_parts(self, target: str, want: _Desired, source: dict[str, Any],
                       headers: dict[str, Any]) -> dict[str, Any]:
        """CopyObject stops at 5 GB: above the threshold, UploadPartCopy of ranges, concurrently."""
        if want.from_store:
            described = {"Metadata": want.metadata, **({"ContentType": want.content_type} if want.content_type else {})}
        else:
            head = self._retrying(self._s3.head_object, Bucket=source["Bucket"], Key=source["Key"],
                                  VersionId=source["VersionId"], IfMatch=want.etag)
            described = {name: head[name] for name in ("ContentType", "Metadata", "ContentEncoding",
                                                       "ContentDisposition", "ContentLanguage", "CacheControl")
                          if head.get(name)}
        part_size = max(self._part_size, -(-want.size // MAX_PARTS))
        upload = self._retrying(self._s3.create_multipart_upload, Bucket=target, Key=want.key, **described)
        address = {"Bucket": target, "Key": want.key, "UploadId": upload["UploadId"]}
        condition = {"CopySourceIfMatch": headers["CopySourceIfMatch"]} if "CopySourceIfMatch" in headers else {}

        def copy_part(number_and_start: tuple[int, int]) -> dict[str, Any]:
            number, start = number_and_start
            last_byte = min(start + part_size, want.size) - 1
            part = self._retrying(self._s3.upload_part_copy, **address, PartNumber=number, CopySource=source,
                                  CopySourceRange=f"bytes={start}-{last_byte}", **condition)
            return {"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]}

        try:
            # A pool of its own: waiting on the batch's pool from inside one of its tasks could deadlock.
            with ThreadPoolExecutor(self._concurrency) as parts:
                uploaded = list(parts.map(copy_part, enumerate(range(0, want.size, part_size), start=1)))
            return self._retrying(self._s3.complete_multipart_upload, **address, MultipartUpload={"Parts": uploaded})
        except BaseException:
            try:
                self._s3.abort_multipart_upload(**address)
            except ClientError:
                logger.warning("could not abort a multipart copy", extra={"key": want.key})
            raise

    def _remove(self, target: str, key: str) -> tuple[str, str] | None:
        # No VersionId: in a bucket with versioning Enabled this only adds a delete marker; every
        # version stays, and the safety snapshot can bring the object back.
        response = self._retrying(self._s3.delete_object, Bucket=target, Key=key)
        if not response.get("DeleteMarker"):
            logger.warning("a removal did not answer with a delete marker", extra={"bucket": target, "key": key})
        return None

    def _retrying(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Retry S3 throttling (SlowDown, 503) with exponential backoff and full jitter, bounded."""
        attempt = 1
        while True:
            try:
                return call(*args, **kwargs)
            except ClientError as error:
                if attempt == MAX_ATTEMPTS or not _throttled(error):
                    raise
                self._sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** (attempt - 1))))
                attempt += 1

    # Restore records -----------------------------------------------------------------------------

    def _records_prefix(self, plan: RestorePlan) -> str:
        return f"{RESTORE_ROOT}{plan.target_bucket}/{plan.plan_id}/applied/"

    def _record_written(self, plan: RestorePlan, rows: list[list[str]]) -> None:
        key = f"{self._records_prefix(plan)}{to_iso(self._clock())}-{secrets.token_hex(4)}.json.gz"
        try:
            self._store.put_once(key, gzip.compress(json.dumps(rows).encode(), mtime=0), "application/json",
                                 ContentEncoding="gzip")
        except AlreadyWritten:  # a random name: only a retried request that did succeed gets here
            pass

    def _written(self, plan: RestorePlan) -> Written:
        written: Written = {}
        for entry in self._store.keys(self._records_prefix(plan)):
            for key, version_id, etag in json.loads(gzip.decompress(self._store.get_bytes(entry["Key"]))):
                written.setdefault(key, set()).add((version_id, etag))
        return written
