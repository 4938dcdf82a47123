"""Big restores fanned out: the shard plan, the shard workers (called as the restore fan-out's map would call them),
the merge of their verifications, and the execution started, left running, or redriven.

moto's Step Functions does not run a Distributed Map and has no RedriveExecution (tests.support.FanOutStateMachine):
the tests call the shard workers themselves, in an order a map's concurrency could give.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from drcore.backup import manifest as manifest_module
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.manifest import ManifestEntry
from drcore.backup.snapshot_shards import FanOutSettings
from drcore.backup.snapshot_shards import items_key as snapshot_items_key
from drcore.core.errors import InvalidRequest
from drcore.restore import bucket_desired, bucket_restore
from drcore.restore.bucket_plan import RestorePlan, RestoreProgress
from drcore.restore.bucket_restore import SAFETY_MARGIN_MS, BucketRestorer
from drcore.restore.restore_shards import items_key, read_shard_plan, shard_key
from drcore.state.backup_store import BackupStore
from tests.support import FanOutStateMachine, SimulatedClock, data_and_backup_buckets

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"
PLENTY_MS = 15 * 60 * 1000
FAN_OUT = FanOutSettings(threshold_objects=1_000, shard_objects=400)
RESUME = {"action": "restore_s3", "resume": "rp-0123456789", "requested_by": "alice", "reason": "bad upload"}


class World:
    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.store = BackupStore(s3, BACKUPS)
        self.clock = SimulatedClock()
        self.machine = FanOutStateMachine("controller-restore-fanout", self.clock)

        self.snapshots: FanOutStateMachine | None = None  # the snapshot fan-out, once a test sets it up

    def restorer(self, fan_out: bool = True) -> BucketRestorer:
        return BucketRestorer(self.s3, self.store, clock=self.clock, fan_out=(
            FAN_OUT, self.machine.executions) if fan_out else None, snapshots_of=self.snapshotter)

    def snapshotter(self, bucket: str = DATA) -> BucketSnapshotter:
        """The data bucket's snapshots, fanned out past the threshold once `snapshots` is set (as the recovery function
        takes its safety snapshots)."""
        fan_out = (FAN_OUT, self.snapshots.executions) if self.snapshots is not None and bucket == DATA else None
        return BucketSnapshotter(self.s3, self.store, bucket, clock=self.clock, fan_out=fan_out)

    def snapshot(self) -> str:
        self.clock.advance(3600)
        progress = BucketSnapshotter(self.s3, self.store, DATA, clock=self.clock).snapshot(None, lambda: PLENTY_MS)
        assert progress.finished
        self.clock.advance(60)
        return progress.backup_id

    def contents(self) -> dict[str, bytes]:
        keys = [entry["Key"] for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=DATA)
                for entry in page.get("Contents", [])]
        return {key: self.s3.get_object(Bucket=DATA, Key=key)["Body"].read() for key in keys}

    def apply(self, plan: RestorePlan, **options: Any) -> RestoreProgress:
        return self.restorer(**options).apply(plan, lambda: PLENTY_MS, resume_request=RESUME)

    def run_shards(self, plan: RestorePlan, order: list[int]) -> None:
        for number in order:
            run = self.restorer().apply_shard(DATA, plan.plan_id, number, lambda: PLENTY_MS)
            assert run.finished


@pytest.fixture
def world() -> Iterator[World]:
    with data_and_backup_buckets(DATA, BACKUPS) as s3:
        yield World(s3)


def damaged_after_snapshot(world: World) -> tuple[str, dict[str, bytes]]:
    """1,200 objects snapshotted; then 30 rewritten at the same size, 30 deleted and 30 added (keys in every shard).
    The snapshot's id and the bucket as it holds."""
    for n in range(1_200):
        world.s3.put_object(Bucket=DATA, Key=f"uploads/record-{n:05d}.csv", Body=f"row {n:05d}\n".encode(),
                            ContentType="text/csv", Metadata={"batch": str(n % 7)})
    snapshot_id = world.snapshot()
    held = world.contents()
    for n in range(0, 1_200, 40):
        world.s3.put_object(Bucket=DATA, Key=f"uploads/record-{n:05d}.csv", Body=f"bad {n:05d}\n".encode())
        world.s3.delete_object(Bucket=DATA, Key=f"uploads/record-{n + 1:05d}.csv")
        world.s3.put_object(Bucket=DATA, Key=f"uploads/record-{n:05d}-extra.csv", Body=b"added\n")
    return snapshot_id, held


