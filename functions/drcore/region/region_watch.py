"""The region watcher in the secondary: detects that the primary region is down and hands the decision to a human,
or, when automatic failover is on, takes it itself after a further wait.

Each tick looks at the primary (drcore.region.primary_observer) and moves the watch (drcore.state.region_watch):

- healthy: nothing to remember; if an alert had gone out, a severity-3 notice says the primary answers again (its
  failover plan is not confirmed by anyone any more: the watcher never confirms a plan once the primary is healthy);
- unhealthy for less than `detect_minutes`: remember since when (one bad minute is not an outage);
- unhealthy for `detect_minutes`: plan a failover (the recovery function's own two-step `failover` action, so the
  plan shows exactly what a human would see) and raise a severity-1 alert carrying the plan id and the event that
  confirms it: one confirm away;
- with `automatic`, unhealthy `auto_after_minutes` after that alert: confirm the plan itself. The failover's
  safety rules still decide: a refusal (secondary not ready, data at risk above the limit) is alerted and nothing
  is forced.

The watcher does nothing of this while its own region is the active one (a failover happened): there is no
failover to plan, and failing back is always a human's decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from drcore.aws.alerts import Alert, AlertPublisher
from drcore.core.errors import ConcurrentUpdate
from drcore.core.models import Clock, parse_time, to_iso
from drcore.region.primary_observer import PrimaryObserver, PrimaryReading
from drcore.rollback.outcome import Outcome
from drcore.state.region_watch import RegionWatchStore, WatchState

logger = Logger(child=True)


@dataclass(frozen=True)
class WatchPolicy:
    detect_minutes: int  # unhealthy this long before the alert (and its plan)
    automatic: bool  # confirm the plan without a human
    auto_after_minutes: int  # ... this long after the alert, if still unhealthy


@dataclass(frozen=True)
class FailoverAnswer:
    """What the failover action answered: a plan id, or (confirming) an applied result, or why it refused."""

    plan_id: str | None
    refused: str | None
    details: dict[str, Any]


class FailoverPlanner(Protocol):
    def plan(self, reason: str) -> FailoverAnswer: ...

    def confirm(self, plan_id: str, reason: str) -> FailoverAnswer: ...


class Step(Enum):
    HEALTHY = "healthy"  # nothing remembered, nothing to do
    RECOVERED = "recovered"  # healthy again after being unhealthy
    SUSPECT = "suspect"  # unhealthy, for less than detect_minutes
    RAISE = "raise"  # unhealthy for detect_minutes, no plan raised yet
    AWAIT_OPERATOR = "await_operator"  # plan raised; a human confirms it (or auto_after_minutes not reached)
    CONFIRM = "confirm"  # automatic and auto_after_minutes since the alert
    CONFIRMED = "confirmed"  # the watcher confirmed its plan already


def next_step(watch: WatchState, reading: PrimaryReading, now: datetime, policy: WatchPolicy) -> Step:
    """The pure decision of one tick, given what is remembered and what was just seen."""
    if reading.healthy:
        return Step.RECOVERED if watch.unhealthy_since is not None else Step.HEALTHY
    if watch.confirmed_at is not None:
        return Step.CONFIRMED
    since = parse_time(watch.unhealthy_since) if watch.unhealthy_since else now
    if now - since < timedelta(minutes=policy.detect_minutes):
        return Step.SUSPECT
    if watch.plan_id is None or watch.alerted_at is None:
        return Step.RAISE
    if policy.automatic and now - parse_time(watch.alerted_at) >= timedelta(minutes=policy.auto_after_minutes):
        return Step.CONFIRM
    return Step.AWAIT_OPERATOR


@dataclass(frozen=True)
class RegionWatchTexts:
    function_name: str
    primary_region: str
    secondary_region: str
    recovery_function: str

    @property
    def _components(self) -> tuple[str, ...]:
        return (f"region {self.primary_region}", f"Lambda {self.function_name} ({self.primary_region})")

    def primary_down(self, watch: WatchState, reading: PrimaryReading, plan_id: str, automatic: str | None) -> Alert:
        confirm = f'{{"action": "failover", "confirm": "{plan_id}", "requested_by": "<you>", "reason": "<why>"}}'
        return Alert(
            severity=1,
            # Short enough that SNS's 100-character subject keeps the plan id whole.
            brief=f"{self.primary_region} down, failover plan {plan_id}",
            occurred_at=watch.unhealthy_since or "",
            impact=f"the pipeline in {self.primary_region} is not processing uploads reliably",
            components=self._components,
            status=f"unhealthy since {watch.unhealthy_since}: " + "; ".join(reading.problems),
            actions_taken=(f"failover plan {plan_id} prepared in {self.secondary_region}",
                           *((automatic,) if automatic else ())),
            next_steps=((f"read the plan: invoke {self.recovery_function} in {self.secondary_region} with "
                        f'{{"action": "status"}} or the failover request without confirm'),
                        f"to fail over, invoke {self.recovery_function} in {self.secondary_region} with {confirm}",
                        "a plan expires: if the confirm says so, run the failover without confirm for a new one"),
            event_type="region_unhealthy",
            function_name=self.function_name,
            facts={"plan_id": plan_id, "primary_region": self.primary_region,
                   "reachable": str(reading.reachable).lower()},
        )

    def primary_recovered(self, watch: WatchState, now: str) -> Alert:
        return Alert(
            severity=3,
            brief=f"primary region {self.primary_region} healthy again",
            occurred_at=now,
            impact="none now: the primary answers its health check and no watched alarm is in ALARM",
            components=self._components,
            status=f"healthy again after being unhealthy since {watch.unhealthy_since}",
            actions_taken=(f"failover plan {watch.plan_id} no longer recommended: do not confirm it",),
            next_steps=("find why the primary was unhealthy",),
            event_type="region_recovered",
            function_name=self.function_name,
            facts={"plan_id": watch.plan_id or "", "primary_region": self.primary_region},
        )

    def automatic_refused(self, watch: WatchState, refusal: str, now: str) -> Alert:
        return Alert(
            severity=1,
            brief=f"automatic failover to {self.secondary_region} refused",
            occurred_at=now,
            impact=f"the primary region {self.primary_region} is still unhealthy and nothing took over",
            components=self._components,
            status=f"plan {watch.plan_id} refused: {refusal}",
            actions_taken=("nothing changed",),
            next_steps=(("read the refusal; a human decides: fix the secondary, or fail over with force and a "
                        "reason"),),
            event_type="failover_refused",
            function_name=self.function_name,
            facts={"plan_id": watch.plan_id or "", "primary_region": self.primary_region},
        )


class RegionWatcher:
    def __init__(self, observer: PrimaryObserver, store: RegionWatchStore, planner: FailoverPlanner,
                 alerts: AlertPublisher, texts: RegionWatchTexts, policy: WatchPolicy,
                 active_region: Callable[[], str], own_region: str, clock: Clock) -> None:
        self._observer = observer
        self._store = store
        self._planner = planner
        self._alerts = alerts
        self._texts = texts
        self._policy = policy
        self._active_region = active_region
        self._own_region = own_region
        self._clock = clock

    def tick(self) -> Outcome:
        if self._active_region() == self._own_region:
            return Outcome("not_watching", f"{self._own_region} is the active region: no failover to plan")
        watch = self._store.load()
        reading = self._observer.read()
        now = self._clock()
        step = next_step(watch, reading, now, self._policy)
        facts = {"step": step.value, "primary": reading.to_dict()}
        try:
            return self._act(step, watch, reading, now, facts)
        except ConcurrentUpdate:
            # An overlapping tick moved the watch first: it decided from a fresher look; this one stands down.
            return Outcome("noop", "another tick of the region watcher acted meanwhile", facts=facts)

    def _act(self, step: Step, watch: WatchState, reading: PrimaryReading, now: datetime,
             facts: dict[str, Any]) -> Outcome:
        at = to_iso(now)
        if step is Step.HEALTHY:
            return Outcome("healthy", "the primary region is healthy", facts=facts)
        if step is Step.RECOVERED:
            if watch.alerted_at is not None:
                self._alerts.publish(self._texts.primary_recovered(watch, at))
            self._store.save(watch, WatchState())
            return Outcome("recovered", "the primary region is healthy again", facts=facts)
        if step is Step.SUSPECT:
            self._store.save(watch, watch.evolve(unhealthy_since=watch.unhealthy_since or at,
                                                 problems=reading.problems))
            return Outcome("suspect", "the primary region looks unhealthy; watching", facts=facts)
        if step is Step.RAISE:
            return self._raise(watch, reading, facts)
        if step is Step.CONFIRM:
            return self._confirm(watch, reading, at, facts)
        self._store.save(watch, watch.evolve(problems=reading.problems))
        detail = ("failover confirmed by the watcher already" if step is Step.CONFIRMED
                  else f"failover plan {watch.plan_id} awaits an operator's confirm")
        return Outcome(step.value, detail, facts={**facts, "plan_id": watch.plan_id})

    def _raise(self, watch: WatchState, reading: PrimaryReading, facts: dict[str, Any]) -> Outcome:
        reason = f"primary region unhealthy since {watch.unhealthy_since}: " + "; ".join(reading.problems)
        # A plan remembered without its alert (a tick that died between the two) is alerted now, not planned again.
        answer = (FailoverAnswer(watch.plan_id, None, {}) if watch.plan_id is not None
                  else self._planner.plan(reason))
        if answer.plan_id is None:
            refusal = answer.refused or "no plan"
            self._store.save(watch, watch.evolve(problems=reading.problems, refusal=refusal))
            if watch.refusal != refusal:
                self._alerts.publish(self._texts.automatic_refused(watch.evolve(plan_id="none"), refusal,
                                                                  to_iso(self._clock())))
            return Outcome("plan_refused", refusal, severity=1, facts=facts)
        # The plan id is remembered before the alert: a crash between them re-alerts the same plan next tick.
        planned = self._store.save(watch, watch.evolve(plan_id=answer.plan_id, problems=reading.problems,
                                                       refusal=None))
        automatic = (f"automatic failover is on: the watcher confirms it in {self._policy.auto_after_minutes} "
                     "minutes if the primary is still unhealthy" if self._policy.automatic else None)
        self._alerts.publish(self._texts.primary_down(planned, reading, answer.plan_id, automatic))
        self._store.save(planned, planned.evolve(alerted_at=to_iso(self._clock())))
        return Outcome("alerted", f"failover plan {answer.plan_id} raised", severity=1,
                       facts={**facts, "plan_id": answer.plan_id, "plan": answer.details})

    def _confirm(self, watch: WatchState, reading: PrimaryReading, at: str, facts: dict[str, Any]) -> Outcome:
        assert watch.plan_id is not None, "confirming without a plan"
        reason = (f"automatic failover: primary unhealthy since {watch.unhealthy_since}: "
                  + "; ".join(reading.problems))
        answer = self._planner.confirm(watch.plan_id, reason)
        if answer.refused is not None:
            # The safety rules refused, or the plan expired or no longer matches the world: alerted, and the next
            # tick plans afresh (a new plan, a new alert, a new wait before confirming it).
            self._alerts.publish(self._texts.automatic_refused(watch, answer.refused, at))
            self._store.save(watch, watch.evolve(problems=reading.problems, refusal=answer.refused, plan_id=None,
                                                 alerted_at=None))
            return Outcome("confirm_refused", answer.refused, severity=1,
                           facts={**facts, "plan_id": watch.plan_id})
        self._store.save(watch, watch.evolve(confirmed_at=at, problems=reading.problems, refusal=None))
        return Outcome("failed_over", f"failover plan {watch.plan_id} confirmed automatically", severity=1,
                       facts={**facts, "plan_id": watch.plan_id, "result": answer.details})
