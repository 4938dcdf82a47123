"""Point-in-time snapshots of the data bucket: incremental, deduplicated by content, resumable.

A snapshot lists the bucket's current versions (ListObjectVersions, `IsLatest`) page by page and stores
each object's body once per content in the backup store (the content keys and the manifest format are
drcore.backup.manifest's).

A snapshot builds on the newest complete one before it (its base): an object listed as it is in the
base is carried over without a request, and the content the base references is known to be stored.
Other content is taken for missing and copied conditionally (a 412 means stored), or found by one
listing of the content prefix when that costs less (drcore.backup.stored_content). Stored content is
never copied again, so a snapshot of an unchanged bucket costs its listing and its manifest. Objects in
archive storage classes (or tiers) whose content is not stored are recorded (`archived: true`), not
copied.

Object metadata travels with the content: a new version whose content is not stored yet is copied with
S3's copy, which carries its content type, user metadata, kept headers and tags to the content object,
and its entry says so (`described_by_content`); no request describes it. Only a new version whose content
the store holds already (another object's, or an earlier version's: a change of metadata alone) is
described by a HeadObject, and GetObjectTagging where it has tags, and its entry records what they said.
A first snapshot thus costs its listing and one copy per distinct body.

Each new entry also records its stored body as the store holds it (drcore.backup.manifest): the ETag,
the SHA-256 S3 computed when this snapshot copied it (every copy asks for one) and the version S3 gave
the copy, or as the base recorded them, or as a 412's HeadObject or the listing found them.

After every listing page a checkpoint records the listing markers and that page's manifest entries
(drcore.backup.snapshot_checkpoints); an invocation given the snapshot's id continues after the last
checkpoint, with the same base. The manifest is written last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import SOURCE_CHANGED, error_code, retrying
from drcore.aws.object_identity import full_object_checksums, kept_headers, tag_set
from drcore.aws.prefix_pacing import PrefixPacer, spread_over_prefixes
from drcore.aws.s3_copy import (
    ARCHIVE_STORAGE_CLASSES,
    DEFAULT_PART_SIZE,
    MAX_SINGLE_COPY,
    CopySource,
    CopySourceArchived,
    CopySourceChanged,
    S3Copier,
    TargetExists,
)
from drcore.backup.manifest import (
    ManifestEntry,
    SnapshotManifest,
    StoredBody,
    checksum_of,
    content_key_of,
    locked_until,
    read_manifest,
    write_manifest,
)
from drcore.backup.snapshot_checkpoints import (
    LISTING_RANGES,
    Checkpoint,
    KeyRange,
    SnapshotBase,
    checkpoint_key,
    key_ranges,
    last_checkpoints,
    newest_complete_before,
    read_checkpoint,
    write_checkpoint,
)
from drcore.backup.stored_content import StoredContent
from drcore.core.config import DEFAULT_FULL_MANIFEST_EVERY
from drcore.core.errors import ConcurrentUpdate
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_store import (
    AlreadyWritten,
    BackupStore,
    Component,
    backup_time,
    manifest_key,
    new_backup_id,
    readable_version,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectVersionsOutputTypeDef, ListObjectVersionsRequestTypeDef

logger = Logger(child=True)

# Stop starting pages with less than this left: a page of copies plus its checkpoint must fit.
SAFETY_MARGIN_MS = 60_000
PAGE_ATTEMPTS = 3  # a page whose objects change while it is copied is listed again, this often
REPORTED_ARCHIVED_KEYS = 1000  # the stats name this many archived keys; the manifest has them all


class _SourceChanged(Exception):
    """A listed version vanished or changed before it was read: the page is listed again."""


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
    metadata_reads: int = 0  # HeadObject calls: new versions whose content was stored already, or archived
    tag_reads: int = 0  # GetObjectTagging calls, for those of them that have tags
    throttle_retries: int = 0

    def add(self, page: _Stats) -> None:
        for name, value in vars(page).items():
            if name == "archived_not_copied":
                room = REPORTED_ARCHIVED_KEYS - len(self.archived_not_copied)
                self.archived_not_copied += value[:max(room, 0)]
            else:
                setattr(self, name, getattr(self, name) + value)


def _listed_version(bucket: str, key: str, version_id: str, etag: str) -> CopySource:
    """Addresses one listed version. A `null` version is addressed by key (not every bucket accepts
    `versionId=null`) and pinned by the If-Match ETag that goes with it."""
    return CopySource(bucket, key, None if version_id == "null" else version_id, etag)


def _listed(version: Mapping[str, Any]) -> ManifestEntry:
    """A new version as its listing names it, headers not known: its content key from its ETag and size."""
    return ManifestEntry(
        key=version["Key"], version_id=version["VersionId"], etag=version["ETag"], size=version["Size"],
        last_modified=to_iso(version["LastModified"]), storage_class=version.get("StorageClass", "STANDARD"),
        checksum=None, content_type=None, metadata={}, content_key=_content_key(version))


def _content_key(version: Mapping[str, Any]) -> str:
    return content_key_of(version["ETag"], version["Size"], None)


def _next_markers(listing: Mapping[str, Any]) -> dict[str, str]:
    return {"KeyMarker": listing.get("NextKeyMarker", ""), "VersionIdMarker": listing.get("NextVersionIdMarker", "")}


def _within(listing: ListObjectVersionsOutputTypeDef, bounds: KeyRange) -> ListObjectVersionsOutputTypeDef:
    """The listing itself when every key it lists is in the range, else a copy without the keys past its end
    (a range never lists before its start)."""
    if bounds.last is None:
        return listing
    versions, markers = listing.get("Versions", []), listing.get("DeleteMarkers", [])
    if all(item["Key"] <= bounds.last for item in [*versions, *markers]):
        return listing
    trimmed = dict(listing)
    trimmed["Versions"] = [version for version in versions if version["Key"] <= bounds.last]
    trimmed["DeleteMarkers"] = [marker for marker in markers if marker["Key"] <= bounds.last]
    return cast("ListObjectVersionsOutputTypeDef", trimmed)


@dataclass
class _Range:
    """One key range's progress in this invocation."""

    number: int
    bounds: KeyRange
    markers: dict[str, str]  # to continue from; {} before its first page
    done: bool
    pages: int  # checkpointed
    stats: _Stats

    @classmethod
    def resumed(cls, number: int, bounds: KeyRange, last: Checkpoint | None) -> _Range:
        if last is None:
            return cls(number, bounds, {}, False, 0, _Stats())
        return cls(number, bounds, last["next"], not last["truncated"], last["page"], _Stats(**last["stats"]))