def fanned_out(world: World) -> tuple[RestorePlan, RestoreProgress, dict[str, bytes]]:
    snapshot_id, held = damaged_after_snapshot(world)
    plan = world.restorer().plan(source_bucket=DATA, snapshot_id=snapshot_id)
    assert (plan.to_copy, plan.to_remove, plan.objects_desired) == (60, 30, 1_200)
    progress = world.apply(plan)
    assert progress.fan_out is not None and not progress.finished
    return plan, progress, held


def test_a_restore_touching_more_keys_than_the_threshold_starts_shards_and_changes_nothing_itself(
        world: World) -> None:
    # Given a restore of 1,200 desired keys and 30 to remove, past a threshold of 1,000
    plan, progress, _ = fanned_out(world)
    # Then its apply took the safety snapshot, wrote the shard plan and started the execution named after the plan
    assert progress.safety_snapshot_id and (progress.copied, progress.removed) == (0, 0)
    fan_out = progress.fan_out
    assert fan_out is not None and fan_out["shards"] == 4 and fan_out["shards_done"] == 0
    execution = world.machine.sfn.describe_execution(executionArn=fan_out["execution"])
    assert execution["status"] == "RUNNING" and execution["name"] == plan.plan_id
    assert world.machine.execution_input(fan_out["execution"]) == {
        "plan_id": plan.plan_id, "target_bucket": DATA, "items_key": items_key(DATA, plan.plan_id), "resume": RESUME}
    items = world.store.get_bytes(items_key(DATA, plan.plan_id)).decode().splitlines()
    assert [json.loads(line) for line in items] == [{"shard": n} for n in range(4)]
    shards = read_shard_plan(world.store, DATA, plan.plan_id)
    assert shards is not None and shards.plan == plan and shards.resume_request == RESUME
    assert shards.safety_snapshot_id == progress.safety_snapshot_id
    # Every key the restore touches lies in exactly one shard's range
    touched = [f"uploads/record-{n:05d}.csv" for n in range(1_200)] + [
        f"uploads/record-{n:05d}-extra.csv" for n in range(0, 1_200, 40)]
    assert all(sum(bounds.holds(key) for bounds in shards.ranges) == 1 for key in touched)
    # and the bucket is as it was: the shards make the changes
    assert world.contents()["uploads/record-00000.csv"] == b"bad 00000\n"
    # Resumed while the execution runs, the apply only reports how far it is
    again = world.apply(plan)
    assert not again.finished and again.fan_out is not None and again.fan_out["status"] == "RUNNING"
    assert again.fan_out["shards_done"] == 0


def test_shards_applied_as_the_map_runs_them_merge_into_one_verification_of_the_whole_bucket(world: World) -> None:
    # Given a fanned-out restore
    plan, _, held = fanned_out(world)
    # When its shards run in the order 2, 0, 3, 1 (and shard 0 twice, as a retried map item would)
    world.run_shards(plan, [2, 0, 3, 1, 0])
    # and the apply is resumed (the execution's last step)
    done = world.apply(plan)
    # Then the bucket holds the snapshot again, by content and metadata, and the merged verification says so
    assert done.finished and done.verification is not None and done.verification.ok
    assert world.contents() == held
    head = world.s3.head_object(Bucket=DATA, Key="uploads/record-00040.csv")
    assert head["ContentType"] == "text/csv" and head["Metadata"] == {"batch": str(40 % 7)}
    assert (done.verification.objects_expected, done.verification.objects_matching) == (1_200, 1_200)
    # and what the shards did adds up to the plan: every copy and removal once, though shard 0 ran twice
    assert (done.copied, done.removed) == (plan.to_copy, plan.to_remove)
    assert done.bytes_copied == plan.bytes_to_copy


