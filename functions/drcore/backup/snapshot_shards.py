"""Big bucket snapshots fanned out: the shard plan a Step Functions Distributed Map runs.

A snapshot whose base holds more than `threshold_objects` objects is cut into shards of about
`shard_objects` of the base's keys each, and a first snapshot whose census counted more keys than that at
the census's cuts (drcore.backup.snapshot_census): key ranges, as the ranges one invocation lists at once
(drcore.backup.snapshot_checkpoints.key_ranges), but each snapshotted by its own invocations, many at
once. A shard is snapshotted by the same engine code as any range (drcore.backup.bucket_snapshots): its
pages are checkpointed as range `n`'s, and continue where they stopped. When every shard is done, the
snapshot is merged: its manifest is written from the shards' checkpoints, as for a snapshot that ran in
one invocation.

Written under the snapshot's prefix before its execution starts, once each (write-once, as everything
in the store):

- `shards/base-<n>.jsonl.gz`: the base's entries in shard n (a worker reads its slice, not the whole base); none
  for a first snapshot;
- `shards/items.jsonl`: one line per shard, `{"shard": n}`: what the map's ItemReader reads;
- `shards/plan.json`: the base (null for a first snapshot), the shards' key ranges, where each slice starts in the
  base, and the base's size or the census's count (a shard prices listing the store's content by it, not by its
  slice); for a restore's safety snapshot, the recovery function's request that resumes the restore (`then`), which
  the execution sends once the snapshot is merged. Written last: a snapshot with a shard plan is a fanned-out one.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drcore.backup.manifest import ManifestEntry, ManifestStream, SnapshotManifest
from drcore.backup.snapshot_census import Census, read_census
from drcore.backup.snapshot_checkpoints import Checkpoint, KeyRange, last_checkpoints, ranges_cut_at
from drcore.core.errors import InvalidRequest
from drcore.state.backup_store import BackupStore, Component, backup_prefix, gzip_json_lines, read_gzip_json_lines

SHARDS = "shards/"
PLAN_FORMAT = "s3-snapshot-shards/1"


@dataclass(frozen=True)
class FanOutSettings:
    threshold_objects: int  # a snapshot whose base holds more objects, or whose census counts more keys, fans out
    shard_objects: int  # about this many of the base's keys per shard

    def wanted(self, objects: int) -> bool:
        """Whether a snapshot of a bucket of about `objects` keys (its base's, or its census's count) fans out."""
        return objects > self.threshold_objects


@dataclass(frozen=True)
class ShardPlan:
    backup_id: str
    base_id: str | None  # None: a first snapshot, its shards cut by its census
    ranges: tuple[KeyRange, ...]
    offsets: tuple[int, ...]  # where each shard's slice starts in the base's entries (0 without a base)
    # The base's entries, or the keys the census counted: about as many bodies as the store holds for this bucket,
    # what a listing of them costs.
    base_objects: int
    # The request the execution sends the recovery function once the snapshot is merged: a restore's, which waits for
    # this, its safety snapshot (None: a scheduled snapshot, which nothing waits for).
    then: dict[str, Any] | None = None

    def execution_input(self, bucket: str) -> dict[str, Any]:
        """What its execution is started with: the snapshot's id and shard items, and `then` as `resume`."""
        document: dict[str, Any] = {"backup_id": self.backup_id, "items_key": items_key(bucket, self.backup_id)}
        return document | ({"resume": self.then} if self.then is not None else {})

    def shard(self, number: int) -> KeyRange:
        if not 0 <= number < len(self.ranges):
            raise InvalidRequest(f"snapshot {self.backup_id} has shards 0 to {len(self.ranges) - 1}, not {number}")
        return self.ranges[number]


def shards_key(bucket: str, backup_id: str, name: str) -> str:
    return backup_prefix(Component.S3, bucket, backup_id) + SHARDS + name


def items_key(bucket: str, backup_id: str) -> str:
    return shards_key(bucket, backup_id, "items.jsonl")


def _slice_key(bucket: str, backup_id: str, number: int) -> str:
    return shards_key(bucket, backup_id, f"base-{number:05d}.jsonl.gz")


