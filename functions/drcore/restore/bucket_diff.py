"""What a bucket restore changes, decided by content: the pure part of planning, without AWS calls.

The desired state is a snapshot's entries under a prefix, or (restoring to a moment between snapshots)
the snapshot's entries overlaid with each key's latest version or delete marker up to that moment from
the bucket's history. A target object matches its desired entry when it is the same version of the same
bucket (nothing has rewritten it: its body and headers are the restore point's). Any other version of
the same size that may hold the same body (the same ETag, or a full-object checksum is known to compare
with) needs a HeadObject: its body and its headers (content type, user metadata, Cache-Control, ...)
must both be the restore point's. The caller answers that (`same_objects`). An apply also passes over
the versions it wrote itself (`written`), so that a resumed apply does not copy them again; a
verification never does (drcore.restore.bucket_verification reads them back).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drcore.aws.object_identity import BodyIdentity, ObjectHeaders
from drcore.aws.s3_copy import ARCHIVE_STORAGE_CLASSES
from drcore.backup.manifest import ManifestEntry, SnapshotManifest
from drcore.core.models import parse_time

Written = dict[str, set[tuple[str, str]]]  # key -> {(version id, ETag)} that an apply of the plan wrote


@dataclass(frozen=True)
class ListedVersion:
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
class DesiredObject:
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
    headers: dict[str, str] | None = None  # of a snapshot's entry, where its manifest recorded them
    content_etag: str | None = None  # the stored content object's, where recorded: pins copies from it
    content_sha256: str | None = None
    content_version_id: str | None = None  # the stored content object's version, where recorded: copies read it
    described_by_content: bool = False  # the content object carries the headers and tags (s3-snapshot/2)
    tags: dict[str, str] | None = None  # of a snapshot's entry, where its manifest recorded them

    @classmethod
    def of_entry(cls, bucket: str, entry: ManifestEntry) -> DesiredObject:
        return cls(key=entry.key, version_id=entry.version_id, etag=entry.etag, size=entry.size, home_bucket=bucket,
                   from_store=True, content_key=entry.content_key, archived=entry.archived or not entry.content_key,
                   checksum=entry.checksum, content_type=entry.content_type, metadata=dict(entry.metadata),
                   last_modified=entry.last_modified, headers=entry.headers, content_etag=entry.content_etag,
                   content_sha256=entry.content_sha256, content_version_id=entry.content_version_id,
                   described_by_content=entry.described_by_content, tags=entry.tags)

    @classmethod
    def of_version(cls, bucket: str, version: ListedVersion) -> DesiredObject:
        return cls(key=version.key, version_id=version.version_id, etag=version.etag, size=version.size,
                   home_bucket=bucket, from_store=False, content_key=None,
                   archived=version.storage_class in ARCHIVE_STORAGE_CLASSES,
                   checksum_algorithm=version.checksum_algorithm)

    def identity(self) -> list[Any]:
        return [self.key, self.home_bucket, self.from_store, self.version_id, self.etag, self.size, self.content_key]

    def body(self) -> BodyIdentity:
        """What is known here of the body: a version's own checksums are known only to a HeadObject of it."""
        return BodyIdentity.recorded(self.size, self.etag, self.checksum, self.content_sha256)

    def stored_body(self) -> BodyIdentity:
        """What proves the stored content object holds the body: the same, or its ETag as stored."""
        return self.body().or_stored_as(self.content_etag)

    def object_headers(self) -> ObjectHeaders | None:
        """The headers and tags the object should carry, as the snapshot recorded them; None where the source
        carries them (a version of the bucket, or a content object that its copy stored them with)."""
        if not self.from_store or self.described_by_content:
            return None
        return ObjectHeaders(self.content_type, self.metadata, self.headers, self.tags)


@dataclass
class ContentDiff:
    copy: list[DesiredObject] = field(default_factory=list)
    missing: int = 0
    changed: int = 0
    remove: list[str] = field(default_factory=list)
    unchanged: int = 0
    archived: list[str] = field(default_factory=list)
    compared: int = 0  # pairs the listing could not decide, compared by a HeadObject each

    def differs(self, want: DesiredObject) -> None:
        if want.archived:
            self.archived.append(want.key)  # a copy would fail until the object is restored from archive
        else:
            self.copy.append(want)


def digest(rows: Iterable[list[Any]]) -> str:
    """A SHA-256 over rows, in any order."""
    hashed = hashlib.sha256()
    for row in sorted(json.dumps(row, separators=(",", ":")) for row in rows):
        hashed.update(row.encode() + b"\n")
    return hashed.hexdigest()


def state_fingerprint(objects: Iterable[tuple[str, str, str]]) -> str:
    """A hash of a bucket's state: (key, version id, ETag) of every current version, in any order."""
    return digest([list(row) for row in objects])


def desired_digest(desired: Mapping[str, DesiredObject]) -> str:
    return digest(item.identity() for item in desired.values())


def sample(keys: Iterable[str], count: int) -> tuple[str, ...]:
    return tuple(sorted(keys)[:count])


