"""The controller's rules on their own (drcore.rollback.decisions): no AWS, no moto, a record and a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drcore.core.models import (
    AlarmSignal,
    AliasState,
    Candidate,
    Cause,
    ControllerRecord,
    ControllerState,
    PendingRollback,
    to_iso,
)
from drcore.rollback.decisions import (
    LiveDrift,
    adopted_record,
    bake_blocker,
    blames_rolled_back_version,
    finished_rollback,
    is_new,
    live_drift,
    rolled_back_versions,
    with_watermark,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ALARMS = ("f-LIVE-errors", "f-LIVE-throttles")


def alias(name: str, version: str, weights: dict[str, float] | None = None) -> AliasState:
    return AliasState(name=name, version=version, weights=weights or {}, revision_id=f"rev-{name}-{version}")


def baking(version: str = "3", since: datetime = NOW, **changes: object) -> ControllerRecord:
    record = ControllerRecord(function_name="f", state=ControllerState.BAKING, stable_version="2",
                              live_version=version, generation=4,
                              candidate=Candidate(version=version, since=to_iso(since)))
    return record.evolve(**changes)


def signal(name: str, state: str, at: datetime) -> AlarmSignal:
    return AlarmSignal(alarm_name=name, state=state, changed_at=at, reason="test", source="alarm_action")


@pytest.mark.parametrize("live, state, candidate, live_version", [
    (alias("LIVE", "2"), ControllerState.STEADY, None, "2"),
    (alias("LIVE", "3"), ControllerState.BAKING, "3", "3"),
    (alias("LIVE", "2", {"3": 0.1}), ControllerState.BAKING, "3", "2"),
    (alias("LIVE", "$LATEST"), ControllerState.STEADY, None, "2"),  # drift the tick reverts, never a candidate
])
def test_a_function_new_to_the_controller_is_adopted_as_its_aliases_are(live, state, candidate, live_version):
    record = adopted_record("f", live, alias("STABLE", "2"), to_iso(NOW))
    assert record.state is state
    assert (record.candidate.version if record.candidate else None) == candidate
    assert record.live_version == live_version and record.generation == 0


def test_an_alarm_transition_is_new_only_if_later_than_the_last_processed_for_that_alarm():
    record = with_watermark(baking(), signal(ALARMS[0], "OK", NOW))
    assert not is_new(record, signal(ALARMS[0], "ALARM", NOW))
    assert not is_new(record, signal(ALARMS[0], "ALARM", NOW - timedelta(seconds=1)))
    assert is_new(record, signal(ALARMS[0], "ALARM", NOW + timedelta(milliseconds=1)))
    assert is_new(record, signal(ALARMS[1], "ALARM", NOW - timedelta(hours=1)))  # another alarm's own watermark


def test_alarms_are_blamed_on_the_rolled_back_version_until_the_settle_time_is_over():
    record = baking(state=ControllerState.ROLLED_BACK, last_rollback_at=to_iso(NOW))
    assert blames_rolled_back_version(record, NOW + timedelta(seconds=600), settle_seconds=600)
    assert not blames_rolled_back_version(record, NOW + timedelta(seconds=601), settle_seconds=600)
    pending = PendingRollback(incident_id="i", started_at=to_iso(NOW), cause=Cause(kind="alarm", summary="x"))
    assert blames_rolled_back_version(record.evolve(pending_rollback=pending), NOW + timedelta(days=1), 600)


def test_a_rollback_quarantines_the_candidate_and_what_live_served_never_stable():
    assert rolled_back_versions(baking("3"), served="3") == ("3", ("3",))
    assert rolled_back_versions(baking("3"), served="4") == ("3", ("3", "4"))  # LIVE moved again under the rollback
    assert rolled_back_versions(baking("3"), served="2") == ("3", ("3",))


def test_a_finished_rollback_keeps_the_quarantine_in_version_order():
    record = baking("10", quarantined=("9", "11"))
    finished = finished_rollback(record, "2", "rev-9", ("10",))
    assert finished.quarantined == ("9", "10", "11")  # numbers, not strings: "10" after "9"
    assert (finished.candidate, finished.pending_rollback, finished.live_version) == (None, None, "2")


@pytest.mark.parametrize("live, drift", [
    (alias("LIVE", "3"), LiveDrift.NONE),
    (alias("LIVE", "$LATEST"), LiveDrift.FORBIDDEN),
    (alias("LIVE", "7"), LiveDrift.FORBIDDEN),  # quarantined
    (alias("LIVE", "2"), LiveDrift.ON_STABLE),
    (alias("LIVE", "2", {"7": 0.5}), LiveDrift.FORBIDDEN),  # a canary of a quarantined version
    (alias("LIVE", "5"), LiveDrift.RELEASED),
])
def test_how_live_differs_from_the_record(live, drift):
    assert live_drift(baking("3", quarantined=("7",)), live, alias("STABLE", "2")) is drift


def test_a_candidate_is_not_promoted_before_its_bake_time_nor_with_an_alarm_not_ok():
    ok = {name: signal(name, "OK", NOW) for name in ALARMS}
    later = NOW + timedelta(seconds=1800)
    assert bake_blocker(baking(), ok, NOW + timedelta(seconds=1200), 1800, ALARMS) == "baking for another 600s"
    assert bake_blocker(baking(), {**ok, ALARMS[1]: signal(ALARMS[1], "INSUFFICIENT_DATA", NOW)}, later, 1800,
                        ALARMS) == f"alarms not OK: {ALARMS[1]}=INSUFFICIENT_DATA"
    assert bake_blocker(baking(), {ALARMS[0]: ok[ALARMS[0]]}, later, 1800, ALARMS) == f"alarm(s) not found: {ALARMS[1]}"
    assert "quarantined" in (bake_blocker(baking(quarantined=("3",)), ok, later, 1800, ALARMS) or "")
    assert bake_blocker(baking(), ok, later, 1800, ALARMS) is None
