"""Detection of a primary region outage from the secondary (issue 12, item 5): the region watcher's decision per
tick, and its effects against moto (the primary's function, alarms, the state table, the alert topics).

The failover action itself is the recovery function's; here a recording planner stands in for it, so what is
tested is when the watcher asks for a plan, alerts, and confirms (and that it never confirms on its own unless
automatic failover is on)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from drcore.aws.alerts import AlertPublisher
from drcore.aws.aliases import AliasGateway
from drcore.region.primary_observer import PrimaryObserver, PrimaryReading
from drcore.region.region_watch import (
    FailoverAnswer,
    RegionWatcher,
    RegionWatchTexts,
    Step,
    WatchPolicy,
    next_step,
)
from drcore.state.region_watch import RegionWatchStore, WatchState
from embedded.sample_system import SampleSystem
from tests.support import SimulatedClock

PRIMARY, SECONDARY = "us-east-1", "us-west-2"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HEALTHY = PrimaryReading(reachable=True, problems=())
DOWN = PrimaryReading(reachable=False, problems=("primary Lambda unreachable",))
MANUAL = WatchPolicy(detect_minutes=5, automatic=False, auto_after_minutes=15)
AUTOMATIC = WatchPolicy(detect_minutes=5, automatic=True, auto_after_minutes=15)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize(("watch", "reading", "now", "policy", "expected"), [
    (WatchState(), HEALTHY, at(0), MANUAL, Step.HEALTHY),
    (WatchState(unhealthy_since=iso(0)), HEALTHY, at(3), MANUAL, Step.RECOVERED),
    (WatchState(), DOWN, at(0), MANUAL, Step.SUSPECT),  # one bad look is not an outage
    (WatchState(unhealthy_since=iso(0)), DOWN, at(4.9), MANUAL, Step.SUSPECT),
    (WatchState(unhealthy_since=iso(0)), DOWN, at(5), MANUAL, Step.RAISE),
    (WatchState(unhealthy_since=iso(0), plan_id="p"), DOWN, at(6), MANUAL, Step.RAISE),  # planned, not alerted
    (WatchState(unhealthy_since=iso(0), plan_id="p", alerted_at=iso(5)), DOWN, at(600), MANUAL,
     Step.AWAIT_OPERATOR),  # never confirmed without automatic failover, however long
    (WatchState(unhealthy_since=iso(0), plan_id="p", alerted_at=iso(5)), DOWN, at(19.9), AUTOMATIC,
     Step.AWAIT_OPERATOR),
    (WatchState(unhealthy_since=iso(0), plan_id="p", alerted_at=iso(5)), DOWN, at(20), AUTOMATIC, Step.CONFIRM),
    (WatchState(unhealthy_since=iso(0), plan_id="p", alerted_at=iso(5), confirmed_at=iso(20)), DOWN, at(21),
     AUTOMATIC, Step.CONFIRMED),
    (WatchState(unhealthy_since=iso(0), plan_id="p", alerted_at=iso(5)), HEALTHY, at(30), AUTOMATIC,
     Step.RECOVERED),  # a primary healthy again is never failed over from
])
def test_each_tick_decides_from_what_it_remembers_and_sees(watch, reading, now, policy, expected):
    assert next_step(watch, reading, now, policy) is expected


@dataclass
class RecordingPlanner:
    """Stands in for the recovery function's two-step failover action."""

    refuse_plan: str | None = None
    refuse_confirm: str | None = None
    planned: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)

    def plan(self, reason: str) -> FailoverAnswer:
        if self.refuse_plan:
            return FailoverAnswer(None, self.refuse_plan, {})
        self.planned.append(reason)
        return FailoverAnswer(f"plan-{len(self.planned)}", None, {"changes": ["..."]})

    def confirm(self, plan_id: str, reason: str) -> FailoverAnswer:
        if self.refuse_confirm:
            return FailoverAnswer(None, self.refuse_confirm, {})
        self.confirmed.append(plan_id)
        return FailoverAnswer(plan_id, None, {"applied": True})


class Unreachable:
    """A client of a region that does not answer: every call fails to connect, as botocore reports it."""

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> Any:
            raise EndpointConnectionError(endpoint_url=f"https://lambda.{PRIMARY}.amazonaws.com")
        return call


