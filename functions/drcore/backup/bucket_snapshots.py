"""Point-in-time snapshots of the data bucket: incremental, deduplicated by content, resumable.

A snapshot lists the bucket's current versions (ListObjectVersions, `IsLatest`) page by page. Each
object's body is stored once per content under `content/<algorithm>/<digest>` in the backup store:

    content/sha256/<hex>                    S3 holds a full-object SHA-256 for the object (ChecksumSHA256)
    content/sha256-composite/<hex>-<parts>  S3 holds a composite (per-part) SHA-256 of a multipart upload
    content/etag/<etag>-<size>              otherwise: the ETag (without quotes) and the size in bytes

A full-object SHA-256 names the content exactly. The ETag of a single-part upload under SSE-S3 is the
body's MD5, so ETag + size names the content too (only a deliberate MD5 collision could fool it). The
ETag of a multipart upload, and a composite checksum, also depend on the part sizes: the same body
uploaded in other parts gets another key and is stored twice, never confused. Under SSE-KMS or SSE-C an
ETag is not a digest of the body: such objects are never wrongly shared, but identical bodies are not
deduplicated either.

A snapshot builds on the newest complete one before it (its base): an object listed as it is in the
base is carried over without a request, and the content the base references is known to be stored.
Other content is checked either by a HEAD per key or by one listing of the content prefix, whichever
costs less. Stored content is never copied again, so a snapshot of an unchanged bucket costs its
listing and its manifest. Objects in archive storage classes are recorded (`archived: true`), not copied.

After every listing page a checkpoint (`progress/<page>.json`, gzip-encoded JSON) records the listing
markers and that page's manifest entries, carried ones as references into the base; an invocation
given the snapshot's id continues after the last checkpoint, with the same base. The manifest
(`manifest.json.gz`: gzip-compressed JSON lines, a header line then one line per object) is written
last, with the SHA-256 of its stored bytes in its `x-amz-meta-sha256` metadata.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.state.backup_store import (
    AlreadyWritten,
    BackupListing,
    BackupStore,
    Component,
    backup_prefix,
    backup_time,
    content_key,
    manifest_key,
    new_backup_id,
)
from drcore.core.errors import ConcurrentUpdate, DrError
from drcore.core.models import Clock, to_iso, utc_now

logger = Logger(child=True)

MANIFEST_FORMAT = "s3-snapshot/1"
SHA256_METADATA = "sha256"  # x-amz-meta-sha256: hex SHA-256 of the manifest's stored (gzip) bytes
CONTENT_PREFIX = content_key("", "")[: -len("/")]  # "content/", the layout's content root
PAGE_CHECKPOINTS = "progress/"

# Stop starting pages with less than this left: a page of copies plus its checkpoint must fit.
SAFETY_MARGIN_MS = 60_000
# GLACIER_IR is served instantly and copies like STANDARD; these need a restore before any read.
ARCHIVE_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
INTELLIGENT_TIERING_ARCHIVE_TIERS = frozenset({"ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"})
CHECKSUM_ALGORITHMS = ("SHA256", "SHA1", "CRC64NVME", "CRC32C", "CRC32")
THROTTLING_CODES = frozenset({"SlowDown", "ThrottlingException", "Throttling", "RequestLimitExceeded",
                              "ServiceUnavailable", "503"})
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
SOURCE_CHANGED = frozenset({"404", "NoSuchKey", "NoSuchVersion", "412", "PreconditionFailed"})
MAX_ATTEMPTS = 7
BASE_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0
MIN_PART_SIZE = 5 * 1024**2  # S3's smallest part (except the last)
MAX_PARTS = 10_000
LISTING_PAGE = 1000  # keys per ListObjectsV2 page, to price a listing of the content prefix
# A LIST request is billed 12.5x a HEAD ($0.005 against $0.0004 per thousand) and takes longer than a
# concurrent batch of probes, so one listing page is worth this many probes.
PROBES_PER_LISTING_PAGE = 12
PAGE_ATTEMPTS = 3  # a page whose objects change while it is copied is listed again, this often
REPORTED_ARCHIVED_KEYS = 1000  # the stats name this many archived keys; the manifest has them all


class SnapshotNotFound(DrError):
    """No complete snapshot with this id: it never existed, was pruned, or has not finished."""


class ManifestCorrupt(DrError):
    """A manifest does not match the SHA-256 recorded when it was written, or cannot be read."""


class _SourceChanged(Exception):
    """A listed version vanished or changed before it was read: the page is listed again."""


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    version_id: str  # "null" for objects written while the bucket was unversioned
    etag: str  # as S3 returns it, quotes included
    size: int
    last_modified: str
    storage_class: str
    checksum: dict[str, str] | None  # {"algorithm", "value", "type"?} where S3 holds one
    content_type: str | None
    metadata: dict[str, str]
    content_key: str | None  # None when archived: the body is not in the backup store
    archived: bool = False

    def describes(self, version: dict[str, Any]) -> bool:
        """Whether this entry is the listed version; a `null` version id alone does not say so."""
        return (self.version_id == version["VersionId"] and self.etag == version["ETag"]
                and self.size == version["Size"] and self.last_modified == to_iso(version["LastModified"])
                and self.storage_class == version.get("StorageClass", "STANDARD"))

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))  # not asdict(): its deep copy costs more than the whole page's work

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ManifestEntry:
        return cls(**document)


@dataclass(frozen=True)
class SnapshotManifest:
    bucket: str
    backup_id: str
    started_at: str
    finished_at: str
    stats: dict[str, Any]
    objects: tuple[ManifestEntry, ...]

    def content_keys(self) -> set[str]:
        return {entry.content_key for entry in self.objects if entry.content_key}


@dataclass(frozen=True)
class SnapshotProgress:
    backup_id: str
    finished: bool
    stats: dict[str, Any]


@dataclass
class _Stats:
    objects_listed: int = 0
    objects_copied: int = 0  # bodies copied into the store by this snapshot
    objects_reused: int = 0  # objects whose body was already stored
    bytes_copied: int = 0
    bytes_listed: int = 0
    objects_archived: int = 0
    archived_not_copied: list[str] = field(default_factory=list)
    delete_markers: int = 0  # keys whose latest version is a delete marker: absent from the snapshot
    pages: int = 0
    metadata_reads: int = 0  # HeadObject calls for objects the base did not describe
    throttle_retries: int = 0

    def add(self, page: _Stats) -> None:
        for name, value in vars(page).items():
            if name == "archived_not_copied":
                room = REPORTED_ARCHIVED_KEYS - len(self.archived_not_copied)
                self.archived_not_copied += value[:max(room, 0)]
            else:
                setattr(self, name, getattr(self, name) + value)


def content_key_of(etag: str, size: int, checksum: dict[str, str] | None) -> str:
    if checksum and checksum["algorithm"] == "SHA256":
        encoded, _, parts = checksum["value"].partition("-")
        digest = base64.b64decode(encoded).hex()
        if parts or checksum.get("type") == "COMPOSITE":
            return content_key("sha256-composite", f"{digest}-{parts}" if parts else digest)
        return content_key("sha256", digest)
    unquoted = etag.strip('"')
    return content_key("etag", f"{unquoted}-{size}")


def _checksum(head: dict[str, Any]) -> dict[str, str] | None:
    for algorithm in CHECKSUM_ALGORITHMS:
        if head.get(f"Checksum{algorithm}"):
            checksum = {"algorithm": algorithm, "value": head[f"Checksum{algorithm}"]}
            if head.get("ChecksumType"):
                checksum["type"] = head["ChecksumType"]
            return checksum
    return None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _throttled(error: ClientError) -> bool:
    return _code(error) in THROTTLING_CODES or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 503


def _pinned(key: str, version_id: str) -> dict[str, str]:
    """Addresses one listed version. A `null` version is addressed by key (not every bucket accepts
    `versionId=null`) and pinned by the If-Match ETag that goes with it."""
    return {"Key": key} if version_id == "null" else {"Key": key, "VersionId": version_id}


def _checkpoint_key(source_bucket: str, backup_id: str, page: int) -> str:
    return backup_prefix(Component.S3, source_bucket, backup_id) + f"{PAGE_CHECKPOINTS}{page:06d}.json"


def _read_checkpoint(store: BackupStore, key: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(store.get_bytes(key)))


def _checkpoint_keys(store: BackupStore, bucket: str, backup_id: str) -> list[str]:
    prefix = backup_prefix(Component.S3, bucket, backup_id) + PAGE_CHECKPOINTS
    return sorted(entry["Key"] for entry in store.keys(prefix))


class _Base:
    """The complete snapshot a new one builds on. An object listed with the same version, ETag, size,
    time and storage class as in the base is carried over: no HeadObject, no copy. Checkpoints name
    carried entries by their position in the base, as runs `[first, count]`, so an incremental
    snapshot's checkpoints hold little more than its new entries."""

    def __init__(self, manifest: SnapshotManifest | None) -> None:
        self.backup_id = manifest.backup_id if manifest else None
        self._manifest = manifest
        self._entries = manifest.objects if manifest else ()
        self._positions = {(entry.key, entry.version_id): n for n, entry in enumerate(self._entries)}

    def content_keys(self) -> set[str]:
        return self._manifest.content_keys() if self._manifest else set()

    def position_of(self, version: dict[str, Any]) -> int | None:
        position = self._positions.get((version["Key"], version["VersionId"]))
        return position if position is not None and self._entries[position].describes(version) else None

    def entry(self, position: int) -> ManifestEntry:
        return self._entries[position]

    def encode(self, entries: list[ManifestEntry], positions: list[int | None]) -> list[Any]:
        encoded: list[Any] = []
        for entry, position in zip(entries, positions):
            if position is None:
                encoded.append(entry.to_json())
            elif encoded and isinstance(encoded[-1], list) and sum(encoded[-1]) == position:
                encoded[-1][1] += 1
            else:
                encoded.append([position, 1])
        return encoded

    def decode(self, encoded: list[Any]) -> list[ManifestEntry]:
        entries: list[ManifestEntry] = []
        for item in encoded:
            if isinstance(item, dict):
                entries.append(ManifestEntry.from_json(item))
            else:
                entries += self._entries[item[0]:item[0] + item[1]]
        return entries


