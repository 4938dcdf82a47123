"""Big snapshots fanned out: the shard plan, the shard workers (called as the Distributed Map would call
them), the merge into one manifest, and the execution started, left running, or redriven.

moto's Step Functions starts, describes and stops executions but does not run a Distributed Map (its Map
Runs are empty) and has no RedriveExecution: the tests call the shard workers themselves, in the order a
map's concurrency could give, and answer RedriveExecution with a hook that records it (`redrives`).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drcore.aws.state_machines import MapExecutions
from drcore.backup import bucket_snapshots
from drcore.backup import manifest as manifest_module
from drcore.backup.bucket_snapshots import SAFETY_MARGIN_MS, BucketSnapshotter, SnapshotProgress
from drcore.backup.manifest import read_manifest
from drcore.backup.snapshot_census import Census, read_census
from drcore.backup.snapshot_checkpoints import checkpoint_keys
from drcore.backup.snapshot_shards import (
    FanOutSettings,
    fan_out_progress,
    items_key,
    read_base_slice,
    read_shard_plan,
)
from drcore.core.errors import InvalidRequest
from drcore.state.backup_store import BackupStore, Component, backup_prefix, manifest_key
from tests.support import FanOutStateMachine, SimulatedClock, data_and_backup_buckets

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"
PLENTY_MS = 15 * 60 * 1000
FAN_OUT = FanOutSettings(threshold_objects=1_000, shard_objects=400)  # 1,200 objects: 3 shards


class World:
    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.store = BackupStore(s3, BACKUPS)
        self.clock = SimulatedClock()
        self.machine = FanOutStateMachine("controller-snapshot-fanout", self.clock)
        self.sfn, self.executions, self.redrives = self.machine.sfn, self.machine.executions, self.machine.redrives

    def snapshotter(self, **options: Any) -> BucketSnapshotter:
        return BucketSnapshotter(self.s3, self.store, DATA, clock=self.clock, page_size=100,
                                 fan_out=(FAN_OUT, self.executions), **options)

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=DATA, Key=key, Body=body)

    def snapshot(self, **options: Any) -> SnapshotProgress:
        self.clock.advance(3600)
        return self.snapshotter(**options).snapshot(None, lambda: PLENTY_MS)

    def whole_snapshot(self) -> SnapshotProgress:
        """A snapshot by a function without the fan-out (as before it was configured): one whole, to build on."""
        self.clock.advance(3600)
        return BucketSnapshotter(self.s3, self.store, DATA, clock=self.clock, page_size=100).snapshot(
            None, lambda: PLENTY_MS)

    def current(self) -> list[tuple[str, str, str]]:
        versions = [version for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=DATA)
                    for version in page.get("Versions", []) if version["IsLatest"]]
        return [(version["Key"], version["VersionId"], version["ETag"]) for version in versions]


@pytest.fixture
def world() -> Iterator[World]:
    with data_and_backup_buckets(DATA, BACKUPS) as s3:
        yield World(s3)


def fill(world: World, count: int) -> None:
    for n in range(count):
        world.put(f"uploads/record-{n:05d}.csv", f"row {n}\n".encode())


def fanned_out(world: World) -> SnapshotProgress:
    """A bucket of 1,200 objects, snapshotted whole once (its base), then a snapshot that fans out."""
    fill(world, 1_200)
    assert world.whole_snapshot().finished
    progress = world.snapshot()
    assert progress.fanned_out and not progress.finished
    return progress


def test_a_snapshot_whose_base_is_past_the_threshold_fans_out_into_shards_and_starts_their_execution(
        world: World) -> None:
    # Given a bucket of 1,200 objects and a whole snapshot of it
    fill(world, 1_200)
    first = world.whole_snapshot()
    assert first.finished and not first.fanned_out
    base = read_manifest(world.store, DATA, first.backup_id)
    # When the next snapshot starts
    progress = world.snapshot()
    # Then it is planned as 3 shards of 400 of the base's keys, and nothing is listed or copied yet
    assert progress.fanned_out and not progress.finished and progress.stats["shards"] == 3
    plan = read_shard_plan(world.store, DATA, progress.backup_id)
    assert plan is not None and plan.base_id == first.backup_id and plan.offsets == (0, 400, 800)
    keys = [entry.key for entry in base.objects]
    assert [(bounds.start_after, bounds.last) for bounds in plan.ranges] == [
        (None, keys[399]), (keys[399], keys[799]), (keys[799], None)]
    assert checkpoint_keys(world.store, DATA, progress.backup_id) == []
    # and each shard's slice of the base is its part of the base, the slices together the whole base
    slices = [read_base_slice(world.store, DATA, plan, number).objects for number in range(3)]
    assert [entry for part in slices for entry in part] == list(base.objects)
    # and the map's items name each shard once
    items = world.store.get_bytes(items_key(DATA, progress.backup_id)).decode().splitlines()
    assert [json.loads(line) for line in items] == [{"shard": 0}, {"shard": 1}, {"shard": 2}]
    # and one execution, named by the snapshot, was started with the snapshot and its items
    execution = world.sfn.describe_execution(executionArn=progress.stats["execution"])
    assert execution["name"] == progress.backup_id and execution["status"] == "RUNNING"
    assert json.loads(execution["input"]) == {"backup_id": progress.backup_id,
                                              "items_key": items_key(DATA, progress.backup_id)}


def test_shards_run_as_the_map_runs_them_and_their_merge_is_the_manifest_of_the_bucket(world: World) -> None:
    # Given a fanned-out snapshot whose bucket changed after it was planned: keys added before the first key,
    # after the last, at both shard edges and inside a shard; keys deleted at the edges; bodies changed
    progress = fanned_out(world)
    backup_id = progress.backup_id
    for key in ("aaa-first.csv", "uploads/record-00399.csv-after-edge", "uploads/record-00400a.csv",
                "uploads/record-00799~", "uploads/record-00555.csvx", "zzz-last.csv"):
        world.put(key, f"new {key}".encode())
    for key in ("uploads/record-00399.csv", "uploads/record-00800.csv", "uploads/record-00000.csv"):
        world.s3.delete_object(Bucket=DATA, Key=key)
    for n in (1, 401, 1199):
        world.put(f"uploads/record-{n:05d}.csv", f"changed {n}\n".encode())
    # When each shard's worker runs, in an order the map's concurrency could give
    for number in (2, 0, 1):
        shard = world.snapshotter().snapshot_shard(backup_id, number, lambda: PLENTY_MS)
        assert shard.finished and shard.shard == number
    # and the state machine's last step resumes the snapshot
    merged = world.snapshotter().snapshot(backup_id, lambda: PLENTY_MS)
    # Then its manifest is the bucket as it is: every current version once, in key order
    assert merged.finished and not merged.fanned_out
    manifest = read_manifest(world.store, DATA, backup_id)
    assert [(entry.key, entry.version_id, entry.etag) for entry in manifest.objects] == world.current()
    # and it is a delta on the base, holding only what changed
    assert manifest.base_id is not None
    # and the changed and new bodies are in the store, the rest carried from the base without a copy
    assert merged.stats["objects_copied"] == 6 + 3 and merged.stats["objects_listed"] == 1_200 + 6 - 3
    changed = next(entry for entry in manifest.objects if entry.key == "uploads/record-01199.csv")
    assert changed.content_key is not None
    assert world.store.get_bytes(changed.content_key) == b"changed 1199\n"


def test_the_fan_outs_planner_and_merge_never_read_a_manifest_whole(world: World, monkeypatch) -> None:
    # Given a bucket of 1,200 objects, its whole snapshot, and a new version of every 10th object
    fill(world, 1_200)
    first = world.whole_snapshot()
    for n in range(0, 1_200, 10):
        world.put(f"uploads/record-{n:05d}.csv", f"changed {n}\n".encode())

    def whole(*_: Any, **__: Any) -> None:
        raise AssertionError("a manifest was read whole: the fan-out goes through manifests a line at a time")

    # When every way of reading a manifest whole fails, and the next snapshot is planned, its shards run, merged
    with monkeypatch.context() as patched:
        patched.setattr(bucket_snapshots, "read_manifest", whole)
        patched.setattr(manifest_module.ManifestStream, "read", whole)
        patched.setattr(manifest_module, "read_manifest", whole)
        progress = world.snapshot()
        assert progress.fanned_out
        for number in range(3):
            assert world.snapshotter().snapshot_shard(progress.backup_id, number, lambda: PLENTY_MS).finished
        pages = checkpoint_keys(world.store, DATA, progress.backup_id)
        lasts = {max(key for key in pages if f"progress/{prefix}" in key) for prefix in ("0", "r001-", "r002-")}
        in_flight = checkpoint_reads_in_flight(world.store.s3, but=lasts)  # the merge's, not the progress check's
        merged = world.snapshotter().snapshot(progress.backup_id, lambda: PLENTY_MS)
        # and the snapshot, now complete, is asked for again (answered from its manifest's header)
        again = world.snapshotter().snapshot(progress.backup_id, lambda: PLENTY_MS)
    # Then it is the bucket as it is, a delta of the 120 changed entries on the first
    assert merged.finished and again.finished and again.stats == merged.stats
    manifest = read_manifest(world.store, DATA, progress.backup_id)
    assert [(entry.key, entry.version_id, entry.etag) for entry in manifest.objects] == world.current()
    assert (manifest.base_id, manifest.depth) == (first.backup_id, 1)
    assert manifest_module.open_manifest(world.store, DATA, progress.backup_id).fetched[0].header["lines"] == 120
    # and the merge read each shard's checkpoints several at once, every one once (each shard's last one is also
    # read before the merge, to see that all were done: not counted)
    assert max(in_flight["at once"]) > 1
    assert sorted(in_flight["keys"]) == sorted(set(pages) - lasts)


def checkpoint_reads_in_flight(s3: Any, but: set[str]) -> dict[str, list[Any]]:
    """How many checkpoint GetObject requests (of keys not in `but`) were in flight at each one's start (each held a
    moment, so overlaps show), and the keys read."""
    lock, current, seen = threading.Lock(), [0], {"at once": [0], "keys": []}

    def before(params: dict[str, Any], **_: Any) -> None:
        if "/progress/" in params["Key"] and params["Key"] not in but:
            with lock:
                current[0] += 1
                seen["at once"].append(current[0])
                seen["keys"].append(params["Key"])
            time.sleep(0.02)
            with lock:
                current[0] -= 1

    s3.meta.events.register("provide-client-params.s3.GetObject", before)
    return seen


def test_a_shard_out_of_time_continues_from_its_last_page_and_checkpoints_each_page_once(world: World) -> None:
    # Given a fanned-out snapshot, and a worker whose invocation runs out of time after two pages
    backup_id = fanned_out(world).backup_id
    pages_left = iter([PLENTY_MS, PLENTY_MS, SAFETY_MARGIN_MS - 1])
    first = world.snapshotter().snapshot_shard(backup_id, 1, lambda: next(pages_left, SAFETY_MARGIN_MS - 1))
    # Then it stops, unfinished, having listed two pages
    assert not first.finished and first.listed_here == 200
    # When the map's loop invokes it again
    second = world.snapshotter().snapshot_shard(backup_id, 1, lambda: PLENTY_MS)
    # Then it lists the rest of its shard, and each of its pages was checkpointed once, in order (4 of its 400 keys,
    # and a fifth that finds the shard's end: the fourth ended at the shard's last key, not the bucket's)
    assert second.finished and second.listed_here == 200 and second.stats["objects_listed"] == 400
    pages = checkpoint_keys(world.store, DATA, backup_id, 1)
    assert [key.rsplit("/", 1)[-1] for key in pages] == [f"r001-{page:06d}.json" for page in range(1, 6)]
    # and a shard already done answers so without listing again
    again = world.snapshotter().snapshot_shard(backup_id, 1, lambda: PLENTY_MS)
    assert again.finished and again.listed_here == 0


def test_the_merge_waits_for_every_shard_and_a_failed_execution_is_redriven(world: World) -> None:
    # Given a fanned-out snapshot with one shard of three done
    progress = fanned_out(world)
    backup_id = progress.backup_id
    world.snapshotter().snapshot_shard(backup_id, 0, lambda: PLENTY_MS)
    # When it is resumed while its execution runs
    waiting = world.snapshotter().snapshot(backup_id, lambda: PLENTY_MS)
    # Then nothing is merged, and its progress says so
    assert waiting.fanned_out and not waiting.finished
    assert waiting.stats["shards_done"] == 1 and waiting.stats["objects_listed"] == 400
    assert waiting.stats["status"] == "RUNNING" and world.redrives == []
    assert not world.store.exists(manifest_key(Component.S3, DATA, backup_id))
    # and what the recovery function's status shows of it, read from the shards' checkpoints, says the same
    shown = fan_out_progress(world.store, DATA, backup_id)
    assert shown is not None and {name: shown[name] for name in ("shards", "shards_done", "objects_listed")} == {
        "shards": 3, "shards_done": 1, "objects_listed": 400}
    assert fan_out_progress(world.store, DATA, read_manifest(world.store, DATA, shown["base"]).backup_id) is None
    # When the execution failed (here: stopped) and the snapshot is resumed
    world.sfn.stop_execution(executionArn=progress.stats["execution"])
    redriven = world.snapshotter().snapshot(backup_id, lambda: PLENTY_MS)
    # Then the execution is redriven (its failed shards run again), not a new one started
    assert redriven.stats["redriven"] and world.redrives == [progress.stats["execution"]]
    # When the remaining shards are done, the next resume merges
    for number in (1, 2):
        world.snapshotter().snapshot_shard(backup_id, number, lambda: PLENTY_MS)
    assert world.snapshotter().snapshot(backup_id, lambda: PLENTY_MS).finished


def test_an_execution_that_never_started_is_started_when_the_snapshot_is_resumed(world: World) -> None:
    # Given a snapshot planned as shards by an invocation that died before it started their execution
    fill(world, 1_200)
    world.whole_snapshot()

    class DiesBeforeStarting(MapExecutions):
        def start(self, name: str, execution_input: dict[str, Any]) -> str:
            raise RuntimeError("the invocation died")

    world.executions = DiesBeforeStarting(world.sfn, world.machine.arn)
    with pytest.raises(RuntimeError, match="died"):
        world.snapshot()
    backup_id = world.store.backup_ids(Component.S3, DATA)[-1]
    assert read_shard_plan(world.store, DATA, backup_id) is not None
    assert world.sfn.list_executions(stateMachineArn=world.machine.arn)["executions"] == []
    # When it is resumed
    world.executions = MapExecutions(world.sfn, world.machine.arn)
    resumed = world.snapshotter().snapshot(backup_id, lambda: PLENTY_MS)
    # Then its execution is started now, named by the snapshot
    executions = world.sfn.list_executions(stateMachineArn=world.machine.arn)["executions"]
    assert resumed.fanned_out and resumed.stats["status"] == "RUNNING"
    assert [execution["name"] for execution in executions] == [backup_id]


def test_a_fanned_out_snapshots_files_are_under_its_own_prefix_and_written_once(world: World) -> None:
    # Given a fanned-out snapshot
    backup_id = fanned_out(world).backup_id
    # Then its plan, items and slices are under the snapshot's prefix, one version each
    prefix = backup_prefix(Component.S3, DATA, backup_id) + "shards/"
    listing = world.s3.list_object_versions(Bucket=BACKUPS, Prefix=prefix)
    names = sorted(version["Key"][len(prefix):] for version in listing["Versions"])
    assert names == ["base-00000.jsonl.gz", "base-00001.jsonl.gz", "base-00002.jsonl.gz", "items.jsonl", "plan.json"]
    slice_1 = gzip.decompress(world.store.get_bytes(prefix + "base-00001.jsonl.gz")).decode().splitlines()
    assert len(slice_1) == 400


def test_a_fanned_out_snapshot_is_not_continued_by_a_function_without_its_state_machine(world: World) -> None:
    # Given a fanned-out snapshot with a shard done
    backup_id = fanned_out(world).backup_id
    world.snapshotter().snapshot_shard(backup_id, 0, lambda: PLENTY_MS)
    # When a function without the fan-out state machine is asked to continue it
    alone = BucketSnapshotter(world.s3, world.store, DATA, clock=world.clock, page_size=100)
    # Then it refuses, naming why, and writes nothing (its shard's checkpoints are no whole-bucket snapshot's)
    keys_before = sorted(item["Key"] for item in world.store.keys(backup_prefix(Component.S3, DATA, backup_id)))
    with pytest.raises(InvalidRequest, match="fanned out"):
        alone.snapshot(backup_id, lambda: PLENTY_MS)
    assert sorted(item["Key"] for item in world.store.keys(backup_prefix(Component.S3, DATA, backup_id))) == keys_before


def test_a_scheduled_snapshot_while_a_fan_out_runs_continues_it_instead_of_starting_another(world: World) -> None:
    # Given a fanned-out snapshot still running when the next hour's schedule comes
    progress = fanned_out(world)
    # When the schedule asks for a snapshot, Then it answers the running one's progress: no second fan-out
    again = world.snapshot()
    assert again.backup_id == progress.backup_id and again.fanned_out and again.stats["status"] == "RUNNING"
    assert len(world.sfn.list_executions(stateMachineArn=world.machine.arn)["executions"]) == 1
    # When its execution failed, the next schedule redrives it
    world.sfn.stop_execution(executionArn=progress.stats["execution"])
    assert world.snapshot().stats["redriven"] and world.redrives == [progress.stats["execution"]]
    # When its shards are all done (the execution's merge not yet run), the next schedule merges it
    for number in range(3):
        world.snapshotter().snapshot_shard(progress.backup_id, number, lambda: PLENTY_MS)
    merged = world.snapshot()
    assert merged.finished and merged.backup_id == progress.backup_id
    # and the schedule after starts a new snapshot on it, fanned out again
    following = world.snapshot()
    assert following.backup_id != progress.backup_id and following.fanned_out
    plan = read_shard_plan(world.store, DATA, following.backup_id)
    assert plan is not None and plan.base_id == progress.backup_id


def test_a_shard_prices_listing_the_stored_content_by_the_whole_store_not_by_its_slice(world: World) -> None:
    # Given a fanned-out snapshot (shards of 400 of the base's 1,200 bodies) with 20 new bodies in shard 0: more
    # than a listing of its slice's 400 bodies is worth in probes (12.5 a page), fewer than the store's 1,200 (25)
    backup_id = fanned_out(world).backup_id
    for n in range(20):
        world.put(f"uploads/record-{n:05d}.csv", f"new body {n}\n".encode())
    lists: list[dict[str, Any]] = []
    world.s3.meta.events.register("provide-client-params.s3.ListObjectVersions",
                                  lambda params, **_: lists.append(dict(params)))
    # When the shard runs
    shard = world.snapshotter().snapshot_shard(backup_id, 0, lambda: PLENTY_MS)
    # Then it copies the new bodies conditionally, and never lists the content prefix: at 10 million objects that
    # is 10,000 pages, for every shard
    assert shard.finished and shard.stats["objects_copied"] == 20
    assert [params for params in lists if params["Bucket"] == BACKUPS] == []


# A first snapshot: its census, then its shards cut at the census's cuts -------------------------------------------


def list_requests(world: World, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` request made from now on (to either bucket)."""
    requests: list[dict[str, Any]] = []
    world.s3.meta.events.register(f"provide-client-params.s3.{operation}",
                                  lambda params, **_: requests.append(dict(params)))
    return requests