@dataclass
class World:
    system: SampleSystem
    clock: SimulatedClock
    planner: RecordingPlanner
    watcher: RegionWatcher
    store: RegionWatchStore
    active: list[str]
    reachable: list[bool]

    def tick(self, minutes: float = 1) -> dict[str, Any]:
        self.clock.advance(minutes * 60)
        return self.watcher.tick().to_dict()

    def alerts(self) -> list[tuple[int, str]]:
        return [(alert["severity"], alert["subject"]) for alert in self.system.drain_alerts()]


def make_world(system: SampleSystem, policy: WatchPolicy) -> World:
    clock = SimulatedClock(T0)
    planner = RecordingPlanner()
    primary = boto3.session.Session(region_name=PRIMARY)
    reachable = [True]

    def invoker(seconds: int) -> AliasGateway:
        client = primary.client("lambda") if reachable[0] else Unreachable()
        return AliasGateway(client, system.function_name)

    def cloudwatch_within(seconds: int) -> Any:
        return primary.client("cloudwatch") if reachable[0] else Unreachable()

    observer = PrimaryObserver(invoker, cloudwatch_within, "LIVE", tuple(system.alarms.values()), seconds=2)
    store = RegionWatchStore(system.clients["dynamodb"], system.table, system.function_name, SECONDARY)
    alerts = AlertPublisher(system.clients["sns"], system.alert_topic_arn, system.emergency_topic_arn)
    texts = RegionWatchTexts(system.function_name, PRIMARY, SECONDARY, "apilados-dr-recovery")
    active = [PRIMARY]
    watcher = RegionWatcher(observer, store, planner, alerts, texts, policy, lambda: active[0], SECONDARY, clock)
    return World(system, clock, planner, watcher, store, active, reachable)


def all_alarms_ok(system: SampleSystem) -> None:
    for kind in system.alarms:
        system.set_alarm(kind, "OK")


def test_a_healthy_primary_is_left_alone_and_nothing_is_written(system):
    all_alarms_ok(system)
    world = make_world(system, MANUAL)
    assert world.tick()["action"] == "healthy"
    assert world.store.load() == WatchState()
    assert world.planner.planned == [] and world.alerts() == []


def test_an_unreachable_primary_is_alerted_once_with_a_ready_plan_after_detect_minutes(system):
    all_alarms_ok(system)
    world = make_world(system, MANUAL)
    world.reachable[0] = False
    # Given the primary unreachable: the looks of the first five minutes only remember since when
    for _ in range(5):
        assert world.tick()["action"] == "suspect"
    assert world.planner.planned == [] and world.alerts() == []
    # When it has been so for detect_minutes
    outcome = world.tick()
    # Then one failover plan is made and one severity-1 alert carries its id and the confirm event
    assert outcome["action"] == "alerted" and outcome["facts"]["plan_id"] == "plan-1"
    alerts = world.system.drain_alerts()
    assert [alert["severity"] for alert in alerts] == [1]
    assert "plan-1" in alerts[0]["subject"] and '"confirm": "plan-1"' in alerts[0]["message"]
    assert "unreachable" in world.planner.planned[0]
    # And later ticks wait for the operator: no second plan, no second alert, never a confirm
    for _ in range(60):
        assert world.tick()["action"] == "await_operator"
    assert len(world.planner.planned) == 1 and world.planner.confirmed == [] and world.alerts() == []


def test_a_failing_live_or_an_alarm_in_alarm_makes_the_primary_unhealthy(system, versions_behaviour):
    all_alarms_ok(system)
    world = make_world(system, MANUAL)
    versions_behaviour.set_failing(system.function_name, system.alias_version("LIVE"))
    outcome = world.tick()
    assert outcome["action"] == "suspect"
    assert any("failed the health check" in problem for problem in outcome["facts"]["primary"]["problems"])
    versions_behaviour.set_failing(system.function_name, None)
    system.set_alarm("errors", "ALARM")
    outcome = world.tick()
    assert outcome["action"] == "suspect"
    assert outcome["facts"]["primary"]["alarms_in_alarm"] == [system.alarms["errors"]]


