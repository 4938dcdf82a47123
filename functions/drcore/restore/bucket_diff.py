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
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from drcore.aws.object_identity import BodyIdentity, ObjectHeaders
from drcore.aws.s3_copy import ARCHIVE_STORAGE_CLASSES
from drcore.backup.manifest import ManifestEntry
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
class DiffCounts:
    """How the keys of a diff were decided: desired keys missing from the target or holding other content (both
    copied back, or restored from archive first), left unchanged, and how many a HeadObject decided."""

    missing: int = 0
    changed: int = 0
    unchanged: int = 0
    compared: int = 0

    def count(self, item: Decided) -> Change | None:
        """Count `item`; what the restore does with its key (None: nothing)."""
        self.compared += item.compared
        if item.kind == "missing":
            self.missing += 1
        elif item.kind == "changed":
            self.changed += 1
        elif item.kind == "unchanged":
            self.unchanged += 1
        return item.change


@dataclass
class ContentDiff(DiffCounts):
    """A diff held: the objects to copy, the keys to remove, the keys to restore from archive first."""

    copy: list[DesiredObject] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)

    def add(self, item: Decided) -> None:
        change = self.count(item)
        if change == "remove":
            self.remove.append(item.key)
        elif change == "archived":
            self.archived.append(item.key)
        elif change == "copy":
            assert item.want is not None  # a copy is of a desired object
            self.copy.append(item.want)


class KeyOrderDigest:
    """A SHA-256 over rows (JSON arrays whose first item is a key) given in key order, one per key: what a plan
    computes of a state as it streams past, and what an apply computes again of the same state to compare."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._last: str | None = None

    def add(self, row: list[Any]) -> None:
        key = row[0]
        if self._last is not None and key <= self._last:
            raise ValueError(f"rows out of key order: {key!r} after {self._last!r}")
        self._last = key
        self._hash.update(json.dumps(row, separators=(",", ":")).encode() + b"\n")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def sample(keys: Iterable[str], count: int) -> tuple[str, ...]:
    return tuple(sorted(keys)[:count])


def versions_listed(pages: Iterable[Mapping[str, Any]]) -> Iterator[ListedVersion]:
    """The versions and delete markers of ListObjectVersions pages, in key order: a page lists its versions and its
    delete markers apart, each in key order, and they are merged here (a key's own stay in the page's order)."""
    for page in pages:
        items: list[ListedVersion] = []
        for version in page.get("Versions", []):
            algorithms = version.get("ChecksumAlgorithm") or [None]
            items.append(ListedVersion(version["Key"], version["VersionId"], version["ETag"], version["Size"],
                                       version["LastModified"], version.get("StorageClass", "STANDARD"),
                                       version["IsLatest"], False, algorithms[0]))
        for marker in page.get("DeleteMarkers", []):
            items.append(ListedVersion(marker["Key"], marker["VersionId"], "", 0, marker["LastModified"], "",
                                       marker["IsLatest"], True))
        items.sort(key=_key_of)  # stable
        yield from items


def listed_versions(pages: Iterable[Mapping[str, Any]]) -> list[ListedVersion]:
    """The versions and delete markers of ListObjectVersions pages, held."""
    return list(versions_listed(pages))


def currents(listing: Iterable[ListedVersion]) -> Iterator[ListedVersion]:
    """The current version of each key that has one, as `listing` goes (in its order)."""
    return (item for item in listing if item.is_latest and not item.delete_marker)


def current_of(listing: Iterable[ListedVersion]) -> dict[str, ListedVersion]:
    return {item.key: item for item in currents(listing)}


def current_among(versions: Iterable[ListedVersion]) -> ListedVersion | None:
    """A key's current version among its listed versions, if it has one (not a delete marker)."""
    return next(currents(versions), None)


def current_in_snapshot(entries: Iterable[ManifestEntry], prefix: str) -> dict[str, ListedVersion]:
    """The current versions under `prefix` as a snapshot of the bucket listed them (its manifest's entries)."""
    return {entry.key: ListedVersion(entry.key, entry.version_id, entry.etag, entry.size,
                                     parse_time(entry.last_modified), entry.storage_class, True, False)
            for entry in entries if entry.key.startswith(prefix)}


@dataclass
class HistoryCount:
    changed: int = 0  # keys whose state the history changed from the snapshot's


