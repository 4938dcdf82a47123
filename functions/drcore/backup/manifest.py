"""The bucket snapshot manifest format: what a snapshot recorded, and where each object's body is stored.

A complete snapshot is its manifest, `snapshots/s3/<bucket>/<backup id>/manifest.json.gz` in the backup
store: gzip-compressed JSON lines, a header line (format, bucket, id, times, counts, stats, kind), then
one line per object (a ManifestEntry). Its `x-amz-meta-sha256` metadata holds the SHA-256 of the stored
(gzip) bytes, checked on every read.

Storage grows with change: a manifest is `full` (every object) or a `delta` on its base snapshot (the one
the snapshot built on): only the entries that are new or differ from the base's, and `{"removed": key}`
for keys the base held and this snapshot does not. The header names the base and the depth (deltas since
the last full manifest); a snapshot writes a full manifest every `full_manifest_every` snapshots of a
chain, and whenever its delta would hold more than half the objects. Reading a delta reads its chain, one
manifest per link (each checked against its own SHA-256), and answers every object, so no reader sees
the difference; retention keeps every manifest a kept snapshot's chain needs (`SnapshotManifest.needs`).
Snapshots, retention and restores depend on this module, not on each other.

Manifests are written and read in key order, one per key, which is what lets a manifest of millions of
objects be handled without holding its entries: `write_manifest` takes the entries as a stream and goes
through the base's beside them, holding only gzip bodies, and `open_manifest` reads a chain's bodies
(checked) and decodes the objects as they are asked for, a delta's merged with its base's. Lines out of key
order, counts unlike the header's, or a removal of a key the base does not hold make a manifest corrupt.
`read_manifest` holds every object, for what is small enough.

Each object's body is stored once per content under `content/<algorithm>/<digest>`:

    content/sha256/<hex>                    S3 holds a full-object SHA-256 for the object (ChecksumSHA256)
    content/sha256-composite/<hex>-<parts>  S3 holds a composite (per-part) SHA-256 of a multipart upload
    content/etag/<etag>-<size>              otherwise: the ETag (without quotes) and the size in bytes

A full-object SHA-256 names the content exactly. The ETag of a single-part upload under SSE-S3 is the
body's MD5, so ETag + size names the content too (only a deliberate MD5 collision could fool it). The
ETag of a multipart upload, and a composite checksum, also depend on the part sizes: the same body
uploaded in other parts gets another key and is stored twice, never confused. Under SSE-KMS or SSE-C an
ETag is not a digest of the body: such objects are never wrongly shared, but identical bodies are not
deduplicated either.

What proves a body (drcore.aws.object_identity) is recorded with each entry: the object's own
full-object checksum where S3 held one, and the content object as the snapshot stored (or found) it:
its ETag, which pins every copy from it, and the full-object SHA-256 S3 computed of the stored bytes.
Each entry also names the content object's version, as the snapshot stored or found it: every read of it
(a restore's copy, a check's HEAD) names that version, so a delete marker or a new version put on the key
later changes nothing a restore reads; the manifest's own version is recorded beside it
(drcore.state.backup_store.ManifestRecord). Manifests written before versions were recorded read the key's
current object, pinned by its ETag only. A content body replaced after the snapshot is refused by a
restore and found by the backup checks (drcore.backup.content_check), and a restored object is proven
equal to the restore point even where its ETag is not the original's. The headers S3 keeps with an
object (content type, user metadata, Cache-Control, Content-Disposition, Content-Encoding,
Content-Language, Expires) and its tags are part of what "equal" means, and a restore writes them.

Two formats are read:

- `s3-snapshot/2` (written now): object metadata travels with the content. A snapshot copies a new
  version's body with S3's copy, which carries the content type, user metadata, kept headers and tags
  along, so the content object holds them and its entry says so (`described_by_content`) and records none
  of its own. Only a new version whose content was stored already (by another object, or an earlier
  version) is described by a HeadObject (and GetObjectTagging where it has tags), and its entry records
  `content_type`, `metadata`, `headers` and `tags` itself. New versions' content keys come from the
  listing alone (ETag and size): no request is needed to name them.
- `s3-snapshot/1`: every entry records its headers (`tags` absent: not recorded, not restored or
  compared), and content keys follow the object's SHA-256 where S3 held one.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import OBJECT_NOT_FOUND, error_code
from drcore.aws.object_identity import (
    CHECKSUM_ALGORITHMS,
    BodyIdentity,
)
from drcore.aws.s3_copy import CopiedObject
from drcore.core.errors import DrError
from drcore.core.models import to_iso
from drcore.state.backup_store import (
    BackupListing,
    BackupStore,
    Component,
    GzipJsonLines,
    content_key,
    gzip_json_lines,
    manifest_key,
    read_gzip_json_lines,
    readable_version,
)

MANIFEST_FORMAT = "s3-snapshot/2"
READABLE_FORMATS = frozenset({"s3-snapshot/1", MANIFEST_FORMAT})
FULL, DELTA = "full", "delta"  # a manifest lists every object, or only what changed since its base's
SHA256_METADATA = "sha256"  # x-amz-meta-sha256: hex SHA-256 of the manifest's stored (gzip) bytes
CONTENT_PREFIX = content_key("", "")[: -len("/")]  # "content/", the layout's content root


class SnapshotNotFound(DrError):
    """No complete snapshot with this id: it never existed, was pruned, or has not finished."""


class ManifestCorrupt(DrError):
    """A manifest does not match the SHA-256 recorded when it was written, or cannot be read."""


@dataclass(frozen=True)
class StoredBody:
    """A content object as a snapshot stored or found it: its ETag, the full-object SHA-256 (base64) S3
    holds for it (None where it holds none), and its version (None where the store keeps no versions, or
    the base recorded none)."""

    etag: str
    sha256: str | None = None
    version_id: str | None = None
    locked_until: str | None = None  # the earliest its Object Lock retention can end, where the snapshot knew it

    @classmethod
    def of_copy(cls, copied: CopiedObject, default_lock: timedelta | None) -> StoredBody:
        """The body a copy stored, in a store whose default Object Lock retention is `default_lock`."""
        created = copied.last_modified
        return cls(copied.etag, copied.sha256, readable_version(copied.version_id),
                   locked_until(created, default_lock) if created is not None else None)


def locked_until(created: datetime, default_lock: timedelta | None) -> str | None:
    """The earliest an object created at (or after) `created` is released by the default retention: S3 locks a
    new object for the default from its creation."""
    return to_iso(created + default_lock) if default_lock is not None else None


@dataclass(frozen=True, slots=True)  # slots: no dict per entry, and manifests are read by the million
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
    # Fields below are absent from manifests written before they were recorded: None there.
    headers: dict[str, str] | None = None  # the KEPT_HEADERS of drcore.aws.object_identity the object had
    content_etag: str | None = None  # the content object's ETag when the snapshot stored or found it
    content_sha256: str | None = None  # the full-object SHA-256 (base64) S3 computed of the stored body
    content_version_id: str | None = None  # the content object's version, as the snapshot stored or found it
    # The earliest the content object's Object Lock retention can end: its creation plus the bucket's default
    # retention, where the snapshot that stored it knew both (retention extends it: drcore.backup.lock_extension).
    content_locked_until: str | None = None
    # s3-snapshot/2: True when the content object carries this version's headers and tags (this snapshot's
    # copy of it stored the body); then content_type, metadata, headers and tags are not recorded here.
    described_by_content: bool = False
    tags: dict[str, str] | None = None  # the version's tags where recorded here; None in s3-snapshot/1

    def describes(self, version: Mapping[str, Any]) -> bool:
        """Whether this entry is the listed version; a `null` version id alone does not say so."""
        return (self.version_id == version["VersionId"] and self.etag == version["ETag"]
                and self.size == version["Size"] and self.last_modified == to_iso(version["LastModified"])
                and self.storage_class == version.get("StorageClass", "STANDARD"))

    def body(self) -> BodyIdentity:
        """What proves an object holds this entry's body: its size, its ETag, its full-object checksums."""
        return BodyIdentity.recorded(self.size, self.etag, self.checksum, self.content_sha256)

    def stored_body(self) -> BodyIdentity:
        """What proves the content object holds this entry's body: the same, or its ETag as stored."""
        return self.body().or_stored_as(self.content_etag)

    def stored(self) -> StoredBody | None:
        return StoredBody(self.content_etag, self.content_sha256, self.content_version_id,
                          self.content_locked_until) if self.content_etag else None

    def with_stored(self, stored: StoredBody | None) -> ManifestEntry:
        if stored is None or self.content_key is None:
            return self
        return replace(self, content_etag=stored.etag, content_sha256=stored.sha256,
                       content_version_id=stored.version_id, content_locked_until=stored.locked_until)

    def to_json(self) -> dict[str, Any]:
        # not asdict(): its deep copy costs more than the whole page's work
        return {name: getattr(self, name) for name in _ENTRY_FIELDS}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ManifestEntry:
        # Names and values of a small vocabulary, the same in every entry, are held once (sys.intern), not once per
        # entry: a fifth of an entry's memory, and manifests are read by the million.
        checksum = document.get("checksum")
        return cls(**document | {
            "storage_class": sys.intern(document["storage_class"]),
            "checksum": checksum and {sys.intern(name): value if name == "value" else sys.intern(value)
                                      for name, value in checksum.items()}})