def test_automatic_failover_confirms_the_plan_after_the_further_wait(system):
    all_alarms_ok(system)
    world = make_world(system, AUTOMATIC)
    world.reachable[0] = False
    world.tick(0)
    world.tick(5)  # alerted
    assert world.tick(14)["action"] == "await_operator"
    outcome = world.tick(1)
    assert outcome["action"] == "failed_over" and world.planner.confirmed == ["plan-1"]
    # Once the failover made this region the active one, the watcher has nothing to plan
    world.active[0] = SECONDARY
    assert world.tick()["action"] == "not_watching"
    assert world.planner.confirmed == ["plan-1"]


def test_a_refused_automatic_confirm_is_alerted_and_planned_afresh(system):
    all_alarms_ok(system)
    world = make_world(system, AUTOMATIC)
    world.reachable[0] = False
    world.tick(0)
    world.tick(5)
    world.alerts()
    world.planner.refuse_confirm = "data at risk 120 objects > failover.max_data_at_risk 0"
    outcome = world.tick(15)
    assert outcome["action"] == "confirm_refused"
    assert [severity for severity, _ in world.alerts()] == [1]
    # The next tick raises a new plan (the refused one is dropped) and alerts it; it is not confirmed at once
    world.planner.refuse_confirm = None
    outcome = world.tick(1)
    assert outcome["action"] == "alerted" and outcome["facts"]["plan_id"] == "plan-2"
    assert world.tick(1)["action"] == "await_operator" and world.planner.confirmed == []


def test_a_plan_the_failover_refuses_is_alerted_once(system):
    all_alarms_ok(system)
    world = make_world(system, MANUAL)
    world.reachable[0] = False
    world.planner.refuse_plan = "secondary not ready: alias STABLE missing"
    world.tick(0)
    assert world.tick(5)["action"] == "plan_refused"
    assert world.tick(1)["action"] == "plan_refused"
    assert [severity for severity, _ in world.alerts()] == [1]


def test_a_primary_healthy_again_is_reported_and_forgotten(system):
    all_alarms_ok(system)
    world = make_world(system, MANUAL)
    world.reachable[0] = False
    world.tick(0)
    world.tick(5)
    world.alerts()
    world.reachable[0] = True
    assert world.tick()["action"] == "recovered"
    assert [severity for severity, _ in world.alerts()] == [3]
    assert world.store.load().unhealthy_since is None
    assert world.tick()["action"] == "healthy"


def test_a_tick_that_died_between_its_plan_and_its_alert_alerts_that_plan_next(system, monkeypatch):
    all_alarms_ok(system)
    world = make_world(system, MANUAL)
    world.reachable[0] = False
    world.tick(0)
    publish = AlertPublisher.publish

    def die(*_: Any, **__: Any) -> str:
        raise RuntimeError("invocation died")

    monkeypatch.setattr(AlertPublisher, "publish", die)
    with pytest.raises(RuntimeError):
        world.tick(5)
    monkeypatch.setattr(AlertPublisher, "publish", publish)
    outcome = world.tick(1)
    assert outcome["action"] == "alerted" and outcome["facts"]["plan_id"] == "plan-1"
    assert len(world.planner.planned) == 1


class RecoveryFunctionStub:
    """The recovery function's invoke as Lambda answers it (moto cannot run our code): the events it was sent, and
    the answers queued for them."""

    def __init__(self, *answers: tuple[dict[str, Any] | str, str | None]) -> None:
        self.answers = list(answers)
        self.events: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803  # boto3's names
        import io
        import json
        self.events.append(json.loads(Payload))
        body, error = self.answers.pop(0)
        payload = body if isinstance(body, str) else json.dumps(body)
        return {"StatusCode": 200, "Payload": io.BytesIO(payload.encode()),
                **({"FunctionError": error} if error else {})}


