"""Big bucket restores fanned out: the shards a Step Functions Distributed Map applies and verifies.

A restore whose apply touches more than `threshold_objects` keys (the desired state's, and those it removes) is
cut into shards of about `shard_objects` of those keys each: key ranges of the target (drcore.backup.
snapshot_checkpoints.KeyRange), each applied and then verified by the restore shard worker, many at once. A
shard's worker runs the apply's own engine on its range (drcore.restore.bucket_restore.BucketRestorer.
apply_shard): it lists the target's versions in the range, makes what still differs, records what it wrote, and
reads the range back. When every shard is done, the restore's apply merges their verifications into one.

Written by the apply under `restores/s3/<target>/<plan id>/shards/` (write-once, as everything in the store),
after its safety snapshot and before its execution starts:

- `desired-<n>.jsonl.gz`: the desired objects in shard n (a worker reads its slice, not the whole state);
- `items.jsonl`: one line per shard, `{"shard": n}`: what the map's ItemReader reads;
- `plan.json`: the restore plan, its safety snapshot, the shards' key ranges, and the recovery function's request
  that resumes the plan (a `restore_s3`, or the `comprehensive_rollback` whose step it is): the execution's last
  step sends it, and the apply it resumes merges the shards. Written last: a restore with a shard plan is a
  fanned-out one.

Written by shard n's worker, under `shards/<n>/`:

- `applied/`: the versions it wrote (drcore.restore.applied_records), as an apply's are recorded;
- `runs/<time>-<random>.json`: what each of its invocations copied and removed;
- `result.json`: its verification and the totals of its runs, once, when the shard is done.

Within a shard every copy comes before the first removal, as in an apply that runs in one invocation; across
shards they run at once, so another range's delete markers may come before this one's copies. A restore only
ever adds delete markers (every version stays), and the safety snapshot undoes it either way.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from drcore.backup.snapshot_checkpoints import KeyRange, ranges_cut_at
from drcore.core.errors import InvalidRequest
from drcore.core.models import to_iso
from drcore.restore.bucket_diff import DesiredObject, Keyed, keyed_pairs, sample
from drcore.restore.bucket_plan import RestorePlan, Verification
from drcore.state.backup_store import BackupStore, gzip_json_lines, read_gzip_json_lines, restore_shards_prefix

PLAN_FORMAT = "s3-restore-shards/1"
REPORTED_KEYS = 100  # keys of each kind named in a merged verification, as in one shard's


@dataclass(frozen=True)
class RestoreShardPlan:
    plan: RestorePlan
    safety_snapshot_id: str
    ranges: tuple[KeyRange, ...]
    resume_request: dict[str, Any]  # the recovery function's request that merges the shards, when they are done

    def shard(self, number: int) -> KeyRange:
        if not 0 <= number < len(self.ranges):
            raise InvalidRequest(f"restore {self.plan.plan_id} has shards 0 to {len(self.ranges) - 1}, not {number}")
        return self.ranges[number]


@dataclass(frozen=True)
class ShardResult:
    """What shard `number` did in all its invocations, and what its range holds, read back."""

    number: int
    copied: int
    removed: int
    bytes_copied: int
    verification: Verification

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.number, "copied": self.copied, "removed": self.removed,
                "bytes_copied": self.bytes_copied, "verification": self.verification.to_dict()}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ShardResult:
        names = {item.name for item in fields(Verification)}
        checked: dict[str, Any] = {name: tuple(value) if isinstance(value, list) else value
                                   for name, value in document["verification"].items() if name in names}
        verification = Verification(**checked)
        return cls(int(document["shard"]), int(document["copied"]), int(document["removed"]),
                   int(document["bytes_copied"]), verification)


@dataclass(frozen=True)
class ShardRun:
    """One invocation of a shard's worker: whether the shard is done, what this invocation copied and removed,
    and, once done, the shard's result."""

    number: int
    finished: bool
    copied: int
    removed: int
    bytes_copied: int
    result: ShardResult | None

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.number, "finished": self.finished, "copied": self.copied, "removed": self.removed,
                "bytes_copied": self.bytes_copied, "result": None if self.result is None else self.result.to_dict()}


def shard_key(target: str, plan_id: str, name: str) -> str:
    return restore_shards_prefix(target, plan_id) + name


def items_key(target: str, plan_id: str) -> str:
    return shard_key(target, plan_id, "items.jsonl")


def records_id(plan_id: str, number: int) -> str:
    """Shard `number`'s own place for its apply records, runs and result (`restores/s3/<target>/<this>/`)."""
    return f"{plan_id}/shards/{number:05d}"


def _slice_key(target: str, plan_id: str, number: int) -> str:
    return shard_key(target, plan_id, f"desired-{number:05d}.jsonl.gz")


def _result_key(target: str, plan_id: str, number: int) -> str:
    return shard_key(target, plan_id, f"{number:05d}/result.json")


def _runs_prefix(target: str, plan_id: str, number: int) -> str:
    return shard_key(target, plan_id, f"{number:05d}/runs/")