_ENTRY_FIELDS = tuple(field.name for field in fields(ManifestEntry))


@dataclass(frozen=True)
class ChainLink:
    """A manifest that a delta manifest is read through (its base, the base's base, ... down to a full one)."""

    backup_id: str
    version_id: str | None
    locked_until: str | None


@dataclass(frozen=True)
class SnapshotManifest:
    """A snapshot as read: every object it holds, whether its manifest is full or a delta on a base."""

    bucket: str
    backup_id: str
    started_at: str
    finished_at: str
    stats: dict[str, Any]
    objects: tuple[ManifestEntry, ...]
    locked_until: str | None = None  # the earliest the manifest's own lock can end, where known when written
    version_id: str | None = None  # the version it was read as (its record's); not part of what is written
    base_id: str | None = None  # a delta manifest's base snapshot; None for a full manifest
    depth: int = 0  # how many delta manifests lead from a full one to this one (0: full)
    chain: tuple[ChainLink, ...] = ()  # as read: the manifests below this one, newest first; () for a full one

    def needs(self) -> tuple[str, ...]:
        """The snapshots whose manifests this one is read through: retention keeps them while it keeps this one."""
        return tuple(link.backup_id for link in self.chain)

    def entries(self) -> Iterator[ManifestEntry]:
        return iter(self.objects)

    def content_keys(self) -> set[str]:
        return {entry.content_key for entry in self.objects if entry.content_key}

    def stored_bodies(self) -> dict[str, StoredBody | None]:
        """Each content key this snapshot references, with the content object as it was recorded."""
        bodies: dict[str, StoredBody | None] = {}
        for entry in self.objects:
            if entry.content_key and bodies.get(entry.content_key) is None:
                bodies[entry.content_key] = entry.stored()
        return bodies