def test_a_first_snapshot_past_the_threshold_counts_its_keys_then_fans_out_at_every_400th_key(world: World) -> None:
    # Given a bucket of 1,200 objects and no snapshot of it yet
    fill(world, 1_200)
    keys = [f"uploads/record-{n:05d}.csv" for n in range(1_200)]
    copies = list_requests(world, "CopyObject")
    counting = list_requests(world, "ListObjectsV2")
    # When the first snapshot starts
    progress = world.snapshot()
    # Then it counts the bucket's keys, 12 pages of names, and fans out into 3 shards cut at every 400th key, the
    # last one open-ended (the 1,200th key is the bucket's last: no empty shard after it)
    assert progress.fanned_out and not progress.finished and progress.stats["shards"] == 3
    assert progress.stats["base"] is None
    assert len([params for params in counting if params["Bucket"] == DATA]) == 12
    plan = read_shard_plan(world.store, DATA, progress.backup_id)
    assert plan is not None and plan.base_id is None and plan.base_objects == 1_200
    assert [(bounds.start_after, bounds.last) for bounds in plan.ranges] == [
        (None, keys[399]), (keys[399], keys[799]), (keys[799], None)]
    # and nothing is copied or checkpointed before the shards run, and no base slice is written (there is none)
    assert copies == [] and checkpoint_keys(world.store, DATA, progress.backup_id) == []
    shards = backup_prefix(Component.S3, DATA, progress.backup_id) + "shards/"
    assert sorted(item["Key"][len(shards):] for item in world.store.keys(shards)) == ["items.jsonl", "plan.json"]
    execution = world.sfn.describe_execution(executionArn=progress.stats["execution"])
    assert execution["name"] == progress.backup_id and execution["status"] == "RUNNING"


