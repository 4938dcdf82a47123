"""The health probe is bounded and counted apart (issue 11, item 5).

Bounded: a LIVE slower than the probe's timeout is a failed probe, given up after one attempt, and the tick goes
on to reconcile. Counted apart: the probe invokes the versions LIVE routes to by number, so Lambda counts its
invocations under those versions, never under the LIVE alias whose invocation count and p99 the bake and the
regression check read. moto publishes no Lambda metrics by itself: the Invoke fill (embedded/moto_gaps.py)
publishes what Lambda would for every invocation, at the test's simulated time, so a probe through the alias
would be counted here as it would be in AWS.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from urllib.request import Request, urlopen

import boto3
import pytest

import health_watcher.handler as health_watcher
from drcore.core.controller_settings import TICK_RESERVE_SECONDS
from drcore.core.models import Cause
from drcore.rollback.health_probe import probe_seconds
from embedded.aws_events import LambdaContextStub, scheduled_event
from embedded.sample_system import build_sample_system
from embedded.world import REGION, embedded_world
from tests.support import put_alias_metrics

OPERATOR = Cause(kind="manual", summary="release", requested_by="alice", reason="release 2.3")
MINUTE = 60


def all_alarms_ok(system) -> None:
    for kind in system.alarms:
        system.set_alarm(kind, "OK")


def alias_metric_series(system, alias: str) -> list[dict]:
    """The AWS/Lambda metrics published under the alias (the dimensions the bake and the p99 read)."""
    return [metric for metric in system.clients["cloudwatch"].list_metrics(Namespace="AWS/Lambda")["Metrics"]
            if {"Name": "Resource", "Value": f"{system.function_name}:{alias}"} in metric["Dimensions"]]


@pytest.mark.parametrize(("configured", "remaining_ms", "expected"), [
    (10, 900_000, 10),  # plenty of time: the configured timeout
    (10, (TICK_RESERVE_SECONDS + 4.5) * 1000, 4),  # late in the invocation: what is left after the reserve
    (10, (TICK_RESERVE_SECONDS + 0.9) * 1000, 0),  # under a second left: no probe
    (10, 3_000, 0),  # less than the reserve itself
    (10, None, 10),  # no invocation to count from (a test, the local drill)
])
def test_the_probe_waits_the_configured_time_or_what_the_invocation_can_spare(configured, remaining_ms, expected):
    assert probe_seconds(configured, remaining_ms) == expected


def test_with_under_a_second_to_spare_nothing_is_probed_and_nothing_published(system, health_probe, calls, monkeypatch):
    # Given a tick late in its invocation: less than a second left once the rest of the tick has its reserve
    calls.spy_on_every_client(monkeypatch)
    # When the probe is asked to run
    outcome = health_probe.run(remaining_ms=(TICK_RESERVE_SECONDS + 0.5) * 1000)
    # Then it does not invoke, and publishes nothing: the alarm sees neither a healthy nor a failed LIVE
    assert outcome.action == "not_probed", outcome
    assert "Invoke" not in calls.calls and "PutMetricData" not in calls.calls
    assert system.clients["cloudwatch"].list_metrics(Namespace="ApiladosDR")["Metrics"] == []


def test_the_probe_invokes_each_version_live_routes_to_and_never_the_alias(system, controller, health_probe,
                                                                            versions_behaviour):
    # Given a canary: LIVE routes a share to the fix and the rest to STABLE's version, and the fix fails
    stable, fix = system.versions["good"], system.versions["fix"]
    controller.release(fix, OPERATOR, canary_percent=25)
    versions_behaviour.set_failing(system.function_name, fix)
    # When probed
    outcome = health_probe.run(remaining_ms=900_000)
    # Then both versions were asked, by number, and the failing one is named
    assert outcome.facts["versions"] == {stable: "answered", fix: "function error (Unhandled)"}
    assert outcome.facts["healthy"] is False and f"version {fix}: function error" in outcome.detail
    # And Lambda counted the probes under the versions, none under LIVE
    assert alias_metric_series(system, "LIVE") == []
    assert alias_metric_series(system, stable) and alias_metric_series(system, fix)


def test_a_candidate_serving_only_probes_is_not_promoted_however_long_it_bakes(system, controller, health_probe,
                                                                             versions_behaviour, clock, settings):
    # Given the fix released and baking, every alarm OK, and Lambda's metrics on the test's clock
    versions_behaviour.clock = clock
    fix = system.versions["fix"]
    controller.release(fix, OPERATOR)
    all_alarms_ok(system)
    # When it receives nothing but the probes of each health tick, for longer than the bake time
    for _ in range(settings.bake_seconds // MINUTE + 5):
        clock.advance(MINUTE)
        assert health_probe.run(remaining_ms=900_000).facts["healthy"] is True
        outcome = controller.reconcile()[-1]
        # Then it is never promoted: the probes are not its traffic
        assert outcome.action == "baking", outcome
    assert outcome.detail == f"served 0 invocations, fewer than the {settings.min_bake_invocations} required"
    assert system.alias_version("STABLE") == system.versions["good"]
    # When it serves enough real invocations (through LIVE), beside the probes
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, fix, clock.now - timedelta(minutes=2),
                      invocations=settings.min_bake_invocations, durations_ms=[300.0] * settings.min_bake_invocations)
    health_probe.run(remaining_ms=900_000)
    outcome = controller.reconcile()[-1]
    # Then it is promoted, with the p99 of its real traffic as STABLE's baseline
    assert outcome.action == "promoted", outcome
    assert controller.record().stable_p99_ms == 300.0
    assert system.alias_version("STABLE") == fix


def test_the_regression_check_never_judges_a_candidate_by_its_probes(system, controller, health_probe,
                                                                     versions_behaviour, clock, settings):
    # Given STABLE's baseline of 200 ms, the bad version baking, and Lambda's metrics on the test's clock
    versions_behaviour.clock = clock
    record = controller.record()
    controller._store.replace(record, record.evolve(stable_p99_ms=200.0))
    bad = system.versions["bad"]
    controller.release(bad, OPERATOR)
    # When it receives only probes, more of them than a regression needs invocations
    for _ in range(settings.regression_min_invocations + 5):
        clock.advance(MINUTE)
        health_probe.run(remaining_ms=900_000)
    # Then it is not judged on the probes' durations: there is no real traffic to measure yet
    outcome = controller.regression_check()
    assert outcome.action == "measuring" and outcome.detail.startswith("0 invocations so far"), outcome
    # When its real traffic is twice as slow as STABLE's: rolled back, however fast the probes answer
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, bad, clock.now - timedelta(minutes=2),
                      invocations=settings.regression_min_invocations,
                      durations_ms=[400.0] * settings.regression_min_invocations)
    health_probe.run(remaining_ms=900_000)
    outcome = controller.regression_check()
    assert outcome.action == "rolled_back" and outcome.facts["p99_ms"] == 400.0, outcome


@pytest.mark.parametrize(("configured", "remaining_ms", "longest_wait"), [
    ("1", 900_000, 1),  # the configured timeout
    # cut to what the invocation can spare: 3 s, less what reading LIVE took before
    ("10", (TICK_RESERVE_SECONDS + 3.5) * 1000, 3),
])
def test_a_live_slower_than_the_timeout_is_a_failed_probe_and_the_tick_still_reconciles(configured, remaining_ms,
                                                                                      longest_wait):
    # Over real HTTP (the embedded server): in-process moto has no socket for a read timeout to run out on
    with embedded_world() as world:
        urlopen(Request(f"{world.endpoint}/moto-api/reset", method="POST")).close()
        # Given LIVE on a version that answers the health check a second after the probe stops waiting
        system = build_sample_system(boto3.session.Session(region_name=REGION), world.endpoint)
        os.environ.update(system.environment(DR_HEALTH_PROBE_TIMEOUT_SECONDS=configured))
        live = system.alias_version("LIVE")
        world.behaviour.set_answer_delay(system.function_name, live, longest_wait + 1)
        world.counter.reset()
        # When the health watcher's scheduled tick runs, with `remaining_ms` left in its invocation
        result = health_watcher.handler(scheduled_event(datetime.now(UTC)),
                                        LambdaContextStub("apilados-dr-health-watcher", int(remaining_ms)))
        # Then the probe gave up before LIVE answered, after one attempt: no retry ran the check again
        assert world.behaviour.answered == []
        invocations = [request for request in world.counter.log if request.startswith("POST Qualifier=")]
        assert invocations == [f"POST Qualifier={live}"]
        probe, *reconciled = result["outcomes"]
        assert probe["action"] == "probed" and probe["facts"]["healthy"] is False, probe
        waited = probe["facts"]["timeout_seconds"]
        assert 1 <= waited <= longest_wait, probe
        assert probe["detail"].startswith(f"version {live}: timeout: no answer within {waited}s"), probe
        # And the failure is what the health-probe alarm sees
        cloudwatch = system.clients["cloudwatch"]
        failed = cloudwatch.get_metric_statistics(
            Namespace="ApiladosDR", MetricName="HealthProbeFailed", Statistics=["Maximum"], Period=60,
            Dimensions=[{"Name": "FunctionName", "Value": system.function_name}, {"Name": "Alias", "Value": "LIVE"}],
            StartTime=datetime.now(UTC) - timedelta(minutes=5), EndTime=datetime.now(UTC) + timedelta(minutes=1))
        assert [point["Maximum"] for point in failed["Datapoints"]] == [1.0]
        # And the rest of the tick ran: reconcile read the level and found nothing to do
        assert result["status"] == "ticked" and [outcome["action"] for outcome in reconciled] == ["steady"], result
        # (LIVE does answer in the end, as a function whose caller stopped waiting still runs)
        deadline = time.monotonic() + longest_wait + 5
        while not world.behaviour.answered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert world.behaviour.answered == [(system.function_name, live)]