def test_a_merged_verification_fails_naming_the_keys_whose_backup_content_is_damaged(world: World) -> None:
    # Given a fanned-out restore whose stored content of one key (in shard 2) was overwritten since the snapshot
    plan, _, _ = fanned_out(world)
    shards = read_shard_plan(world.store, DATA, plan.plan_id)
    assert shards is not None
    manifest = world.restorer()._states.manifest(DATA, plan.snapshot_id)
    damaged = next(entry for entry in manifest.entries() if entry.key == "uploads/record-00880.csv")
    assert damaged.content_key and shards.ranges[2].holds(damaged.key)
    world.s3.put_object(Bucket=BACKUPS, Key=damaged.content_key, Body=b"not the row\n")
    world.s3.put_object(Bucket=DATA, Key=damaged.key, Body=b"changed too\n")
    # When every shard runs and the apply merges them
    world.run_shards(plan, [0, 1, 2, 3])
    done = world.apply(plan)
    # Then the restore is finished but not verified: the key is named as mismatched, and its backup as damaged
    assert done.finished and done.verification is not None and not done.verification.ok
    assert done.verification.mismatched == 1 and done.verification.mismatched_keys == (damaged.key,)
    assert done.verification.backup_damaged_keys == (damaged.key,)
    assert done.verification.objects_matching == 1_199


def test_a_shard_out_of_time_continues_and_its_result_counts_every_invocation(world: World) -> None:
    # Given a fanned-out restore and a shard worker with time for one batch only
    plan, _, _ = fanned_out(world)
    budget = iter([PLENTY_MS, SAFETY_MARGIN_MS - 1])
    first = world.restorer().apply_shard(DATA, plan.plan_id, 0, lambda: next(budget, SAFETY_MARGIN_MS - 1))
    # Then it stops before its verification, and says it is not done
    assert not first.finished and first.result is None
    # When it is invoked again with time
    second = world.restorer().apply_shard(DATA, plan.plan_id, 0, lambda: PLENTY_MS)
    # Then it makes nothing twice and its result counts both invocations
    assert second.finished and second.result is not None and second.result.verification.ok
    assert second.copied == 0 and second.result.copied == first.copied
    assert second.result.removed == first.removed + second.removed


def test_the_merge_waits_for_every_shard_and_a_failed_execution_is_redriven(world: World) -> None:
    plan, progress, _ = fanned_out(world)
    assert progress.fan_out is not None
    execution = progress.fan_out["execution"]
    world.run_shards(plan, [1])
    # When the execution failed (here: stopped) and the apply is resumed
    world.machine.sfn.stop_execution(executionArn=execution)
    redriven = world.apply(plan)
    # Then the execution is redriven (its failed shards run again), not a new one started, and nothing merged
    assert not redriven.finished and redriven.fan_out is not None and redriven.fan_out["redriven"]
    assert redriven.fan_out["shards_done"] == 1 and world.machine.redrives == [execution]
    assert len(world.machine.sfn.list_executions(stateMachineArn=world.machine.arn)["executions"]) == 1


def test_an_execution_that_never_started_is_started_when_the_apply_is_resumed(world: World) -> None:
    # Given a restore whose shard plan was written by an apply that died before it started the execution
    plan, progress, _ = fanned_out(world)
    assert progress.fan_out is not None
    world.machine.sfn.delete_state_machine(stateMachineArn=world.machine.arn)
    world.machine = FanOutStateMachine("controller-restore-fanout", world.clock)
    # When the apply is resumed
    resumed = world.apply(plan)
    # Then the execution is started, with the request that resumes the plan
    assert resumed.fan_out is not None and not resumed.finished
    assert world.machine.execution_input(resumed.fan_out["execution"])["resume"] == RESUME


def test_a_restore_within_the_threshold_or_without_a_resume_request_is_applied_in_the_invocation(
        world: World) -> None:
    snapshot_id, held = damaged_after_snapshot(world)
    plan = world.restorer().plan(source_bucket=DATA, snapshot_id=snapshot_id)
    # Without a request to resume it with (a drill's restore), a restore past the threshold is not fanned out
    done = world.restorer().apply(plan, lambda: PLENTY_MS)
    assert done.finished and done.fan_out is None and done.verification is not None and done.verification.ok
    assert world.contents() == held
    assert read_shard_plan(world.store, DATA, plan.plan_id) is None
    # Nor is a restore that touches fewer keys than the threshold
    world.s3.put_object(Bucket=DATA, Key="uploads/record-00003.csv", Body=b"bad again\n")
    small = world.restorer().plan(source_bucket=DATA, snapshot_id=snapshot_id, prefix="uploads/record-000")
    assert small.objects_desired == 100
    assert world.apply(small).finished and world.contents() == held
    assert world.machine.sfn.list_executions(stateMachineArn=world.machine.arn)["executions"] == []