def test_a_first_snapshots_shards_copy_what_they_list_and_merge_into_a_full_manifest_of_the_bucket(
        world: World) -> None:
    # Given a first snapshot fanned out by its census, and the bucket changed after the census: a key before the
    # first, one at a shard edge, one after the last, one deleted
    fill(world, 1_200)
    backup_id = world.snapshot().backup_id
    for key in ("aaa-first.csv", "uploads/record-00399.csv-edge", "zzz-last.csv"):
        world.put(key, f"new {key}".encode())
    world.s3.delete_object(Bucket=DATA, Key="uploads/record-00800.csv")
    # When the map runs the shards, in an order its concurrency could give, and the merge resumes the snapshot
    for number in (1, 2, 0):
        assert world.snapshotter().snapshot_shard(backup_id, number, lambda: PLENTY_MS).finished
    merged = world.snapshotter().snapshot(backup_id, lambda: PLENTY_MS)
    # Then the manifest is a full one of the bucket as it is, every body copied once into the store
    assert merged.finished and merged.stats["objects_copied"] == 1_202
    manifest = read_manifest(world.store, DATA, backup_id)
    assert manifest.base_id is None
    assert [(entry.key, entry.version_id, entry.etag) for entry in manifest.objects] == world.current()
    for entry in (manifest.objects[0], manifest.objects[400], manifest.objects[-1]):
        assert entry.content_key is not None
        assert world.store.get_bytes(entry.content_key) == world.s3.get_object(Bucket=DATA, Key=entry.key)[
            "Body"].read()
    # and the next snapshot builds on it, fanned out from its base
    following = world.snapshot()
    plan = read_shard_plan(world.store, DATA, following.backup_id)
    assert following.fanned_out and plan is not None and plan.base_id == backup_id


