"""The alias controller: rollback, promotion, release, freeze, and the reconcile loop.

The record in the state table says what LIVE and STABLE should be; the aliases are its actuators.
Alarm events are edges that can be lost, duplicated, delayed or reordered; the scheduled tick reads
the level (alarm states and aliases) and repairs whatever an edge missed or left half-done.

This module answers the alarm edges and the operator's requests. The tick is drcore.rollback.reconcile,
what both carry out is drcore.rollback.operations, the rules they follow are drcore.rollback.decisions and
the alerts' words are drcore.rollback.incidents.
"""

from __future__ import annotations

from typing import Any

from drcore.aws.alarms import ALARM, AlarmBoard
from drcore.aws.alerts import AlertPublisher
from drcore.aws.aliases import LATEST, AliasGateway
from drcore.aws.metrics import FunctionMetrics
from drcore.core.controller_settings import ControllerSettings
from drcore.core.errors import ConcurrentUpdate, InvalidRequest
from drcore.core.models import (
    AlarmSignal,
    Candidate,
    Cause,
    Clock,
    ControllerRecord,
    ControllerState,
    PendingRollback,
    parse_time,
    to_iso,
    utc_now,
)
from drcore.rollback.decisions import alarm_cause, blames_rolled_back_version, is_new, with_watermark
from drcore.rollback.incidents import IncidentTexts
from drcore.rollback.operations import MAX_DECISION_ATTEMPTS, AfterFlip, ControllerOperations
from drcore.rollback.outcome import Outcome
from drcore.rollback.reconcile import Reconciler
from drcore.state.store import ControllerStateStore, RollbackRefused


