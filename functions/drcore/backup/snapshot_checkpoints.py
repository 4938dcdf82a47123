"""Checkpoints of an unfinished bucket snapshot, the base it builds on, and the key ranges it lists.

An incremental snapshot lists key ranges concurrently: ranges of about equal numbers of the base's objects,
cut at the base's keys (`key_ranges`), each listed from the key before it (ListObjectVersions' KeyMarker
alone lists the keys after it) up to its last key. A first snapshot has one range: the whole bucket.

After every listing page of a range a snapshot writes a checkpoint, `snapshots/s3/<bucket>/<backup id>/
progress/<page>.json` for the first range (as single-range snapshots always have) and `progress/r<range>-
<page>.json` for the others (gzip-encoded JSON, write-once): the ranges, the listing markers to continue
from, the range's stats so far and that page's manifest entries. Entries carried over unchanged from the
base (the newest complete snapshot before this one) are named by their position in the base's manifest,
as runs `[first, count]`, so an incremental snapshot's checkpoints hold little more than its new entries.
Retention reads the content a running snapshot has checkpointed, so that it is not removed under it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypedDict

from aws_lambda_powertools import Logger

from drcore.backup.manifest import (
    ManifestCorrupt,
    ManifestEntry,
    ManifestStream,
    SnapshotManifest,
    SnapshotNotFound,
    open_manifest,
)
from drcore.state.backup_store import BackupStore, Component, backup_prefix

logger = Logger(child=True)

PAGE_CHECKPOINTS = "progress/"

# A new entry as its JSON document, or a run [first position, count] of entries carried from the base.
EncodedEntry = dict[str, Any] | list[int]


@dataclass(frozen=True)
class KeyRange:
    """The keys after `start_after` (None: from the first) up to `last`, included (None: to the end)."""

    start_after: str | None
    last: str | None

    def holds(self, key: str) -> bool:
        return (self.start_after is None or key > self.start_after) and (self.last is None or key <= self.last)


WHOLE_BUCKET = (KeyRange(None, None),)


# Key ranges an incremental snapshot lists at once (key_ranges): each is a sequence of pages, so a bucket of N
# pages is listed in about N / LISTING_RANGES round trips.
LISTING_RANGES = 8


def range_count(objects: int, page_size: int, most: int) -> int:
    """How many key ranges a snapshot whose base holds `objects` lists at once: up to `most`, each at least a page."""
    return max(1, min(most, objects // page_size))


def key_ranges(base: SnapshotManifest | None, page_size: int, most: int) -> tuple[KeyRange, ...]:
    """Up to `most` ranges of about equal numbers of the base's objects, each at least a listing page of them:
    the whole bucket when there is no base (nothing says where its keys are) or it fits in two pages."""
    keys = [entry.key for entry in base.objects] if base else []
    count = range_count(len(keys), page_size, most)
    if count < 2:
        return WHOLE_BUCKET
    return ranges_cut_at([keys[len(keys) * n // count - 1] for n in range(1, count)])


def ranges_spread_over(keys: Iterable[str], page_size: int, most: int) -> tuple[KeyRange, ...]:
    """Up to `most` ranges of roughly equal numbers of the sorted `keys` (within a factor of two), each at least a
    listing page of them, for keys whose number is not known ahead (a restore point under a prefix): one pass,
    keeping every `stride`-th key and doubling the stride whenever more than twice `most` are kept."""
    kept: list[str] = []
    stride, seen = 1, 0
    for seen, key in enumerate(keys, 1):
        if seen % stride == 0:
            kept.append(key)
            if len(kept) > 2 * most:
                kept, stride = kept[1::2], 2 * stride
    count = range_count(seen, page_size, most)
    if count < 2 or not kept:
        return WHOLE_BUCKET
    return ranges_cut_at(sorted({kept[len(kept) * n // count - 1] for n in range(1, count)}))


def ranges_cut_at(bounds: list[str]) -> tuple[KeyRange, ...]:
    """The key ranges between sorted `bounds` (each range's last key), the first from the bucket's start, the last
    to its end: every key, new ones too, falls in exactly one."""
    return tuple(KeyRange(start, last) for start, last in zip([None, *bounds], [*bounds, None], strict=True))


class Checkpoint(TypedDict, total=False):
    page: int  # of its range
    base: str | None  # the base's backup id
    entries: list[EncodedEntry]
    stats: dict[str, Any]  # its range's so far
    next: dict[str, str]  # the listing markers to continue from
    truncated: bool  # False: the range's listing is done
    range: int  # absent in checkpoints written before ranges: the only range, 0
    ranges: list[list[str | None]]  # every range's [start_after, last]; absent when sharded (in its shard plan)
    sharded: bool  # a shard of a fanned-out snapshot (drcore.backup.snapshot_shards)


def checkpoint_key(bucket: str, backup_id: str, page: int, key_range: int = 0) -> str:
    name = f"{page:06d}" if key_range == 0 else f"r{key_range:03d}-{page:06d}"
    return backup_prefix(Component.S3, bucket, backup_id) + f"{PAGE_CHECKPOINTS}{name}.json"


def checkpoint_keys(store: BackupStore, bucket: str, backup_id: str, key_range: int | None = None) -> list[str]:
    """A snapshot's checkpoint keys, sorted (a range's pages in order); only range `key_range`'s when given."""
    prefix = backup_prefix(Component.S3, bucket, backup_id) + PAGE_CHECKPOINTS
    if key_range is not None:  # range 0's pages are named by their number alone (000001.json ...)
        prefix += "0" if key_range == 0 else f"r{key_range:03d}-"
    return sorted(entry["Key"] for entry in store.keys(prefix))