def test_a_census_out_of_time_pauses_and_continues_from_its_last_key_counting_each_key_once(world: World) -> None:
    # Given a bucket of 1,200 objects, and a first snapshot whose invocation has time for 5 pages of its census
    fill(world, 1_200)
    counting = list_requests(world, "ListObjectsV2")
    calls = iter([PLENTY_MS] * 5)
    world.clock.advance(3600)
    paused = world.snapshotter().snapshot(None, lambda: next(calls, SAFETY_MARGIN_MS - 1))
    # Then it pauses, unfanned, having counted 500 keys and checkpointed where it stopped
    assert not paused.finished and not paused.fanned_out
    assert paused.stats["census"] == {"objects_counted": 500, "pages": 5, "done": False}
    assert read_census(world.store, DATA, paused.backup_id) == Census(
        500, ("uploads/record-00399.csv",), "uploads/record-00499.csv", 5, False)
    # and the recovery function's status shows it counting
    assert fan_out_progress(world.store, DATA, paused.backup_id) == {
        "backup_id": paused.backup_id, "census": {"objects_counted": 500, "pages": 5, "done": False}}
    # When its continuation runs
    resumed = world.snapshotter().snapshot(paused.backup_id, lambda: PLENTY_MS)
    # Then the census goes on after the last key counted, each page listed once, and the snapshot fans out
    data_pages = [params for params in counting if params["Bucket"] == DATA]
    assert len(data_pages) == 12 and data_pages[5]["StartAfter"] == "uploads/record-00499.csv"
    assert resumed.fanned_out and resumed.stats["shards"] == 3
    census = read_census(world.store, DATA, paused.backup_id)
    assert census is not None and census.done and census.objects == 1_200


