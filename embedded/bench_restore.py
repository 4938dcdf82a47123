"""The "restore" section of `make bench`: our point-in-time restore next to the runbook's recover-s3-pit.sh.

On the embedded server, a versioned data bucket of N small objects is snapshotted (ours) and copied whole
to a dated prefix of the runbook's backup bucket (`aws s3 sync`, as s3-backup.sh does). Then 1% of the
objects are corrupted in place at the same size, 1% deleted and 1% added, and each method restores the
bucket to the backup:

- ours: plan, apply (safety snapshot first, then only what differs by content) and verify, in a process
  of its own, as the recovery function's invocations would run it;
- seed: recover-s3-pit.sh's restore, `aws s3 sync s3://<backup>/<DATE>/ s3://<data>/ --delete` with the
  AWS CLI (its verification, a diff of `aws s3 ls` against a manifest file, is not run: it checks names,
  sizes and dates only).

Each is measured the same way: wall time, requests received by the embedded server, and afterwards the
content of every key read back and compared with what it held when the backups were taken
(`objects_matching` of `objects_expected`; `unexpected_objects` are keys the backup does not have).
Ours runs first; the seed then restores the same damage applied again to the bucket ours restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from drcore.aws.clients import s3_client
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.state.backup_store import BackupStore
from drcore.wiring.restores import bucket_restorer
from embedded.moto_gaps import versions_listed_without_copying_bodies
from embedded.server import RequestCounter
from embedded.world import REGION, embedded_world

DATA_BUCKET = "apilados-production-data"
BACKUP_BUCKET = "apilados-dr-backups"
SEED_BACKUP_BUCKET = "apilados-backup-data"  # recover-s3-pit.sh's BACKUP_BUCKET
DAMAGED_SHARE = 0.01  # of the objects: corrupted, and as many deleted, and as many added
BODY_BYTES = (1024, 4096)
CONCURRENCY = 16
INVOCATION_MS = 15 * 60 * 1000

# Ours runs in a process of its own, as the seed's AWS CLI does: the embedded server's process then only
# serves requests, for both.
RESTORE_PROCESS = ("import json, sys; from embedded.bench_restore import restore_until_finished; "
                   "print(json.dumps(restore_until_finished(*sys.argv[1:])))")


def restore_until_finished(data_bucket: str, backup_bucket: str, snapshot_id: str) -> dict[str, Any]:
    """Plan a restore of `data_bucket` from `snapshot_id`, apply it until finished, return its figures."""
    s3 = s3_client(CONCURRENCY)  # the recovery function's own client
    store = BackupStore(s3, backup_bucket)
    restorer = bucket_restorer(s3, store, CONCURRENCY)  # as the recovery function builds it
    plan = restorer.plan(source_bucket=data_bucket, snapshot_id=snapshot_id)
    progress = restorer.apply(plan, lambda: INVOCATION_MS)
    invocations = 1
    while not progress.finished:
        progress = restorer.apply(plan, lambda: INVOCATION_MS, safety_snapshot_id=progress.safety_snapshot_id)
        invocations += 1
    assert progress.verification is not None
    return {"plan": {"to_copy": plan.to_copy, "to_remove": plan.to_remove, "unchanged": plan.unchanged,
                     "bytes_to_copy": plan.bytes_to_copy},
            "copied": progress.copied, "removed": progress.removed, "invocations": invocations,
            "safety_snapshot_id": progress.safety_snapshot_id, "verification": progress.verification.to_dict()}


def _keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


def _put_all(s3: Any, bodies: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=bodies[key]), bodies))


def _correctness(s3: Any, expected: dict[str, str]) -> dict[str, int]:
    """Read every key back and compare its content with what it held at backup time (not measured)."""
    present = _keys(s3, DATA_BUCKET)

    def digest(key: str) -> str:
        return hashlib.md5(s3.get_object(Bucket=DATA_BUCKET, Key=key)["Body"].read()).hexdigest()

    with ThreadPoolExecutor(32) as pool:
        held = dict(zip(present, pool.map(digest, present), strict=True))
    return {"objects_matching": sum(held.get(key) == want for key, want in expected.items()),
            "objects_expected": len(expected),
            "unexpected_objects": len(held.keys() - expected.keys())}


class _Damage:
    """1% of the keys corrupted in place at the same size, 1% deleted, 1% added; the same keys each time."""

    def __init__(self, keys: list[str], sizes: dict[str, int], rng: random.Random) -> None:
        step = round(1 / DAMAGED_SHARE)
        self.corrupted = keys[::step]
        self.deleted = keys[step // 2::step]
        self.added = [f"uploads/late/record-{n:06d}.csv" for n in range(len(self.corrupted))]
        self._sizes = sizes
        self._rng = rng

    def apply(self, s3: Any) -> None:
        bodies = {key: self._rng.randbytes(self._sizes[key]) for key in self.corrupted}
        bodies |= {key: self._rng.randbytes(self._rng.randint(*BODY_BYTES)) for key in self.added}
        _put_all(s3, bodies)
        for start in range(0, len(self.deleted), 1000):
            batch = [{"Key": key} for key in self.deleted[start:start + 1000]]
            s3.delete_objects(Bucket=DATA_BUCKET, Delete={"Objects": batch, "Quiet": True})

    def counts(self) -> dict[str, int]:
        return {"corrupted": len(self.corrupted), "deleted": len(self.deleted), "added": len(self.added)}


def _measured(s3: Any, counter: RequestCounter, command: list[str], expected: dict[str, str]) -> dict[str, Any]:
    counter.reset()
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "PYTHONPATH": "functions:."}, check=True,
                               capture_output=True, text=True)
    seconds = time.perf_counter() - started
    requests = counter.total
    return {"seconds": round(seconds, 2), "requests": requests, **_correctness(s3, expected),
            "stdout": completed.stdout}


def run_restore_bench(objects: int = 10_000) -> dict[str, Any]:
    with ExitStack() as stack:
        counter = stack.enter_context(embedded_world()).counter
        stack.enter_context(versions_listed_without_copying_bodies())
        s3 = boto3.session.Session(region_name=REGION).client("s3", config=Config(max_pool_connections=32))
        for bucket in (DATA_BUCKET, BACKUP_BUCKET, SEED_BACKUP_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        rng = random.Random(20261126)
        bodies = {f"uploads/{n // 1000:03d}/record-{n:06d}.csv": rng.randbytes(rng.randint(*BODY_BYTES))
                  for n in range(objects)}
        _put_all(s3, bodies)
        expected = {key: hashlib.md5(content).hexdigest() for key, content in bodies.items()}

        # The backups, not measured: our snapshot, and the runbook's full dated copy.
        store = BackupStore(s3, BACKUP_BUCKET)
        snapshot = BucketSnapshotter(s3, store, DATA_BUCKET).snapshot(None, lambda: INVOCATION_MS)
        while not snapshot.finished:
            snapshot = BucketSnapshotter(s3, store, DATA_BUCKET).snapshot(snapshot.backup_id, lambda: INVOCATION_MS)
        date = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")  # the runbook's RECOVERY_DATE format
        aws_cli = str(Path(sys.executable).with_name("aws"))
        subprocess.run([aws_cli, "s3", "sync", f"s3://{DATA_BUCKET}", f"s3://{SEED_BACKUP_BUCKET}/{date}/",
                        "--only-show-errors"], check=True, capture_output=True)

        damage = _Damage(sorted(bodies), {key: len(content) for key, content in bodies.items()}, rng)
        damage.apply(s3)
        ours = _measured(s3, counter, [sys.executable, "-c", RESTORE_PROCESS, DATA_BUCKET, BACKUP_BUCKET,
                                       snapshot.backup_id], expected)
        details = json.loads(ours.pop("stdout").strip().splitlines()[-1])
        damage.apply(s3)  # the same keys again, on the bucket ours restored
        seed = _measured(s3, counter, [aws_cli, "s3", "sync", f"s3://{SEED_BACKUP_BUCKET}/{date}/",
                                       f"s3://{DATA_BUCKET}/", "--delete", "--only-show-errors"], expected)
        seed.pop("stdout")
    return {"objects": objects, "damage": damage.counts(), "ours": ours, "seed": seed,
            "time_ratio_ours_over_seed": round(ours["seconds"] / max(seed["seconds"], 0.01), 2),
            "ours_details": {key: details[key] for key in ("plan", "copied", "removed", "invocations")}}


def restore_table(section: dict[str, Any]) -> str:
    ours, seed = section["ours"], section["seed"]
    damage = section["damage"]
    rows = [("", "ours (plan+apply+verify)", "seed (s3 sync --delete)")]
    for figure in ("seconds", "requests"):
        rows.append((figure, ours[figure], seed[figure]))
    rows.append(("objects matching", f"{ours['objects_matching']}/{ours['objects_expected']}",
                 f"{seed['objects_matching']}/{seed['objects_expected']}"))
    rows.append(("unexpected objects", ours["unexpected_objects"], seed["unexpected_objects"]))
    header = (f"{section['objects']} objects; damage: {damage['corrupted']} corrupted at the same size, "
              f"{damage['deleted']} deleted, {damage['added']} added")
    footer = f"time ours/seed: {section['time_ratio_ours_over_seed']}x (goal: at most 0.33x, every object matching)"
    return "\n".join([header, *(f"{a!s:<20} {b!s:>26} {c!s:>26}" for a, b, c in rows), footer])

