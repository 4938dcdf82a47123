"""recover_from_backup, recover_stack and comprehensive_rollback through the recovery function."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

import backup.handler as backup
import restore_shard.handler as restore_shard
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import put_sample_uploads
from tests.support import WHO, CallRecorder, act, contents, damage, fan_out_configured


def back_up(component: str) -> str:
    [outcome] = backup.handler({"component": component}, LambdaContextStub("apilados-dr-backup"))["components"]
    assert outcome["status"] == "complete", outcome
    return outcome["backup_id"]


def environment(world, name: str | None = None) -> dict:
    return world.clients["lambda"].get_function_configuration(
        FunctionName=name or world.function_name)["Environment"]["Variables"]


def test_recover_from_backup_in_place_restores_everything_and_puts_live_on_the_restored_version(world):
    # Given a backup, then the environment and memory changed by mistake
    backup_id = back_up("lambda")
    before = environment(world)
    world.clients["lambda"].update_function_configuration(
        FunctionName=world.function_name, MemorySize=128, Environment={"Variables": {"STAGE": "oops"}})
    # When planned: the differences are listed (variable names, not values), nothing changed yet
    request = {"action": "recover_from_backup", "backup_id": backup_id, **WHO}
    planned = act(request)["result"]
    settings = {change["setting"] for change in planned["plan"]["changes"]}
    assert {"MemorySize", "Environment"} <= settings
    assert environment(world) == {"STAGE": "oops"}
    # When confirmed
    applied = act({**request, "confirm": planned["plan_id"]})["result"]["result"]
    # Then every variable is back, the code verified, a version published and released to LIVE
    assert applied["ok"] and applied["code_sha256_verified"] and applied["environment_restored"]
    assert environment(world) == before
    assert world.alias_version("LIVE") == applied["version"] == applied["live"]["to_version"]


def test_recover_from_backup_beside_the_original_leaves_it_alone(world, monkeypatch):
    backup_id = back_up("lambda")
    target = f"{world.function_name}-restored"
    request = {"action": "recover_from_backup", "backup_id": backup_id, "target": target, **WHO}
    planned = act(request)["result"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    applied = act({**request, "confirm": planned["plan_id"]})["result"]["result"]
    assert applied["ok"] and applied["created"]
    assert environment(world, target) == environment(world)
    assert "live" not in applied and world.alias_version("LIVE") == world.versions["good"]
    assert "UpdateAlias" not in calls.calls


def test_recover_from_backup_refuses_a_target_outside_the_naming_rule(world, monkeypatch):
    backup_id = back_up("lambda")
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act({"action": "recover_from_backup", "backup_id": backup_id, "target": "billing-api", **WHO})
    assert refused["ok"] is False and "must be" in refused["error"] and calls.mutating() == []


def test_recover_stack_new_plans_a_change_set_and_creates_the_recovery_stack(world):
    backup_id = back_up("stack")
    request = {"action": "recover_stack", "backup_id": backup_id, "mode": "new", **WHO}
    planned = act(request)["result"]
    assert planned["plan"]["target_stack"] == f"{world.stack_name}-recovery" and planned["plan"]["changes"]
    applied = act({**request, "confirm": planned["plan_id"]})["result"]
    assert applied["status"] == "applied" and applied["result"]["status"] == "complete"
    stacks = world.clients["cloudformation"].describe_stacks(StackName=f"{world.stack_name}-recovery")["Stacks"]
    assert stacks[0]["StackStatus"].endswith("COMPLETE")


def test_comprehensive_rollback_restores_function_data_and_stack_in_order_with_one_report(world):
    # Given backups of every component, then damage to the function's environment and to the data
    back_up("lambda"), back_up("stack"), back_up("s3")
    before_env, before_data = environment(world), contents(world)
    at = datetime.now(UTC)
    time.sleep(1.5)  # object versions are listed to the second: the damage must come after `at`
    world.clients["lambda"].update_function_configuration(FunctionName=world.function_name,
                                                          Environment={"Variables": {"STAGE": "broken"}})
    damage(world)
    request = {"action": "comprehensive_rollback", "at": at.isoformat(), **WHO}
    planned = act(request)["result"]
    assert set(planned["plan"]["steps"]) == {"function", "data", "stack"}
    report = act({**request, "confirm": planned["plan_id"]})["result"]["result"]
    # Then one report, every step verified
    assert report["ok"] is True
    assert list(report["steps"]) == ["function", "environment", "data", "stack"]
    assert all(step["ok"] for step in report["steps"].values())
    assert environment(world) == before_env, report
    assert contents(world) == before_data


def test_comprehensive_rollback_before_any_backup_is_refused(world, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act({"action": "comprehensive_rollback", "at": "2001-01-01T00:00:00Z", **WHO})
    assert refused["ok"] is False and "no complete lambda backup" in refused["error"]
    assert calls.mutating() == []


@pytest.mark.parametrize("event, problem", [
    ({"action": "recover_from_backup", **WHO}, "backup_id required"),
    ({"action": "recover_from_backup", "backup_id": "latest", **WHO}, "backup_id"),
    ({"action": "recover_from_backup", "backup_id": "20261126T100000Z-abcdef", **WHO}, "20261126T100000Z-abcdef"),
    ({"action": "recover_stack", "backup_id": "20261126T100000Z-abcdef", **WHO}, "mode required"),
    ({"action": "recover_stack", "backup_id": "20261126T100000Z-abcdef", "mode": "replace", **WHO}, "mode"),
    (
        {"action": "recover_stack", "backup_id": "20261126T100000Z-abcdef", "mode": "new", **WHO},
        "20261126T100000Z-abcdef",
    ),
    ({"action": "comprehensive_rollback", **WHO}, "at required"),
    ({"action": "comprehensive_rollback", "at": "yesterday", **WHO}, "at"),
])
def test_bad_recovery_requests_change_nothing(world, monkeypatch, event, problem):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act(event)
    assert result["ok"] is False and problem in result["error"], result
    assert calls.mutating() == []


def test_a_restore_shard_of_a_plan_that_did_not_fan_out_is_refused_and_writes_nothing(world, monkeypatch):
    # Given no restore fanned out, When the restore shard worker is asked for a shard of a plan
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    answer = restore_shard.handler({"shard": {"plan_id": "rp-00000000ff", "target_bucket": world.data_bucket,
                                              "number": 0}}, LambdaContextStub("apilados-dr-restore-shard"))
    # Then it is refused, naming why, and nothing is written (before, the worker raised, and the map retried it)
    assert answer == {"ok": False, "finished": False,
                      "error": f"restore plan rp-00000000ff of s3://{world.data_bucket} is not fanned out: it has no "
                               "shard plan"}
    assert calls.mutating() == []


def test_a_comprehensive_rollback_whose_data_step_fans_out_is_resumed_by_the_execution_and_finishes(
        world, monkeypatch):
    # Given backups of every component, a bucket past a fan-out threshold of 1,000 keys, then damaged data
    put_sample_uploads(world, range(20, 1_020))
    back_up("lambda"), back_up("stack"), back_up("s3")
    before_data = contents(world)
    at = datetime.now(UTC)
    time.sleep(1.5)  # object versions are listed to the second: the damage must come after `at`
    damage(world)
    sfn = fan_out_configured(monkeypatch, "DR_RESTORE_FANOUT_STATE_MACHINE", "restore-fanout").sfn
    request = {"action": "comprehensive_rollback", "at": at.isoformat(), **WHO}
    plan_id = act(request)["result"]["plan_id"]
    # When it is confirmed, its data step fans out: the rollback waits for that execution, not continuing itself
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    waiting = act({**request, "confirm": plan_id})["result"]
    assert waiting["status"] == "in_progress" and calls.count()["Invoke"] == 0
    execution = waiting["progress"]["waiting_for"]
    resume = json.loads(sfn.describe_execution(executionArn=execution)["input"])["resume"]
    # and the execution resumes the rollback, not its data step alone
    assert resume == {"action": "comprehensive_rollback", "resume": plan_id, **WHO}
    restore_plan = execution.rsplit(":", 1)[1]
    for number in range(2):
        answer = restore_shard.handler({"shard": {"plan_id": restore_plan, "target_bucket": world.data_bucket,
                                                  "number": number}}, LambdaContextStub("apilados-dr-restore-shard"))
        assert answer["finished"]
    # (a shard past the plan is refused with `ok: false`, on which the map's loop fails it, and writes nothing)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    past = restore_shard.handler({"shard": {"plan_id": restore_plan, "target_bucket": world.data_bucket, "number": 2}},
                                 LambdaContextStub("apilados-dr-restore-shard"))
    assert past == {"ok": False, "finished": False, "error": f"restore {restore_plan} has shards 0 to 1, not 2"}
    assert calls.mutating() == []
    report = act(resume)["result"]["result"]
    # Then the rollback goes on to the stack and ends with one report, every step verified
    assert report["ok"] is True and list(report["steps"]) == ["function", "environment", "data", "stack"]
    assert report["steps"]["data"]["objects_matching"] == len(before_data) and contents(world) == before_data