def _key_of(item: DesiredObject | ListedVersion) -> str:
    return item.key


def _with_versions(snapshot: Iterable[DesiredObject], history: Iterable[ListedVersion]
                   ) -> Iterator[tuple[str, DesiredObject | None, list[ListedVersion]]]:
    """Each key of the snapshot or the history in key order, with its snapshot entry and its listed versions."""
    groups = ((key, list(group)) for key, group in itertools.groupby(history, key=_key_of))
    entries = iter(snapshot)
    entry, group = next(entries, None), next(groups, None)
    last: str | None = None
    while entry is not None or group is not None:
        if group is None or (entry is not None and entry.key < group[0]):
            assert entry is not None
            key, found, versions = entry.key, entry, []
            entry = next(entries, None)
        elif entry is None or group[0] < entry.key:
            key, found, versions = group[0], None, group[1]
            group = next(groups, None)
        else:
            key, found, versions = entry.key, entry, group[1]
            entry, group = next(entries, None), next(groups, None)
        if last is not None and key <= last:
            raise ValueError(f"not in key order: {key!r} after {last!r}")
        last = key
        yield key, found, versions


def states_at(bucket: str, snapshot: Iterable[DesiredObject], history: Iterable[ListedVersion], moment: datetime,
              counted: HistoryCount) -> Iterator[tuple[str, DesiredObject | None, list[ListedVersion]]]:
    """The state at `moment`, a key at a time in key order: the snapshot's, with each key's latest version or delete
    marker up to `moment` from the bucket's complete `history` where that is newer. Both come in key order (the
    history's versions of a key together, as ListObjectVersions lists them). Yields each key of either with its
    state (None: it holds nothing at `moment`) and its listed versions; counts in `counted` the keys the history
    changed (none: the snapshot's own state, the very same objects)."""
    for key, entry, versions in _with_versions(snapshot, history):
        latest: ListedVersion | None = None
        for item in versions:
            if item.last_modified > moment:
                continue
            # Listing times have one-second resolution: on a tie the listing's IsLatest decides, then a
            # version wins over a delete marker (restoring data, never hiding it, when in doubt).
            if latest is None or ((item.last_modified, item.is_latest, not item.delete_marker)
                                  > (latest.last_modified, latest.is_latest, not latest.delete_marker)):
                latest = item
        state: DesiredObject | None = None
        if latest is None:
            # No history up to `moment` (versions removed by hand, or written before versioning):
            # the snapshot's entry stands if it existed by then.
            if entry and entry.last_modified and parse_time(entry.last_modified) <= moment:
                state = entry
        elif not latest.delete_marker:
            same = entry and entry.version_id == latest.version_id and entry.etag == latest.etag
            state = entry if entry and same else DesiredObject.of_version(bucket, latest)
        if (entry and entry.identity()) != (state and state.identity()):
            counted.changed += 1
        yield key, state, versions


def state_at(bucket: str, snapshot: Mapping[str, DesiredObject], history: Iterable[ListedVersion],
             moment: datetime) -> tuple[dict[str, DesiredObject], int]:
    """`states_at` held: the state at `moment` and how many keys the history changed."""
    counted = HistoryCount()
    ordered = (snapshot[key] for key in sorted(snapshot))
    state = {key: want for key, want, _ in states_at(bucket, ordered, sorted(history, key=_key_of), moment, counted)
             if want is not None}
    return state, counted.changed


def same_version(want: DesiredObject, have: ListedVersion, target: str) -> bool:
    """The target holds the very version desired: nothing has rewritten it. A `null` version id alone
    proves nothing."""
    return want.home_bucket == target and want.version_id == have.version_id != "null"


def may_be_same(want: DesiredObject, have: ListedVersion) -> bool:
    """Another version that a HeadObject may prove equal: the same size, and the same ETag or a full-object
    checksum known to compare with."""
    return want.size == have.size and (want.etag == have.etag or bool(want.body().checksums))


SameObjects = Callable[[list[tuple[DesiredObject, ListedVersion]]], Iterable[bool]]
Pair = tuple[DesiredObject | None, ListedVersion | None]
DiffKind = Literal["missing", "changed", "unchanged", "remove"]
Change = Literal["copy", "archived", "remove"]
LOOKED_AT_ONCE = 256  # pairs only a HeadObject each can decide, asked together
HELD_AT_MOST = 4096  # decisions held back, in key order, behind pairs not yet asked


