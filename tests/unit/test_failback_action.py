"""The `failback` action (drcore.region.failback_action) against both regions in one moto: refused while the
primary fails its probe, a no-op when the primary is active, the copy-back then the switch in an order that never
leaves both regions processing, uploads that land during the switch caught up, conflicts, and a crash between any
two steps completed by applying the plan again (from either region)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import time_machine

from drcore.aws.pipeline_notification import BucketNotifications, pipeline_entries
from drcore.core.config import FailoverEnvVar
from drcore.region.divergence_plan import ConflictsUnresolved
from drcore.region.failback_action import (
    FAILOVER_VARIABLES,
    STEPS,
    VALIDATION_NOT_BUILT,
    FailbackAction,
    FailbackRefused,
)
from drcore.rollback.outcome import Outcome
from embedded.sample_system import SampleSystem, add_replica
from tests.failback_world import (
    CSV_ONLY,
    OTHERS_ENTRY,
    PLENTY,
    PRIMARY,
    SECONDARY,
    FailedOver,
    failed_over_world,
)
from tests.support import WHO, CallRecorder, act


@pytest.fixture
def failed_over(system: SampleSystem, versions_behaviour: Any) -> Iterator[FailedOver]:
    with failed_over_world(system, versions_behaviour) as world:
        yield world


def request(**fields: Any) -> Any:
    return SimpleNamespace(prefer=fields.get("prefer"))


def test_a_primary_that_fails_its_probe_refuses_the_plan(failed_over):
    failed_over.health = lambda: Outcome("probed", "version 3: timeout", facts={"healthy": False})
    with pytest.raises(FailbackRefused, match="failed its health probe"):
        failed_over.action().make_plan(request())
    assert failed_over.processing() == (False, True)


def test_a_failback_with_the_primary_active_is_a_no_op(failed_over):
    failed_over.record.claim(PRIMARY, "failback", "fb-0000000001", PRIMARY, 1)
    action = failed_over.action()
    _, plan, summary = action.make_plan(request())
    assert summary["noop"] is True
    assert action.apply(plan, None, PLENTY) == (True, {}, {"ok": True, "noop": True, "active_region": PRIMARY})
    assert failed_over.processing() == (False, True)  # nothing touched


def test_failback_copies_back_then_switches_and_catches_up_uploads_of_the_switch(failed_over):
    world = failed_over
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    world.secondary_s3.delete_object(Bucket=world.replica, Key="uploads/b.csv")
    action = world.action()
    plan_id, plan, summary = action.make_plan(request())
    assert (summary["divergence"]["created"], summary["divergence"]["deleted"]) == (1, 1)
    assert summary["blocked"] is None and summary["steps"] == list(STEPS)
    # Uploads land in the replica just before and just after its notification entry is removed
    removals = BucketNotifications(world.secondary_s3)

    class Racing(BucketNotifications):
        def remove(self, bucket: str, target_arn: str) -> Any:
            with time_machine.travel(datetime.now(UTC) - timedelta(seconds=2)):
                world.upload_to_replica("uploads/just-before.csv", b"processed by the secondary")
            change = removals.remove(bucket, target_arn)
            world.upload_to_replica("uploads/between.csv", b"processed by no one yet")
            return change

    action = world.action(replica_notifications=Racing(world.secondary_s3))
    finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"] is True, result
    # The primary holds what the secondary wrote: the upload, the deletion, both switch-time uploads
    assert world.body("uploads/during.csv") == b"written in the secondary" and world.body("uploads/b.csv") is None
    assert result["copy"]["copied"] == 1 and result["copy"]["deleted"] == 1 and result["copy"]["verification"]["ok"]
    # The one processed by the secondary copied before the primary processes; the other one after
    assert result["catch_up_before"]["copied"] == 1 and result["catch_up_after"]["copied"] == 1
    assert world.body("uploads/just-before.csv") and world.body("uploads/between.csv")
    # Exactly one region processes: the primary, with the replica's events and filter; the other owner's entry kept
    assert world.processing() == (True, False)
    entry = pipeline_entries(BucketNotifications(world.primary_s3).configuration(world.data),
                             world.sites.live_arn(PRIMARY))[0]
    assert entry["Filter"] == CSV_ONLY
    kept = BucketNotifications(world.secondary_s3).configuration(world.replica)["LambdaFunctionConfigurations"]
    assert kept == [OTHERS_ENTRY]
    # The record says the primary, the environment lost the failover's variables and only those
    current = world.record.current()
    assert current is not None and (current.active_region, current.kind, current.plan_id) == (PRIMARY, "failback",
                                                                                               plan_id)
    variables = world.secondary_lambda.get_function_configuration(FunctionName=world.function)["Environment"]
    assert variables["Variables"] == {"TABLE": "ingest"}
    assert not set(FAILOVER_VARIABLES) & set(variables["Variables"])
    # The alert went out; the validation is named as not built, never faked
    inbox = world.system.clients["sqs"].receive_message(QueueUrl=world.system.alert_queue_url,
                                                        MaxNumberOfMessages=10)["Messages"]
    assert any("Regional Failback" in json.loads(message["Body"])["Subject"] for message in inbox)
    assert result["validation"] == {"ran": False, "reason": VALIDATION_NOT_BUILT}
    # And a second failback is a no-op
    assert world.action().make_plan(request())[2]["noop"] is True


def test_conflicts_block_the_apply_until_a_side_is_preferred(failed_over):
    world = failed_over
    world.upload_to_replica("uploads/a.csv", b"secondary's")
    world.primary_s3.put_object(Bucket=world.data, Key="uploads/a.csv", Body=b"primary's")
    action = world.action()
    _, plan, summary = action.make_plan(request())
    assert list(summary["divergence"]["conflict_keys"]) == ["uploads/a.csv"] and "prefer" in summary["blocked"]
    with pytest.raises(ConflictsUnresolved):
        action.apply(plan, None, PLENTY)
    assert world.processing() == (False, True) and world.body("uploads/a.csv") == b"primary's"
    _, plan, summary = action.make_plan(request(prefer="secondary"))
    finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"] and world.body("uploads/a.csv") == b"secondary's"


@pytest.mark.parametrize("gated", [False, True], ids=["no gates", "gates"])
@pytest.mark.parametrize("recorded", [True, False], ids=["progress recorded", "progress lost"])
@pytest.mark.parametrize("crash_at", STEPS[1:])
def test_a_crash_before_any_step_is_completed_by_applying_again_from_either_region(failed_over, crash_at, recorded,
                                                                                  gated):
    world = failed_over
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    gates = world.gated() if gated else {}
    action = world.action(**gates)
    _, plan, _ = action.make_plan(request())

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the invocation died")

    original = getattr(FailbackAction, f"_step_{crash_at}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FailbackAction, f"_step_{crash_at}", crash)
        with pytest.raises(RuntimeError):
            action.apply(plan, None, PLENTY)
    assert getattr(FailbackAction, f"_step_{crash_at}") is original
    # Never both regions processing, whatever step died
    assert world.processing() != (True, True)
    # Resumed from the other region, with the progress recorded after each step (or none, had it been lost)
    progress = world.checkpoints[-1] if recorded else None
    assert recorded is False or list(progress["done"]) == list(STEPS[:STEPS.index(crash_at)])
    # (and, with the gates, a client uploads to the primary meanwhile: processed once, wherever the failback died)
    if gated:
        world.upload_to_primary("uploads/to-the-primary-meanwhile.csv", b"uploaded while the failback was down")
    finished, _, result = world.action(here=SECONDARY, **gates).apply(plan, progress, PLENTY)
    assert finished and result["ok"], result
    assert world.processing() == (True, False) and world.body("uploads/during.csv") == b"written in the secondary"
    if gated:
        assert len(world.processed("uploads/to-the-primary-meanwhile.csv")) == 1
        assert "QueueConfigurations" not in BucketNotifications(world.primary_s3).configuration(world.data)
    claims = world.record.claims()
    assert [(claim.epoch, claim.kind) for claim in claims] == [(1, "failover"), (2, "failback")]


# Through the recovery function ------------------------------------------------------------------

BAD_EVENTS = [
    ({"action": "failback"}, "requested_by: Field required"),
    ({"action": "failback", **WHO, "prefer": "both"}, "prefer"),
    ({"action": "failback", **WHO, "prefer": None, "since": "2026-01-01T00:00:00Z"}, "since: Extra inputs"),
    ({"action": "failback", **WHO, "confirm": "fb-0123456789"}, "no plan 'fb-0123456789'"),
    ({"action": "failback", **WHO, "resume": "rp-0123456789"}, "no plan 'rp-0123456789'"),
    ({"action": "failback", **WHO}, "failback is not configured: set primary_region"),
]


@pytest.mark.parametrize("event, problem", BAD_EVENTS, ids=[str(i) for i in range(len(BAD_EVENTS))])
def test_a_bad_or_unconfigured_request_is_refused_with_no_mutating_call(world, monkeypatch, event, problem):
    add_replica(world, boto3.session.Session(region_name=PRIMARY))
    for name, value in world.region_environment().items():
        monkeypatch.setenv(name, value)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(event)
    assert refused["ok"] is False and problem in refused["error"], refused
    assert calls.mutating() == []


def test_through_the_recovery_function_a_failback_never_failed_over_is_a_no_op(world, monkeypatch):
    add_replica(world, boto3.session.Session(region_name=PRIMARY))
    for name, value in {**world.region_environment(), FailoverEnvVar.PRIMARY_REGION: PRIMARY}.items():
        monkeypatch.setenv(name, value)
    planned = act({"action": "failback", **WHO})
    assert planned["ok"] is True and planned["result"]["plan"]["noop"] is True, planned
    applied = act({"action": "failback", **WHO, "confirm": planned["result"]["plan_id"]})
    assert applied["ok"] is True and applied["result"]["result"] == {"ok": True, "noop": True,
                                                                     "active_region": PRIMARY}