@dataclass(frozen=True)
class _RangeWork:
    """What every range of one snapshot invocation shares."""

    backup_id: str
    ranges: tuple[KeyRange, ...]
    base: SnapshotBase
    contents: StoredContent
    pool: ThreadPoolExecutor  # the copies and the listings ahead
    remaining_ms: Callable[[], int]
    stop: threading.Event
    pages_here: dict[tuple[int, int], list[ManifestEntry]]


@dataclass(frozen=True)
class _Ahead:
    """A listing page requested before it is needed, for the markers it continues from."""

    markers: dict[str, str]
    listing: Future[ListObjectVersionsOutputTypeDef]


class BucketSnapshotter:
    """Snapshots `source_bucket` into the backup store.

    `s3_client` reads the source bucket; copies are requests to the backup bucket made with the store's
    client, which must be allowed to read the source. Give both clients `max_pool_connections` of at
    least `concurrency`.
    """

    def __init__(
        self,
        s3_client: S3Client,
        store: BackupStore,
        source_bucket: str,
        *,
        concurrency: int = 16,
        clock: Clock = utc_now,
        multipart_threshold: int = MAX_SINGLE_COPY,
        part_size: int = DEFAULT_PART_SIZE,
        page_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
        full_manifest_every: int = DEFAULT_FULL_MANIFEST_EVERY,
        listing_ranges: int = LISTING_RANGES,
    ) -> None:
        self._s3 = s3_client
        self._store = store
        self._source = source_bucket
        self._concurrency = concurrency
        self._clock = clock
        self._page_size = page_size
        self._full_manifest_every = full_manifest_every
        self._listing_ranges = listing_ranges
        self._sleep = sleep
        self._retries_lock = threading.Lock()
        self._throttle_retries = 0
        # Waits for a prefix another copy was slowed on are not retries: they sleep outside the count.
        self._copier = S3Copier(store.s3, concurrency=concurrency, multipart_threshold=multipart_threshold,
                                part_size=part_size, sleep=self._back_off, pacer=PrefixPacer(sleep=sleep))
        self._default_lock: timedelta | None = None  # the store's default Object Lock retention, read per snapshot

    def snapshot(self, backup_id: str | None, remaining_ms: Callable[[], int]) -> SnapshotProgress:
        """Start a snapshot (None) or continue one; call again with its id while `finished` is False.

        An id that has no checkpoints yet starts the snapshot under that id, so a caller that chooses the
        id up front (`new_backup_id`) can resume even a first invocation that crashed. A snapshot whose
        base was removed meanwhile cannot continue (SnapshotNotFound); retention keeps the base of a
        snapshot in progress for a day.
        """
        last: dict[int, Checkpoint] = {}
        self._default_lock = self._store.default_retention()
        if backup_id is None:
            backup_id = new_backup_id(self._clock())
        else:
            backup_time(backup_id)  # a malformed id fails here, before anything is read or written
            if self._store.exists(manifest_key(Component.S3, self._source, backup_id)):
                return SnapshotProgress(backup_id, True, read_manifest(self._store, self._source, backup_id).stats)
            last = last_checkpoints(self._store, self._source, backup_id)
        any_last = next(iter(last.values()), None)
        if any_last is None:
            base_manifest = newest_complete_before(self._store, self._source, backup_id)
            ranges = key_ranges(base_manifest, self._page_size, self._listing_ranges)
        else:  # the base the checkpoints refer to (retention keeps it while this snapshot runs), and their ranges
            base_id = any_last["base"]
            base_manifest = read_manifest(self._store, self._source, base_id) if base_id else None
            ranges = tuple(KeyRange(*bounds) for bounds in any_last.get("ranges", [[None, None]]))
        states = [_Range.resumed(number, bounds, last.get(number)) for number, bounds in enumerate(ranges)]
        base = SnapshotBase(base_manifest)
        contents = StoredContent(self._store, base_manifest.stored_bodies() if base_manifest else {})
        logger.info("snapshot running", extra={"bucket": self._source, "backup_id": backup_id, "base": base.backup_id,
                                               "ranges": len(ranges), "resumed": bool(last)})
        pages_here: dict[tuple[int, int], list[ManifestEntry]] = {}
        running = [state for state in states if not state.done]
        stop = threading.Event()  # set by a range that fails: the others stop after their page
        with ThreadPoolExecutor(self._concurrency) as pool, ThreadPoolExecutor(max(len(running), 1)) as listers:
            work = _RangeWork(backup_id, ranges, base, contents, pool, remaining_ms, stop, pages_here)
            outcomes = [listers.submit(self._snapshot_range, state, work) for state in running]
            ended, _ = wait(outcomes, return_when=FIRST_EXCEPTION)
            if any(outcome.exception() is not None for outcome in ended):
                stop.set()
            for outcome in outcomes:
                outcome.result()
        stats = _Stats()
        for state in states:
            stats.add(state.stats)
        if not all(state.done for state in states):
            logger.info("snapshot paused", extra={"backup_id": backup_id, "pages": stats.pages})
            return SnapshotProgress(backup_id, False, asdict(stats))
        self._write_manifest(backup_id, self._all_entries(backup_id, states, pages_here, base), stats, base_manifest)
        logger.info("snapshot complete", extra={"backup_id": backup_id, "objects": stats.objects_listed,
                                                "copied": stats.objects_copied, "pages": stats.pages})
        return SnapshotProgress(backup_id, True, asdict(stats))

    def _snapshot_range(self, state: _Range, work: _RangeWork) -> None:
        """List one key range page by page, storing each page's new content and checkpointing it, until the
        range is done, time runs low, or another range failed."""
        ahead: _Ahead | None = None
        while not state.done and not work.stop.is_set():
            if work.remaining_ms() < SAFETY_MARGIN_MS:
                return
            entries, positions, page_stats, following, ahead = self._snapshot_page(
                state.markers, state.bounds, ahead, work.base, work.contents, work.pool)
            state.pages += 1
            state.stats.add(page_stats)
            state.markers, state.done = following or {}, following is None
            self._checkpoint(work, state, entries, positions)
            work.pages_here[(state.number, state.pages)] = entries

    # One page ------------------------------------------------------------------------------------

    def _list(self, markers: dict[str, str]) -> ListObjectVersionsOutputTypeDef:
        """One page from `markers`: both of a listing's next markers, or a range's KeyMarker alone (the keys after
        it), or none (from the first key)."""
        request: ListObjectVersionsRequestTypeDef = {"Bucket": self._source, "MaxKeys": self._page_size}
        if markers.get("KeyMarker"):
            request["KeyMarker"] = markers["KeyMarker"]
        if markers.get("VersionIdMarker"):
            request["VersionIdMarker"] = markers["VersionIdMarker"]
        return self._s3.list_object_versions(**request)

    def _snapshot_page(
        self, markers: dict[str, str], bounds: KeyRange, ahead: _Ahead | None, base: SnapshotBase,
        contents: StoredContent, pool: ThreadPoolExecutor,
    ) -> tuple[list[ManifestEntry], list[int | None], _Stats, dict[str, str] | None, _Ahead | None]:
        """List one page of a range (or take it from the listing done ahead), store its new content. Answers the
        markers to continue the range from, None when it is done.

        The next page is listed while this one is copied: on an unchanged bucket the listing is
        nearly all the work.
        """
        attempt = 1
        start = markers or ({"KeyMarker": bounds.start_after} if bounds.start_after else {})
        while True:
            listing = ahead.listing.result() if ahead and ahead.markers == start else self._list(start)
            ahead = None
            within = _within(listing, bounds)
            following = _next_markers(listing) if listing.get("IsTruncated") and within is listing else None
            if following is not None:
                ahead = _Ahead(following, pool.submit(self._list, following))
            try:
                entries, positions, stats = self._copy_page(within, base, contents, pool)
                return entries, positions, stats, following, ahead
            except _SourceChanged as change:
                if attempt == PAGE_ATTEMPTS:
                    raise ConcurrentUpdate(
                        f"s3://{self._source}/{change} kept changing while it was snapshotted") from change
                logger.info("object changed while snapshotted; listing the page again", extra={"key": str(change)})
                attempt += 1

    def _copy_page(self, listing: ListObjectVersionsOutputTypeDef, base: SnapshotBase, contents: StoredContent,
                   pool: ThreadPoolExecutor) -> tuple[list[ManifestEntry], list[int | None], _Stats]:
        """The page's entries: each version the base describes carried over; each new one named by its listing
        and either copied, headers and tags along, or (where the store holds its content already) described by
        requests of its own."""
        current = [version for version in listing.get("Versions", []) if version["IsLatest"]]
        positions = [base.position_of(version) for version in current]
        entries = [_listed(version) if position is None else base.entry(position)
                   for version, position in zip(current, positions, strict=True)]
        named = {index: _content_key(current[index]) for index, position in enumerate(positions) if position is None}
        copied: list[int] = []
        descriptions: dict[int, Future[ManifestEntry]] = {}

        def describe(index: int, content_key: str | None) -> None:
            descriptions[index] = pool.submit(self._describe, current[index], content_key)

        def copy(index: int) -> tuple[int, tuple[bool, StoredBody | None] | None]:
            outcome = self._copy(entries[index], named[index])
            if outcome is not None:  # known at once: a page listed again must not copy it twice
                contents.add({named[index]: outcome[1]})
            return index, outcome

        pending = list(named)
        while pending:
            missing = contents.missing({named[index] for index in pending})
            holders: dict[str, int] = {}
            for index in pending:
                if named[index] not in missing:
                    describe(index, named[index])  # while the copies run
                elif entries[index].storage_class in ARCHIVE_STORAGE_CLASSES:
                    describe(index, None)  # its body cannot be read until S3 restores it: recorded, not copied
                else:
                    holders.setdefault(named[index], index)
            # A body shared by several new versions is copied from the first; the others are described once it
            # is stored (or, if that one turns out archived, the next one copies it).
            waiting = [index for index in pending if index not in descriptions and index not in holders.values()]
            # Spread over the source's prefixes: a page's keys are sorted, so neighbours share one.
            firsts = spread_over_prefixes(holders.values(), lambda index: current[index]["Key"])
            for index, outcome in pool.map(copy, firsts):
                if outcome is None:
                    describe(index, None)  # archived since it was listed (an Intelligent-Tiering archive tier)
                elif outcome[0]:
                    entries[index] = replace(entries[index], described_by_content=True)
                    copied.append(index)
                else:
                    waiting.append(index)  # another writer stored this content meanwhile: described like any stored
            pending = waiting
        for index, description in descriptions.items():
            entries[index] = description.result()
        # A new entry records its content object as stored; one carried from the base stays as it was.
        for index in named:
            if not entries[index].archived:
                entries[index] = entries[index].with_stored(contents.body(named[index]))
        archived = [entry.key for entry in entries if entry.archived]
        stats = _Stats(
            objects_listed=len(entries), objects_copied=len(copied),
            objects_reused=len(entries) - len(archived) - len(copied),
            bytes_copied=sum(entries[index].size for index in copied),
            bytes_listed=sum(entry.size for entry in entries),
            objects_archived=len(archived), archived_not_copied=archived,
            delete_markers=sum(marker["IsLatest"] for marker in listing.get("DeleteMarkers", [])),
            pages=1, metadata_reads=len(descriptions),
            tag_reads=sum(bool(entries[index].tags) for index in descriptions),
            throttle_retries=self._take_throttle_retries(),
        )
        return entries, positions, stats

    def _describe(self, version: Mapping[str, Any], content_key: str | None) -> ManifestEntry:
        """A new version as its own requests describe it: HeadObject, and GetObjectTagging where it has tags. Its
        body is stored under `content_key`, or not at all (None: archived)."""
        listed = _listed_version(self._source, version["Key"], version["VersionId"], version["ETag"])
        try:
            head = retrying(lambda: self._s3.head_object(**listed.address(), IfMatch=version["ETag"],
                                                         ChecksumMode="ENABLED"), sleep=self._back_off)
            tags = tag_set(self._s3, listed.bucket, listed.key, listed.version_id,
                           sleep=self._back_off) if head.get("TagCount") else {}
        except ClientError as error:
            if error_code(error) in SOURCE_CHANGED:
                raise _SourceChanged(version["Key"]) from error
            raise
        return replace(_listed(version), checksum=checksum_of(head), content_type=head.get("ContentType"),
                       metadata=head.get("Metadata", {}), content_key=content_key, archived=content_key is None,
                       headers=kept_headers(head), tags=tags)

    # Copies ------------------------------------------------------------------------------------

    def _copy(self, entry: ManifestEntry, content_key: str) -> tuple[bool, StoredBody | None] | None:
        """Copy `entry`'s body to `content_key`, its headers and tags along: whether this copy stored it (False:
        the store turned out to hold it already) and the stored body, or None when it is archived."""
        try:
            # Only if absent: the store stays write-once against a concurrent writer of the same content.
            # S3 computes the SHA-256 of what it stores: restores and checks prove bodies against it.
            copied = self._copier.copy(_listed_version(self._source, entry.key, entry.version_id, entry.etag),
                                       self._store.bucket, content_key, entry.size, only_if_absent=True,
                                       checksum_algorithm="SHA256")
        except TargetExists as taken:  # another writer stored this content meanwhile: the body it holds
            held = taken.held
            return False, StoredBody(held["ETag"], full_object_checksums(held).get("SHA256"),
                                     readable_version(held.get("VersionId")))
        except CopySourceArchived:
            return None
        except CopySourceChanged as error:
            # Gone or rewritten since it was listed: the page is listed and described again.
            raise _SourceChanged(entry.key) from error
        return True, StoredBody.of_copy(copied, self._default_lock)

    def _back_off(self, seconds: float) -> None:
        """Every backoff of this snapshot's requests is one throttling retry, counted in its stats."""
        with self._retries_lock:
            self._throttle_retries += 1
        self._sleep(seconds)

    def _take_throttle_retries(self) -> int:
        with self._retries_lock:
            count, self._throttle_retries = self._throttle_retries, 0
        return count

    # Checkpoints and the manifest ----------------------------------------------------------------

    def _checkpoint(self, work: _RangeWork, state: _Range, entries: list[ManifestEntry],
                    positions: list[int | None]) -> None:
        checkpoint: Checkpoint = {
            "page": state.pages, "base": work.base.backup_id, "entries": work.base.encode(entries, positions),
            "stats": asdict(state.stats), "next": state.markers, "truncated": not state.done, "range": state.number,
            "ranges": [[bounds.start_after, bounds.last] for bounds in work.ranges]}
        try:
            write_checkpoint(self._store, self._source, work.backup_id, checkpoint)
        except AlreadyWritten as error:
            # Two invocations are running the same snapshot (an async event delivered twice): one goes on.
            raise ConcurrentUpdate(f"snapshot {work.backup_id} range {state.number} page {state.pages} was "
                                   "checkpointed by another invocation") from error
        logger.info("snapshot page", extra={
            "backup_id": work.backup_id, "range": state.number, "page": state.pages,
            "objects": state.stats.objects_listed, "copied": state.stats.objects_copied})

    def _all_entries(self, backup_id: str, states: list[_Range],
                     pages_here: dict[tuple[int, int], list[ManifestEntry]], base: SnapshotBase) -> list[ManifestEntry]:
        """Every range's entries, ranges and pages in order: the listing's key order."""
        entries: list[ManifestEntry] = []
        for state in states:
            for page in range(1, state.pages + 1):
                if (state.number, page) not in pages_here:  # checkpointed by an earlier invocation
                    key = checkpoint_key(self._source, backup_id, page, state.number)
                    pages_here[(state.number, page)] = base.decode(read_checkpoint(self._store, key)["entries"])
                entries += pages_here[(state.number, page)]
        return entries

    def _write_manifest(self, backup_id: str, entries: list[ManifestEntry], stats: _Stats,
                        base: SnapshotManifest | None) -> None:
        """Write the manifest: a delta on the base, unless the base's chain is `full_manifest_every` long."""
        if base is not None and base.depth + 1 >= self._full_manifest_every:
            base = None
        finished = self._clock()
        manifest = SnapshotManifest(bucket=self._source, backup_id=backup_id, started_at=to_iso(backup_time(backup_id)),
                                    finished_at=to_iso(finished), stats=asdict(stats), objects=tuple(entries),
                                    locked_until=locked_until(finished, self._default_lock))
        try:
            write_manifest(self._store, manifest, base)
        except AlreadyWritten:
            logger.info("snapshot finished by another invocation", extra={"backup_id": backup_id})
