"""restore_s3 through the recovery function: plan, confirm exactly that plan, resume, undo."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

import backup.handler as backup
from drcore.state.store import JOURNAL_PREFIX, ControllerStateStore
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem
from tests.support import (
    WHO,
    CallRecorder,
    DyingInvocations,
    InvocationCrash,
    act,
    contents,
    damage,
    fan_out_configured,
    s3_metric_sum,
)


def snapshot(world: SampleSystem) -> str:
    [outcome] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
    return outcome["backup_id"]


def restore_request(snapshot_id: str, **extra: object) -> dict:
    return {"action": "restore_s3", "snapshot_id": snapshot_id, **WHO, **extra}


def test_plan_then_confirm_restores_by_content_and_can_be_undone(world):
    # Given a snapshot, then a same-size corruption, a deletion and an upload
    snapshot_id = snapshot(world)
    before = contents(world)
    _corrupted, _deleted, added = damage(world)
    damaged = contents(world)
    # When the operator asks for a restore: a plan, and nothing changed yet
    planned = act(restore_request(snapshot_id))
    assert planned["ok"] and planned["result"]["status"] == "planned"
    plan = planned["result"]["plan"]
    assert (plan["missing"], plan["changed"], plan["to_remove"]) == (1, 1, 1)
    assert contents(world) == damaged
    # When the same request is confirmed with the plan id
    applied = act(restore_request(snapshot_id, confirm=planned["result"]["plan_id"]))
    result = applied["result"]["result"]
    # Then the bucket is as at the snapshot, verified, and the new object is only hidden by a delete marker
    assert applied["ok"] and applied["result"]["status"] == "applied"
    assert contents(world) == before
    assert result["verification"]["ok"] and result["verification"]["objects_matching"] == len(before)
    markers = world.clients["s3"].list_object_versions(Bucket=world.data_bucket, Prefix=added)
    assert markers["DeleteMarkers"] and markers["Versions"]
    # And the restore itself can be undone from its safety snapshot
    undo = result["undo"]
    assert undo["snapshot_id"] == result["safety_snapshot_id"]
    replanned = act({**undo, **WHO})
    act({**undo, **WHO, "confirm": replanned["result"]["plan_id"]})
    assert contents(world) == damaged


def test_a_confirm_must_repeat_the_request_that_made_the_plan(world, monkeypatch):
    snapshot_id = snapshot(world)
    damage(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(restore_request(snapshot_id, prefix="uploads/2026/", confirm=plan_id))
    assert refused["ok"] is False and "does not match the current plan: prefix differ" in refused["error"]
    assert calls.mutating() == []


def test_a_plan_applies_once(world):
    snapshot_id = snapshot(world)
    damage(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    assert act(restore_request(snapshot_id, confirm=plan_id))["ok"]
    again = act(restore_request(snapshot_id, confirm=plan_id))
    assert again["ok"] is False and "already confirmed" in again["error"]


def test_a_plan_is_refused_when_the_bucket_changed_since(world, monkeypatch):
    snapshot_id = snapshot(world)
    damage(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    world.clients["s3"].put_object(Bucket=world.data_bucket, Key="uploads/later.csv", Body=b"x")
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(restore_request(snapshot_id, confirm=plan_id))
    assert refused["ok"] is False and "changed since plan" in refused["error"]
    assert calls.mutating() == []


def test_an_expired_or_unknown_plan_is_refused(world):
    snapshot_id = snapshot(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
        expired = act(restore_request(snapshot_id, confirm=plan_id))
    assert expired["ok"] is False and "expired" in expired["error"]
    unknown = act(restore_request(snapshot_id, confirm="rp-0000000000"))
    assert unknown["ok"] is False and "no plan 'rp-0000000000'" in unknown["error"]


def test_a_target_outside_the_allow_list_is_refused_and_an_allowed_one_restores_beside(world, monkeypatch):
    snapshot_id = snapshot(world)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(restore_request(snapshot_id, target_bucket="someone-elses-bucket"))
    assert refused["ok"] is False and "not allowed" in refused["error"] and calls.mutating() == []
    planned = act(restore_request(snapshot_id, target_bucket="apilados-scratch-restore"))
    act(restore_request(snapshot_id, target_bucket="apilados-scratch-restore", confirm=planned["result"]["plan_id"]))
    assert contents(world, "apilados-scratch-restore") == contents(world)


def test_a_restore_out_of_time_continues_and_completes(world, monkeypatch):
    snapshot_id = snapshot(world)
    before = contents(world)
    damage(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # Given too little time for the safety snapshot: it checkpoints and the function invokes itself
    first = act(restore_request(snapshot_id, confirm=plan_id), remaining_ms=5_000)
    assert first["result"]["status"] == "in_progress" and calls.count()["Invoke"] == 1
    # When the continuation runs with the plan id, Then the restore completes
    resumed = act({"action": "restore_s3", "resume": plan_id, **WHO})
    assert resumed["result"]["status"] == "applied"
    assert contents(world) == before
    # And resuming a finished plan does nothing more
    assert act({"action": "restore_s3", "resume": plan_id, **WHO})["result"]["status"] == "already_applied"


def test_a_restore_that_dies_mid_copy_is_resumed_to_its_restore_point(world, monkeypatch):
    # Given a snapshot, then damage, and a confirmed restore whose invocation dies right after its second copy
    # into the bucket: after its safety snapshot, before it could record anything on the plan
    snapshot_id = snapshot(world)
    before = contents(world)
    damage(world)
    damaged = contents(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    copies: list[str] = []

    def dies_after_the_second_copy(client, operation, params):
        if operation == "CopyObject" and params["Bucket"] == world.data_bucket:
            copies.append(params["Key"])
            if len(copies) == 2:
                crashes.arm(0)  # this copy is sent; the invocation dies before its next call
        return None

    crashes = DyingInvocations(dies_after_the_second_copy).install(monkeypatch)
    with pytest.raises(InvocationCrash):
        act(restore_request(snapshot_id, confirm=plan_id))
    crashes.disarm()
    assert len(copies) == 2 and contents(world) not in (before, damaged)  # in between

    # When Lambda retries the confirmation, and the operator resumes the plan as its answer says
    retried = act(restore_request(snapshot_id, confirm=plan_id))
    resumed = act({"action": "restore_s3", "resume": plan_id, **WHO})

    # Then the restore completes from the safety snapshot it began, verified, and its undo brings the damage back
    assert retried["ok"] is False and "resume it" in retried["error"]
    assert resumed["ok"], resumed
    result = resumed["result"]["result"]
    assert result["verification"]["ok"] and contents(world) == before
    undo = result["undo"]
    replanned = act({**undo, **WHO})
    act({**undo, **WHO, "confirm": replanned["result"]["plan_id"]})
    assert contents(world) == damaged


def test_a_restore_that_dies_before_its_journal_entry_is_journaled_when_resumed(world, monkeypatch):
    # Given a confirmed restore whose invocation records its verified result on the plan, then dies before
    # journaling it
    snapshot_id = snapshot(world)
    damage(world)
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]

    died: list[str] = []

    def dies_before_the_journal(client, operation, params):
        # The plan's own entry (the post-recovery validation journals its own entry before it).
        sort_key = params["Item"]["sk"]["S"] if operation == "PutItem" else ""
        if sort_key.startswith(JOURNAL_PREFIX) and sort_key.endswith(f"#{plan_id}") and not died:
            died.append(operation)
            crashes.die(operation)
        return None

    crashes = DyingInvocations(dies_before_the_journal).install(monkeypatch)
    with pytest.raises(InvocationCrash):
        act(restore_request(snapshot_id, confirm=plan_id))
    crashes.disarm()
    assert not journaled(world, plan_id)

    # When it is resumed (twice: Lambda's retry, then the operator's)
    resumed = [act({"action": "restore_s3", "resume": plan_id, **WHO}) for _ in range(2)]

    # Then both answer the result it recorded, and the journal has its entry, once
    assert [answer["result"]["status"] for answer in resumed] == ["already_applied"] * 2
    assert [entry["result"] for entry in journaled(world, plan_id)] == ["applied"]


def journaled(world: SampleSystem, plan_id: str) -> list[dict]:
    state = ControllerStateStore(world.clients["dynamodb"], world.table)
    return [entry for entry in state.journal(world.function_name, limit=1000) if entry["entry_id"] == plan_id]


@pytest.mark.parametrize("event, problem", [
    ({"action": "restore_s3", **WHO}, "exactly one of snapshot_id or at"),
    ({"action": "restore_s3", "snapshot_id": "20261126T100000Z-abcdef", "at": "2026-11-26T10:00:00Z", **WHO},
     "exactly one of snapshot_id or at"),
    ({"action": "restore_s3", "at": "2026-11-26T10:00:00", **WHO}, "timezone"),
    ({"action": "restore_s3", "snapshot_id": "yesterday", **WHO}, "snapshot_id"),
    ({"action": "restore_s3", "snapshot_id": "20261126T100000Z-abcdef", "target_bucket": "Bad_Bucket", **WHO},
     "target_bucket"),
    ({"action": "restore_s3", "snapshot_id": "20261126T100000Z-abcdef", "confirm": "yes", **WHO}, "confirm"),
    ({"action": "restore_s3", "snapshot_id": "20261126T100000Z-abcdef"}, "requested_by"),
    ({"action": "restore_s3", "snapshot_id": "20261126T100000Z-abcdef", **WHO}, "20261126T100000Z-abcdef"),
    ({"action": "restore_s3", "at": "2001-01-01T00:00:00Z", **WHO}, "2001"),
    ({"action": "restore_s3", "resume": "rp-0123456789", **WHO}, "no plan"),
])
def test_bad_restore_requests_change_nothing(world, monkeypatch, event, problem):
    snapshot(world)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act(event)
    assert result["ok"] is False and problem in result["error"], result
    assert calls.mutating() == []


def test_a_big_restore_fans_out_and_the_state_machines_resume_merges_journals_and_validates(world, monkeypatch):
    import restore_shard.handler as restore_shard
    from embedded.sample_system import put_sample_uploads

    # Given 1,020 objects snapshotted and then damaged, and a restore fan-out past 1,000 keys, 1,000 a shard
    put_sample_uploads(world, range(20, 1_020))
    snapshot_id = snapshot(world)
    before = contents(world)
    damage(world)
    sfn = fan_out_configured(monkeypatch, "DR_RESTORE_FANOUT_STATE_MACHINE", "restore-fanout").sfn
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the operator confirms it
    confirmed = act(restore_request(snapshot_id, confirm=plan_id))["result"]
    # Then it runs in the execution named after the plan, which the recovery function does not continue itself
    assert confirmed["status"] == "in_progress"
    execution = confirmed["progress"]["waiting_for"]
    assert execution.endswith(f":{plan_id}") and confirmed["progress"]["fan_out"]["shards"] == 2
    assert calls.count()["Invoke"] == 0 and contents(world) != before
    resume = json.loads(sfn.describe_execution(executionArn=execution)["input"])["resume"]
    assert resume == {"action": "restore_s3", "resume": plan_id, **WHO}
    # When the map runs each shard through the worker's handler, until it answers finished
    for number in (1, 0):
        answer = restore_shard.handler({"shard": {"plan_id": plan_id, "target_bucket": world.data_bucket,
                                                  "number": number}}, LambdaContextStub("apilados-dr-restore-shard"))
        assert answer["ok"] and answer["finished"] and answer["result"]["verification"]["ok"]
        # status shows the restore while its execution runs: shard 1 holds the last 20 keys (and the one added)
        [running] = act({"action": "status"})["result"]["restores_running"]
        assert {name: running[name] for name in ("plan_id", "shards", "shards_done")} == {
            "plan_id": plan_id, "shards": 2, "shards_done": 2 - number}
        assert running["objects_verified"] == (20 if number else len(before))
    # and each shard's worker published its progress, which the dashboard plots
    assert s3_metric_sum(world, "RestoreShardsDone") == 2 and s3_metric_sum(world, "RestoreObjectsVerified") == len(
        before)
    # and its last step sends the resume
    applied = act(resume)["result"]
    # Then the plan is applied: the bucket as at the snapshot, one verification of every object, journaled, validated
    assert applied["status"] == "applied" and contents(world) == before
    result = applied["result"]
    assert result["verification"]["ok"] and result["verification"]["objects_expected"] == len(before)
    assert (result["copied"], result["removed"]) == (2, 1) and result["fan_out"]["shards_done"] == 2
    assert "validation_status" in result
    assert [entry["result"] for entry in journaled(world, plan_id)] == ["applied"]
    # and a resume sent again (a retried last step) answers that it is applied
    assert act(resume)["result"]["status"] == "already_applied"
    # and once its execution ends, status shows no restore running
    sfn.stop_execution(executionArn=execution)
    assert act({"action": "status"})["result"]["restores_running"] == []


def test_a_restore_into_a_big_data_bucket_waits_for_its_safety_snapshots_shards_whose_last_step_resumes_it(
        world, monkeypatch):
    from embedded.sample_system import put_sample_uploads

    # Given 1,020 objects snapshotted and then damaged, and the data bucket's snapshots fanned out past 1,000 keys
    put_sample_uploads(world, range(20, 1_020))
    snapshot_id = snapshot(world)
    before = contents(world)
    damage(world)
    damaged = contents(world)
    sfn = fan_out_configured(monkeypatch, "DR_SNAPSHOT_FANOUT_STATE_MACHINE", "snapshot-fanout").sfn
    plan_id = act(restore_request(snapshot_id))["result"]["plan_id"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the operator confirms the restore
    confirmed = act(restore_request(snapshot_id, confirm=plan_id))["result"]
    # Then its safety snapshot runs in the snapshot fan-out's execution named after it, which the recovery function
    # does not continue itself, and whose input holds the request that resumes the restore; the bucket is untouched
    assert confirmed["status"] == "in_progress"
    progress = confirmed["progress"]
    safety_id, execution = progress["safety_snapshot_id"], progress["waiting_for"]
    assert execution.endswith(f":{safety_id}") and progress["safety_fan_out"]["shards"] == 2
    assert calls.count()["Invoke"] == 0 and contents(world) == damaged
    execution_input = json.loads(sfn.describe_execution(executionArn=execution)["input"])
    assert execution_input["resume"] == {"action": "restore_s3", "resume": plan_id, **WHO}
    # When the backup function runs each shard and the merge, as the execution has it do
    for number in (1, 0):
        answer = backup.handler({"component": "s3", "shard": {"backup_id": safety_id, "number": number}},
                                LambdaContextStub("apilados-dr-backup"))
        assert answer["ok"] and answer["finished"]
        # (status shows the safety snapshot's shards as they finish: it is the data bucket's newest snapshot)
        fan_out = act({"action": "status"})["result"]["backups"]["s3"]["fan_out"]
        assert (fan_out["backup_id"], fan_out["shards_done"]) == (safety_id, 2 - number)
    [merged] = backup.handler({"component": "s3", "resume": safety_id},
                              LambdaContextStub("apilados-dr-backup"))["components"]
    assert merged["status"] == "complete"
    # and its last step sends the resume
    applied = act(execution_input["resume"])["result"]
    # Then the restore is applied and verified, undone by the safety snapshot the shards took
    assert applied["status"] == "applied" and contents(world) == before
    result = applied["result"]
    assert result["verification"]["ok"] and result["safety_snapshot_id"] == safety_id
    assert "safety_fan_out" not in result and result["undo"]["snapshot_id"] == safety_id
    undo = act({**result["undo"], **WHO})["result"]
    assert undo["status"] == "planned" and undo["plan"]["to_copy"] + undo["plan"]["to_remove"] == 3
