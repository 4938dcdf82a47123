"""Alias operations of the controller: rollback, release, promotion, freeze, drift repair."""

from __future__ import annotations

from datetime import timedelta

import pytest

from drcore.core.errors import InvalidRequest
from drcore.core.models import Cause, ControllerState
from drcore.rollback.controller import AliasController
from embedded.sample_system import SampleSystem
from tests.support import CallRecorder, SimulatedClock, put_alias_metrics

OPERATOR = Cause(kind="manual", summary="operator request", requested_by="alice", reason="drill")


def live(system: SampleSystem) -> dict:
    return system.clients["lambda"].get_alias(FunctionName=system.function_name, Name="LIVE")


def all_alarms(system: SampleSystem, state: str) -> None:
    for kind in system.alarms:
        system.set_alarm(kind, state)


def test_release_points_live_at_the_version_and_starts_baking(system, controller: AliasController):
    # Given STABLE and LIVE on the good version
    # When the operator releases the fix
    outcome = controller.release(system.versions["fix"], OPERATOR)
    # Then LIVE serves it and the record bakes it
    assert outcome.action == "released"
    assert live(system)["FunctionVersion"] == system.versions["fix"]
    record = controller.record()
    assert record.state is ControllerState.BAKING
    assert record.candidate.version == system.versions["fix"]


def test_release_as_canary_weights_live_and_rollback_clears_the_weights(system, controller: AliasController):
    # Given a canary release of the bad version at 10 %
    controller.release(system.versions["bad"], OPERATOR, canary_percent=10)
    alias = live(system)
    assert alias["FunctionVersion"] == system.versions["good"]
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {system.versions["bad"]: 0.1}
    # When it is rolled back
    outcome = controller.rollback(OPERATOR)
    # Then LIVE serves STABLE alone
    assert outcome.action == "rolled_back"
    alias = live(system)
    assert alias["FunctionVersion"] == system.versions["good"]
    assert not alias["RoutingConfig"]["AdditionalVersionWeights"]
    assert controller.record().quarantined == (system.versions["bad"],)


@pytest.mark.parametrize("version, message", [
    ("$LATEST", r"not \$LATEST"),
    ("latest", "published version number"),
    ("99", "no published version 99"),
    ("1", "already STABLE"),
])
def test_release_refuses_what_must_never_serve_live(system, controller, calls: CallRecorder, version, message):
    # Given the sample system, known to the controller
    controller.record()
    calls.calls.clear()
    # When a release names an impossible version
    with pytest.raises(InvalidRequest, match=message):
        controller.release(version, OPERATOR)
    # Then it is refused with a reason, and no mutating call was made
    assert calls.mutating() == []
    assert live(system)["FunctionVersion"] == system.versions["good"]


def test_release_of_a_quarantined_version_needs_force_and_a_reason(system, controller: AliasController):
    # Given the bad version was rolled back (quarantined)
    controller.release(system.versions["bad"], OPERATOR)
    controller.rollback(OPERATOR)
    # When it is released again without force, then it is refused
    with pytest.raises(InvalidRequest, match="quarantined"):
        controller.release(system.versions["bad"], OPERATOR)
    with pytest.raises(InvalidRequest, match="quarantined"):
        controller.release(system.versions["bad"], Cause(kind="manual", summary="x"), force=True)
    # When forced with a reason, it serves LIVE but is marked as forced
    controller.release(system.versions["bad"], OPERATOR, force=True)
    assert controller.record().candidate.forced


def test_manual_rollback_without_candidate_changes_nothing(system, controller: AliasController, calls):
    outcome = controller.rollback(OPERATOR)
    assert outcome.action == "noop"
    assert "UpdateAlias" not in calls.calls


def test_promotion_waits_for_bake_time_ok_alarms_and_traffic(system, controller: AliasController,
                                                             clock: SimulatedClock):
    # Given the fix released and baking
    controller.release(system.versions["fix"], OPERATOR)
    all_alarms(system, "OK")
    # When the bake time has not passed: not promoted
    clock.advance(600)
    assert controller.reconcile()[-1].action == "baking"
    # When the bake time passed but one alarm has INSUFFICIENT_DATA: "not yet", never "healthy"
    clock.advance(1300)
    system.set_alarm("health-probe", "INSUFFICIENT_DATA")
    outcome = controller.reconcile()[-1]
    assert outcome.action == "baking" and "INSUFFICIENT_DATA" in outcome.detail
    # When all alarms are OK but it served too little traffic
    system.set_alarm("health-probe", "OK")
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, system.versions["fix"],
                      clock.now - timedelta(minutes=1), invocations=3)
    outcome = controller.reconcile()[-1]
    assert outcome.action == "baking" and "fewer than" in outcome.detail
    # When it served enough: promoted, STABLE moves, baseline recorded
    put_alias_metrics(system.clients["cloudwatch"], system.function_name, system.versions["fix"],
                      clock.now - timedelta(minutes=1),
                      invocations=20, durations_ms=[100.0 + i for i in range(100)])
    outcome = controller.reconcile()[-1]
    assert outcome.action == "promoted"
    assert system.alias_version("STABLE") == system.versions["fix"]
    record = controller.record()
    assert record.state is ControllerState.STEADY and record.candidate is None
    # nearest-rank p99 (the 99th of the 100 values 100..199), as the moto gap fill computes percentiles
    assert record.stable_p99_ms == 198