def _range_of(key: str) -> int:
    name = key.rsplit("/", 1)[-1]
    return int(name[1:name.index("-")]) if name.startswith("r") else 0


def last_checkpoints(store: BackupStore, bucket: str, backup_id: str,
                     pool: ThreadPoolExecutor | None = None) -> dict[int, Checkpoint]:
    """Each range's last checkpoint, by range, of a snapshot that has written some; read in `pool` when given (a
    fanned-out snapshot has a range per shard)."""
    last_keys = {_range_of(key): key for key in checkpoint_keys(store, bucket, backup_id)}
    read = pool.map if pool else map
    return dict(zip(last_keys, read(lambda key: read_checkpoint(store, key), last_keys.values()), strict=True))


def last_checkpoint(store: BackupStore, bucket: str, backup_id: str, key_range: int) -> Checkpoint | None:
    """Range `key_range`'s last checkpoint, or None before its first page."""
    keys = checkpoint_keys(store, bucket, backup_id, key_range)
    return read_checkpoint(store, keys[-1]) if keys else None


def read_checkpoint(store: BackupStore, key: str) -> Checkpoint:
    checkpoint: Checkpoint = json.loads(gzip.decompress(store.get_bytes(key)))
    return checkpoint


def write_checkpoint(store: BackupStore, bucket: str, backup_id: str, checkpoint: Checkpoint) -> None:
    """Write one page's checkpoint, once (AlreadyWritten: another invocation checkpointed that page of its range)."""
    body = gzip.compress(json.dumps(checkpoint, separators=(",", ":")).encode(), mtime=0)
    store.put_once(checkpoint_key(bucket, backup_id, checkpoint["page"], checkpoint.get("range", 0)), body,
                   "application/json", ContentEncoding="gzip")


def snapshot_in_progress_content(store: BackupStore, bucket: str, backup_id: str) -> set[str]:
    """The content an unfinished snapshot's checkpoints name besides its base's (retention keeps the base)."""
    keys: set[str] = set()
    for checkpoint in checkpoint_keys(store, bucket, backup_id):
        entries = read_checkpoint(store, checkpoint)["entries"]
        keys |= {item["content_key"] for item in entries if isinstance(item, dict) and item["content_key"]}
    return keys


def newest_complete_before(store: BackupStore, bucket: str, backup_id: str,
                           backup_ids: list[str] | None = None) -> ManifestStream | None:
    """The manifest the snapshot `backup_id` builds on, opened (its chain read and checked, its entries not yet
    decoded): the newest earlier one that reads back, tried newest first (one GET per manifest of its chain, not a
    HEAD per retained snapshot). An incomplete or corrupt one is passed over, costing only reuse. `backup_ids`: the
    bucket's snapshot ids, when the caller listed them already."""
    ids = store.backup_ids(Component.S3, bucket) if backup_ids is None else backup_ids
    for earlier in reversed([other for other in ids if other < backup_id]):
        try:
            return open_manifest(store, bucket, earlier)
        except SnapshotNotFound:
            continue  # never finished: no manifest
        except ManifestCorrupt:
            logger.warning("passing over a corrupt manifest", extra={"backup_id": earlier})
    return None


class SnapshotBase:
    """The complete snapshot a new one builds on. An object listed with the same version, ETag, size,
    time and storage class as in the base is carried over: no HeadObject, no copy."""

    def __init__(self, manifest: SnapshotManifest | None) -> None:
        self.backup_id = manifest.backup_id if manifest else None
        self._manifest = manifest
        self._entries = manifest.objects if manifest else ()
        self._positions = {(entry.key, entry.version_id): n for n, entry in enumerate(self._entries)}

    def content_keys(self) -> set[str]:
        return self._manifest.content_keys() if self._manifest else set()

    def position_of(self, version: Mapping[str, Any]) -> int | None:
        position = self._positions.get((version["Key"], version["VersionId"]))
        return position if position is not None and self._entries[position].describes(version) else None

    def entry(self, position: int) -> ManifestEntry:
        return self._entries[position]

    def encode(self, entries: list[ManifestEntry], positions: list[int | None]) -> list[EncodedEntry]:
        encoded: list[EncodedEntry] = []
        for entry, position in zip(entries, positions, strict=True):
            last = encoded[-1] if encoded else None
            if position is None:
                encoded.append(entry.to_json())
            elif isinstance(last, list) and sum(last) == position:
                last[1] += 1
            else:
                encoded.append([position, 1])
        return encoded

    def decode(self, encoded: list[EncodedEntry]) -> list[ManifestEntry]:
        """Entries `encode` wrote, against this base (a shard's: its slice of the base)."""
        entries: list[ManifestEntry] = []
        for item in encoded:
            if isinstance(item, dict):
                entries.append(ManifestEntry.from_json(item))
            else:
                entries += self._entries[item[0]:item[0] + item[1]]
        return entries