def test_the_planner_asks_the_recovery_function_as_an_operator_would():
    from drcore.region.recovery_planner import RecoveryFunctionError, RecoveryFunctionPlanner
    stub = RecoveryFunctionStub(
        ({"ok": True, "result": {"status": "planned", "plan_id": "fo-0123456789", "plan": {}}}, None),
        ({"ok": False, "error": "the world changed since plan fo-0123456789 was made: plan again"}, None),
        ({"ok": True, "result": {"status": "noop", "detail": "us-west-2 is active already"}}, None),
        ({"errorMessage": "Task timed out"}, "Unhandled"),
    )
    planner = RecoveryFunctionPlanner(stub, "apilados-dr-recovery")
    assert planner.plan("primary down").plan_id == "fo-0123456789"
    refused = planner.confirm("fo-0123456789", "primary down")
    assert refused.plan_id is None and "world changed" in (refused.refused or "")
    assert stub.events[1] == {"action": "failover", "confirm": "fo-0123456789", "requested_by": "region-watcher",
                              "reason": "primary down"}
    assert planner.plan("primary down").refused.startswith("no failover plan")
    with pytest.raises(RecoveryFunctionError, match="Unhandled"):
        planner.plan("primary down")


def secondary_environment(system: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """The region watcher as the standby stack runs it: in the secondary region, with the state table's replica
    there (moto keeps regions apart: a table of the same name, the global table's replica) and the primary's
    names for everything it reads across regions."""
    from drcore.core.config import FailoverEnvVar, RegionEnvVar
    boto3.client("dynamodb", region_name=SECONDARY).create_table(
        TableName=system.table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    for name, value in {**system.environment(), FailoverEnvVar.PRIMARY_REGION: PRIMARY,
                        FailoverEnvVar.RECOVERY_FUNCTION_NAME: "apilados-dr-recovery",
                        RegionEnvVar.SECONDARY_REGION: SECONDARY, "AWS_DEFAULT_REGION": SECONDARY}.items():
        monkeypatch.setenv(name, value)


def test_the_handler_ticks_in_the_secondary_and_remembers_an_unhealthy_primary(system, versions_behaviour,
                                                                             monkeypatch):
    import region_watcher.handler as region_watcher
    from embedded.aws_events import LambdaContextStub, scheduled_event
    all_alarms_ok(system)
    secondary_environment(system, monkeypatch)
    context = LambdaContextStub("apilados-dr-region-watcher")
    healthy = region_watcher.handler(scheduled_event(datetime.now(UTC), region=SECONDARY), context)
    assert healthy["outcome"]["action"] == "healthy", healthy
    # When the primary's LIVE fails its health check (read and invoked across regions)
    versions_behaviour.set_failing(system.function_name, system.alias_version("LIVE"))
    answer = region_watcher.handler(scheduled_event(datetime.now(UTC), region=SECONDARY), context)
    # Then the watch is remembered in the secondary's replica of the table, under the secondary's own item
    assert answer["outcome"]["action"] == "suspect", answer
    store = RegionWatchStore(boto3.client("dynamodb", region_name=SECONDARY), system.table, system.function_name,
                             SECONDARY)
    assert store.load().unhealthy_since is not None
    assert RegionWatchStore(system.clients["dynamodb"], system.table, system.function_name,
                            SECONDARY).load() == WatchState()  # nothing written in the primary's table


@pytest.mark.parametrize("event", [None, [], "tick", {"action": "tick"}, {"detail-type": "Scheduled Event"}])
def test_the_handler_ignores_anything_but_a_scheduled_event(system, monkeypatch, calls, event):
    import region_watcher.handler as region_watcher
    from embedded.aws_events import LambdaContextStub
    secondary_environment(system, monkeypatch)
    calls.spy_on_every_client(monkeypatch)
    answer = region_watcher.handler(event, LambdaContextStub("apilados-dr-region-watcher"))
    assert answer["status"] == "ignored" and calls.calls == []


def test_an_unconfigured_watcher_says_what_is_missing(system, monkeypatch):
    import region_watcher.handler as region_watcher
    from embedded.aws_events import LambdaContextStub, scheduled_event
    for name, value in system.environment().items():
        monkeypatch.setenv(name, value)
    answer = region_watcher.handler(scheduled_event(datetime.now(UTC)), LambdaContextStub("apilados-dr-region-watcher"))
    assert answer["status"] == "error" and "DR_PRIMARY_REGION" in answer["error"]