class AliasController:
    def __init__(
        self,
        settings: ControllerSettings,
        store: ControllerStateStore,
        aliases: AliasGateway,
        alarm_board: AlarmBoard,
        alerts: AlertPublisher,
        function_metrics: FunctionMetrics,
        clock: Clock = utc_now,
        after_flip: AfterFlip | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._aliases = aliases
        self._alerts = alerts
        self._function_metrics = function_metrics
        self._clock = clock
        self._function = settings.protected_function
        incidents = IncidentTexts(settings.protected_function, settings.live_alias)
        self._operations = ControllerOperations(settings, store, aliases, alerts, incidents, clock, after_flip)
        self._tick = Reconciler(settings, store, aliases, alarm_board, alerts, incidents, function_metrics, clock,
                                self._operations)

    def record(self) -> ControllerRecord:
        """The controller record, adopting the aliases as they are when the function is new to us."""
        return self._operations.record()

    # ------------------------------------------------------------------ alarm edges

    def on_alarm(self, signal: AlarmSignal) -> Outcome:
        """React to one alarm state change of LIVE. The only call before the flip is the claim."""
        if signal.alarm_name not in self._settings.watched_alarms:
            return Outcome("ignored", f"alarm {signal.alarm_name} is not one of {self._function}'s watched alarms")
        if signal.state != ALARM:
            return self._record_transition(signal)
        for _ in range(MAX_DECISION_ATTEMPTS):
            started_at = to_iso(self._clock())
            pending = PendingRollback(incident_id=signal.incident_id, started_at=started_at, cause=alarm_cause(signal))
            try:
                claimed = self._store.claim_rollback(self._function, pending, signal)
            except RollbackRefused as refused:
                if refused.record is None:
                    self.record()
                    continue
                try:
                    return self._alarm_without_candidate(signal, refused.record)
                except ConcurrentUpdate:
                    continue
            return self._operations.roll_back(claimed)
        raise ConcurrentUpdate(f"could not settle alarm {signal.incident_id} after {MAX_DECISION_ATTEMPTS} attempts")

    def _record_transition(self, signal: AlarmSignal) -> Outcome:
        for _ in range(MAX_DECISION_ATTEMPTS):
            record = self.record()
            if not is_new(record, signal):
                return Outcome("duplicate", f"{signal.incident_id} is not newer than the last processed transition")
            try:
                self._store.replace(record, with_watermark(record, signal))
            except ConcurrentUpdate:
                continue
            return Outcome("recorded", f"{signal.alarm_name} is {signal.state}; nothing to do")
        raise ConcurrentUpdate(f"could not record {signal.incident_id}")

    def _alarm_without_candidate(self, signal: AlarmSignal, record: ControllerRecord) -> Outcome:
        """An ALARM that could not claim a rollback: a duplicate, a late echo, or STABLE failing."""
        if not is_new(record, signal):
            return Outcome("duplicate", f"{signal.incident_id} is not newer than the last processed transition")
        if record.state is ControllerState.FROZEN:
            self._store.replace(record, with_watermark(record, signal))
            return Outcome("held", f"automation is frozen ({record.frozen_reason}); {signal.alarm_name} noted")
        settle_seconds = self._settings.settle_seconds
        if record.state is ControllerState.ROLLED_BACK and blames_rolled_back_version(record, signal.changed_at,
                                                                                      settle_seconds):
            self._store.replace(record, with_watermark(record, signal))
            return Outcome(
                "attributed",
                f"{signal.alarm_name} changed within {settle_seconds}s of the rollback: "
                "datapoints of the rolled-back version, not of STABLE",
            )
        return self._operations.freeze_on_stable_failure(record, alarm_cause(signal), signal)

    # ------------------------------------------------------------------ the operator's requests

    def rollback(self, cause: Cause) -> Outcome:
        """An operator's rollback: LIVE back to STABLE now, through the same claim as an alarm's."""
        now = to_iso(self._clock())
        pending = PendingRollback(incident_id=f"manual@{now}", started_at=now, cause=cause)
        try:
            claimed = self._store.claim_rollback(self._function, pending)
        except RollbackRefused as refused:
            state = refused.record.state.value if refused.record else "unknown"
            return Outcome("noop", f"no candidate is baking (state {state}): LIVE already serves STABLE")
        return self._operations.roll_back(claimed)

    def freeze(self, cause: Cause) -> Outcome:
        record = self.record()
        if record.state is ControllerState.FROZEN:
            return Outcome("noop", f"already frozen: {record.frozen_reason}")
        self._operations.journal("freeze", cause, "automation frozen")
        self._store.replace(record, record.evolve(state=ControllerState.FROZEN, frozen_reason=cause.summary))
        return Outcome("frozen", cause.summary)

    def unfreeze(self, cause: Cause) -> Outcome:
        """Resume automation, on the STABLE alias as it is now: refused while STABLE cannot serve."""
        record = self.record()
        if record.state is not ControllerState.FROZEN:
            return Outcome("noop", f"not frozen (state {record.state.value})")
        stable = self._operations.read_alias(self._settings.stable_alias)
        unusable = self._operations.stable_problem(stable.version)
        if unusable is not None:
            raise InvalidRequest(f"cannot unfreeze: {unusable}; point the STABLE alias at a published version first")
        candidate = record.candidate
        if candidate is not None and candidate.version == stable.version:
            candidate = None  # the operator made the candidate STABLE: nothing is left to bake
        state = ControllerState.BAKING if candidate else ControllerState.STEADY
        if record.pending_rollback is not None:  # frozen while a rollback was in flight: the tick finishes it
            state = ControllerState.ROLLED_BACK
        resumed = record.evolve(state=state, frozen_reason=None, candidate=candidate)
        if stable.version != record.stable_version:
            resumed = resumed.evolve(stable_version=stable.version, stable_revision_id=stable.revision_id,
                                     stable_p99_ms=None)
        self._operations.journal("unfreeze", cause, f"automation resumed in state {state.value}",
                                 from_version=record.stable_version, to_version=stable.version)
        self._store.replace(record, resumed)
        return Outcome("unfrozen", f"automation resumed in state {state.value}")

    def release(self, version: str, cause: Cause, canary_percent: float | None = None, force: bool = False) -> Outcome:
        """Send LIVE (or a canary share of it) to a published version and start baking it."""
        if version == LATEST:
            raise InvalidRequest(f"version must be a published version number, not {LATEST}")
        if not version.isdigit():
            raise InvalidRequest(f"version must be a published version number, got {version!r}")
        if canary_percent is not None and not 0 < canary_percent < 100:
            raise InvalidRequest(f"canary_percent must be between 0 and 100 exclusive, got {canary_percent}")
        record = self.record()
        if record.pending_rollback is not None:
            # Its completion would take LIVE off whatever it serves then: this release, with no alarm against it.
            raise InvalidRequest(f"a rollback is in flight ({record.pending_rollback.incident_id}); release once "
                                 "it has finished")
        if version == record.stable_version:
            raise InvalidRequest(f"version {version} is already STABLE: use rollback to serve it on LIVE")
        if record.is_quarantined(version) and not (force and cause.reason):
            raise InvalidRequest(f"version {version} is quarantined after a rollback; pass force with a reason")
        if not self._aliases.published_version_exists(version):
            raise InvalidRequest(f"{self._function} has no published version {version}")
        weight = None if canary_percent is None else round(canary_percent / 100, 4)
        live = self._operations.read_alias(self._settings.live_alias)
        if weight is None:
            alias = self._aliases.point(self._settings.live_alias, version, revision_id=live.revision_id)
        else:
            alias = self._aliases.point(self._settings.live_alias, record.stable_version,
                                        revision_id=live.revision_id, weights={version: weight})
        now = to_iso(self._clock())
        self._operations.journal("release", cause, "candidate baking", from_version=live.version, to_version=version,
                                 at=now, details={"canary_weight": weight})
        baking = ControllerState.FROZEN if record.state is ControllerState.FROZEN else ControllerState.BAKING
        self._store.replace(
            record,
            record.evolve(
                state=baking,
                live_version=alias.version,
                live_revision_id=alias.revision_id,
                candidate=Candidate(version=version, since=now, weight=weight, forced=record.is_quarantined(version)),
            ),
        )
        return Outcome("released", f"version {version} serves LIVE{'' if weight is None else f' at {weight:.0%}'}",
                       from_version=live.version, to_version=version)

    def promote(self, cause: Cause) -> Outcome:
        """An operator's promotion of the baking candidate, without waiting for the bake."""
        record = self.record()
        if record.candidate is None or record.state is not ControllerState.BAKING:
            return Outcome("noop", f"no candidate is baking (state {record.state.value})")
        since = parse_time(record.candidate.since)
        baseline = self._function_metrics.p99_duration_ms(record.candidate.version, since, self._clock())
        return self._operations.promote(record, cause, baseline_ms=baseline)

    # ------------------------------------------------------------------ the tick

    def reconcile(self) -> list[Outcome]:
        """Read the level and repair: finish crashed rollbacks, undo drift, act on alarms, promote."""
        return self._tick.reconcile()

    def regression_check(self) -> Outcome:
        """Roll back a candidate whose p99 duration exceeds STABLE's baseline by the regression factor."""
        return self._tick.regression_check()

    # ------------------------------------------------------------------ journal

    def journal(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest journal entries of the protected function."""
        return self._store.journal(self._function, limit)

    def last_journal_entry(self, action: str) -> dict[str, Any] | None:
        return self._store.latest_journal_entry(self._function, action)