def content_key_of(etag: str, size: int, checksum: Mapping[str, str] | None) -> str:
    if checksum and checksum["algorithm"] == "SHA256":
        encoded, _, parts = checksum["value"].partition("-")
        digest = base64.b64decode(encoded).hex()
        if parts or checksum.get("type") == "COMPOSITE":
            return content_key("sha256-composite", f"{digest}-{parts}" if parts else digest)
        return content_key("sha256", digest)
    unquoted = etag.strip('"')
    return content_key("etag", f"{unquoted}-{size}")


def checksum_of(head: Mapping[str, Any]) -> dict[str, str] | None:
    """The checksum a HeadObject answer (ChecksumMode ENABLED) carries, strongest algorithm first."""
    for algorithm in CHECKSUM_ALGORITHMS:
        if head.get(f"Checksum{algorithm}"):
            checksum = {"algorithm": algorithm, "value": head[f"Checksum{algorithm}"]}
            if head.get("ChecksumType"):
                checksum["type"] = head["ChecksumType"]
            return checksum
    return None


@dataclass(frozen=True)
class SnapshotHeading:
    """What a manifest's header says of its snapshot besides what is counted from its entries."""

    bucket: str
    backup_id: str
    started_at: str
    finished_at: str
    stats: dict[str, Any]
    locked_until: str | None = None