def _next_markers(listing: dict[str, Any]) -> dict[str, str]:
    return {"KeyMarker": listing.get("NextKeyMarker", ""), "VersionIdMarker": listing.get("NextVersionIdMarker", "")}


@dataclass(frozen=True)
class _Ahead:
    """A listing page requested before it is needed, for the markers it continues from."""

    markers: dict[str, str]
    listing: Future[dict[str, Any]]


class _StoredContent:
    """Which content the backup store holds, found out as cheaply as it can be.

    A HEAD per unknown key costs one request each; a listing of the content prefix costs one LIST per
    thousand stored bodies. Keys are probed until the probes would have paid for the listing (a first
    snapshot lists at once; a snapshot with a few changes probes them), then the prefix is listed once
    and the listing answers every later question.
    """

    def __init__(self, store: BackupStore, known: set[str], probe: Callable[[str], bool]) -> None:
        self._store = store
        self._lock = threading.Lock()  # copies report what they stored from the pool's threads
        self._known = set(known)
        self._probe = probe
        self._listing_cost = PROBES_PER_LISTING_PAGE * max(1, -(-len(known) // LISTING_PAGE))
        self._probes = 0
        self._listed = False

    def missing(self, keys: set[str], pool: ThreadPoolExecutor) -> set[str]:
        unknown = sorted(keys - self._known)
        if not unknown:
            return set()
        if not self._listed and self._probes + len(unknown) > self._listing_cost:
            self._known |= {entry["Key"] for entry in self._store.keys(CONTENT_PREFIX)}
            self._listed = True
        if self._listed:
            return set(unknown) - self._known
        self._probes += len(unknown)
        found = {key for key, stored in zip(unknown, pool.map(self._probe, unknown)) if stored}
        self._known |= found
        return set(unknown) - found

    def add(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._known.update(keys)


class BucketSnapshotter:
    """Snapshots `source_bucket` into the backup store.

    `s3_client` reads the source bucket; copies are requests to the backup bucket made with the store's
    client, which must be allowed to read the source. Give both clients `max_pool_connections` of at
    least `concurrency`.
    """

    def __init__(
        self,
        s3_client: Any,
        store: BackupStore,
        source_bucket: str,
        *,
        concurrency: int = 16,
        clock: Clock = utc_now,
        multipart_threshold: int = 5 * 1024**3,
        part_size: int = 512 * 1024**2,
        page_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's smallest part)")
        self._s3 = s3_client
        self._store = store
        self._source = source_bucket
        self._concurrency = concurrency
        self._clock = clock
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._page_size = page_size
        self._sleep = sleep
        self._retries_lock = threading.Lock()
        self._throttle_retries = 0

    def snapshot(self, backup_id: str | None, remaining_ms: Callable[[], int]) -> SnapshotProgress:
        """Start a snapshot (None) or continue one; call again with its id while `finished` is False.

        An id that has no checkpoints yet starts the snapshot under that id, so a caller that chooses the
        id up front (`new_backup_id`) can resume even a first invocation that crashed. A snapshot whose
        base was removed meanwhile cannot continue (SnapshotNotFound); retention keeps the base of a
        snapshot in progress for a day.
        """
        checkpoints: list[str] = []
        if backup_id is None:
            backup_id = new_backup_id(self._clock())
        else:
            backup_time(backup_id)  # a malformed id fails here, before anything is read or written
            if self._store.exists(manifest_key(Component.S3, self._source, backup_id)):
                return SnapshotProgress(backup_id, True, read_manifest(self._store, self._source, backup_id).stats)
            checkpoints = _checkpoint_keys(self._store, self._source, backup_id)
        last = _read_checkpoint(self._store, checkpoints[-1]) if checkpoints else None
        stats = _Stats(**last["stats"]) if last else _Stats()
        markers = last["next"] if last else {}
        listing_done = bool(last) and not last["truncated"]
        pages_here: dict[int, list[ManifestEntry]] = {}
        page = len(checkpoints)
        with ThreadPoolExecutor(self._concurrency) as pool:
            # The listing is the critical path of an incremental snapshot: its first page is requested while
            # the base's manifest is read.
            ahead = None if listing_done else _Ahead(markers, pool.submit(self._list, markers))
            if last is None:
                base = _Base(_newest_complete_before(self._store, self._source, backup_id))
            else:  # the base the checkpoints refer to; retention keeps it while this snapshot runs
                base = _Base(read_manifest(self._store, self._source, last["base"]) if last["base"] else None)
            contents = _StoredContent(self._store, base.content_keys(), self._stored)
            logger.info("snapshot running", extra={"bucket": self._source, "backup_id": backup_id,
                                                   "resumed_at_page": page, "base": base.backup_id})
            while not listing_done:
                if remaining_ms() < SAFETY_MARGIN_MS:
                    logger.info("snapshot paused", extra={"backup_id": backup_id, "pages": page})
                    return SnapshotProgress(backup_id, False, asdict(stats))
                page += 1
                entries, positions, page_stats, listing, ahead = self._snapshot_page(markers, ahead, base, contents, pool)
                stats.add(page_stats)
                markers = _next_markers(listing)
                listing_done = not listing.get("IsTruncated", False)
                self._checkpoint(backup_id, page, base, base.encode(entries, positions), stats, markers, listing_done)
                pages_here[page] = entries
        self._write_manifest(backup_id, self._all_entries(backup_id, page, pages_here, base), stats)
        logger.info("snapshot complete", extra={"backup_id": backup_id, "objects": stats.objects_listed,
                                                "copied": stats.objects_copied, "pages": stats.pages})
        return SnapshotProgress(backup_id, True, asdict(stats))

    # One page ------------------------------------------------------------------------------------

    def _list(self, markers: dict[str, str]) -> dict[str, Any]:
        request = {key: value for key, value in markers.items() if value}
        return self._s3.list_object_versions(Bucket=self._source, MaxKeys=self._page_size, **request)

    def _snapshot_page(
        self, markers: dict[str, str], ahead: _Ahead | None, base: _Base, contents: _StoredContent,
        pool: ThreadPoolExecutor,
    ) -> tuple[list[ManifestEntry], list[int | None], _Stats, dict[str, Any], _Ahead | None]:
        """List one page (or take it from the listing done ahead), store its new content.

        The next page is listed while this one is copied: on an unchanged bucket the listing is
        nearly all the work, and it is sequential.
        """
        attempt = 1
        while True:
            listing = ahead.listing.result() if ahead and ahead.markers == markers else self._list(markers)
            ahead = None
            if listing.get("IsTruncated"):
                following = _next_markers(listing)
                ahead = _Ahead(following, pool.submit(self._list, following))
            try:
                entries, positions, stats = self._copy_page(listing, base, contents, pool)
                return entries, positions, stats, listing, ahead
            except _SourceChanged as change:
                if attempt == PAGE_ATTEMPTS:
                    raise ConcurrentUpdate(f"s3://{self._source}/{change} kept changing while it was snapshotted") from change
                logger.info("object changed while snapshotted; listing the page again", extra={"key": str(change)})
                attempt += 1

    def _copy_page(self, listing: dict[str, Any], base: _Base, contents: _StoredContent,
                   pool: ThreadPoolExecutor) -> tuple[list[ManifestEntry], list[int | None], _Stats]:
        current = [version for version in listing.get("Versions", []) if version["IsLatest"]]
        positions = [base.position_of(version) for version in current]
        fresh = [version for version, position in zip(current, positions) if position is None]
        described = iter(list(pool.map(self._describe, fresh)))
        entries = [next(described) if position is None else base.entry(position) for position in positions]
        missing = contents.missing({entry.content_key for entry in entries if entry.content_key}, pool)
        first_holder: dict[str | None, ManifestEntry] = {}
        for entry in entries:
            if entry.content_key in missing:
                first_holder.setdefault(entry.content_key, entry)

        def copy(entry: ManifestEntry) -> bool:
            did_copy = self._copy(entry)
            contents.add([entry.content_key])  # at once: a page listed again must not copy it twice
            return did_copy

        copied = [entry for entry, did_copy in zip(first_holder.values(), pool.map(copy, first_holder.values()))
                  if did_copy]
        contents.add(entry.content_key for entry in entries if entry.content_key)
        archived = [entry.key for entry in entries if entry.archived]
        stats = _Stats(
            objects_listed=len(entries), objects_copied=len(copied), objects_reused=len(entries) - len(archived) - len(copied),
            bytes_copied=sum(entry.size for entry in copied), bytes_listed=sum(entry.size for entry in entries),
            objects_archived=len(archived), archived_not_copied=archived,
            delete_markers=sum(marker["IsLatest"] for marker in listing.get("DeleteMarkers", [])),
            pages=1, metadata_reads=len(fresh), throttle_retries=self._take_throttle_retries(),
        )
        return entries, positions, stats

    def _describe(self, version: dict[str, Any]) -> ManifestEntry:
        """The manifest entry of a version the base does not describe (one HeadObject)."""
        try:
            head = self._retrying(self._s3.head_object, Bucket=self._source, **_pinned(version["Key"], version["VersionId"]),
                                  IfMatch=version["ETag"], ChecksumMode="ENABLED")
        except ClientError as error:
            if _code(error) in SOURCE_CHANGED:
                raise _SourceChanged(version["Key"]) from error
            raise
        storage_class = version.get("StorageClass", "STANDARD")
        archived = storage_class in ARCHIVE_STORAGE_CLASSES or head.get("ArchiveStatus") in INTELLIGENT_TIERING_ARCHIVE_TIERS
        checksum = _checksum(head)
        return ManifestEntry(
            key=version["Key"], version_id=version["VersionId"], etag=version["ETag"], size=version["Size"],
            last_modified=to_iso(version["LastModified"]), storage_class=storage_class, checksum=checksum,
            content_type=head.get("ContentType"), metadata=head.get("Metadata", {}),
            content_key=None if archived else content_key_of(version["ETag"], version["Size"], checksum),
            archived=archived,
        )

    # Copies --------------------------------------------------------------------------------------

    def _copy(self, entry: ManifestEntry) -> bool:
        """Copy `entry`'s body to its content key; False when the store turned out to hold it already."""
        source = {"Bucket": self._source, **_pinned(entry.key, entry.version_id)}
        try:
            if entry.size > self._multipart_threshold:
                self._copy_in_parts(source, entry)
            else:
                # If-None-Match keeps the store write-once against a concurrent writer of the same
                # content; If-Match pins the source to the ETag that was listed.
                self._retrying(self._store.s3.copy_object, Bucket=self._store.bucket, Key=entry.content_key,
                               CopySource=source, CopySourceIfMatch=entry.etag, IfNoneMatch="*")
        except ClientError as error:
            code = _code(error)
            if code in PRECONDITION_FAILED and self._store.exists(entry.content_key):  # type: ignore[arg-type]
                return False  # If-None-Match: another writer stored this content meanwhile
            if code in SOURCE_CHANGED:
                raise _SourceChanged(entry.key) from error
            raise
        return True

    def _copy_in_parts(self, source: dict[str, str], entry: ManifestEntry) -> None:
        """Objects over the threshold (CopyObject stops at 5 GB): UploadPartCopy, parts concurrently."""
        part_size = max(self._part_size, -(-entry.size // MAX_PARTS))
        upload = self._retrying(self._store.s3.create_multipart_upload, Bucket=self._store.bucket, Key=entry.content_key)
        target = {"Bucket": self._store.bucket, "Key": entry.content_key, "UploadId": upload["UploadId"]}

        def copy_part(number_and_start: tuple[int, int]) -> dict[str, Any]:
            number, start = number_and_start
            last_byte = min(start + part_size, entry.size) - 1
            part = self._retrying(self._store.s3.upload_part_copy, **target, PartNumber=number, CopySource=source,
                                  CopySourceIfMatch=entry.etag, CopySourceRange=f"bytes={start}-{last_byte}")
            return {"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]}

        try:
            # A pool of its own: waiting on the page's pool from inside one of its tasks could deadlock.
            with ThreadPoolExecutor(self._concurrency) as parts:
                uploaded = list(parts.map(copy_part, enumerate(range(0, entry.size, part_size), start=1)))
            self._retrying(self._store.s3.complete_multipart_upload, **target, MultipartUpload={"Parts": uploaded},
                           IfNoneMatch="*")
        except BaseException:
            try:
                self._store.s3.abort_multipart_upload(**target)
            except ClientError:
                # Its parts hold storage until the bucket's AbortIncompleteMultipartUpload rule removes them.
                logger.warning("could not abort a multipart copy", extra={"content_key": entry.content_key})
            raise

    def _stored(self, key: str) -> bool:
        return self._retrying(self._store.exists, key)

    def _retrying(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Retry S3 throttling (SlowDown, 503) with exponential backoff and full jitter, bounded."""
        attempt = 1
        while True:
            try:
                return call(*args, **kwargs)
            except ClientError as error:
                if attempt == MAX_ATTEMPTS or not _throttled(error):
                    raise
                with self._retries_lock:
                    self._throttle_retries += 1
                self._sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** (attempt - 1))))
                attempt += 1

    def _take_throttle_retries(self) -> int:
        with self._retries_lock:
            count, self._throttle_retries = self._throttle_retries, 0
        return count

    # Checkpoints and the manifest ----------------------------------------------------------------

    def _checkpoint(self, backup_id: str, page: int, base: _Base, encoded: list[Any], stats: _Stats,
                    markers: dict[str, str], listing_done: bool) -> None:
        document = {"page": page, "base": base.backup_id, "entries": encoded, "stats": asdict(stats),
                    "next": markers, "truncated": not listing_done}
        body = gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)
        try:
            self._store.put_once(_checkpoint_key(self._source, backup_id, page), body, "application/json",
                                 ContentEncoding="gzip")
        except AlreadyWritten as error:
            # Two invocations are running the same snapshot (an async event delivered twice): one goes on.
            raise ConcurrentUpdate(f"snapshot {backup_id} page {page} was checkpointed by another invocation") from error
        logger.info("snapshot page", extra={"backup_id": backup_id, "page": page, "objects": stats.objects_listed,
                                            "copied": stats.objects_copied})

    def _all_entries(self, backup_id: str, last_page: int, pages_here: dict[int, list[ManifestEntry]],
                     base: _Base) -> list[ManifestEntry]:
        entries: list[ManifestEntry] = []
        for page in range(1, last_page + 1):
            if page not in pages_here:  # checkpointed by an earlier invocation
                document = _read_checkpoint(self._store, _checkpoint_key(self._source, backup_id, page))
                pages_here[page] = base.decode(document["entries"])
            entries += pages_here[page]
        return entries

    def _write_manifest(self, backup_id: str, entries: list[ManifestEntry], stats: _Stats) -> None:
        header = {"format": MANIFEST_FORMAT, "bucket": self._source, "backup_id": backup_id,
                  "started_at": to_iso(backup_time(backup_id)), "finished_at": to_iso(self._clock()),
                  "objects": len(entries), "bytes": sum(entry.size for entry in entries), "stats": asdict(stats)}
        lines = [json.dumps(header, separators=(",", ":"))]
        lines += [json.dumps(entry.to_json(), separators=(",", ":")) for entry in entries]
        body = gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)
        digest = hashlib.sha256(body)
        try:
            self._store.put_once(manifest_key(Component.S3, self._source, backup_id), body, "application/gzip",
                                 Metadata={SHA256_METADATA: digest.hexdigest()},
                                 ChecksumSHA256=base64.b64encode(digest.digest()).decode())
        except AlreadyWritten:
            logger.info("snapshot finished by another invocation", extra={"backup_id": backup_id})


def read_manifest(store: BackupStore, bucket: str, backup_id: str) -> SnapshotManifest:
    """A complete snapshot's manifest, verified against the SHA-256 recorded when it was written."""
    key = manifest_key(Component.S3, bucket, backup_id)
    try:
        response = store.s3.get_object(Bucket=store.bucket, Key=key)
    except ClientError as error:
        if _code(error) in ("404", "NoSuchKey", "NotFound"):
            raise SnapshotNotFound(f"no complete snapshot {backup_id} of bucket {bucket}") from error
        raise
    body = response["Body"].read()
    recorded = response.get("Metadata", {}).get(SHA256_METADATA)
    if recorded != hashlib.sha256(body).hexdigest():
        raise ManifestCorrupt(f"s3://{store.bucket}/{key} does not match its recorded SHA-256 {recorded}")
    try:
        lines = gzip.decompress(body).decode().splitlines()
        header = json.loads(lines[0])
        objects = tuple(ManifestEntry.from_json(json.loads(line)) for line in lines[1:])
    except (OSError, ValueError, TypeError, IndexError) as error:
        raise ManifestCorrupt(f"s3://{store.bucket}/{key} cannot be read: {error}") from error
    if header.get("format") != MANIFEST_FORMAT or header.get("objects") != len(objects):
        raise ManifestCorrupt(f"s3://{store.bucket}/{key} is not a complete {MANIFEST_FORMAT} manifest")
    return SnapshotManifest(bucket=header["bucket"], backup_id=header["backup_id"], started_at=header["started_at"],
                            finished_at=header["finished_at"], stats=header["stats"], objects=objects)


def list_snapshots(store: BackupStore, bucket: str) -> list[BackupListing]:
    """The restorable snapshots of `bucket`, oldest first: complete ones only (their manifest exists)."""
    return [listing for listing in store.list_backups(Component.S3, bucket) if listing.complete]


def snapshot_in_progress_content(store: BackupStore, bucket: str, backup_id: str) -> set[str]:
    """The content an unfinished snapshot's checkpoints name besides its base's (retention keeps the base)."""
    keys: set[str] = set()
    for checkpoint in _checkpoint_keys(store, bucket, backup_id):
        entries = _read_checkpoint(store, checkpoint)["entries"]
        keys |= {item["content_key"] for item in entries if isinstance(item, dict) and item["content_key"]}
    return keys


def _newest_complete_before(store: BackupStore, bucket: str, backup_id: str) -> SnapshotManifest | None:
    """The manifest the snapshot `backup_id` builds on: the newest earlier one that reads back, tried newest
    first (one GET, not a HEAD per retained snapshot). An incomplete or corrupt one is passed over,
    costing only reuse."""
    for earlier in reversed([other for other in store.backup_ids(Component.S3, bucket) if other < backup_id]):
        try:
            return read_manifest(store, bucket, earlier)
        except SnapshotNotFound:
            continue  # never finished: no manifest
        except ManifestCorrupt:
            logger.warning("passing over a corrupt manifest", extra={"backup_id": earlier})
    return None
