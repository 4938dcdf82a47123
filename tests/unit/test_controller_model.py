"""Model-based test of the alias controller (DESIGN.md sections 5 and 6; issue 10).

A Hypothesis state machine runs the controller as production does, and after every step checks invariants 1-4
and 8 against the real aliases (moto) and the state table:

1. LIVE never serves $LATEST, nor a version that is neither STABLE nor released by someone.
2. A rollback happens once per incident (a release is at most one): however many alarm events arrive, in
   whichever order, and with two watchers receiving the same alarm at once.
3. A rolled-back version is quarantined; STABLE is on a quarantined version only if an operator promoted it.
4. An alarm while STABLE serves alone freezes automation with a severity-1 alert; a frozen controller does not
   flap (its automation moves no alias and alerts no more).
8. Every change of an alias, and every freeze, is in the journal, with its cause: at once, or after a crash by
   the first tick that finds nothing left in flight.

The steps: releases (a version published, then released through the controller, whole or as a canary; an
existing one released again, with or without force; one deployed by a pipeline outside the controller),
alarm transitions delivered in both AWS shapes (embedded.aws_events) once, twice, never, or late (stale and
reordered), ticks of both watchers, the clock moving past the pending-repair, settle and bake times, an
operator's rollback, promote, freeze and unfreeze, two instances of the health watcher receiving the same
alarm at once, and a crash after the Nth AWS call of any step (tests.support.CrashPlan); the step after a
crash is a fresh invocation, as Lambda's retry or the next event would be.

The watchers are driven through drcore.rollback.watcher.run_watcher, the dispatch their handlers run, with
controllers built by their wiring (drcore.wiring.shared.alias_controller) on a simulated clock; the operator's
actions call the controller as the recovery function does.

moto is started once per test and each example protects a function of its own (building the sample system per
example would cost a second each). moto sets an alarm's state time from the wall clock; the model sets it to
the simulated clock's, as CloudWatch would have.

Runs: the `ci` profile (the default, tests/conftest.py) runs CI_EXAMPLES examples of CI_STEPS steps;
HYPOTHESIS_PROFILE=thorough runs THOROUGH_STEPS steps an example, as many examples as the profile says. A
failing example is saved under .hypothesis/ and replayed first next time.
"""

from __future__ import annotations

import io
import itertools
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import boto3
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from moto import mock_aws
from moto.cloudwatch.models import cloudwatch_backends

from drcore.aws.alarms import ALARM, INSUFFICIENT_DATA, OK
from drcore.aws.clients import client_factory
from drcore.core.controller_settings import ControllerSettings
from drcore.core.errors import DrError
from drcore.core.models import Cause, ControllerRecord, ControllerState, to_iso
from drcore.rollback.controller import AliasController
from drcore.rollback.watcher import run_watcher
from drcore.state.store import ControllerStateStore
from drcore.wiring.shared import alias_controller
from embedded.aws_events import ACCOUNT, alarm_action_event, alarm_state_change_event, scheduled_event
from embedded.moto_gaps import moto_gaps_filled
from tests.support import CrashPlan, InvocationCrash, SimulatedClock

CI_EXAMPLES, CI_STEPS, THOROUGH_STEPS = 30, 25, 60
_PROFILE = settings.default
_THOROUGH = _PROFILE.max_examples > 100
MODEL_RUNS = settings(_PROFILE, max_examples=_PROFILE.max_examples if _THOROUGH else CI_EXAMPLES,
                      stateful_step_count=THOROUGH_STEPS if _THOROUGH else CI_STEPS)

REGION = "us-east-1"
TABLE = "model-dr-state"
LATEST = "$LATEST"
INITIAL_STABLE = "1"
MAX_VERSIONS = 7
SERVICES = ("lambda", "cloudwatch", "dynamodb", "sns")
HEALTH, PERFORMANCE = "errors", "p99-duration"
PROCESSES = ("health-a", "health-b", "performance", "operator")
OPERATOR = Cause(kind="manual", summary="operator request", requested_by="model@example.com", reason="model run")
SETTINGS = {"bake_seconds": 900, "settle_seconds": 600, "pending_repair_seconds": 60, "min_bake_invocations": 0}

