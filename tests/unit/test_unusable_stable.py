"""A STABLE that cannot serve (issue 10, fault 3): the STABLE alias on `$LATEST`, or on a version that no longer
exists. There is nothing to roll back to, so the controller freezes with a severity-1 alert saying why, before it
claims anything; and a rollback that finds out only at the flip leaves no claim the next tick cannot complete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import health_watcher.handler as health_watcher
from drcore.core.models import AlarmSignal, Candidate, Cause, ControllerRecord, ControllerState, PendingRollback
from drcore.rollback.controller import AliasController
from drcore.rollback.decisions import frozen_instead_of_rollback, unpublished_stable
from drcore.rollback.watcher_events import signal_from_alarm_action
from embedded.aws_events import alarm_action_event, alarm_state_change_event, scheduled_event
from embedded.sample_system import SampleSystem
from tests.support import WHO, SimulatedClock, act


def point_stable_at_latest(system: SampleSystem) -> str:
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="STABLE", FunctionVersion="$LATEST")
    return "$LATEST"


def delete_stable_version(system: SampleSystem) -> str:
    # moto deletes a version an alias references; Lambda refuses to. There the record can still name a deleted
    # version: STABLE moved off it and it was deleted before a tick followed. The rollback's flip meets it the same way.
    system.clients["lambda"].delete_function(FunctionName=system.function_name, Qualifier=system.versions["good"])
    return "does not exist"


UNUSABLE_STABLE: dict[str, Callable[[SampleSystem], str]] = {
    "$LATEST": point_stable_at_latest,
    "deleted": delete_stable_version,
}


def deploy_bad_version(system: SampleSystem) -> None:
    """What a deployment pipeline does: move LIVE to the new (bad) version."""
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])


def errors_alarm(system: SampleSystem, at: datetime) -> dict[str, Any]:
    return alarm_action_event(system.alarms["errors"], "ALARM", at, system.function_name)


def signal(system: SampleSystem, at: datetime) -> AlarmSignal:
    return signal_from_alarm_action(errors_alarm(system, at))


def rollback_entries(controller: AliasController, function_name: str) -> list[dict[str, Any]]:
    return [entry for entry in controller.journal() if entry["action"] == "rollback"]


def assert_frozen_without_rollback(system: SampleSystem, controller: AliasController, problem: str) -> None:
    """LIVE untouched, the record frozen and complete (nothing pending), the reason naming the problem, one
    severity-1 alert on the emergency topic saying so."""
    assert system.alias_version("LIVE") == system.versions["bad"]
    record = controller.record()
    assert record.state is ControllerState.FROZEN, record
    assert record.pending_rollback is None and record.live_version == system.versions["bad"]
    assert record.frozen_reason is not None and "STABLE" in record.frozen_reason and problem in record.frozen_reason
    assert record.quarantined == ()
    assert rollback_entries(controller, system.function_name) == []
    alerts = system.drain_alerts()
    assert [(alert["severity"], alert["topic"]) for alert in alerts] == [(1, system.emergency_topic_arn)], alerts
    assert "STABLE" in alerts[0]["subject"] and problem in alerts[0]["message"]


def assert_nothing_more_happens(system: SampleSystem, controller: AliasController, invoke_watcher: Any) -> None:
    """Later ticks and alarms answer without raising, change nothing and alert no more: no flapping."""
    later = datetime.now(UTC)
    for event in (scheduled_event(later), alarm_state_change_event(system.alarms["health-probe"], "ALARM", later,
                                                                   system.function_name), scheduled_event(later)):
        result = invoke_watcher(health_watcher, event)
        assert result["status"] in {"ticked", "handled"}, result
    assert system.alias_version("LIVE") == system.versions["bad"]
    assert controller.record().state is ControllerState.FROZEN
    assert system.drain_alerts() == []


@pytest.mark.parametrize("unusable", UNUSABLE_STABLE)
def test_an_unusable_stable_at_first_sight_freezes_before_any_claim(system, controller, invoke_watcher, unusable):
    # Given a STABLE that cannot serve, and a bad version on LIVE, in a function the controller has never seen
    problem = UNUSABLE_STABLE[unusable](system)
    deploy_bad_version(system)
    # When the bad version's errors alarm reaches the health watcher
    result = invoke_watcher(health_watcher, errors_alarm(system, datetime.now(UTC)))
    # Then nothing was claimed: automation is frozen with a severity-1 alert saying why
    assert result["status"] == "handled" and result["outcome"]["action"] != "rolled_back", result
    assert problem in result["outcome"]["detail"]
    assert_frozen_without_rollback(system, controller, problem)
    assert controller.record().last_rollback_at is None
    # And ticks and alarms that follow change nothing and do not alert again
    assert_nothing_more_happens(system, controller, invoke_watcher)


def test_stable_moved_to_latest_is_found_by_the_tick_before_an_alarm_needs_it(system, controller, invoke_watcher):
    # Given the bad version baking against a good STABLE, known to the controller
    deploy_bad_version(system)
    controller.record()
    # When someone points STABLE at $LATEST and the health watcher's tick runs
    point_stable_at_latest(system)
    result = invoke_watcher(health_watcher, scheduled_event(datetime.now(UTC)))
    # Then the tick froze automation with a severity-1 alert, before any alarm could claim a rollback
    assert "frozen" in [outcome["action"] for outcome in result["outcomes"]], result
    assert_frozen_without_rollback(system, controller, "$LATEST")
    # And an alarm of the bad version is held: nothing is claimed, nothing flips
    assert invoke_watcher(health_watcher, errors_alarm(system, datetime.now(UTC)))["outcome"]["action"] == "held"
    assert_nothing_more_happens(system, controller, invoke_watcher)


@pytest.mark.parametrize("unusable", UNUSABLE_STABLE)
def test_a_rollback_that_meets_an_unusable_stable_at_the_flip_freezes_instead(system, controller, clock,
                                                                             invoke_watcher, unusable):
    # Given the bad version baking against a STABLE the record names, which can no longer serve (a record that
    # an earlier release adopted, or a version deleted after the controller last read STABLE)
    deploy_bad_version(system)
    controller.record()
    problem = UNUSABLE_STABLE[unusable](system)
    if unusable == "$LATEST":  # the record as an earlier release wrote it, before the tick could see STABLE move
        record = controller.record()
        controller._store.replace(record, record.evolve(stable_version="$LATEST"))
    # When the bad version's errors alarm reaches the health watcher
    result = invoke_watcher(health_watcher, errors_alarm(system, datetime.now(UTC)))
    # Then the watcher answers that it froze, and the record says what happened: frozen, nothing pending
    assert result["outcome"]["action"] == "frozen" and result["outcome"]["severity"] == 1, result
    assert problem in result["outcome"]["detail"]
    assert_frozen_without_rollback(system, controller, problem)
    # And ticks and alarms that follow complete nothing, raise nothing and alert no more
    assert_nothing_more_happens(system, controller, invoke_watcher)


@pytest.mark.parametrize("unusable", UNUSABLE_STABLE)
def test_the_tick_acting_on_a_missed_alarm_freezes_instead_of_wedging(system, controller, clock, unusable):
    # Given the bad version baking, STABLE unusable since the controller last read it, and the errors alarm in
    # ALARM without any edge reaching a watcher
    deploy_bad_version(system)
    controller.record()
    problem = UNUSABLE_STABLE[unusable](system)
    clock.advance(60)
    system.set_alarm("errors", "ALARM")
    # When the tick runs, twice
    first = [outcome.action for outcome in controller.reconcile()]
    second = [outcome.action for outcome in controller.reconcile()]
    # Then the first froze automation and the second holds
    assert "frozen" in first and "rolled_back" not in first, first
    assert second[-1] == "held", second
    assert_frozen_without_rollback(system, controller, problem)


class Crash(RuntimeError):
    """Stands for the invocation dying (timeout, out of memory) at one step."""


@pytest.mark.parametrize("unusable", UNUSABLE_STABLE)
def test_a_crash_after_the_claim_is_completed_by_the_tick_as_a_freeze(system, controller, clock: SimulatedClock,
                                                                     monkeypatch, unusable):
    # Given the bad version baking against a STABLE that can no longer serve, as the record names it
    deploy_bad_version(system)
    controller.record()
    problem = UNUSABLE_STABLE[unusable](system)
    if unusable == "$LATEST":
        record = controller.record()
        controller._store.replace(record, record.evolve(stable_version="$LATEST"))
    # When the watcher dies after its claim, before it could record what the flip found
    original = controller._store.replace
    monkeypatch.setattr(controller._store, "replace", lambda *a, **k: (_ for _ in ()).throw(Crash("after claim")))
    with pytest.raises(Crash):
        controller.on_alarm(signal(system, clock.advance(60)))
    monkeypatch.setattr(controller._store, "replace", original)
    # And the tick comes once the rollback had time to finish
    clock.advance(120)
    outcomes = [outcome.action for outcome in controller.reconcile()]
    # Then the tick completed the claim as a freeze: nothing pending, one severity-1 alert (at least once)
    assert "frozen" in outcomes and "rollback_completed" not in outcomes, outcomes
    record = controller.record()
    assert record.state is ControllerState.FROZEN and record.pending_rollback is None
    assert problem in (record.frozen_reason or "")
    assert system.alias_version("LIVE") == system.versions["bad"]
    alerts = system.drain_alerts()
    assert alerts and {alert["severity"] for alert in alerts} == {1}
    assert controller.reconcile()[-1].action == "held"
    assert system.drain_alerts() == []


def test_status_shows_the_freeze_and_unfreeze_waits_for_a_usable_stable(world):
    # Given a bad version on LIVE and STABLE on $LATEST, found by an operator's status request
    deploy_bad_version(world)
    point_stable_at_latest(world)
    status = act({"action": "status"})
    # Then status shows automation frozen and why
    assert status["ok"] is True, status
    assert status["result"]["state"] == "frozen"
    assert "$LATEST" in status["result"]["frozen_reason"]
    world.drain_alerts()
    # When the operator unfreezes before STABLE is fixed, Then it is refused and changes nothing
    refused = act({"action": "unfreeze", **WHO})
    assert refused["ok"] is False and "STABLE" in refused["error"] and "$LATEST" in refused["error"], refused
    assert act({"action": "status"})["result"]["state"] == "frozen"
    # When STABLE points at a published version again, Then unfreeze resumes automation on it
    world.clients["lambda"].update_alias(FunctionName=world.function_name, Name="STABLE",
                                         FunctionVersion=world.versions["fix"])
    resumed = act({"action": "unfreeze", **WHO})
    assert resumed["ok"] is True and resumed["result"]["action"] == "unfrozen", resumed
    status = act({"action": "status"})["result"]
    assert status["state"] == "baking" and status["stable_version"] == world.versions["fix"]
    assert status["frozen_reason"] is None


def test_a_manual_rollback_onto_a_deleted_stable_answers_frozen(world):
    # Given the bad version released by the operator, then STABLE's version deleted
    assert act({"action": "release", "version": world.versions["bad"], **WHO})["ok"] is True
    delete_stable_version(world)
    # When the operator asks for a rollback
    answer = act({"action": "rollback", **WHO})
    # Then the answer and the record agree: frozen, nothing pending, severity 1
    assert answer["ok"] is True and answer["result"]["action"] == "frozen", answer
    status = act({"action": "status"})["result"]
    assert status["state"] == "frozen" and "does not exist" in status["frozen_reason"]
    assert world.alias_version("LIVE") == world.versions["bad"]
    assert [alert["severity"] for alert in world.drain_alerts()] == [1]


@pytest.mark.parametrize("version, unusable", [("$LATEST", True), ("LIVE", True), ("", True), ("7", False)])
def test_only_a_version_number_can_be_stable_by_its_name(version, unusable):
    assert (unpublished_stable(version) is not None) is unusable


@pytest.mark.parametrize("weight, live_version", [(None, "3"), (0.1, "2")])
def test_a_claim_that_cannot_flip_leaves_live_as_it_was_and_the_candidate_unquarantined(weight, live_version):
    # Given a claimed rollback of candidate 3 (all of LIVE, or a canary beside STABLE 2)
    claimed = ControllerRecord(
        function_name="f", state=ControllerState.ROLLED_BACK, stable_version="2", live_version="2", generation=5,
        candidate=Candidate(version="3", since="2026-11-26T12:00:00.000Z", weight=weight),
        pending_rollback=PendingRollback(incident_id="e@t", started_at="2026-11-26T12:01:00.000Z",
                                         cause=Cause(kind="alarm", summary="errors")))
    # When the claim turns into a freeze
    frozen = frozen_instead_of_rollback(claimed, "STABLE version 2 does not exist")
    # Then nothing is pending, the record says what LIVE serves, and no rollback is counted
    assert frozen.state is ControllerState.FROZEN and frozen.pending_rollback is None
    assert frozen.live_version == live_version and frozen.candidate == claimed.candidate
    assert frozen.quarantined == () and frozen.last_rollback_at is None
    assert frozen.frozen_reason == "STABLE version 2 does not exist"