@pytest.mark.parametrize("restore_fans_out", [False, True])
def test_a_safety_snapshot_past_the_threshold_runs_as_shards_whose_execution_resumes_the_restore(
        world: World, restore_fans_out: bool) -> None:
    # Given a bucket of 1,200 objects, snapshotted, then damaged, and the data bucket's snapshots fanned out past 1,000
    snapshot_id, held = damaged_after_snapshot(world)
    plan = world.restorer().plan(source_bucket=DATA, snapshot_id=snapshot_id)
    world.snapshots = FanOutStateMachine("controller-snapshot-fanout", world.clock)
    damaged = world.contents()
    # When the restore is applied
    waiting = world.apply(plan, fan_out=restore_fans_out)
    # Then its safety snapshot runs as shards, in the snapshot fan-out's execution named after it, whose input holds
    # the request that resumes the restore; nothing of the restore is applied
    assert not waiting.finished and waiting.fan_out is None and waiting.safety_fan_out is not None
    safety_id = waiting.safety_snapshot_id
    assert safety_id is not None and waiting.safety_fan_out["shards"] == 3
    execution = waiting.safety_fan_out["execution"]
    assert world.snapshots.execution_input(execution) == {
        "backup_id": safety_id, "items_key": snapshot_items_key(DATA, safety_id), "resume": RESUME}
    assert world.contents() == damaged and (waiting.copied, waiting.removed) == (0, 0)
    # and resumed while the shards run, the apply says so again and starts nothing more
    again = world.apply(plan, fan_out=restore_fans_out)
    assert not again.finished and again.safety_fan_out is not None
    assert (again.safety_snapshot_id, again.safety_fan_out["execution"]) == (safety_id, execution)
    assert again.safety_fan_out["status"] == "RUNNING" and again.safety_fan_out["shards_done"] == 0
    assert len(world.snapshots.sfn.list_executions(stateMachineArn=world.snapshots.arn)["executions"]) == 1
    # When the map snapshots each shard and the merge writes the manifest (the backup function's work)
    for number in (2, 0, 1):
        assert world.snapshotter().snapshot_shard(safety_id, number, lambda: PLENTY_MS).finished
    assert world.snapshotter().snapshot(safety_id, lambda: PLENTY_MS).finished
    # and its last step sends the resume
    resumed = world.apply(plan, fan_out=restore_fans_out)
    if restore_fans_out:  # the restore then runs as shards of its own, against that safety snapshot
        assert resumed.fan_out is not None and resumed.safety_fan_out is None and not resumed.finished
        world.run_shards(plan, [0, 1, 2, 3])
        resumed = world.apply(plan)
    # Then the bucket is restored and verified, and the safety snapshot holds the bucket as the restore found it: the
    # undo
    assert resumed.finished and resumed.verification is not None and resumed.verification.ok
    assert resumed.safety_snapshot_id == safety_id and world.contents() == held
    undo = world.restorer(fan_out=False).plan(source_bucket=DATA, snapshot_id=safety_id)
    assert (undo.to_copy, undo.to_remove) == (60, 30)


def test_a_safety_snapshots_execution_that_never_started_is_started_with_its_resume_by_whoever_continues_it(
        world: World) -> None:
    # Given a restore whose safety snapshot was cut into shards by an apply that died before it started the execution
    snapshot_id, _ = damaged_after_snapshot(world)
    plan = world.restorer().plan(source_bucket=DATA, snapshot_id=snapshot_id)
    world.snapshots = FanOutStateMachine("controller-snapshot-fanout", world.clock)
    safety_id = world.apply(plan).safety_snapshot_id
    assert safety_id is not None
    world.snapshots.sfn.delete_state_machine(stateMachineArn=world.snapshots.arn)
    world.snapshots = FanOutStateMachine("controller-snapshot-fanout", world.clock)
    # When the backup function's next scheduled snapshot finds it unfinished (it continues it rather than start one)
    world.clock.advance(3600)
    continued = world.snapshotter().snapshot(None, lambda: PLENTY_MS)
    # Then it starts the execution, with the request that resumes the restore
    assert continued.backup_id == safety_id and continued.fanned_out
    assert world.snapshots.execution_input(continued.stats["execution"])["resume"] == RESUME


