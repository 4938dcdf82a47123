"""`failover` through the recovery function's handler, against both regions in one moto mock (tests/failover_world.py):
the plan and its safety rules, the switch with the primary reachable and unreachable, a second failover, and the
invariants: at most one bucket processes at any moment, exactly one once a failover is done, and no other
notification entry or environment variable is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.client import BaseClient

from drcore.core.config import FailoverEnvVar
from drcore.state.region_record import RegionRecord
from embedded.sample_system import SampleSystem
from tests.failover_world import (
    FAILOVER,
    PIPELINE_ENTRY,
    PRIMARY_LIVE,
    SECONDARY_ENVIRONMENT,
    SECONDARY_LIVE,
    build_regions,
    environment_of,
    notifications,
    plan_document,
    processing,
    unreachable_primary,
)
from tests.support import CallRecorder, DyingInvocations, InvocationCrash, act


@pytest.fixture
def regions(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    sns = world.clients["sns"]
    topic = sns.create_topic(Name="apilados-stakeholders")["TopicArn"]
    queue = world.clients["sqs"].get_queue_attributes(QueueUrl=world.alert_queue_url,
                                                      AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue)
    monkeypatch.setenv(FailoverEnvVar.STAKEHOLDER_TOPIC_ARN.value, topic)
    return build_regions(world, monkeypatch)


MUTATING = ("Put", "Update", "Delete", "Publish", "Invoke", "Create")
REPLICATION_LAG_SECONDS = 3
# The changes a failover makes (its checkpoints included), each of which a crash test dies before.
CRASH_POINTS = 30


def mutating(operation: str, params: Any) -> bool:
    return operation.startswith(MUTATING)


def record(world: SampleSystem) -> RegionRecord:
    return RegionRecord(boto3.client("dynamodb", region_name="us-east-1"), world.table, world.function_name,
                        "us-east-1")


def processing_buckets(world: SampleSystem) -> list[str]:
    found = [world.data_bucket] if processing(world.clients["s3"], world.data_bucket, PRIMARY_LIVE) else []
    if processing(world.clients["s3_secondary"], world.replica_bucket, SECONDARY_LIVE):
        found.append(world.replica_bucket)
    return found


def assert_nothing_else_lost(world: SampleSystem) -> None:
    """Every entry of other owners and every variable of the function are as they were."""
    data = notifications(world.clients["s3"], world.data_bucket)
    assert [entry["Id"] for entry in data["QueueConfigurations"]] == ["audit"]
    replica = notifications(world.clients["s3_secondary"], world.replica_bucket)
    assert [entry["Id"] for entry in replica["QueueConfigurations"]] == ["replica-audit"]
    variables = environment_of(world)
    assert {name: variables.get(name) for name in SECONDARY_ENVIRONMENT} == SECONDARY_ENVIRONMENT


@contextmanager
def uploading_before_each_change(world: SampleSystem, prefix: str) -> Iterator[list[str]]:
    """A client uploading to the primary (keys `prefix`NNN.csv, listed as made) before each change the block makes
    with any other client."""
    primary, keys = world.clients["s3"], []
    original = BaseClient._make_api_call

    def uploading(client: Any, operation: str, params: Any) -> Any:
        if mutating(operation, params) and client is not primary and operation != "Invoke":
            keys.append(f"{prefix}{len(keys):03d}.csv")
            original(primary, "PutObject", {"Bucket": world.data_bucket, "Key": keys[-1], "Body": b"id\n1\n"})
        return original(client, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", uploading):
        yield keys


def fail_over(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    planned = act({**FAILOVER, **(extra or {})})
    assert planned["ok"], planned
    applied = act({**FAILOVER, **(extra or {}), "confirm": planned["result"]["plan_id"]})
    assert applied["ok"], applied
    return dict(applied["result"])


def test_the_plan_shows_both_regions_and_the_exact_changes_and_changes_nothing(regions, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a failover is planned with the primary up
    planned = act(FAILOVER)["result"]
    plan = planned["plan"]
    # Then the primary is seen healthy (its LIVE alarms and a health probe), no data is at risk, the secondary is ready
    assert planned["status"] == "planned" and planned["plan_id"].startswith("fo-")
    assert plan["primary"]["reachable"] and plan["primary"]["probe"]["state"] == "healthy"
    assert set(plan["primary"]["alarms"]) == set(regions.health_alarms) | set(regions.performance_alarms)
    assert plan["data_at_risk"]["objects"] == 0 and plan["readiness"]["ready"]
    assert plan["readiness"]["checks"]["stable_code"]["ok"]
    # And the changes are listed in the order they are applied
    assert [change["step"] for change in plan["changes"]] == [
        "stop_primary", "claim_region", "merge_environment", "await_replication", "start_secondary", "catch_up",
        "alert", "validate"]
    assert plan["changes"][0]["target"] == PRIMARY_LIVE and plan["changes"][4]["target"] == SECONDARY_LIVE
    # And nothing was written but the plan's record (the one invocation is the health probe of the primary LIVE)
    assert calls.mutating() == ["Invoke", "PutItem"]
    assert processing_buckets(regions) == [regions.data_bucket]


def test_a_failover_with_the_primary_up_moves_processing_and_keeps_everything_else(regions, monkeypatch):
    regions.drain_alerts()
    planned = act(FAILOVER)["result"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the failover is confirmed
    result = act({**FAILOVER, "confirm": planned["plan_id"]})["result"]["result"]
    # (the crash test below dies before each of these changes in turn)
    assert len([name for name in calls.calls if mutating(name, None)]) <= CRASH_POINTS, calls.calls
    # Then exactly the replica processes, through the secondary LIVE, with the primary's events and filter
    assert result["ok"] and result["primary_notification"] == "removed" and result["epoch"] == 1
    assert processing_buckets(regions) == [regions.replica_bucket]
    [ours] = [entry for entry in notifications(regions.clients["s3_secondary"], regions.replica_bucket)[
        "LambdaFunctionConfigurations"] if entry["LambdaFunctionArn"] == SECONDARY_LIVE]
    assert ours["Events"] == PIPELINE_ENTRY["Events"] and ours["Filter"] == PIPELINE_ENTRY["Filter"]
    # And the region record names the secondary, the environment has the failover variables merged in
    assert record(regions).active_region() == "us-west-2"
    assert environment_of(regions) == {**SECONDARY_ENVIRONMENT, "ACTIVE_REGION": "us-west-2", "FAILOVER_MODE": "true"}
    assert_nothing_else_lost(regions)
    # And the Regional Failover alert (severity 1, emergency topic) and the stakeholder notice went out
    alerts = regions.drain_alerts()
    [alert] = [entry for entry in alerts if entry["severity"] == 1]
    assert alert["topic"] == regions.emergency_topic_arn and "Regional Failover" in alert["subject"]
    [notice] = [entry for entry in alerts if entry["subject"] == "Service Disruption Notice - Apilados Pipeline"]
    assert "Dear Stakeholders" in notice["message"]
    # And the post-recovery validation ran with the secondary active, its checks in the result; `ok` is the switch's,
    # the validation's verdict is beside it and, not ok here (the test world has no LIVE alarms), alerted
    assert result["validation"]["active_region"] == "us-west-2" and result["validation"]["checks"]
    assert result["validation_status"] == result["validation"]["status"] == "failed"
    assert [entry for entry in alerts if "Validation after failover failed" in entry["subject"]]


def test_with_the_primary_unreachable_the_plan_says_so_and_needs_force(regions, monkeypatch):
    attempted = unreachable_primary(monkeypatch)
    # When a failover is planned while no call reaches the primary
    refused = act(FAILOVER)
    # Then it is refused (the data at risk cannot be known), naming force
    assert not refused["ok"] and "data at risk cannot be known" in refused["error"] and "force" in refused["error"]
    # When it is planned with force
    planned = act({**FAILOVER, "force": True})["result"]
    plan = planned["plan"]
    # Then each part of the primary's health is reported unreachable, not raised
    assert attempted and not plan["primary"]["reachable"]
    assert plan["primary"]["alarms"]["state"] == plan["primary"]["probe"]["state"] == "unreachable"
    assert plan["data_at_risk"]["objects"] is None and plan["forced"] is True
    assert plan["changes"][0]["what"] == "leave the pipeline notification to fencing"
    # When it is confirmed
    result = act({**FAILOVER, "force": True, "confirm": planned["plan_id"]})["result"]["result"]
    # Then the secondary processes; the primary's entry is left to its controller's fencing
    assert result["ok"] and result["primary_notification"].startswith("unreachable")
    assert processing(regions.clients["s3_secondary"], regions.replica_bucket, SECONDARY_LIVE)
    assert record(regions).active_region() == "us-west-2"
    assert_nothing_else_lost(regions)


def test_data_at_risk_above_the_setting_is_refused_unless_forced(regions, monkeypatch, versions_behaviour):
    # Given three uploads not replicated yet (and a failover that waits a second for them)
    monkeypatch.setenv("DR_FAILOVER_REPLICATION_WAIT_SECONDS", "1")
    versions_behaviour.replication.lag = timedelta(hours=1)
    for n in range(3):
        regions.clients["s3"].put_object(Bucket=regions.data_bucket, Key=f"late/{n}.csv", Body=b"id\n1\n")
    # When a failover is planned, Then it is refused naming the three objects and the setting
    refused = act(FAILOVER)
    assert not refused["ok"] and "3 objects are at risk" in refused["error"]
    assert "failover.max_data_at_risk 0" in refused["error"]
    assert processing_buckets(regions) == [regions.data_bucket]
    # When forced (with the reason every action carries), Then it is planned as forced and applies
    result = fail_over({"force": True})
    assert result["result"]["forced"] is True and processing_buckets(regions) == [regions.replica_bucket]
    # And the three, still replicating when the secondary started, are named: each may be processed in both regions
    assert sorted(name.split("#")[0] for name in result["result"]["replication"]["late"]) == [
        f"late/{n}.csv" for n in range(3)]


def test_a_secondary_that_is_not_ready_is_refused_even_with_force(regions):
    # Given the secondary's STABLE serving other code than the primary's STABLE
    west = regions.clients["lambda_secondary"]
    west.update_function_code(FunctionName=regions.function_name, ZipFile=b"PK\x05\x06" + b"\x00" * 18)
    other = west.publish_version(FunctionName=regions.function_name)["Version"]
    west.update_alias(FunctionName=regions.function_name, Name="STABLE", FunctionVersion=other)
    # When a forced failover is planned, Then it is refused naming the code check
    refused = act({**FAILOVER, "force": True})
    assert not refused["ok"] and "the secondary is not ready: stable_code" in refused["error"]
    assert processing_buckets(regions) == [regions.data_bucket]


def test_a_second_failover_is_a_no_op(regions, monkeypatch):
    fail_over()
    before = (notifications(regions.clients["s3"], regions.data_bucket),
              notifications(regions.clients["s3_secondary"], regions.replica_bucket), environment_of(regions))
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a failover is asked for again
    planned = act(FAILOVER)["result"]
    assert planned["plan"]["already_active"] and planned["plan"]["changes"] == []
    result = act({**FAILOVER, "confirm": planned["plan_id"]})["result"]["result"]
    # Then it answers so, and nothing but its plan's own record changed (the invocation is the health probe)
    assert result["already_active"] and result["epoch"] == 1
    assert [name for name in calls.mutating() if name not in ("PutItem", "UpdateItem", "Invoke")] == []
    assert record(regions).epoch() == 1 and len(record(regions).claims()) == 1
    assert (notifications(regions.clients["s3"], regions.data_bucket),
            notifications(regions.clients["s3_secondary"], regions.replica_bucket), environment_of(regions)) == before


@pytest.mark.parametrize("event", [
    {"action": "failover"},
    {"action": "failover", "requested_by": "alice"},
    {"action": "failover", "requested_by": "alice", "reason": "x"},
    {"action": "failover", "requested_by": "alice", "reason": "INC-9", "force": "yes please"},
    {"action": "failover", "requested_by": "alice", "reason": "INC-9", "confirm": "not-a-plan"},
    {"action": "failover", "requested_by": "alice", "reason": "INC-9", "region": "eu-west-1"},
    {"action": "failover", "requested_by": "alice", "reason": "INC-9", "confirm": "fo-0123456789"},
    {"action": "failover", "requested_by": "alice", "reason": "INC-9", "resume": "fo-0123456789"},
])
def test_bad_failover_events_are_refused_with_no_mutating_call(regions, monkeypatch, event):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    answer = act(event)
    assert answer["ok"] is False and answer["error"]
    assert calls.mutating() == []
    assert processing_buckets(regions) == [regions.data_bucket]


# --- crashes, resumption, catch-up

def confirm_or_resume(plan_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """After a crash: resume the plan if its confirmation was recorded, else confirm it again."""
    resumed = act({**FAILOVER, "resume": plan_id})
    if not resumed["ok"] and "never confirmed" in resumed["error"]:
        resumed = act({**FAILOVER, **(extra or {}), "confirm": plan_id})
    assert resumed["ok"], resumed
    return dict(resumed["result"])


@pytest.mark.parametrize("crash_after", range(CRASH_POINTS))
def test_a_crash_between_any_two_steps_is_completed_by_resume(regions, monkeypatch, crash_after):
    dying = DyingInvocations().install(monkeypatch)
    planned = act(FAILOVER)["result"]
    # Given a failover whose invocation dies before its (crash_after + 1)th change
    dying.arm(crash_after, counting=mutating)
    try:
        act({**FAILOVER, "confirm": planned["plan_id"]})
    except InvocationCrash:
        pass
    dying.disarm()
    # Then at no moment do both regions process
    assert len(processing_buckets(regions)) <= 1
    # When it is resumed (or confirmed again, if it died before its confirmation was recorded)
    result = confirm_or_resume(planned["plan_id"])
    # Then the failover is complete as if it had never crashed: exactly the replica processes, one claim holds
    assert processing_buckets(regions) == [regions.replica_bucket]
    assert record(regions).active_region() == "us-west-2" and len(record(regions).claims()) == 1
    assert environment_of(regions) == {**SECONDARY_ENVIRONMENT, "ACTIVE_REGION": "us-west-2", "FAILOVER_MODE": "true"}
    assert_nothing_else_lost(regions)
    outcome = result["result"]
    assert outcome["ok"] and outcome["primary_notification"] in ("removed", "absent")
    # And a resumption after it changes nothing more
    again = act({**FAILOVER, "resume": planned["plan_id"]})["result"]
    assert again["status"] == "already_applied"


@pytest.mark.parametrize("replicated", ["before the resume", "after the switch"])
def test_an_upload_that_arrived_while_neither_region_processed_is_processed_once(regions, monkeypatch,
                                                                                versions_behaviour, replicated):
    dying = DyingInvocations().install(monkeypatch)
    planned = act(FAILOVER)["result"]
    # Given a failover that died right after the primary stopped processing (before its region claim)
    dying.arm(0, counting=lambda operation, params: operation == "PutItem" and "REGION#" in str(params))
    with pytest.raises(InvocationCrash):
        act({**FAILOVER, "confirm": planned["plan_id"]})
    dying.disarm()
    assert processing_buckets(regions) == []
    # And an upload to the primary meanwhile, which nothing processed, replicated to the replica while only its gate
    # was there, or later, once the secondary LIVE's entry was
    since, key = datetime.now(UTC), "uploads/late/arrived-meanwhile.csv"
    if replicated == "after the switch":  # (and the resumed failover does not wait for it: it may be of the stop's
        versions_behaviour.replication.held_keys.add(key)  # second, which S3's times cannot tell from before it)
        monkeypatch.setenv("DR_FAILOVER_REPLICATION_WAIT_SECONDS", "0")
    regions.clients["s3"].put_object(Bucket=regions.data_bucket, Key=key, Body=b"id\n7\n")
    if replicated == "before the resume":
        versions_behaviour.replication.catch_up()
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the failover is resumed
    result = confirm_or_resume(planned["plan_id"])["result"]
    versions_behaviour.replication.held_keys.discard(key)
    versions_behaviour.replication.catch_up()
    # Then that upload was processed once, in the secondary: by the catch-up if it reached the replica before the
    # secondary LIVE's entry (both gates recorded it), by S3's own event if after
    [processed] = [invocation for invocation in versions_behaviour.invocations.all(regions.function_name, since)
                   if invocation.key == key]
    assert processed.region == "us-west-2"
    assert processed.source == ("invoke" if replicated == "before the resume" else "notification")
    progress = plan_document(regions, planned["plan_id"])["progress"]
    assert [name.split("#")[0] for name in progress.get("caught_up", [])] == (
        [key] if replicated == "before the resume" else [])
    assert result["caught_up"] == len(progress.get("caught_up", []))
    # And resuming again invokes nothing
    calls.calls.clear()
    assert act({**FAILOVER, "resume": planned["plan_id"]})["result"]["status"] == "already_applied"
    assert calls.count()["Invoke"] == 0


def test_a_failover_whose_claim_loses_to_a_switch_keeping_the_primary_puts_the_primary_back(regions, monkeypatch,
                                                                                           versions_behaviour):
    dying = DyingInvocations().install(monkeypatch)
    planned = act(FAILOVER)["result"]
    # Given a failover that stopped the primary and died before its region claim
    dying.arm(0, counting=lambda operation, params: operation == "PutItem" and "REGION#" in str(params))
    with pytest.raises(InvocationCrash):
        act({**FAILOVER, "confirm": planned["plan_id"]})
    dying.disarm()
    # And meanwhile an operator in the other region claimed epoch 1 keeping the primary active, and a client uploaded
    # to the primary (its gate recorded the upload: no region was sent it)
    holding = record(regions).claim("us-east-1", "failback", "fb-0a0b0c0d0e", "us-west-2", after_epoch=0)
    since, key = datetime.now(UTC), "uploads/late/while-superseded.csv"
    regions.clients["s3"].put_object(Bucket=regions.data_bucket, Key=key, Body=b"id\n8\n")
    # When the failover is resumed
    result = confirm_or_resume(planned["plan_id"])["result"]
    versions_behaviour.replication.catch_up()
    # Then the upload is processed once, by the primary the winner keeps active
    assert [(invocation.region, invocation.source) for invocation in versions_behaviour.invocations.all(
        regions.function_name, since) if invocation.key == key] == [("us-east-1", "invoke")]
    assert [name.split("#")[0] for name in result["primary_notification_restored"]["replayed"]] == [key]
    # Then it reports itself superseded by that claim, and the primary processes again: never neither, never both
    assert result["superseded"] and result["holding_claim"] == holding.to_dict()
    assert result["primary_notification_restored"]["processing"] is True
    assert processing_buckets(regions) == [regions.data_bucket]
    assert record(regions).active_region() == "us-east-1"
    assert_nothing_else_lost(regions)


def test_a_failover_planned_by_the_standby_is_confirmed_from_the_primary(regions, monkeypatch):
    # Given the plan made by the standby's recovery function, whose own items are scoped to its region
    monkeypatch.setenv("DR_STATE_SCOPE", "us-west-2")
    planned = act(FAILOVER)
    assert planned["ok"], planned
    # When the primary's recovery function confirms it (the plan is in the partition both regions read)
    monkeypatch.delenv("DR_STATE_SCOPE")
    applied = act({**FAILOVER, "confirm": planned["result"]["plan_id"]})
    # Then the failover is applied, once, and journaled where both regions read it
    assert applied["ok"], applied
    assert processing_buckets(regions) == [regions.replica_bucket]
    monkeypatch.setenv("DR_STATE_SCOPE", "us-west-2")
    again = act({**FAILOVER, "resume": planned["result"]["plan_id"]})
    assert again["ok"] and again["result"]["status"] == "already_applied", again


def test_status_shows_which_region_processes_and_the_switch_that_made_it_so(regions, monkeypatch):
    before = act({"action": "status"})["result"]["region"]
    assert before == {"active_region": "us-east-1", "epoch": 0, "last_switch": None}
    fail_over({"force": True})
    after = act({"action": "status"})["result"]["region"]
    assert after["active_region"] == "us-west-2" and after["epoch"] == 1
    assert after["last_switch"]["kind"] == "failover"


def test_an_upload_the_primary_processed_whose_replica_lands_late_is_not_processed_again(regions, versions_behaviour):
    # Given replication taking seconds, and an upload the primary processed just before the failover
    versions_behaviour.replication.lag = timedelta(seconds=REPLICATION_LAG_SECONDS)
    planned = act(FAILOVER)["result"]
    since, key = datetime.now(UTC), "uploads/late/replicated-late.csv"
    regions.clients["s3"].put_object(Bucket=regions.data_bucket, Key=key, Body=b"id\n1\n")
    # When the failover is confirmed
    result = act({**FAILOVER, "confirm": planned["plan_id"]})["result"]["result"]
    time.sleep(REPLICATION_LAG_SECONDS)
    versions_behaviour.replication.catch_up()
    # Then it was processed once, by the primary: the secondary LIVE was notified only after its replica had landed
    assert [(invocation.region, invocation.source) for invocation in versions_behaviour.invocations.all(
        regions.function_name, since) if invocation.key == key] == [("us-east-1", "notification")]
    assert result["replication"]["awaited"] == 1 and result["replication"]["late"] == []
    assert result["ok"] and processing_buckets(regions) == [regions.replica_bucket]


def test_a_replica_later_than_the_replication_bound_is_reported_not_waited_for(regions, monkeypatch,
                                                                              versions_behaviour):
    # Given an upload the primary processed whose replication is stuck, and a failover that waits a second for it
    monkeypatch.setenv("DR_FAILOVER_REPLICATION_WAIT_SECONDS", "1")
    key = "uploads/late/stuck.csv"
    versions_behaviour.replication.held_keys.add(key)
    planned = act(FAILOVER)["result"]
    regions.clients["s3"].put_object(Bucket=regions.data_bucket, Key=key, Body=b"id\n1\n")
    # When the failover is confirmed
    result = act({**FAILOVER, "confirm": planned["plan_id"]})["result"]["result"]
    # Then it switched after the bound, naming the upload that may yet be processed twice
    assert result["ok"] and processing_buckets(regions) == [regions.replica_bucket]
    assert [name.split("#")[0] for name in result["replication"]["late"]] == [key]


def test_the_replication_wait_ends_once_the_replicas_gate_holds_what_the_plan_may_record(regions, monkeypatch,
                                                                                        versions_behaviour):
    # Given replication stuck for an upload the primary processed, a wait of a minute, a gate that may hold 2, and a
    # client uploading to the primary before each change the failover makes (their replicas fill the replica's gate)
    monkeypatch.setattr("drcore.region.failover_action.MAX_GATED_DURING_WAIT", 2)
    stuck = "uploads/late/stuck.csv"
    versions_behaviour.replication.held_keys.add(stuck)
    planned = act(FAILOVER)["result"]
    since = datetime.now(UTC)
    regions.clients["s3"].put_object(Bucket=regions.data_bucket, Key=stuck, Body=b"id\n1\n")
    # When the failover is confirmed
    with uploading_before_each_change(regions, "uploads/during-wait/") as keys:
        result = act({**FAILOVER, "confirm": planned["plan_id"]})["result"]["result"]
    versions_behaviour.replication.catch_up()
    # Then the wait ended on the gate's fill, not a minute later, naming what was still replicating
    assert result["ok"] and result["replication"]["ended"] == "full", result["replication"]
    assert [name.split("#")[0] for name in result["replication"]["late"]] == [stuck]
    # And every upload made meanwhile was processed exactly once
    counts = versions_behaviour.invocations.per_key(regions.function_name, since)
    assert keys and {key: counts[key] for key in keys} == dict.fromkeys(keys, 1)


def test_uploads_made_all_through_a_failover_are_each_processed_exactly_once(regions, monkeypatch,
                                                                            versions_behaviour):
    # Given a client uploading to the primary before each change the failover makes (the switch gates record, in S3's
    # own events, which uploads no region was sent: drcore.region.switch_gate)
    since = datetime.now(UTC)
    planned = act(FAILOVER)["result"]
    # When the failover is confirmed
    with uploading_before_each_change(regions, "uploads/during/") as keys:
        result = act({**FAILOVER, "confirm": planned["plan_id"]})["result"]["result"]
    versions_behaviour.replication.catch_up()
    # Then every upload was processed exactly once, by one region or the other (never both, never neither), and the
    # catch-up invoked exactly those no region was sent
    counts = versions_behaviour.invocations.per_key(regions.function_name, since)
    assert len(keys) >= 10 and {key: counts[key] for key in keys} == dict.fromkeys(keys, 1)
    invoked = {invocation.key for invocation in versions_behaviour.invocations.all(regions.function_name, since)
               if invocation.source == "invoke" and invocation.key in keys}
    assert result["caught_up"] == len(invoked) > 0