def test_promote_of_canary_moves_live_off_its_weights(system, controller: AliasController):
    controller.release(system.versions["fix"], OPERATOR, canary_percent=25)
    outcome = controller.promote(OPERATOR)
    assert outcome.action == "promoted"
    alias = live(system)
    assert alias["FunctionVersion"] == system.versions["fix"]
    assert not alias["RoutingConfig"]["AdditionalVersionWeights"]
    assert system.alias_version("STABLE") == system.versions["fix"]


def test_freeze_stops_automation_and_unfreeze_resumes(system, controller: AliasController, clock):
    controller.release(system.versions["bad"], OPERATOR)
    assert controller.freeze(OPERATOR).action == "frozen"
    system.set_alarm("errors", "ALARM")
    clock.advance(60)
    # While frozen the tick acts on nothing
    assert controller.reconcile()[-1].action == "held"
    assert system.alias_version("LIVE") == system.versions["bad"]
    # Unfrozen, the candidate bakes again (and the firing alarm now rolls it back)
    assert controller.unfreeze(OPERATOR).detail.endswith("baking")
    assert controller.record().state is ControllerState.BAKING


def test_stale_revision_is_refused_and_the_rollback_re_reads_and_completes(system, controller: AliasController, calls):
    # Given the bad version released through the controller (which stored LIVE's RevisionId)
    controller.release(system.versions["bad"], OPERATOR)
    # And someone touched LIVE since (same version, new revision)
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])
    calls.calls.clear()
    # When the controller rolls back with the stale RevisionId (moto gap fill enforces it)
    outcome = controller.rollback(OPERATOR)
    # Then Lambda refused the first UpdateAlias, the controller re-read LIVE and flipped it
    assert outcome.action == "rolled_back"
    assert calls.calls[:4] == ["UpdateItem", "UpdateAlias", "GetAlias", "UpdateAlias"]
    assert system.alias_version("LIVE") == system.versions["good"]


def test_live_on_latest_is_reverted_to_stable(system, controller: AliasController):
    controller.record()
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE", FunctionVersion="$LATEST")
    outcomes = controller.reconcile()
    assert outcomes[0].action == "reverted"
    assert system.alias_version("LIVE") == system.versions["good"]
    assert [alert["severity"] for alert in system.drain_alerts()] == [2]


def test_release_outside_the_controller_is_adopted_as_a_candidate(system, controller: AliasController):
    controller.record()
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["fix"])
    outcomes = controller.reconcile()
    assert outcomes[0].action == "adopted"
    record = controller.record()
    assert record.state is ControllerState.BAKING and record.candidate.version == system.versions["fix"]


def test_every_change_is_journaled_with_its_cause(system, controller: AliasController, clock: SimulatedClock):
    controller.release(system.versions["bad"], OPERATOR)
    clock.advance(5)
    controller.rollback(OPERATOR)
    entries = controller._store.journal(system.function_name)
    assert [entry["action"] for entry in entries][:2] == ["rollback", "release"]
    assert entries[0]["cause"]["requested_by"] == "alice"
    assert entries[0]["from_version"] == system.versions["bad"] and entries[0]["to_version"] == system.versions["good"]


def test_a_scoped_store_keeps_the_standbys_record_and_journal_apart_from_the_primarys(system, controller):
    # Given the primary's record (adopted from the aliases) and a journal entry
    from drcore.core.models import Cause
    from drcore.state.store import ControllerStateStore
    primary = controller.record()
    controller.freeze(Cause(kind="manual", summary="freeze", requested_by="a", reason="test"))
    # When the standby's controller, scoped to its region, looks for its record in the same (global) table
    standby = ControllerStateStore(system.clients["dynamodb"], system.table, scope="us-west-2")
    # Then it finds none and no journal: it would adopt its own region's aliases, never overwrite the primary's
    assert standby.get(system.function_name) is None
    assert standby.journal(system.function_name) == []
    written = standby.create(primary.evolve(generation=1))
    assert ControllerStateStore(system.clients["dynamodb"], system.table).get(system.function_name) != written
    assert standby.get(system.function_name) == written