def test_a_fanned_out_restore_is_not_continued_by_a_function_without_its_state_machine(world: World) -> None:
    plan, _, _ = fanned_out(world)
    with pytest.raises(InvalidRequest, match="no state machine"):
        world.apply(plan, fan_out=False)


def test_a_shard_worker_refuses_a_plan_that_is_not_fanned_out_and_a_shard_past_its_plan(world: World) -> None:
    plan, _, _ = fanned_out(world)
    with pytest.raises(InvalidRequest, match="not fanned out"):
        world.restorer().apply_shard(DATA, "rp-00000000ff", 0, lambda: PLENTY_MS)
    with pytest.raises(InvalidRequest, match="shards 0 to 3, not 4"):
        world.restorer().apply_shard(DATA, plan.plan_id, 4, lambda: PLENTY_MS)
    assert not any(world.store.keys(shard_key(DATA, plan.plan_id, "00004/")))


def test_a_big_restore_is_planned_and_cut_into_shards_a_key_at_a_time_never_holding_its_restore_point(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the damaged bucket, and every way a restore could hold its restore point, or a listing, made to fail:
    # a manifest read whole, a listing held, the desired state or the target's state held as a dict
    snapshot_id, held = damaged_after_snapshot(world)

    def whole(*_: Any, **__: Any) -> Any:
        raise AssertionError("held whole")

    with monkeypatch.context() as patched:
        patched.setattr(manifest_module._Fetched, "manifest", whole)  # what every whole read of a manifest builds
        patched.setattr(bucket_desired.DesiredStates, "list_versions", whole)
        patched.setattr(bucket_restore.BucketRestorer, "_desired_held", whole)
        patched.setattr(bucket_restore, "current_in_snapshot", whole)
        # When it is planned
        plan = world.restorer().plan(source_bucket=DATA, snapshot_id=snapshot_id)
    assert (plan.to_copy, plan.to_remove, plan.unchanged, plan.objects_desired) == (60, 30, 1_140, 1_200)
    # And applied with each slice's write noted with how many of the restore point's entries were decoded by then
    decoded: list[int] = []
    slices: list[int] = []
    from_json = ManifestEntry.from_json.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ManifestEntry], document: dict[str, Any]) -> ManifestEntry:
        decoded.append(1)
        return from_json(cls, document)

    def slice_written(params: dict[str, Any], **_: Any) -> None:
        if "/desired-" in params["Key"]:
            slices.append(len(decoded))

    world.s3.meta.events.register("provide-client-params.s3.PutObject", slice_written)
    with monkeypatch.context() as patched:
        patched.setattr(bucket_desired.DesiredStates, "list_versions", whole)
        patched.setattr(bucket_restore.BucketRestorer, "_desired_held", whole)
        patched.setattr(bucket_restore, "current_in_snapshot", whole)
        restorer = world.restorer()
        # (its safety snapshot, under its own threshold here, reads its base whole: it runs before the count)
        safety = restorer._snapshots_of(DATA).snapshot(None, lambda: PLENTY_MS)
        decoded.clear()
        patched.setattr(ManifestEntry, "from_json", classmethod(counted))
        progress = restorer.apply(plan, lambda: PLENTY_MS, safety_snapshot_id=safety.backup_id,
                                  resume_request=RESUME)
    world.s3.meta.events.unregister("provide-client-params.s3.PutObject", slice_written)
    # Then it fanned out, each slice written as soon as its range was cut, with entries read between any two writes
    # (read whole first, all four would be written after the last entry)
    assert progress.fan_out is not None and progress.fan_out["shards"] == 4
    assert len(slices) == 4 and all(earlier < later for earlier, later in itertools.pairwise(slices))
    # And the shards, run as the map would, bring the bucket back to the snapshot, read back
    world.run_shards(plan, [3, 1, 0, 2])
    done = world.apply(plan)
    assert done.finished and done.verification is not None and done.verification.ok
    assert world.contents() == held
