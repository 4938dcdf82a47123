"""The tick: the level read and repaired, whatever the alarm edges missed or left half-done.

It finishes a rollback that crashed, follows or reverts what moved the aliases outside the controller,
rolls back on an alarm that is in ALARM while no edge reached a watcher, promotes a candidate that has
baked, and rolls back a candidate whose p99 duration regressed against STABLE's baseline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from drcore.aws.alarms import ALARM, AlarmBoard
from drcore.aws.alerts import AlertPublisher
from drcore.aws.aliases import LATEST, AliasGateway
from drcore.aws.metrics import FunctionMetrics
from drcore.core.controller_settings import ControllerSettings
from drcore.core.models import (
    AlarmSignal,
    AliasState,
    Candidate,
    Cause,
    Clock,
    ControllerRecord,
    ControllerState,
    parse_time,
    to_iso,
)
from drcore.rollback.decisions import (
    LiveDrift,
    alarm_cause,
    bake_blocker,
    blames_rolled_back_version,
    canary_weight,
    expected_live,
    firing,
    live_drift,
    served_version,
    unpublished_stable,
)
from drcore.rollback.incidents import IncidentTexts
from drcore.rollback.operations import ControllerOperations
from drcore.rollback.outcome import Outcome
from drcore.state.store import ControllerStateStore

# A child of the handler's Powertools logger: the same structured JSON, the same service.
logger = Logger(child=True)


class Reconciler:
    def __init__(self, settings: ControllerSettings, store: ControllerStateStore, aliases: AliasGateway,
                 alarm_board: AlarmBoard, alerts: AlertPublisher, incidents: IncidentTexts,
                 function_metrics: FunctionMetrics, clock: Clock, operations: ControllerOperations) -> None:
        self._settings = settings
        self._store = store
        self._aliases = aliases
        self._alarm_board = alarm_board
        self._alerts = alerts
        self._incidents = incidents
        self._function_metrics = function_metrics
        self._clock = clock
        self._operations = operations

    def reconcile(self) -> list[Outcome]:
        """Read the level and repair: finish crashed rollbacks, undo drift, act on alarms, promote."""
        record = self._operations.record()
        now = self._clock()
        outcomes: list[Outcome] = []
        if record.pending_rollback is not None:
            started = parse_time(record.pending_rollback.started_at)
            if now - started < timedelta(seconds=self._settings.pending_repair_seconds):
                return [Outcome("waiting", "a rollback is in flight; it gets time to finish before repair")]
            outcome = self._operations.complete_rollback(record)
            if outcome.action == "frozen":  # STABLE could not serve: the claim became a freeze
                outcomes.append(outcome)
            else:
                outcomes.append(Outcome("rollback_completed", f"finished an interrupted rollback: {outcome.detail}",
                                        outcome.from_version, outcome.to_version, 2, outcome.facts))
            record = self._operations.current()
        drift = self._repair_drift(record)
        if drift is not None:
            outcomes.append(drift)
            record = self._operations.current()
        alarms = self._alarm_board.states(self._settings.watched_alarms)
        outcomes.append(self._act_on_alarm_levels(record, alarms, now))
        return outcomes

    def _repair_drift(self, record: ControllerRecord) -> Outcome | None:
        """Compare the aliases with the record: finish a crashed promotion, freeze on a STABLE that cannot serve,
        follow an operator's change of STABLE or release of LIVE, and revert LIVE from $LATEST or a quarantined
        version."""
        live = self._operations.read_alias(self._settings.live_alias)
        stable = self._operations.read_alias(self._settings.stable_alias)
        if stable.version != record.stable_version and record.candidate is not None \
                and stable.version == record.candidate.version:
            return self._finish_interrupted_promotion(record, live, stable)
        # Lambda keeps a version while an alias points at it, so only a STABLE that moved is asked whether its
        # version exists; $LATEST shows in the alias as read.
        unusable = (self._operations.stable_problem(stable.version) if stable.version != record.stable_version
                    else unpublished_stable(stable.version))
        if unusable is not None:
            return self._operations.freeze_on_unusable_stable(record, unusable)
        if stable.version != record.stable_version and record.is_quarantined(stable.version):
            return self._revert_stable(record, stable)
        followed: Outcome | None = None
        if stable.version != record.stable_version:
            previous = record.stable_version
            cause = Cause(kind="reconcile", summary=f"STABLE alias found on {stable.version}, not {previous}")
            self._operations.journal("adopt_stable", cause, "record follows the STABLE alias",
                                     from_version=previous, to_version=stable.version)
            record = self._store.replace(record, record.evolve(
                stable_version=stable.version, stable_revision_id=stable.revision_id, stable_p99_ms=None))
            followed = Outcome("adopted", cause.summary, from_version=previous, to_version=stable.version)
        drift = live_drift(record, live, stable)
        if drift is LiveDrift.NONE:
            return followed  # the caller reads the record again after any change
        if drift is LiveDrift.FORBIDDEN:
            return self._revert_live(record, live, stable)
        served, expected = served_version(live), expected_live(record)
        if drift is LiveDrift.ON_STABLE:
            cause = Cause(kind="reconcile", summary=f"LIVE found on STABLE {stable.version} instead of {expected}")
            state = ControllerState.STEADY if record.state is ControllerState.BAKING else record.state
            self._operations.journal("adopt", cause, "record follows LIVE", from_version=expected, to_version=served)
            self._store.replace(record, record.evolve(
                state=state, live_version=live.version, candidate=None, live_revision_id=live.revision_id))
            return Outcome("adopted", cause.summary, from_version=expected, to_version=served)
        # A version released outside the controller (by a deployment pipeline, say): bake it.
        now = to_iso(self._clock())
        baking = ControllerState.FROZEN if record.state is ControllerState.FROZEN else ControllerState.BAKING
        candidate = Candidate(version=served, since=now, weight=canary_weight(live))
        cause = Cause(kind="reconcile", summary=f"LIVE found on version {served}, released outside the controller")
        self._operations.journal("adopt", cause, "candidate baking", from_version=expected, to_version=served, at=now)
        self._store.replace(record, record.evolve(
            state=baking, live_version=live.version, live_revision_id=live.revision_id, candidate=candidate))
        return Outcome("adopted", cause.summary, from_version=expected, to_version=served)

    def _finish_interrupted_promotion(self, record: ControllerRecord, live: AliasState, stable: AliasState) -> Outcome:
        if live.version != stable.version or live.weights:
            live = self._aliases.point(self._settings.live_alias, stable.version, revision_id=live.revision_id)
        cause = Cause(kind="reconcile",
                      summary=f"STABLE found on candidate {stable.version}: promotion was interrupted")
        self._operations.journal("promote", cause, "promotion finished", from_version=record.stable_version,
                                 to_version=stable.version)
        self._store.replace(record, record.evolve(
            state=ControllerState.STEADY, stable_version=stable.version, live_version=stable.version, candidate=None,
            stable_revision_id=stable.revision_id, live_revision_id=live.revision_id))
        return Outcome("promoted", cause.summary, from_version=record.stable_version, to_version=stable.version)

    def _revert_live(self, record: ControllerRecord, live: AliasState, stable: AliasState) -> Outcome:
        served = served_version(live)
        why = f"LIVE found on {served}, which {'is unpublished' if served == LATEST else 'is quarantined'}"
        alias = self._aliases.point(self._settings.live_alias, stable.version, revision_id=live.revision_id)
        state = ControllerState.STEADY if record.state is ControllerState.BAKING else record.state
        self._operations.journal("revert", Cause(kind="reconcile", summary=why), "LIVE pointed back at STABLE",
                                 from_version=served, to_version=stable.version)
        self._alerts.publish(self._incidents.drift_reverted(served, stable.version, to_iso(self._clock())))
        self._store.replace(record, record.evolve(
            state=state, candidate=None, live_version=stable.version, live_revision_id=alias.revision_id))
        return Outcome("reverted", why, from_version=served, to_version=stable.version, severity=2)

    def _revert_stable(self, record: ControllerRecord, stable: AliasState) -> Outcome:
        """STABLE moved to a quarantined version outside the controller: a version that failed is never the one
        a rollback restores, so STABLE goes back to the record's."""
        why = f"STABLE found on {stable.version}, which is quarantined"
        alias = self._aliases.point(self._settings.stable_alias, record.stable_version, revision_id=stable.revision_id)
        self._operations.journal("revert", Cause(kind="reconcile", summary=why), "STABLE pointed back",
                                 from_version=stable.version, to_version=record.stable_version)
        self._alerts.publish(self._incidents.stable_reverted(stable.version, record.stable_version,
                                                             to_iso(self._clock())))
        self._store.replace(record, record.evolve(stable_revision_id=alias.revision_id))
        return Outcome("reverted", why, from_version=stable.version, to_version=record.stable_version, severity=2)

    def _act_on_alarm_levels(self, record: ControllerRecord, alarms: dict[str, AlarmSignal], now: datetime) -> Outcome:
        in_alarm = firing(alarms)
        if record.state is ControllerState.FROZEN:
            return Outcome("held", f"automation frozen: {record.frozen_reason}")
        if record.state is ControllerState.BAKING and record.candidate is not None:
            since = parse_time(record.candidate.since)
            fresh = [signal for signal in in_alarm if signal.changed_at >= since]
            if fresh:
                logger.warning("alarm in ALARM while baking; rolling back", extra={"alarm": fresh[0].alarm_name})
                return self._operations.roll_back_on_level(fresh[0])
            verdict, why = self.bake_verdict(record, alarms, now)
            if not verdict:
                return Outcome("baking", why)
            baseline = self._function_metrics.p99_duration_ms(record.candidate.version, since, now)
            return self._operations.promote(record, Cause(kind="bake", summary=why), baseline_ms=baseline)
        settling = record.state is ControllerState.ROLLED_BACK and self._blames_rolled_back_version(record, now)
        if in_alarm:
            if settling:
                return Outcome("settling", f"{len(in_alarm)} alarm(s) still in ALARM from the rolled-back version")
            return self._operations.freeze_on_stable_failure(record, alarm_cause(in_alarm[0]), None)
        if record.state is ControllerState.ROLLED_BACK and not settling:
            self._operations.journal("settle", Cause(kind="reconcile", summary="every alarm OK after the settle time"),
                                     "steady")
            self._store.replace(record, record.evolve(state=ControllerState.STEADY))
            return Outcome("settled", "alarms recovered after the rollback; STABLE holds")
        return Outcome("steady" if record.state is ControllerState.STEADY else record.state.value, "nothing to do")

    def _blames_rolled_back_version(self, record: ControllerRecord, moment: datetime) -> bool:
        return blames_rolled_back_version(record, moment, self._settings.settle_seconds)

    def bake_verdict(self, record: ControllerRecord, alarms: dict[str, AlarmSignal], now: datetime) -> tuple[bool, str]:
        """Whether the baking candidate has proven itself; the reason either way."""
        blocker = bake_blocker(record, alarms, now, self._settings.bake_seconds, self._settings.watched_alarms)
        if blocker is not None:
            return False, blocker
        assert record.candidate is not None, "only a baking candidate gets past bake_blocker"
        since = parse_time(record.candidate.since)
        served = self._function_metrics.invocations(record.candidate.version, since, now)
        if served < self._settings.min_bake_invocations:
            return False, f"served {served} invocations, fewer than the {self._settings.min_bake_invocations} required"
        return True, f"baked {int((now - since).total_seconds())}s, all alarms OK, served {served} invocations"

    def regression_check(self) -> Outcome:
        """Roll back a candidate whose p99 duration exceeds STABLE's baseline by the regression factor."""
        record = self._operations.record()
        candidate = record.candidate
        if record.state is not ControllerState.BAKING or candidate is None:
            return Outcome("idle", f"nothing is baking (state {record.state.value})")
        if record.stable_p99_ms is None:
            return Outcome("idle", f"no duration baseline recorded for STABLE {record.stable_version}")
        now = self._clock()
        since = parse_time(candidate.since)
        served = self._function_metrics.invocations(candidate.version, since, now)
        minimum = self._settings.regression_min_invocations
        if served < minimum:
            return Outcome("measuring", f"{served} invocations so far, {minimum} needed")
        p99 = self._function_metrics.p99_duration_ms(candidate.version, since, now)
        limit = record.stable_p99_ms * self._settings.regression_factor
        if p99 is None or p99 <= limit:
            return Outcome("within_baseline", f"p99 {p99} ms within {limit:.0f} ms",
                           facts={"p99_ms": p99, "limit_ms": limit})
        reason = f"p99 {p99:.0f} ms > {self._settings.regression_factor}x STABLE's {record.stable_p99_ms:.0f} ms"
        signal = AlarmSignal(alarm_name="duration-regression", state=ALARM, changed_at=now, reason=reason,
                             source="reconcile")
        outcome = self._operations.roll_back_on_level(signal)
        return Outcome(outcome.action, outcome.detail, outcome.from_version, outcome.to_version, outcome.severity,
                       {**outcome.facts, "p99_ms": p99, "limit_ms": limit})