def write_shard_plan(store: BackupStore, plan: RestorePlan, safety_snapshot_id: str,
                     desired: Iterable[DesiredObject], target: Iterable[Keyed], shard_objects: int,
                     resume_request: dict[str, Any]) -> RestoreShardPlan:
    """Cut the keys the restore touches (the `desired` state's and the target's, both in key order) into ranges of
    `shard_objects` keys each, the first from the bucket's start and the last to its end, so that every key under
    the plan's prefix falls in exactly one; write each range's slice of the desired state as soon as the range is
    cut, holding only that slice; then the items and, last, the plan. An apply that died half-way writes what is
    missing: the same bytes, from the same safety snapshot and desired state. Whatever raises while `desired` is
    read (a state no longer as planned) leaves no plan written."""
    bucket, plan_id = plan.target_bucket, plan.plan_id
    cuts: list[str] = []
    held: list[DesiredObject] = []  # the desired objects of the range being cut
    cut_after: str | None = None
    for touched, (want, have) in enumerate(keyed_pairs(desired, target), 1):
        if cut_after is not None:  # a key beyond the last cut: the range before it is closed
            store.put_same_once(_slice_key(bucket, plan_id, len(cuts)), gzip_json_lines(map(asdict, held)),
                                ContentEncoding="gzip")
            cuts.append(cut_after)
            held, cut_after = [], None
        if want is not None:
            held.append(want)
        if touched % shard_objects == 0:
            cut_after = (want or have).key  # type: ignore[union-attr]  # a pair has one or both
    store.put_same_once(_slice_key(bucket, plan_id, len(cuts)), gzip_json_lines(map(asdict, held)),
                        ContentEncoding="gzip")
    ranges = ranges_cut_at(cuts)
    items = "".join(json.dumps({"shard": number}) + "\n" for number in range(len(ranges)))
    store.put_same_once(items_key(bucket, plan_id), items.encode())
    document = {"format": PLAN_FORMAT, "plan": plan.to_dict(), "safety_snapshot_id": safety_snapshot_id,
                "ranges": [[bounds.start_after, bounds.last] for bounds in ranges], "resume": resume_request}
    store.put_same_once(shard_key(bucket, plan_id, "plan.json"), json.dumps(document).encode())
    return RestoreShardPlan(plan, safety_snapshot_id, ranges, resume_request)


def read_shard_plan(store: BackupStore, target: str, plan_id: str) -> RestoreShardPlan | None:
    """The restore's shard plan, or None when it is not fanned out (not yet, or not at all)."""
    document = store.get_json_if_present(shard_key(target, plan_id, "plan.json"))
    if document is None:
        return None
    return RestoreShardPlan(RestorePlan.from_dict(document["plan"]), document["safety_snapshot_id"],
                            tuple(KeyRange(*bounds) for bounds in document["ranges"]), document["resume"])


def read_desired_slice(store: BackupStore, shards: RestoreShardPlan, number: int) -> dict[str, DesiredObject]:
    shards.shard(number)
    body = store.get_bytes(_slice_key(shards.plan.target_bucket, shards.plan.plan_id, number))
    objects = (DesiredObject(**document) for document in read_gzip_json_lines(body))
    return {want.key: want for want in objects}


def record_run(store: BackupStore, shards: RestoreShardPlan, number: int, counts: dict[str, int],
               moment: datetime) -> None:
    """What one invocation of shard `number` copied and removed (a random name: two invocations never share one)."""
    key = _runs_prefix(shards.plan.target_bucket, shards.plan.plan_id, number) + (
        f"{to_iso(moment)}-{secrets.token_hex(4)}.json")
    store.put_same_once(key, json.dumps(counts).encode())


def run_totals(store: BackupStore, shards: RestoreShardPlan, number: int) -> dict[str, int]:
    totals = {"copied": 0, "removed": 0, "bytes_copied": 0}
    for entry in store.keys(_runs_prefix(shards.plan.target_bucket, shards.plan.plan_id, number)):
        run = store.get_json(entry["Key"])
        for name in totals:
            totals[name] += int(run[name])
    return totals


def write_result(store: BackupStore, shards: RestoreShardPlan, result: ShardResult) -> None:
    store.put_same_once(_result_key(shards.plan.target_bucket, shards.plan.plan_id, result.number),
              json.dumps(result.to_dict()).encode())


def read_result(store: BackupStore, shards: RestoreShardPlan, number: int) -> ShardResult | None:
    document = store.get_json_if_present(_result_key(shards.plan.target_bucket, shards.plan.plan_id, number))
    return None if document is None else ShardResult.from_dict(document)


def read_results(store: BackupStore, shards: RestoreShardPlan, pool: ThreadPoolExecutor) -> dict[int, ShardResult]:
    """The results of the shards that are done, read concurrently (one GET each)."""
    numbers = range(len(shards.ranges))
    found = pool.map(lambda number: read_result(store, shards, number), numbers)
    return {number: result for number, result in zip(numbers, found, strict=True) if result is not None}


def shards_progress(shards: RestoreShardPlan, results: dict[int, ShardResult]) -> dict[str, Any]:
    """How far a fanned-out restore is, from the results of its shards that are done."""
    done = results.values()
    return {"plan_id": shards.plan.plan_id, "target_bucket": shards.plan.target_bucket,
            "shards": len(shards.ranges), "shards_done": len(results),
            "objects_verified": sum(result.verification.objects_expected for result in done),
            "copied": sum(result.copied for result in done), "removed": sum(result.removed for result in done),
            "bytes_copied": sum(result.bytes_copied for result in done)}


def merged_verification(results: Sequence[ShardResult]) -> Verification:
    """One verification of the whole restore: the shards' counts added, their keys named in key order (the shards'
    ranges are in key order)."""
    ordered = sorted(results, key=lambda result: result.number)

    def keys(kind: str) -> tuple[str, ...]:
        return sample((key for result in ordered for key in getattr(result.verification, kind)), REPORTED_KEYS)

    def total(kind: str) -> int:
        return sum(getattr(result.verification, kind) for result in ordered)

    return Verification(objects_expected=total("objects_expected"), objects_matching=total("objects_matching"),
                        mismatched=total("mismatched"), unexpected=total("unexpected"),
                        mismatched_keys=keys("mismatched_keys"), unexpected_keys=keys("unexpected_keys"),
                        backup_damaged_keys=keys("backup_damaged_keys"), read_back=total("read_back"),
                        streamed=total("streamed"))