def write_shard_plan(store: BackupStore, bucket: str, backup_id: str, base: ManifestStream,
                     shard_objects: int, then: dict[str, Any] | None = None) -> ShardPlan:
    """Cut the base into shards of `shard_objects` of its keys each as its entries stream past: each shard's slice
    is written when its last entry is read, and is the only one held, so a base of millions of objects is planned in
    the memory of one slice and the base's compressed manifest. The shards' key ranges are cut at each slice's last
    key (the last range open-ended, the first from the start: keys new since the base fall into the shard their
    place in key order says). Then the items and the plan (an invocation that died half-way writes what is
    missing)."""
    entries = base.entries()
    offsets: list[int] = []
    cuts: list[str] = []
    while (in_shard := list(itertools.islice(entries, shard_objects))) or not offsets:
        offsets.append(len(offsets) * shard_objects)
        store.put_same_once(_slice_key(bucket, backup_id, len(offsets) - 1),
                            gzip_json_lines(entry.to_json() for entry in in_shard), ContentEncoding="gzip")
        if in_shard:
            cuts.append(in_shard[-1].key)
    return _write_plan(store, bucket, ShardPlan(backup_id, base.backup_id, ranges_cut_at(cuts[:-1]), tuple(offsets),
                                                base.objects, then))


def write_census_shard_plan(store: BackupStore, bucket: str, backup_id: str, census: Census,
                            then: dict[str, Any] | None = None) -> ShardPlan:
    """A first snapshot's plan: shards cut at its census's cuts, without a base (nothing to slice)."""
    ranges = census.ranges()
    return _write_plan(store, bucket, ShardPlan(backup_id, None, ranges, (0,) * len(ranges), census.objects, then))


def _write_plan(store: BackupStore, bucket: str, plan: ShardPlan) -> ShardPlan:
    items = "".join(json.dumps({"shard": number}) + "\n" for number in range(len(plan.ranges)))
    store.put_same_once(items_key(bucket, plan.backup_id), items.encode())
    document: dict[str, Any] = {"format": PLAN_FORMAT, "base": plan.base_id, "offsets": list(plan.offsets),
                                "ranges": [[bounds.start_after, bounds.last] for bounds in plan.ranges],
                                "base_objects": plan.base_objects}
    if plan.then is not None:
        document["then"] = plan.then
    store.put_same_once(shards_key(bucket, plan.backup_id, "plan.json"), json.dumps(document).encode())
    return plan


def read_shard_plan(store: BackupStore, bucket: str, backup_id: str) -> ShardPlan | None:
    """The snapshot's shard plan, or None when it is not a fanned-out snapshot."""
    document = store.get_json_if_present(shards_key(bucket, backup_id, "plan.json"))
    if document is None:
        return None
    offsets = tuple(document["offsets"])
    # A plan written before it recorded the base's size: its last slice starts a shard before the base's end.
    base_objects = document.get("base_objects", offsets[-1] + (offsets[1] if len(offsets) > 1 else 0))
    return ShardPlan(backup_id, document["base"], tuple(KeyRange(*bounds) for bounds in document["ranges"]),
                     offsets, int(base_objects), document.get("then"))


def read_base_slice(store: BackupStore, bucket: str, plan: ShardPlan, number: int) -> SnapshotManifest | None:
    """The base's entries in shard `number`, as a manifest of the base (positions counted from the slice's start);
    None for a first snapshot's shard."""
    plan.shard(number)
    if plan.base_id is None:
        return None
    documents = read_gzip_json_lines(store.get_bytes(_slice_key(bucket, plan.backup_id, number)))
    return SnapshotManifest(bucket=bucket, backup_id=plan.base_id, started_at="", finished_at="", stats={},
                            objects=tuple(ManifestEntry.from_json(document) for document in documents))


def progress_of(plan: ShardPlan, lasts: dict[int, Checkpoint]) -> dict[str, Any]:
    """How far a fanned-out snapshot is, from each shard's last checkpoint: shards done, objects listed, bytes
    copied (each shard's stats so far)."""
    finished = [number for number in range(len(plan.ranges)) if number in lasts and not lasts[number]["truncated"]]
    stats = [last["stats"] for last in lasts.values()]
    return {"backup_id": plan.backup_id, "base": plan.base_id, "shards": len(plan.ranges),
            "shards_done": len(finished), "shards_started": len(lasts),
            "objects_listed": sum(stat.get("objects_listed", 0) for stat in stats),
            "bytes_copied": sum(stat.get("bytes_copied", 0) for stat in stats)}


def fan_out_progress(store: BackupStore, bucket: str, backup_id: str, concurrency: int = 16) -> dict[str, Any] | None:
    """How far the snapshot `backup_id` is (`progress_of`); a first snapshot still counting its keys, its census's
    progress; None when it is not fanned out. Reads only."""
    plan = read_shard_plan(store, bucket, backup_id)
    if plan is None:
        census = read_census(store, bucket, backup_id)
        return None if census is None or census.done else {"backup_id": backup_id, "census": census.progress()}
    with ThreadPoolExecutor(concurrency) as pool:
        return progress_of(plan, last_checkpoints(store, bucket, backup_id, pool))