def listed_versions(pages: Iterable[Mapping[str, Any]]) -> list[ListedVersion]:
    """The versions and delete markers of ListObjectVersions pages."""
    items: list[ListedVersion] = []
    for page in pages:
        for version in page.get("Versions", []):
            algorithms = version.get("ChecksumAlgorithm") or [None]
            items.append(ListedVersion(version["Key"], version["VersionId"], version["ETag"], version["Size"],
                                       version["LastModified"], version.get("StorageClass", "STANDARD"),
                                       version["IsLatest"], False, algorithms[0]))
        for marker in page.get("DeleteMarkers", []):
            items.append(ListedVersion(marker["Key"], marker["VersionId"], "", 0, marker["LastModified"], "",
                                       marker["IsLatest"], True))
    return items


def current_of(listing: Iterable[ListedVersion]) -> dict[str, ListedVersion]:
    return {item.key: item for item in listing if item.is_latest and not item.delete_marker}


def current_in_snapshot(manifest: SnapshotManifest, prefix: str) -> dict[str, ListedVersion]:
    """The current versions under `prefix` as a snapshot of the bucket listed them (its manifest's entries)."""
    return {entry.key: ListedVersion(entry.key, entry.version_id, entry.etag, entry.size,
                                     parse_time(entry.last_modified), entry.storage_class, True, False)
            for entry in manifest.objects if entry.key.startswith(prefix)}


def fingerprint_of(current: Mapping[str, ListedVersion]) -> str:
    return state_fingerprint((item.key, item.version_id, item.etag) for item in current.values())


def desired_from_snapshot(manifest: SnapshotManifest, prefix: str) -> dict[str, DesiredObject]:
    return {entry.key: DesiredObject.of_entry(manifest.bucket, entry) for entry in manifest.objects
            if entry.key.startswith(prefix)}


def state_at(bucket: str, snapshot: Mapping[str, DesiredObject], history: Iterable[ListedVersion],
             moment: datetime) -> tuple[dict[str, DesiredObject], int]:
    """The state at `moment`: the snapshot's, with each key's latest version or delete marker up to
    `moment` from the bucket's complete `history` where that is newer. Returns it and how many keys the
    history changed (none: the snapshot's own state)."""
    latest_at: dict[str, ListedVersion] = {}
    for item in history:
        if item.last_modified > moment:
            continue
        seen = latest_at.get(item.key)
        # Listing times have one-second resolution: on a tie the listing's IsLatest decides, then a
        # version wins over a delete marker (restoring data, never hiding it, when in doubt).
        if seen is None or ((item.last_modified, item.is_latest, not item.delete_marker)
                            > (seen.last_modified, seen.is_latest, not seen.delete_marker)):
            latest_at[item.key] = item
    state: dict[str, DesiredObject] = {}
    for key in snapshot.keys() | latest_at.keys():
        version, entry = latest_at.get(key), snapshot.get(key)
        if version is None:
            # No history up to `moment` (versions removed by hand, or written before versioning):
            # the snapshot's entry stands if it existed by then.
            if entry and entry.last_modified and parse_time(entry.last_modified) <= moment:
                state[key] = entry
        elif not version.delete_marker:
            same = entry and entry.version_id == version.version_id and entry.etag == version.etag
            state[key] = entry if entry and same else DesiredObject.of_version(bucket, version)
    changed = sum(1 for key in snapshot.keys() | state.keys()
                  if (snapshot.get(key) and snapshot[key].identity()) != (state.get(key) and state[key].identity()))
    if not changed:
        return dict(snapshot), 0
    return state, changed


def same_version(want: DesiredObject, have: ListedVersion, target: str) -> bool:
    """The target holds the very version desired: nothing has rewritten it. A `null` version id alone
    proves nothing."""
    return want.home_bucket == target and want.version_id == have.version_id != "null"


def may_be_same(want: DesiredObject, have: ListedVersion) -> bool:
    """Another version that a HeadObject may prove equal: the same size, and the same ETag or a full-object
    checksum known to compare with."""
    return want.size == have.size and (want.etag == have.etag or bool(want.body().checksums))


SameObjects = Callable[[list[tuple[DesiredObject, ListedVersion]]], Iterable[bool]]


def content_diff(desired: Mapping[str, DesiredObject], current: Mapping[str, ListedVersion], target: str,
                 written: Written, same_objects: SameObjects) -> ContentDiff:
    """What differs between the desired and the current state of `target`. Pairs the listing cannot
    decide (`may_be_same`) go to `same_objects`."""
    diff = ContentDiff()
    to_look: list[tuple[DesiredObject, ListedVersion]] = []
    for key, want in desired.items():
        have = current.get(key)
        if have is None:
            diff.missing += 1
            diff.differs(want)
        elif same_version(want, have, target) or (have.version_id, have.etag) in written.get(key, ()):
            diff.unchanged += 1
        elif may_be_same(want, have):
            to_look.append((want, have))
        else:
            diff.changed += 1
            diff.differs(want)
    diff.compared = len(to_look)
    for (want, _), same in zip(to_look, same_objects(to_look), strict=True):
        if same:
            diff.unchanged += 1
        else:
            diff.changed += 1
            diff.differs(want)
    diff.remove = sorted(current.keys() - desired.keys())
    diff.archived.sort()
    return diff
