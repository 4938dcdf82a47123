"""One listing page of a bucket snapshot: listed (the next page listed ahead while this one is copied), its
new content copied into the backup store or described, and its manifest entries answered.

The snapshot (drcore.backup.bucket_snapshots) runs pages range by range and checkpoints each; this module
is what one page costs, in requests and in rules (see bucket_snapshots for the rules).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import SOURCE_CHANGED, error_code, retrying
from drcore.aws.object_identity import full_object_checksums, kept_headers, tag_set
from drcore.aws.prefix_pacing import spread_over_prefixes
from drcore.aws.s3_copy import (
    ARCHIVE_STORAGE_CLASSES,
    CopySource,
    CopySourceArchived,
    CopySourceChanged,
    S3Copier,
    TargetExists,
)
from drcore.backup.manifest import ManifestEntry, StoredBody, checksum_of, content_key_of
from drcore.backup.snapshot_checkpoints import KeyRange, SnapshotBase
from drcore.backup.stored_content import StoredContent
from drcore.core.errors import ConcurrentUpdate
from drcore.core.models import to_iso
from drcore.state.backup_store import BackupStore, readable_version

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectVersionsOutputTypeDef, ListObjectVersionsRequestTypeDef

logger = Logger(child=True)

PAGE_ATTEMPTS = 3  # a page whose objects change while it is copied is listed again, this often
REPORTED_ARCHIVED_KEYS = 1000  # the stats name this many archived keys; the manifest has them all


class SourceChanged(Exception):
    """A listed version vanished or changed before it was read: the page is listed again."""


@dataclass
class SnapshotStats:
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

    def add(self, page: SnapshotStats) -> None:
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


@dataclass(frozen=True)
class ListedAhead:
    """A listing page requested before it is needed, for the markers it continues from."""

    markers: dict[str, str]
    listing: Future[ListObjectVersionsOutputTypeDef]


class PageSnapshotter:
    """Snapshots listing pages of `source_bucket`: lists with `s3_client`, copies with `copier` (requests to the
    backup store). `sleep` is where throttled requests back off; each backoff is counted in the page's stats.
    `default_lock`: the store's default Object Lock retention, set by the snapshot that runs the pages."""

    def __init__(self, s3_client: S3Client, store: BackupStore, source_bucket: str, *, page_size: int,
                 copier: Callable[[Callable[[float], None]], S3Copier], sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        self._s3 = s3_client
        self._store = store
        self._source = source_bucket
        self._page_size = page_size
        self._sleep = sleep
        self._retries_lock = threading.Lock()
        self._throttle_retries = 0
        self._copier = copier(self._back_off)
        self.default_lock: timedelta | None = None

    def list_page(self, markers: dict[str, str]) -> ListObjectVersionsOutputTypeDef:
        """One page from `markers`: both of a listing's next markers, or a range's KeyMarker alone (the keys after
        it), or none (from the first key)."""
        request: ListObjectVersionsRequestTypeDef = {"Bucket": self._source, "MaxKeys": self._page_size}
        if markers.get("KeyMarker"):
            request["KeyMarker"] = markers["KeyMarker"]
        if markers.get("VersionIdMarker"):
            request["VersionIdMarker"] = markers["VersionIdMarker"]
        return self._s3.list_object_versions(**request)

    def snapshot_page(
        self, markers: dict[str, str], bounds: KeyRange, ahead: ListedAhead | None, base: SnapshotBase,
        contents: StoredContent, pool: ThreadPoolExecutor,
    ) -> tuple[list[ManifestEntry], list[int | None], SnapshotStats, dict[str, str] | None, ListedAhead | None]:
        """List one page of a range (or take it from the listing done ahead), store its new content. Answers the
        markers to continue the range from, None when it is done.

        The next page is listed while this one is copied: on an unchanged bucket the listing is
        nearly all the work.
        """
        attempt = 1
        start = markers or ({"KeyMarker": bounds.start_after} if bounds.start_after else {})
        while True:
            listing = ahead.listing.result() if ahead and ahead.markers == start else self.list_page(start)
            ahead = None
            within = _within(listing, bounds)
            following = _next_markers(listing) if listing.get("IsTruncated") and within is listing else None
            if following is not None:
                ahead = ListedAhead(following, pool.submit(self.list_page, following))
            try:
                entries, positions, stats = self._copy_page(within, base, contents, pool)
                return entries, positions, stats, following, ahead
            except SourceChanged as change:
                if attempt == PAGE_ATTEMPTS:
                    raise ConcurrentUpdate(
                        f"s3://{self._source}/{change} kept changing while it was snapshotted") from change
                logger.info("object changed while snapshotted; listing the page again", extra={"key": str(change)})
                attempt += 1

    def _copy_page(self, listing: ListObjectVersionsOutputTypeDef, base: SnapshotBase, contents: StoredContent,
                   pool: ThreadPoolExecutor) -> tuple[list[ManifestEntry], list[int | None], SnapshotStats]:
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
        stats = SnapshotStats(
            objects_listed=len(entries), objects_copied=len(copied),
            objects_reused=len(entries) - len(archived) - len(copied),
            bytes_copied=sum(entries[index].size for index in copied),
            bytes_listed=sum(entry.size for entry in entries),
            objects_archived=len(archived), archived_not_copied=archived,
            delete_markers=sum(marker["IsLatest"] for marker in listing.get("DeleteMarkers", [])),
            pages=1, metadata_reads=len(descriptions),
            tag_reads=sum(bool(entries[index].tags) for index in descriptions),
            throttle_retries=self.take_throttle_retries(),
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
                raise SourceChanged(version["Key"]) from error
            raise
        return replace(_listed(version), checksum=checksum_of(head), content_type=head.get("ContentType"),
                       metadata=head.get("Metadata", {}), content_key=content_key, archived=content_key is None,
                       headers=kept_headers(head), tags=tags)

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
            raise SourceChanged(entry.key) from error
        return True, StoredBody.of_copy(copied, self.default_lock)

    def _back_off(self, seconds: float) -> None:
        """Every backoff of this snapshot's requests is one throttling retry, counted in its stats."""
        with self._retries_lock:
            self._throttle_retries += 1
        self._sleep(seconds)

    def take_throttle_retries(self) -> int:
        with self._retries_lock:
            count, self._throttle_retries = self._throttle_retries, 0
        return count