# None (most steps) or the number of AWS calls a step makes before its invocation dies.
CRASHES = st.one_of(st.none(), st.integers(min_value=0, max_value=9))
T = TypeVar("T")


@dataclass(frozen=True)
class PublishedAlert:
    function: str
    severity: int
    subject: str


@dataclass
class Process:
    """One execution environment of a controller function: its clients (built once, reused warm, as Lambda
    reuses an environment) and the crash its current invocation is to suffer."""

    client: Callable[[str], Any]
    crashes: CrashPlan


@dataclass
class World:
    """What the examples share: moto, the state table, the alert topics, and one environment per function."""

    lambda_client: Any
    cloudwatch: Any
    store: ControllerStateStore
    role_arn: str
    alert_topic_arn: str
    emergency_topic_arn: str
    processes: dict[str, Process]
    alerts: list[PublishedAlert] = field(default_factory=list)
    names: Iterator[int] = field(default_factory=itertools.count)


def _code(label: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", f"RELEASE = {label!r}\ndef handler(event, context):\n    return RELEASE\n")
    return buffer.getvalue()


def _process(world_alerts: list[PublishedAlert]) -> Process:
    client = client_factory()
    crashes = CrashPlan()
    lock = threading.Lock()
    publishing = threading.local()

    def about_to_publish(params: dict[str, Any], **_: Any) -> None:
        publishing.params = params

    def published(**_: Any) -> None:  # after the call: a publish that crashed is not counted
        params = publishing.params
        attributes = params["MessageAttributes"]
        with lock:
            world_alerts.append(PublishedAlert(attributes["function_name"]["StringValue"],
                                               int(attributes["severity"]["StringValue"]), params["Subject"]))

    for service in SERVICES:
        crashes.attach(client(service))
    sns = client("sns")
    sns.meta.events.register("before-parameter-build.sns.Publish", about_to_publish)
    sns.meta.events.register("after-call.sns.Publish", published)
    return Process(client=client, crashes=crashes)


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws(), moto_gaps_filled():
        session = boto3.session.Session(region_name=REGION)
        iam, dynamodb, sns = (session.client(name) for name in ("iam", "dynamodb", "sns"))
        role_arn = iam.create_role(RoleName="model-ingest-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        alerts: list[PublishedAlert] = []
        yield World(
            lambda_client=session.client("lambda"), cloudwatch=session.client("cloudwatch"),
            store=ControllerStateStore(dynamodb, TABLE), role_arn=role_arn,
            alert_topic_arn=sns.create_topic(Name="model-alerts")["TopicArn"],
            emergency_topic_arn=sns.create_topic(Name="model-emergency")["TopicArn"],
            processes={name: _process(alerts) for name in PROCESSES}, alerts=alerts)


@dataclass(frozen=True)
class Observation:
    """The level after a step: the aliases as Lambda has them, the record and the journal as the table has them."""

    live_primary: str
    live_weights: dict[str, float]
    stable: str
    record: ControllerRecord | None
    journal: list[dict[str, Any]]

    @property
    def live_versions(self) -> set[str]:
        return {self.live_primary, *self.live_weights}

    @property
    def live_served(self) -> str:
        return next(iter(self.live_weights)) if self.live_weights else self.live_primary

    @property
    def state(self) -> ControllerState | None:
        return self.record.state if self.record else None


@dataclass(frozen=True)
class Owed:
    """A change a crashed step (or a pipeline outside the controller) made, that the journal must come to show."""

    what: str  # "LIVE", "STABLE", "FROZEN" or "UNFROZEN"
    version: str
    known: frozenset[str]  # the journal's entries (sort keys) when the change was seen
    by_pipeline: bool = False  # a deployment outside the controller, which only the controller's view must follow


class ControllerModel(RuleBasedStateMachine):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.clock = SimulatedClock()
        self.function = f"model-ingest-{next(world.names)}"
        lam = world.lambda_client
        lam.create_function(FunctionName=self.function, Runtime="python3.13", Role=world.role_arn,
                            Handler="index.handler", Code={"ZipFile": _code("initial")})
        self.published: list[str] = []
        for _ in range(3):
            self._publish()
        for alias in ("STABLE", "LIVE"):
            lam.create_alias(FunctionName=self.function, Name=alias, FunctionVersion=INITIAL_STABLE)
        self.alarms = {kind: f"{self.function}-LIVE-{kind}" for kind in (HEALTH, PERFORMANCE)}
        for name in self.alarms.values():
            world.cloudwatch.put_metric_alarm(
                AlarmName=name, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
                EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
        self.alarm_states = dict.fromkeys(self.alarms, OK)
        for kind in self.alarms:
            self._set_alarm(kind, OK)
        controller_settings = ControllerSettings(
            protected_function=self.function, state_table=TABLE, alert_topic_arn=world.alert_topic_arn,
            emergency_topic_arn=world.emergency_topic_arn, health_alarms=(self.alarms[HEALTH],),
            performance_alarms=(self.alarms[PERFORMANCE],), **SETTINGS)
        self.settings = controller_settings
        self.controllers: dict[str, AliasController] = {
            name: alias_controller(controller_settings, process.client, clock=self.clock)[0]
            for name, process in world.processes.items()}
        self.late: list[dict[str, Any]] = []  # alarm events held back, delivered later (stale, reordered)
        self.releases: Counter[str] = Counter()  # how often each version was put on LIVE by someone
        self.forced: set[str] = set()  # versions an operator released by force while quarantined
        self.to_revert: set[str] = set()  # quarantined versions a pipeline put on LIVE since the last tick
        self.operator_promoted: set[str] = set()
        self.owed: list[Owed] = []
        self.alerts_seen = len(world.alerts)
        self._begin("start", automation=False)
        self.episode_alerts = 0  # severity-1 alerts since automation last froze
        self.episode_crashed = False
        self.last = self._observe()

    # ------------------------------------------------------------------ the world

    def _publish(self) -> str:
        lam = self.world.lambda_client
        lam.update_function_code(FunctionName=self.function, ZipFile=_code(f"release {len(self.published) + 1}"))
        version = str(lam.publish_version(FunctionName=self.function)["Version"])
        self.published.append(version)
        return version

    def _set_alarm(self, kind: str, state: str) -> datetime:
        """Move an alarm to `state` now, as CloudWatch would: the time of the change is the simulated clock's."""
        changed_at = self.clock.advance(1)
        name = self.alarms[kind]
        self.world.cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="model")
        alarm = cloudwatch_backends[ACCOUNT][REGION].alarms[name]
        alarm.state_updated_timestamp = changed_at.replace(tzinfo=None)  # moto keeps naive UTC
        self.alarm_states[kind] = state
        return changed_at

    def _observe(self) -> Observation:
        lam = self.world.lambda_client
        live = lam.get_alias(FunctionName=self.function, Name="LIVE")
        stable = lam.get_alias(FunctionName=self.function, Name="STABLE")
        weights = (live.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return Observation(live_primary=live["FunctionVersion"], live_weights=dict(weights),
                           stable=stable["FunctionVersion"], record=self.world.store.get(self.function),
                           journal=self.world.store.journal(self.function, limit=1000))

    # ------------------------------------------------------------------ invocations

    def _begin(self, step: str, *, automation: bool) -> None:
        """A new step: a second later than the last, as invocations are (the model's clock moves only by its
        steps, so two steps never share the millisecond that times the record's and the journal's entries)."""
        self.clock.advance(1)
        self.step, self.step_is_automation, self.step_crashed, self.new_alarm_edge = step, automation, False, False
        self.tick_completed = False

    def _invoke(self, process: str, action: Callable[[AliasController], T], crash_after: int | None) -> T | None:
        """One invocation of a controller function; None if it crashed (its next event is a fresh invocation)."""
        crashes = self.world.processes[process].crashes
        crashes.arm(crash_after)
        try:
            return action(self.controllers[process])
        except InvocationCrash:
            self.step_crashed = True
            return None
        finally:
            crashes.disarm()

    def _operator(self, action: Callable[[AliasController], Any], crash_after: int | None) -> Any:
        def refusing(controller: AliasController) -> Any:
            try:
                return action(controller)
            except DrError as refused:  # the recovery function answers {"ok": false}
                return refused
        return self._invoke("operator", refusing, crash_after)

    def _deliver(self, process: str, event: dict[str, Any], crash_after: int | None) -> None:
        own = self.settings.health_alarms if process.startswith("health") else self.settings.performance_alarms
        controller = self.controllers[process]
        record = self.last.record
        detail = event.get("alarmData") or event["detail"]
        name, state = detail["alarmName"], detail["state"]
        if name in own and state["value"] == ALARM and record is not None:
            seen = record.alarm_watermarks.get(name)
            changed_at = to_iso(datetime.fromisoformat(state["timestamp"].replace("+0000", "+00:00")))
            self.new_alarm_edge = self.new_alarm_edge or seen is None or seen < changed_at
        self._invoke(process, lambda _: run_watcher(event, controller, own, controller.reconcile), crash_after)

    def _watcher_of(self, kind: str) -> str:
        return "health-a" if kind == HEALTH else "performance"

    def _event(self, kind: str, state: str, changed_at: datetime, shape: str) -> dict[str, Any]:
        build = alarm_action_event if shape == "alarm_action" else alarm_state_change_event
        return build(self.alarms[kind], state, changed_at, self.function)

    # ------------------------------------------------------------------ rules: releases

    @precondition(lambda self: len(self.published) < MAX_VERSIONS)
    @rule(canary=st.sampled_from([None, 10, 50]), crash_after=CRASHES)
    def publish_and_release(self, canary: float | None, crash_after: int | None) -> None:
        self._begin("publish and release", automation=False)
        version = self._publish()
        self.releases[version] += 1
        self._operator(lambda c: c.release(version, OPERATOR, canary), crash_after)

    @rule(pick=st.integers(0, MAX_VERSIONS), canary=st.sampled_from([None, 25]), force=st.booleans(),
          crash_after=CRASHES)
    def release_again(self, pick: int, canary: float | None, force: bool, crash_after: int | None) -> None:
        self._begin("release again", automation=False)
        version = self.published[pick % len(self.published)]
        record = self.last.record
        if record is not None and record.is_quarantined(version):
            if not force:
                self._operator(lambda c: c.release(version, OPERATOR, canary), crash_after)
                return
            self.forced.add(version)
        self.releases[version] += 1
        self._operator(lambda c: c.release(version, OPERATOR, canary, force), crash_after)

    @precondition(lambda self: self.last.record is not None and self.last.record.quarantined)
    @rule(pick=st.integers(0, MAX_VERSIONS), healthy=st.booleans(), crash_after=CRASHES)
    def force_release_a_quarantined_version(self, pick: int, healthy: bool, crash_after: int | None) -> None:
        """An operator puts a rolled-back version back on LIVE, by force with a reason; perhaps it then serves
        healthily past the bake time. Only an operator may promote it."""
        self._begin("force release", automation=False)
        assert self.last.record is not None
        quarantined = self.last.record.quarantined
        version = quarantined[pick % len(quarantined)]
        self.forced.add(version)
        self.releases[version] += 1
        self._operator(lambda c: c.release(version, OPERATOR, None, True), crash_after)
        if healthy and not self.step_crashed:
            self.invariants_hold()
            self.candidate_bakes("alarm_action", None)

    @rule(pick=st.integers(0, MAX_VERSIONS))
    def deploy_outside_the_controller(self, pick: int) -> None:
        """A deployment pipeline moves LIVE itself, to any published version: a quarantined one is the tick's to
        revert."""
        self._begin("deploy outside", automation=False)
        record = self.last.record
        version = self.published[pick % len(self.published)]
        if record is not None and record.is_quarantined(version):
            self.to_revert.add(version)
        self.releases[version] += 1
        self.world.lambda_client.update_alias(FunctionName=self.function, Name="LIVE", FunctionVersion=version,
                                              RoutingConfig={"AdditionalVersionWeights": {}})

    # ------------------------------------------------------------------ rules: alarms

    @rule(kind=st.sampled_from([HEALTH, PERFORMANCE]), to_state=st.sampled_from([ALARM, OK, INSUFFICIENT_DATA]),
          shape=st.sampled_from(["alarm_action", "eventbridge"]),
          delivery=st.sampled_from(["once", "twice", "never", "late"]), crash_after=CRASHES)
    def alarm_transition(self, kind: str, to_state: str, shape: str, delivery: str, crash_after: int | None) -> None:
        self._begin(f"{kind} to {to_state}, {delivery}", automation=True)
        if self.alarm_states[kind] == to_state:
            return  # CloudWatch sends nothing when the state stays the same
        changed_at = self._set_alarm(kind, to_state)
        event = self._event(kind, to_state, changed_at, shape)
        if delivery == "late":
            self.late.append(event)
        elif delivery != "never":
            self._deliver(self._watcher_of(kind), event, crash_after)
        if delivery == "twice":  # EventBridge delivers at least once, and the alarm action arrives too
            other_shape = "eventbridge" if shape == "alarm_action" else "alarm_action"
            other = self._event(kind, to_state, changed_at, other_shape)
            self._deliver(self._watcher_of(kind), other, None)

    @precondition(lambda self: set(self.alarm_states.values()) != {OK})
    @rule(shape=st.sampled_from(["alarm_action", "eventbridge"]), crash_after=CRASHES)
    def alarms_recover(self, shape: str, crash_after: int | None) -> None:
        """Every alarm back to OK, each transition delivered once."""
        self._begin("alarms recover", automation=True)
        for kind, state in self.alarm_states.items():
            if state != OK:
                event = self._event(kind, OK, self._set_alarm(kind, OK), shape)
                self._deliver(self._watcher_of(kind), event, crash_after)

    @precondition(lambda self: self.late)
    @rule(pick=st.integers(0, 10), crash_after=CRASHES)
    def deliver_late(self, pick: int, crash_after: int | None) -> None:
        self._begin("deliver late", automation=True)
        event = self.late.pop(pick % len(self.late))
        name = (event.get("alarmData") or event["detail"])["alarmName"]
        kind = HEALTH if name == self.alarms[HEALTH] else PERFORMANCE
        self._deliver(self._watcher_of(kind), event, crash_after)

    @precondition(lambda self: self.alarm_states[HEALTH] != ALARM)
    @rule()
    def two_watchers_receive_the_same_alarm(self) -> None:
        """The errors alarm fires; two instances of the health watcher receive it at once, as alarm action and
        through EventBridge."""
        self._begin("two watchers at once", automation=True)
        changed_at = self._set_alarm(HEALTH, ALARM)
        events = {"health-a": self._event(HEALTH, ALARM, changed_at, "alarm_action"),
                  "health-b": self._event(HEALTH, ALARM, changed_at, "eventbridge")}
        start = threading.Barrier(len(events))
        failures: list[BaseException] = []

        def deliver(process: str) -> None:
            start.wait()
            try:
                self._deliver(process, events[process], None)
            except BaseException as failure:  # noqa: BLE001  # surfaced below, on the test's thread
                failures.append(failure)

        threads = [threading.Thread(target=deliver, args=(process,)) for process in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]

    # ------------------------------------------------------------------ rules: ticks and time

    @rule(crash_after=CRASHES)
    def health_tick(self, crash_after: int | None) -> None:
        self._begin("health tick", automation=True)
        event = scheduled_event(self.clock.now)
        outcome = self._invoke("health-a", lambda c: run_watcher(event, c, self.settings.health_alarms, c.reconcile),
                               crash_after)
        self.tick_completed = outcome is not None

    @rule(crash_after=CRASHES)
    def performance_tick(self, crash_after: int | None) -> None:
        self._begin("performance tick", automation=True)
        event = scheduled_event(self.clock.now)
        self._invoke("performance", lambda c: run_watcher(event, c, self.settings.performance_alarms,
                                                          lambda: [c.regression_check()]), crash_after)

    @precondition(lambda self: self.last.state is ControllerState.BAKING)
    @rule(shape=st.sampled_from(["alarm_action", "eventbridge"]), crash_after=CRASHES)
    def candidate_bakes(self, shape: str, crash_after: int | None) -> None:
        """The baking candidate stays healthy: every alarm OK, the bake time passes, the health tick comes (more
        often than these three at random would)."""
        self.alarms_recover(shape, None)
        self.time_passes(SETTINGS["bake_seconds"] + 1)
        self.health_tick(crash_after)

    @rule(seconds=st.sampled_from([20, 61, 601, 901]))
    def time_passes(self, seconds: int) -> None:
        """Past the pending-repair time (60 s), the settle time (600 s), the bake time (900 s)."""
        self._begin(f"{seconds}s pass", automation=False)
        self.clock.advance(seconds)

    # ------------------------------------------------------------------ rules: the operator

    @rule(action=st.sampled_from(["rollback", "promote", "freeze", "unfreeze"]), crash_after=CRASHES)
    def operator_acts(self, action: str, crash_after: int | None) -> None:
        self._begin(f"operator {action}", automation=False)
        record = self.last.record
        if action == "promote" and record is not None and record.candidate is not None:
            self.operator_promoted.add(record.candidate.version)
        self._operator(lambda c: getattr(c, action)(OPERATOR), crash_after)

    @precondition(lambda self: self.last.state is ControllerState.FROZEN)
    @rule(shape=st.sampled_from(["alarm_action", "eventbridge"]), crash_after=CRASHES)
    def operator_ends_the_incident(self, shape: str, crash_after: int | None) -> None:
        """Automation is frozen: the incident is over (every alarm OK again) and an operator resumes automation
        (more often than these would at random)."""
        self.alarms_recover(shape, None)
        self._begin("operator unfreeze", automation=False)
        self._operator(lambda c: c.unfreeze(OPERATOR), crash_after)

    # ------------------------------------------------------------------ the invariants

    def _unpaid(self, now: Observation) -> list[Owed]:
        """What is owed still: not journaled, not undone meanwhile, and (for a pipeline's change) not what the
        record says already (a pipeline that put LIVE back where the controller expects it changed nothing)."""
        still = {"LIVE": now.live_versions, "STABLE": {now.stable}}
        record = now.record
        expected = (record.candidate.version if record.candidate else record.stable_version) if record else None
        return [owed for owed in self.owed if not self._journaled(owed, now.journal)
                and owed.version in still.get(owed.what, {owed.version})
                and not (owed.by_pipeline and owed.version == expected)]

    @staticmethod
    def _journaled(owed: Owed, journal: list[dict[str, Any]]) -> bool:
        newer = [entry for entry in journal if entry["sk"] not in owed.known]
        if owed.what == "FROZEN":
            return any(entry["action"] in ("freeze", "adopt") for entry in newer)
        if owed.what == "UNFROZEN":
            return any(entry["action"] == "unfreeze" for entry in newer)
        return any(owed.version in (entry.get("to_version"), entry.get("from_version"))
                   or owed.version in (entry.get("details") or {}).get("quarantined", ()) for entry in newer)

    @invariant()
    def invariants_hold(self) -> None:
        before, now = self.last, self._observe()
        new_alerts = self.world.alerts[self.alerts_seen:]
        self.alerts_seen = len(self.world.alerts)
        severity_1 = sum(1 for alert in new_alerts if alert.function == self.function and alert.severity == 1)
        known = frozenset(entry["sk"] for entry in before.journal)
        new_entries = [entry for entry in now.journal if entry["sk"] not in known]
        record = now.record
        context = f"after step {self.step!r} (crashed: {self.step_crashed})\nbefore: {before}\nnow: {now}"

        # 1. LIVE never on $LATEST, never on a version neither STABLE nor released by someone
        assert LATEST not in now.live_versions, context
        allowed = set(self.releases) | {INITIAL_STABLE, now.stable}
        assert now.live_versions <= allowed, f"LIVE serves {now.live_versions - allowed}, never released\n{context}"

        # 2. one rollback per incident: a version is rolled back at most as often as it was released
        rollbacks = [entry for entry in now.journal if entry["action"] == "rollback"]
        per_version = Counter(entry["from_version"] for entry in rollbacks)
        for version, count in per_version.items():
            assert count <= self.releases[version], f"version {version} rolled back {count} times\n{context}"
        incidents = Counter(entry["entry_id"] for entry in rollbacks)
        assert max(incidents.values(), default=1) == 1, f"an incident rolled back twice: {incidents}\n{context}"

        # 3. rolled-back versions are quarantined; STABLE on one only by an operator's promotion; LIVE on one
        # only when an operator released it by force
        if record is not None:
            if record.pending_rollback is None:
                rolled_back = {version for entry in rollbacks for version in entry["details"]["quarantined"]}
                missing = rolled_back - set(record.quarantined)
                assert not missing, f"rolled back but not quarantined: {missing}\n{context}"
            if record.is_quarantined(now.stable):
                assert now.stable in self.operator_promoted, f"quarantined {now.stable} promoted\n{context}"
            if self.tick_completed:
                self.to_revert.clear()  # the tick has reverted what a pipeline deployed
            serving_quarantined = {v for v in now.live_versions if record.is_quarantined(v)} - {now.stable}
            allowed_quarantined = self.forced | self.to_revert
            assert serving_quarantined <= allowed_quarantined, (
                f"LIVE serves quarantined {serving_quarantined}\n{context}")

        # 4. STABLE failing freezes with a severity-1 alert; a frozen controller does not flap
        frozen_before = before.state is ControllerState.FROZEN
        if now.state is ControllerState.FROZEN and not frozen_before and self.step_is_automation:
            self.episode_alerts, self.episode_crashed = 0, self.step_crashed
        if now.state is ControllerState.FROZEN:
            self.episode_alerts += severity_1
        if self.step_is_automation and frozen_before:
            # What may still move LIVE: reverting it from a quarantined version, finishing a rollback claimed
            # before the freeze (an operator froze while it was in flight).
            repaired = any(entry["action"] in ("revert", "rollback") for entry in new_entries)
            moved = (now.live_primary, now.live_weights, now.stable) != (
                before.live_primary, before.live_weights, before.stable)
            assert not moved or repaired, f"frozen, yet automation moved an alias\n{context}"
            assert severity_1 == 0 or self.episode_crashed, f"frozen, yet alerted again\n{context}"
        if (self.step_is_automation and not self.step_crashed and self.new_alarm_edge
                and before.state is ControllerState.STEADY):
            assert now.state is ControllerState.FROZEN, f"an alarm for STABLE alone did not freeze\n{context}"
            assert severity_1 >= 1, f"froze without a severity-1 alert\n{context}"
        automation_frozen = (now.state is ControllerState.FROZEN and record is not None
                             and record.frozen_reason != OPERATOR.summary)
        if automation_frozen and (self.tick_completed or not self.episode_crashed):
            assert self.episode_alerts >= 1, f"automation froze without a severity-1 alert\n{context}"

        # 8. every change is journaled with its cause: at once, or (after a crash, or a pipeline's change) by the
        # first tick that completes with nothing in flight
        for entry in new_entries:
            assert entry.get("cause", {}).get("kind") and entry["cause"].get("summary"), f"no cause: {entry}"
        changes = []
        if (now.live_primary, now.live_weights) != (before.live_primary, before.live_weights):
            changes.append(Owed("LIVE", now.live_served, known))
        if now.stable != before.stable:
            changes.append(Owed("STABLE", now.stable, known))
        if now.state is ControllerState.FROZEN and not frozen_before:
            changes.append(Owed("FROZEN", "", known))
        if frozen_before and now.state is not ControllerState.FROZEN:
            changes.append(Owed("UNFROZEN", "", known))
        for change in changes:
            if self.step == "deploy outside":
                self.owed.append(replace(change, by_pipeline=True))
            elif self.step_crashed:
                self.owed.append(change)
            else:
                assert self._journaled(change, now.journal), f"{change} not journaled\n{context}"
        self.owed = self._unpaid(now)
        if self.tick_completed and record is not None and record.pending_rollback is None:
            # a tick that ran to its end with nothing in flight has repaired whatever a crash left
            assert self.owed == [], f"after a completed tick, changes never journaled: {self.owed}\n{context}"
        self.last = now


def test_the_controller_keeps_its_invariants_under_any_interleaving(world: World) -> None:
    run_state_machine_as_test(lambda: ControllerModel(world), settings=MODEL_RUNS)