@dataclass(frozen=True)
class Decided:
    """What the restore does with one key: copy it (missing, changed), leave it (unchanged) or remove it."""

    kind: DiffKind | None  # None: for a HeadObject to decide
    want: DesiredObject | None
    have: ListedVersion | None
    compared: bool = False  # decided by a HeadObject

    @property
    def key(self) -> str:
        item = self.want or self.have
        assert item is not None  # a pair has one or both
        return item.key

    @property
    def change(self) -> Change | None:
        """What the restore does with the key: copy it back, restore it from archive first (a copy would fail until
        then), remove it, or nothing."""
        if self.kind == "remove":
            return "remove"
        if self.kind in ("missing", "changed"):
            assert self.want is not None  # missing or changed: a desired object
            return "archived" if self.want.archived else "copy"
        return None


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


Want = TypeVar("Want", bound=Keyed)
Have = TypeVar("Have", bound=Keyed)


def keyed_pairs(desired: Iterable[Want], current: Iterable[Have]) -> Iterator[tuple[Want | None, Have | None]]:
    """Each key of either in key order, with its desired item and its current one (None where it has none). Both
    come in key order, one per key; anything else raises ValueError."""
    wants, haves = iter(desired), iter(current)
    want, have = next(wants, None), next(haves, None)
    last: str | None = None
    while want is not None or have is not None:
        pair: tuple[Want | None, Have | None]
        if have is None or (want is not None and want.key < have.key):
            pair, want = (want, None), next(wants, None)
        elif want is None or have.key < want.key:
            pair, have = (None, have), next(haves, None)
        else:
            pair, want, have = (want, have), next(wants, None), next(haves, None)
        key = (pair[0] or pair[1]).key  # type: ignore[union-attr]
        if last is not None and key <= last:
            raise ValueError(f"not in key order: {key!r} after {last!r}")
        last = key
        yield pair


def fingerprint_row(current: ListedVersion | ManifestEntry) -> list[str]:
    """A current version's row in a bucket state's fingerprint, whether listed or recorded by a snapshot."""
    return [current.key, current.version_id, current.etag]


def _classified(want: DesiredObject | None, have: ListedVersion | None, target: str, written: Written) -> Decided:
    if want is None:
        return Decided("remove", None, have)
    if have is None:
        return Decided("missing", want, None)
    if same_version(want, have, target) or (have.version_id, have.etag) in written.get(want.key, ()):
        return Decided("unchanged", want, have)
    if may_be_same(want, have):
        return Decided(None, want, have)
    return Decided("changed", want, have)


def decide(pairs: Iterable[Pair], target: str, written: Written, same_objects: SameObjects) -> Iterator[Decided]:
    """What differs between the desired and the current state of `target`, a key at a time in key order. Pairs the
    listing cannot decide (`may_be_same`) go to `same_objects`, LOOKED_AT_ONCE at a time; what follows one waits
    for its answer (at most HELD_AT_MOST decisions), so that the answers come in key order too."""
    held: list[Decided] = []
    asked = 0

    def release() -> Iterator[Decided]:
        pending = [(item.want, item.have) for item in held if item.kind is None]
        answers = iter(list(same_objects(pending)))  # type: ignore[arg-type]  # both sides of an undecided pair
        for item in held:
            if item.kind is None:
                same = next(answers)
                yield Decided("unchanged" if same else "changed", item.want, item.have, compared=True)
            else:
                yield item
        if next(answers, None) is not None:
            raise ValueError("more answers than pairs asked")
        held.clear()

    for want, have in pairs:
        item = _classified(want, have, target, written)
        if item.kind is not None and not held:
            yield item
            continue
        held.append(item)
        asked += item.kind is None
        if asked >= LOOKED_AT_ONCE or len(held) >= HELD_AT_MOST:
            yield from release()
            asked = 0
    yield from release()


def content_diff(desired: Mapping[str, DesiredObject], current: Mapping[str, ListedVersion], target: str,
                 written: Written, same_objects: SameObjects) -> ContentDiff:
    """What differs between the desired and the current state of `target` (`decide`, held)."""
    diff = ContentDiff()
    pairs = keyed_pairs(sorted(desired.values(), key=_key_of), sorted(current.values(), key=_key_of))
    for item in decide(pairs, target, written, same_objects):
        diff.add(item)
    return diff
