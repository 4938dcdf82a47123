"""What runs beside a rollback's bookkeeping once LIVE flipped (the watchers' LiveVersion gauge): it starts
after UpdateAlias answered, it is over when the rollback returns, and its failure surfaces, never hiding the
bookkeeping's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

import health_watcher.handler as health_watcher
from drcore.aws.clients import client_factory
from drcore.core.config import ControllerSettings
from drcore.core.models import AlarmSignal
from drcore.rollback.controller import AliasController
from drcore.rollback.operations import AfterFlip
from drcore.rollback.watcher_events import signal_from_alarm_action
from drcore.wiring.shared import alias_controller
from drcore.wiring.watchers import watcher_services
from embedded.aws_events import alarm_action_event
from embedded.sample_system import SampleSystem
from tests.support import CallRecorder, SimulatedClock


class Beside(RuntimeError):
    """Stands for the work beside the rollback failing (PutMetricData throttled, say)."""


class Crash(RuntimeError):
    """Stands for the rollback's bookkeeping failing."""


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def controller_with(settings: ControllerSettings, clock: SimulatedClock, after_flip: AfterFlip) -> AliasController:
    controller, _, _ = alias_controller(settings, client_factory(), clock=clock, after_flip=after_flip)
    return controller


def errors_alarm(system: SampleSystem, at: datetime) -> AlarmSignal:
    return signal_from_alarm_action(alarm_action_event(system.alarms["errors"], "ALARM", at, system.function_name))


def deploy_bad_version(system: SampleSystem) -> None:
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])


def test_a_watchers_rollback_publishes_the_version_live_serves_after_the_flip(system, invoke_watcher, monkeypatch):
    # Given the bad version on LIVE, every AWS call of the handler recorded
    deploy_bad_version(system)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When its errors alarm fires
    event = alarm_action_event(system.alarms["errors"], "ALARM", datetime.now(UTC), system.function_name)
    result = invoke_watcher(health_watcher, event)
    # Then it rolled back, and the LiveVersion gauge went out once LIVE had flipped, before the handler returned
    assert result["outcome"]["action"] == "rolled_back"
    assert calls.calls.index("PutMetricData") > calls.calls.index("UpdateAlias")
    assert calls.count()["PutMetricData"] == 1
    cloudwatch = system.clients["cloudwatch"]
    dimensions = [{"Name": "FunctionName", "Value": system.function_name}]
    stats = cloudwatch.get_metric_statistics(
        Namespace="ApiladosDR", MetricName="LiveVersion", Dimensions=dimensions, Statistics=["Maximum"], Period=60,
        StartTime=datetime.now(UTC) - timedelta(minutes=5), EndTime=datetime.now(UTC) + timedelta(minutes=1))
    assert [point["Maximum"] for point in stats["Datapoints"]] == [float(system.versions["good"])]


def test_the_work_beside_starts_after_the_flip_and_is_over_when_the_rollback_returns(system, settings, clock, pool):
    deploy_bad_version(system)
    seen: list[str] = []

    def slow_gauge(version: str) -> None:
        seen.append(system.alias_version("LIVE"))  # what LIVE serves when the work starts
        time.sleep(0.2)  # longer than the bookkeeping: the rollback must still wait for it
        seen.append(version)

    controller = controller_with(settings, clock, lambda version: pool.submit(slow_gauge, version))
    controller.record()
    # When the alarm rolls back
    outcome = controller.on_alarm(errors_alarm(system, clock.advance(60)))
    # Then the work saw LIVE already on STABLE, and it had finished by the time the rollback returned
    assert outcome.action == "rolled_back"
    assert seen == [system.versions["good"], system.versions["good"]]


def test_a_failure_beside_the_rollback_surfaces_once_the_bookkeeping_is_done(system, settings, clock):
    deploy_bad_version(system)

    def failing(_: str) -> Future[None]:
        future: Future[None] = Future()
        future.set_exception(Beside("PutMetricData throttled"))
        return future

    controller = controller_with(settings, clock, failing)
    controller.record()
    # When the work beside the rollback fails, Then the rollback raises it (so Lambda retries the event)...
    with pytest.raises(Beside):
        controller.on_alarm(errors_alarm(system, clock.advance(60)))
    # ...and the rollback itself is complete: LIVE on STABLE, journaled, alerted, nothing pending
    assert system.alias_version("LIVE") == system.versions["good"]
    record = controller.record()
    assert record.pending_rollback is None and record.quarantined == (system.versions["bad"],)
    assert [entry["action"] for entry in controller.journal()].count("rollback") == 1
    assert [alert["severity"] for alert in system.drain_alerts()] == [2]
    # And the retried event is a duplicate: no second rollback
    assert controller.on_alarm(errors_alarm(system, clock.now)).action == "duplicate"


def test_when_the_bookkeeping_fails_its_failure_surfaces_after_the_work_beside_is_over(system, settings, clock, pool,
                                                                                      monkeypatch):
    deploy_bad_version(system)
    finished = threading.Event()

    def gauge_then_fail(_: str) -> None:
        time.sleep(0.2)
        finished.set()
        raise Beside("PutMetricData throttled")

    controller = controller_with(settings, clock, lambda version: pool.submit(gauge_then_fail, version))
    controller.record()
    monkeypatch.setattr(controller._store, "append_journal", lambda *a, **k: (_ for _ in ()).throw(Crash("journal")))
    # When the journal fails after the flip, Then that failure surfaces (the tick repairs it), once the work beside
    # the rollback is over
    with pytest.raises(Crash):
        controller.on_alarm(errors_alarm(system, clock.advance(60)))
    assert finished.is_set()


def test_a_watcher_starting_cold_builds_only_the_clients_of_its_claim_and_flip_before_the_flip(
        system, invoke_watcher, monkeypatch):
    # Given a watcher that has built nothing yet, every client build and every AWS call recorded in order
    watcher_services.cache_clear()
    deploy_bad_version(system)
    steps = CallRecorder().spy_on_every_client(monkeypatch).calls
    build = boto3.session.Session.client

    def recorded_build(session: boto3.session.Session, service: str, **options: Any) -> Any:
        steps.append(f"build {service}")
        return build(session, service, **options)

    monkeypatch.setattr(boto3.session.Session, "client", recorded_build)
    # When its first event is an alarm that rolls back
    event = alarm_action_event(system.alarms["errors"], "ALARM", datetime.now(UTC), system.function_name)
    assert invoke_watcher(health_watcher, event)["outcome"]["action"] == "rolled_back"
    # Then the clients of the alert and the gauge were built after the flip, each client once
    before_flip = steps[:steps.index("UpdateAlias")]
    assert [step for step in before_flip if step.startswith("build")] == ["build dynamodb", "build lambda"]
    assert sorted(step for step in steps if step.startswith("build")) == [
        "build cloudwatch", "build dynamodb", "build lambda", "build sns"]