def test_a_first_snapshot_under_the_threshold_counts_then_runs_as_any_snapshot(world: World) -> None:
    # Given a bucket of 900 objects: under the threshold of 1,000
    fill(world, 900)
    # When its first snapshot runs, Then it counts the keys and snapshots the bucket in the same invocation
    progress = world.snapshot()
    assert progress.finished and not progress.fanned_out
    manifest = read_manifest(world.store, DATA, progress.backup_id)
    assert [(entry.key, entry.version_id, entry.etag) for entry in manifest.objects] == world.current()
    assert read_shard_plan(world.store, DATA, progress.backup_id) is None
    assert world.sfn.list_executions(stateMachineArn=world.machine.arn)["executions"] == []


@pytest.mark.parametrize("pages", [3, 0])  # 0: an invocation with too little time left to count a page
def test_a_scheduled_snapshot_while_a_census_is_counting_leaves_it_to_its_continuations(world: World,
                                                                                       pages: int) -> None:
    # Given a first snapshot paused in its census after `pages` pages (its continuation on the way)
    fill(world, 1_200)
    world.clock.advance(3600)
    calls = iter([PLENTY_MS] * pages)
    paused = world.snapshotter().snapshot(None, lambda: next(calls, SAFETY_MARGIN_MS - 1))
    assert paused.stats["census"] == {"objects_counted": pages * 100, "pages": pages, "done": False}
    counting = list_requests(world, "ListObjectsV2")
    # When the next hour's schedule asks for a snapshot
    again = world.snapshot()
    # Then it answers the census's progress, counts nothing and starts no second snapshot beside it (the census
    # checkpoints before its first page, so even one that counted nothing is found)
    assert again.backup_id == paused.backup_id and again.running_elsewhere and not again.finished
    assert again.stats["census"]["objects_counted"] == pages * 100
    assert [params for params in counting if params["Bucket"] == DATA] == []
    assert world.store.backup_ids(Component.S3, DATA) == [paused.backup_id]


def test_a_first_snapshots_shard_copies_conditionally_and_never_lists_the_stored_content(world: World) -> None:
    # Given a first snapshot fanned out by its census, one shard already done (its 400 bodies stored)
    fill(world, 1_200)
    backup_id = world.snapshot().backup_id
    assert world.snapshotter().snapshot_shard(backup_id, 0, lambda: PLENTY_MS).finished
    lists = list_requests(world, "ListObjectVersions")
    # When the next shard runs: 400 new bodies, more than a listing of the store is worth in probes
    shard = world.snapshotter().snapshot_shard(backup_id, 1, lambda: PLENTY_MS)
    # Then it copies them conditionally and never lists the content prefix: what it would find there is the other
    # shards' bodies, stored meanwhile, which a first snapshot's new bodies are not
    assert shard.finished and shard.stats["objects_copied"] == 400
    assert [params for params in lists if params["Bucket"] == BACKUPS] == []