def write_manifest(store: BackupStore, heading: SnapshotHeading, entries: Iterable[ManifestEntry],
                   base: SnapshotManifest | ManifestStream | None = None) -> None:
    """Write a snapshot's manifest, once (AlreadyWritten if it exists): it completes the snapshot. Then record
    the version it was written as. `entries`: every object, in key order. With `base`, as a delta on that snapshot
    (whose manifest must stay while this one does: retention keeps it, drcore.backup.retention) unless more than
    half the objects changed; else in full.

    One pass over `entries` and the base's, side by side in key order, writes both the full lines and the delta's
    (each entry new or unlike the base's, then `{"removed": key}` for each key of the base no longer held), held
    compressed, never as entries: a manifest of millions of objects is written in about the memory of its body."""
    full, changed, removed = GzipJsonLines(), GzipJsonLines(), GzipJsonLines()
    objects = size = 0
    held = base.entries() if base is not None else iter(())
    below = next(held, None)
    previous: str | None = None
    for entry in entries:
        if previous is not None and entry.key <= previous:
            raise ValueError(f"a manifest's entries are written in key order: {entry.key!r} came after {previous!r}")
        previous = entry.key
        while below is not None and below.key < entry.key:
            removed.write({"removed": below.key})
            below = next(held, None)
        line = full.write(entry.to_json())
        objects, size = objects + 1, size + entry.size
        if below is not None and below.key == entry.key:
            if below != entry:
                changed.write_line(line)
            below = next(held, None)
        else:
            changed.write_line(line)
    while below is not None:
        removed.write({"removed": below.key})
        below = next(held, None)
    header = {"format": MANIFEST_FORMAT, "bucket": heading.bucket, "backup_id": heading.backup_id,
              "started_at": heading.started_at, "finished_at": heading.finished_at, "objects": objects, "bytes": size,
              "stats": heading.stats, "locked_until": heading.locked_until}
    delta_lines = changed.count + removed.count
    if base is not None and delta_lines <= objects // 2:
        header |= {"kind": DELTA, "base": base.backup_id, "depth": base.depth + 1, "lines": delta_lines}
        kept = [changed, removed]
    else:  # no base, or so much changed that a delta would save little
        header |= {"kind": FULL, "lines": objects}
        kept = [full]
    del full, changed, removed  # the lines not kept go now, before the body is joined
    body = b"".join([gzip_json_lines([header]), *(lines.close() for lines in kept)])
    del kept
    digest = hashlib.sha256(body)
    # The algorithm is named with the value: S3 asks every upload into a bucket with a default Object Lock
    # retention for x-amz-sdk-checksum-algorithm (or Content-MD5), which a bare checksum value does not send.
    version_id = store.put_once(manifest_key(Component.S3, heading.bucket, heading.backup_id), body,
                                "application/gzip", Metadata={SHA256_METADATA: digest.hexdigest()},
                                ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(digest.digest()).decode())
    store.record_manifest(Component.S3, heading.bucket, heading.backup_id, version_id, body)


@dataclass(frozen=True)
class _Fetched:
    """One manifest as read and checked against its recorded SHA-256: its header, and its body still compressed."""

    backup_id: str
    location: str  # s3://<store>/<key>, for what is said of it
    header: dict[str, Any]
    body: bytes
    version_id: str | None  # as recorded when it was written; None before versions were recorded

    @property
    def base_id(self) -> str | None:
        return None if self.header.get("kind", FULL) == FULL else str(self.header["base"])

    def link(self) -> ChainLink:
        return ChainLink(self.backup_id, self.version_id, self.header.get("locked_until"))

    def manifest(self, objects: tuple[ManifestEntry, ...], chain: tuple[ChainLink, ...]) -> SnapshotManifest:
        header = self.header
        return SnapshotManifest(
            bucket=header["bucket"], backup_id=header["backup_id"], started_at=header["started_at"],
            finished_at=header["finished_at"], stats=header["stats"], objects=objects,
            locked_until=header.get("locked_until"), version_id=self.version_id, base_id=self.base_id,
            depth=len(chain), chain=chain)


