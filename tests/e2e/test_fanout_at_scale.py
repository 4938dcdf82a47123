"""A big bucket through the shard path: a first snapshot counted and fanned out, a second one fanned out from its
base after 1% of the bucket changed, and a restore of 1% damage fanned out; every shard run by its worker as the
Distributed Map would run it (moto runs no map), and every result read back and compared with the bucket. Always
10 shards.

`make test` runs it at 10,000 objects (some 2 minutes); `make scale` at 100,000 (marked `scale`, which `make
test` leaves out: the in-process emulator takes about a second to list and serialize each page of 1,000
versions, and the path lists the bucket some 900 pages' worth; README, "Benchmarks", scale).

The bucket is filled through moto's backend, not its API: 100,000 PutObject requests would cost minutes and
prove nothing about the shard path. Everything after the fill goes through the engines' clients.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.manifest import read_manifest
from drcore.backup.snapshot_shards import FanOutSettings, read_shard_plan
from drcore.restore.bucket_restore import BucketRestorer
from drcore.state.backup_store import BackupStore
from tests.support import FanOutStateMachine, SimulatedClock, data_and_backup_buckets

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"
SHARDS = 10
PLENTY_MS = 15 * 60 * 1000
RESUME = {"action": "restore_s3", "resume": "rp-0123456789", "requested_by": "alice", "reason": "1% damaged"}


class World:
    def __init__(self, s3: Any, objects: int) -> None:
        self.s3 = s3
        self.objects = objects
        self.fan_out = FanOutSettings(threshold_objects=objects // 2, shard_objects=objects // SHARDS)
        self.store = BackupStore(s3, BACKUPS)
        self.clock = SimulatedClock()
        self.snapshots = FanOutStateMachine("controller-snapshot-fanout", self.clock)
        self.restores = FanOutStateMachine("controller-restore-fanout", self.clock)
        self.order = random.Random(13)  # the order the map's concurrency gives the shards, fixed for the run

    def snapshotter(self) -> BucketSnapshotter:
        return BucketSnapshotter(self.s3, self.store, DATA, clock=self.clock,
                                 fan_out=(self.fan_out, self.snapshots.executions))

    def restorer(self) -> BucketRestorer:
        return BucketRestorer(self.s3, self.store, clock=self.clock, fan_out=(self.fan_out, self.restores.executions),
                              snapshots_of=lambda bucket: BucketSnapshotter(self.s3, self.store, bucket,
                                                                            clock=self.clock))

    def in_any_order(self, shards: int) -> list[int]:
        return self.order.sample(range(shards), shards)

    def snapshot_through_shards(self) -> str:
        """A scheduled snapshot, fanned out; each shard run by its worker; then the merge."""
        self.clock.advance(3600)
        planned = self.snapshotter().snapshot(None, lambda: PLENTY_MS)
        assert planned.fanned_out and planned.stats["shards"] == SHARDS
        for number in self.in_any_order(SHARDS):
            assert self.snapshotter().snapshot_shard(planned.backup_id, number, lambda: PLENTY_MS).finished
        merged = self.snapshotter().snapshot(planned.backup_id, lambda: PLENTY_MS)
        assert merged.finished
        return planned.backup_id

    def current(self) -> list[tuple[str, str, str]]:
        return [(version["Key"], version["VersionId"], version["ETag"])
                for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=DATA)
                for version in page.get("Versions", []) if version["IsLatest"]]

    def body(self, bucket: str, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def key(n: int) -> str:
    return f"uploads/2026/{n % 97:02d}/record-{n:06d}.csv"


@pytest.fixture(params=[10_000, pytest.param(100_000, marks=pytest.mark.scale)], ids=lambda objects: f"{objects}")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with data_and_backup_buckets(DATA, BACKUPS) as s3:
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for n in range(request.param):
            backend.put_object(DATA, key(n), f"id,row\n{n},{n * 7 % 1000:03d}\n".encode())
        yield World(s3, request.param)


def test_a_big_bucket_is_snapshotted_and_restored_through_shards(world: World) -> None:
    objects = world.objects
    # Given a bucket of `objects` objects (10,000, or 100,000 in `make scale`), never snapshotted
    # When its first snapshot runs: the census counts the keys, 10 shards copy them, the merge writes the manifest
    first = world.snapshot_through_shards()
    plan = read_shard_plan(world.store, DATA, first)
    assert plan is not None and plan.base_id is None and plan.base_objects == objects
    # Then the manifest lists every current version once, in key order, each body stored as it is in the bucket
    manifest = read_manifest(world.store, DATA, first)
    assert [(entry.key, entry.version_id, entry.etag) for entry in manifest.objects] == world.current()
    assert manifest.stats["objects_copied"] == objects
    for entry in manifest.objects[::997]:
        assert entry.content_key and world.body(BACKUPS, entry.content_key) == world.body(DATA, entry.key)

    # Given 1% of the objects rewritten since
    changed = sorted(world.order.sample(range(objects), objects // 100))
    for n in changed:
        world.s3.put_object(Bucket=DATA, Key=key(n), Body=f"id,row\n{n},changed\n".encode())
    # When the next snapshot runs, fanned out from the first as its base
    second = world.snapshot_through_shards()
    # Then it copies only what changed and records the bucket as it is, as a delta on its base
    manifest = read_manifest(world.store, DATA, second)
    assert [(entry.key, entry.version_id, entry.etag) for entry in manifest.objects] == world.current()
    assert manifest.stats["objects_copied"] == len(changed) and manifest.base_id == first
    stored = {entry.key: entry.content_key or "" for entry in manifest.objects}
    for n in changed[::50]:
        assert world.body(BACKUPS, stored[key(n)]) == f"id,row\n{n},changed\n".encode()

    # Given 1% of the objects corrupted at the same size, 1% deleted and 1% added after the second snapshot
    victims = world.order.sample(range(objects), 2 * objects // 100)
    corrupted, deleted = victims[:objects // 100], victims[objects // 100:]
    for n in corrupted:
        good = world.body(DATA, key(n))
        world.s3.put_object(Bucket=DATA, Key=key(n), Body=b"X" * len(good))
    for n in deleted:
        world.s3.delete_object(Bucket=DATA, Key=key(n))
    for n in range(objects // 100):
        world.s3.put_object(Bucket=DATA, Key=f"uploads/2026/{n % 97:02d}/stray-{n:06d}.csv", Body=b"stray\n")
    # When a restore to the second snapshot is planned and applied: fanned out, each shard applied by its worker
    restore_plan = world.restorer().plan(source_bucket=DATA, snapshot_id=second)
    assert (restore_plan.to_copy, restore_plan.to_remove) == (2 * objects // 100, objects // 100)
    started = world.restorer().apply(restore_plan, lambda: PLENTY_MS, resume_request=RESUME)
    touched = objects + objects // 100  # the snapshot's keys and the strays it removes
    assert started.fan_out is not None and not started.finished
    assert started.fan_out["shards"] == -(-touched // world.fan_out.shard_objects)
    for number in world.in_any_order(started.fan_out["shards"]):
        assert world.restorer().apply_shard(DATA, restore_plan.plan_id, number, lambda: PLENTY_MS).finished
    done = world.restorer().apply(restore_plan, lambda: PLENTY_MS, resume_request=RESUME)
    # Then the merged verification proves every object equal to the snapshot, every copy and removal made once
    assert done.finished and done.verification is not None and done.verification.ok
    assert done.verification.objects_expected == done.verification.objects_matching == objects
    assert (done.copied, done.removed) == (restore_plan.to_copy, restore_plan.to_remove)
    # and the bucket, read back apart from the restore's own verification, holds the snapshot's keys and bodies
    assert [item[0] for item in world.current()] == [entry.key for entry in manifest.objects]
    for n in corrupted[::20] + deleted[::20]:
        assert world.body(DATA, key(n)) == world.body(BACKUPS, stored[key(n)])