def _fetch(store: BackupStore, bucket: str, backup_id: str) -> _Fetched:
    """A complete snapshot's manifest, the version recorded when it was written, verified against the SHA-256
    recorded then (a manifest written before versions were recorded: as its key holds it now, against the
    SHA-256 in its metadata), and its header read."""
    key = manifest_key(Component.S3, bucket, backup_id)
    location = f"s3://{store.bucket}/{key}"
    record = store.recorded_manifest(Component.S3, bucket, backup_id)
    try:
        if record is not None and record.version_id:
            response = store.s3.get_object(Bucket=store.bucket, Key=key, VersionId=record.version_id)
        else:
            response = store.s3.get_object(Bucket=store.bucket, Key=key)
    except ClientError as error:
        if error_code(error) in OBJECT_NOT_FOUND:
            if record is not None:
                raise ManifestCorrupt(f"{location}, version {record.version_id}, is gone") from error
            raise SnapshotNotFound(f"no complete snapshot {backup_id} of bucket {bucket}") from error
        raise
    body = response["Body"].read()
    recorded = record.sha256 if record is not None else response.get("Metadata", {}).get(SHA256_METADATA)
    if recorded != hashlib.sha256(body).hexdigest():
        raise ManifestCorrupt(f"{location} does not match its recorded SHA-256 {recorded}")
    try:
        header = next(read_gzip_json_lines(body))
        fetched = _Fetched(backup_id, location, header, body, record.version_id if record else None)
        known = (header.get("format") in READABLE_FORMATS and isinstance(header.get("objects"), int)
                 and isinstance(header.get("stats"), dict)
                 and all(isinstance(header.get(name), str) for name in ("bucket", "backup_id", "started_at",
                                                                        "finished_at")))
        base_id = fetched.base_id
    except (StopIteration, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ManifestCorrupt(f"{location} cannot be read: {error}") from error
    if not known:
        raise ManifestCorrupt(f"{location} is not a complete snapshot manifest of a known format "
                              f"({', '.join(sorted(READABLE_FORMATS))})")
    if base_id is not None and not base_id < backup_id:
        raise ManifestCorrupt(f"snapshot {backup_id} names base {base_id}, which is not older")
    return fetched


def _entries(fetched: _Fetched, below: Iterator[ManifestEntry] | None) -> Iterator[ManifestEntry]:
    """A manifest's objects, decoded as they are asked for: a full manifest's lines, or a delta's applied to its
    base's objects (`below`), side by side in key order. What does not read as a complete manifest in key order, as
    its header counts it, raises ManifestCorrupt where it is found."""
    objects = 0
    try:
        for entry in _in_key_order(fetched, _lines(fetched)) if below is None else _applied(fetched, below):
            objects += 1
            yield entry
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ManifestCorrupt(f"{fetched.location} cannot be read: {error}") from error
    if objects != fetched.header["objects"]:
        raise ManifestCorrupt(f"{fetched.location} holds {objects} objects, and its header says "
                              f"{fetched.header['objects']}: it is not a complete snapshot manifest")


def _lines(fetched: _Fetched) -> Iterator[dict[str, Any]]:
    """The documents after the header, as many as the header says (a manifest cut short raises)."""
    lines = 0
    for document in itertools.islice(read_gzip_json_lines(fetched.body), 1, None):
        lines += 1
        yield document
    expected = fetched.header.get("lines", fetched.header["objects"])
    if lines != expected:
        raise ManifestCorrupt(f"{fetched.location} has {lines} lines, not the {expected} its header says: it is not "
                              "a complete snapshot manifest")


def _in_key_order(fetched: _Fetched, documents: Iterable[dict[str, Any]]) -> Iterator[ManifestEntry]:
    """Entries as a snapshot lists them, one per key in key order (UTF-8 byte order is code point order)."""
    previous: str | None = None
    for document in documents:
        entry = ManifestEntry.from_json(document)
        if previous is not None and entry.key <= previous:
            raise ManifestCorrupt(f"{fetched.location} is not in key order: {entry.key!r} after {previous!r}")
        previous = entry.key
        yield entry


def _applied(fetched: _Fetched, below: Iterator[ManifestEntry]) -> Iterator[ManifestEntry]:
    """A delta's lines applied to its base's objects: its removals read first (the only lines held), then its
    entries merged with the base's in key order, each in place of the base's of its key."""
    removed = {document["removed"] for document in _lines(fetched) if "removed" in document}
    changes = _in_key_order(fetched, (document for document in _lines(fetched) if "removed" not in document))
    change = next(changes, None)
    dropped = 0
    for entry in below:
        while change is not None and change.key < entry.key:
            yield change
            change = next(changes, None)
        if change is not None and change.key == entry.key:
            yield change
            change = next(changes, None)
        elif entry.key in removed:
            dropped += 1
        else:
            yield entry
    while change is not None:
        yield change
        change = next(changes, None)
    if dropped != len(removed):
        raise ManifestCorrupt(f"{fetched.location} removes {len(removed) - dropped} keys its base does not hold")


@dataclass(frozen=True)
class ManifestStream:
    """A snapshot's manifest opened to be read an entry at a time: every manifest of its chain read and checked
    against its SHA-256, held compressed (about 95 bytes per object, as the bench measures), and the objects decoded
    only as `entries()` goes (a delta's removals aside). What the fan-out's planner and merge read a base through:
    a manifest of millions of objects never held as entries."""

    fetched: tuple[_Fetched, ...]  # this manifest, then its chain: its base, the base's base ... down to a full one

    @property
    def backup_id(self) -> str:
        return self.fetched[0].backup_id

    @property
    def bucket(self) -> str:
        return str(self.fetched[0].header["bucket"])

    @property
    def objects(self) -> int:
        return int(self.fetched[0].header["objects"])

    @property
    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.fetched[0].header["stats"]
        return stats

    @property
    def depth(self) -> int:
        return len(self.fetched) - 1

    def entries(self) -> Iterator[ManifestEntry]:
        stream: Iterator[ManifestEntry] | None = None
        for fetched in reversed(self.fetched):
            stream = _entries(fetched, stream)
        assert stream is not None
        return stream

    def read(self) -> SnapshotManifest:
        """Every object, held: for a snapshot small enough to be read whole."""
        return self.fetched[0].manifest(tuple(self.entries()), tuple(link.link() for link in self.fetched[1:]))


def open_manifest(store: BackupStore, bucket: str, backup_id: str) -> ManifestStream:
    """A complete snapshot's manifest as a stream (`ManifestStream`), one GET per manifest of its chain."""
    chain = [_fetch(store, bucket, backup_id)]
    while (base_id := chain[-1].base_id) is not None:
        with _base_of(chain[-1].backup_id, base_id):
            chain.append(_fetch(store, bucket, base_id))
    return ManifestStream(tuple(chain))


@contextmanager
def _base_of(backup_id: str, base_id: str) -> Iterator[None]:
    """Reading the base of the delta `backup_id`: one that is gone leaves the delta unreadable."""
    try:
        yield
    except SnapshotNotFound as error:
        raise ManifestCorrupt(f"snapshot {backup_id} is a delta on {base_id}, which is gone") from error


@dataclass(frozen=True)
class StoredManifest:
    """One manifest as it is stored, not read through its chain: a full manifest's objects, or the entries a delta
    changed (its removals left out), decoded as they are asked for and checked as `open_manifest` checks them. What
    retention reads: each manifest a kept snapshot is read through is read once, however many snapshots share it,
    and a kept delta's base is read as the snapshot it is."""

    fetched: _Fetched

    @property
    def backup_id(self) -> str:
        return self.fetched.backup_id

    @property
    def bucket(self) -> str:
        return str(self.fetched.header["bucket"])

    @property
    def version_id(self) -> str | None:
        return self.fetched.version_id

    @property
    def locked_until(self) -> str | None:
        return self.fetched.header.get("locked_until")

    @property
    def base_id(self) -> str | None:
        return self.fetched.base_id

    def entries(self) -> Iterator[ManifestEntry]:
        """The entries this manifest holds itself, in key order."""
        fetched = self.fetched
        try:
            yield from _in_key_order(fetched, (document for document in _lines(fetched) if "removed" not in document))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ManifestCorrupt(f"{fetched.location} cannot be read: {error}") from error


def read_stored_manifest(store: BackupStore, bucket: str, backup_id: str) -> StoredManifest:
    """A complete snapshot's own manifest, one GET, checked against its SHA-256 (`_fetch`); its base is not read."""
    return StoredManifest(_fetch(store, bucket, backup_id))


Resolved = dict[str, SnapshotManifest]  # snapshots already read, by id: a chain shared by many is read once


def read_manifest(store: BackupStore, bucket: str, backup_id: str,
                  resolved: Resolved | None = None) -> SnapshotManifest:
    """A complete snapshot's manifest with every object held (`_fetch` says what is checked); a delta manifest is
    read through its chain, one manifest read per link. A reader of a snapshot that may be past some hundreds of
    thousands of objects reads it as a stream instead (`open_manifest`)."""
    if resolved is not None and backup_id in resolved:
        return resolved[backup_id]
    fetched = _fetch(store, bucket, backup_id)
    base = None
    if fetched.base_id is not None:
        with _base_of(backup_id, fetched.base_id):
            base = read_manifest(store, bucket, fetched.base_id, resolved)
    objects = tuple(_entries(fetched, base.entries() if base else None))
    chain = (ChainLink(base.backup_id, base.version_id, base.locked_until), *base.chain) if base else ()
    manifest = fetched.manifest(objects, chain)
    if resolved is not None:
        resolved[backup_id] = manifest
    return manifest


def list_snapshots(store: BackupStore, bucket: str) -> list[BackupListing]:
    """The restorable snapshots of `bucket`, oldest first: complete ones only (their manifest exists)."""
    return [listing for listing in store.list_backups(Component.S3, bucket) if listing.complete]
