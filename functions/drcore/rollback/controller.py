"""The alias controller: rollback, promotion, release, freeze, and the reconcile loop.

The record in the state table says what LIVE and STABLE should be; the aliases are its actuators.
Alarm events are edges that can be lost, duplicated, delayed or reordered; the scheduled tick reads
the level (alarm states and aliases) and repairs whatever an edge missed or left half-done.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.alarms import ALARM, OK, AlarmBoard
from drcore.aws.alerts import Alert, AlertPublisher
from drcore.core.config import ControllerSettings
from drcore.core.errors import AliasChanged, ConcurrentUpdate, InvalidRequest
from drcore.aws.metrics import FunctionMetrics
from drcore.aws.aliases import LATEST, AliasGateway
from drcore.core.models import (
    AlarmSignal,
    AliasState,
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
from drcore.state.store import ControllerStateStore, RollbackRefused

# A child of the handler's Powertools logger: the same structured JSON, the same service.
logger = Logger(child=True)

MAX_DECISION_ATTEMPTS = 5


@dataclass(frozen=True)
class Outcome:
    """What a controller operation did (or why it did nothing), for the handler's result and metrics."""

    action: str
    detail: str
    from_version: str | None = None
    to_version: str | None = None
    severity: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, {})}


def _alarm_cause(signal: AlarmSignal) -> Cause:
    return Cause(
        kind="alarm" if signal.source != "reconcile" else "reconcile",
        summary=f"{signal.alarm_name} entered {signal.state}: {signal.reason}".strip(": "),
        alarm_name=signal.alarm_name,
        alarm_changed_at=to_iso(signal.changed_at),
    )


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
    ) -> None:
        self._settings = settings
        self._store = store
        self._aliases = aliases
        self._alarm_board = alarm_board
        self._alerts = alerts
        self._function_metrics = function_metrics
        self._clock = clock
        self._function = settings.protected_function

    # ------------------------------------------------------------------ record

    def record(self) -> ControllerRecord:
        """The controller record, adopting the aliases as they are when the function is new to us."""
        existing = self._store.get(self._function)
        if existing is not None:
            return existing
        live = self._read_alias(self._settings.live_alias)
        stable = self._read_alias(self._settings.stable_alias)
        now = to_iso(self._clock())
        served = _served_version(live)
        # LIVE on a released version bakes it; LIVE on $LATEST is drift that the next tick reverts.
        baking = served != stable.version and served.isdigit()
        candidate = None
        if baking:
            weight = next(iter(live.weights.values())) if live.weights else None
            candidate = Candidate(version=served, since=now, weight=weight)
        record = ControllerRecord(
            function_name=self._function,
            state=ControllerState.BAKING if baking else ControllerState.STEADY,
            stable_version=stable.version,
            live_version=live.version if baking or served == stable.version else stable.version,
            generation=0,
            candidate=candidate,
            live_revision_id=live.revision_id,
            stable_revision_id=stable.revision_id,
        )
        try:
            self._store.create(record)
        except ConcurrentUpdate:
            return self._store.get(self._function)  # type: ignore[return-value]
        cause = Cause(kind="reconcile", summary="first sight of the protected function: adopted its aliases")
        self._journal("adopt", cause, "adopted", to_version=live.version, details={"state": record.state.value})
        logger.info("adopted aliases", extra={"live": live.version, "stable": stable.version, "state": record.state})
        return record

    def _read_alias(self, alias: str) -> AliasState:
        state = self._aliases.read(alias)
        if state is None:
            raise InvalidRequest(f"alias {alias} of {self._function} does not exist")
        return state

    # ------------------------------------------------------------------ alarm edges

    def on_alarm(self, signal: AlarmSignal) -> Outcome:
        """React to one alarm state change of LIVE. The only call before the flip is the claim."""
        if signal.alarm_name not in self._settings.watched_alarms:
            return Outcome("ignored", f"alarm {signal.alarm_name} is not one of {self._function}'s watched alarms")
        if signal.state != ALARM:
            return self._record_transition(signal)
        for _ in range(MAX_DECISION_ATTEMPTS):
            started_at = to_iso(self._clock())
            pending = PendingRollback(incident_id=signal.incident_id, started_at=started_at, cause=_alarm_cause(signal))
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
            return self._flip_and_finish(claimed)
        raise ConcurrentUpdate(f"could not settle alarm {signal.incident_id} after {MAX_DECISION_ATTEMPTS} attempts")

    def _record_transition(self, signal: AlarmSignal) -> Outcome:
        for _ in range(MAX_DECISION_ATTEMPTS):
            record = self.record()
            if not self._is_new(record, signal):
                return Outcome("duplicate", f"{signal.incident_id} is not newer than the last processed transition")
            try:
                self._store.replace(record, self._with_watermark(record, signal))
            except ConcurrentUpdate:
                continue
            return Outcome("recorded", f"{signal.alarm_name} is {signal.state}; nothing to do")
        raise ConcurrentUpdate(f"could not record {signal.incident_id}")

    @staticmethod
    def _is_new(record: ControllerRecord, signal: AlarmSignal) -> bool:
        seen = record.alarm_watermarks.get(signal.alarm_name)
        return seen is None or seen < to_iso(signal.changed_at)

    @staticmethod
    def _with_watermark(record: ControllerRecord, signal: AlarmSignal) -> ControllerRecord:
        return record.evolve(alarm_watermarks={**record.alarm_watermarks, signal.alarm_name: to_iso(signal.changed_at)})

    def _alarm_without_candidate(self, signal: AlarmSignal, record: ControllerRecord) -> Outcome:
        """An ALARM that could not claim a rollback: a duplicate, a late echo, or STABLE failing."""
        if not self._is_new(record, signal):
            return Outcome("duplicate", f"{signal.incident_id} is not newer than the last processed transition")
        if record.state is ControllerState.FROZEN:
            self._store.replace(record, self._with_watermark(record, signal))
            return Outcome("held", f"automation is frozen ({record.frozen_reason}); {signal.alarm_name} noted")
        if record.state is ControllerState.ROLLED_BACK and self._blames_rolled_back_version(record, signal.changed_at):
            self._store.replace(record, self._with_watermark(record, signal))
            return Outcome(
                "attributed",
                f"{signal.alarm_name} changed within {self._settings.settle_seconds}s of the rollback: "
                "datapoints of the rolled-back version, not of STABLE",
            )
        return self._freeze_on_stable_failure(record, _alarm_cause(signal), signal)

    def _blames_rolled_back_version(self, record: ControllerRecord, moment: datetime) -> bool:
        """Alarms keep evaluating the rolled-back version's datapoints until the settle time is over."""
        if record.pending_rollback is not None:
            return True
        if record.last_rollback_at is None:
            return False
        return moment <= parse_time(record.last_rollback_at) + timedelta(seconds=self._settings.settle_seconds)

    # ------------------------------------------------------------------ rollback

    def rollback(self, cause: Cause) -> Outcome:
        """An operator's rollback: LIVE back to STABLE now, through the same claim as an alarm's."""
        now = to_iso(self._clock())
        pending = PendingRollback(incident_id=f"manual@{now}", started_at=now, cause=cause)
        try:
            claimed = self._store.claim_rollback(self._function, pending)
        except RollbackRefused as refused:
            state = refused.record.state.value if refused.record else "unknown"
            return Outcome("noop", f"no candidate is baking (state {state}): LIVE already serves STABLE")
        return self._flip_and_finish(claimed)

    def _flip_and_finish(self, claimed: ControllerRecord) -> Outcome:
        live = self._point_live_at_stable(claimed)
        return self._finish_rollback(claimed, live)

    def _point_live_at_stable(self, record: ControllerRecord) -> tuple[AliasState, str]:
        """Flip LIVE to STABLE; returns the new alias state and the version LIVE served before."""
        revision = record.live_revision_id
        served = record.candidate.version if record.candidate else record.live_version
        for _ in range(MAX_DECISION_ATTEMPTS):
            try:
                live = self._aliases.point(self._settings.live_alias, record.stable_version, revision_id=revision)
                return live, served
            except AliasChanged:
                current = self._read_alias(self._settings.live_alias)
                logger.warning("LIVE changed under the rollback; re-read it", extra={"live": current.version})
                if current.version == record.stable_version and not current.weights:
                    return current, served
                served, revision = _served_version(current), current.revision_id
        raise ConcurrentUpdate("LIVE kept changing while rolling back")

    def _finish_rollback(self, record: ControllerRecord, live: tuple[AliasState, str]) -> Outcome:
        """After the flip: journal, alert, quarantine. Each step is safe to repeat after a crash."""
        alias, served = live
        pending = record.pending_rollback
        assert pending is not None, "finishing a rollback that was never claimed"
        from_version = record.candidate.version if record.candidate else served
        rolled_back = tuple(sorted({from_version, served} - {record.stable_version}))
        self._store.append_journal(
            self._function,
            entry_id=pending.incident_id,
            at=pending.started_at,
            action="rollback",
            from_version=from_version,
            to_version=record.stable_version,
            cause=pending.cause,
            result="LIVE points at STABLE",
            details={"quarantined": list(rolled_back)},
        )
        self._alerts.publish(
            Alert(
                severity=2,
                brief=f"{self._function} rolled back from v{from_version} to STABLE v{record.stable_version}",
                occurred_at=pending.started_at,
                impact=f"version {from_version} degraded the pipeline: {pending.cause.summary}",
                components=(f"Lambda {self._function}:{self._settings.live_alias}",),
                status=f"LIVE serves STABLE version {record.stable_version} again",
                actions_taken=(
                    f"{self._settings.live_alias} pointed back at version {record.stable_version}",
                    f"version {', '.join(rolled_back)} quarantined: it will not be promoted automatically",
                ),
                next_steps=(
                    "find the root cause in the rolled-back version's logs",
                    "release a fixed version; it bakes and is promoted once healthy",
                ),
                event_type="rollback",
                function_name=self._function,
                facts={"incident": pending.incident_id, "cause": pending.cause.kind},
            )
        )
        current = record
        for _ in range(MAX_DECISION_ATTEMPTS):
            if current.pending_rollback is None or current.pending_rollback.incident_id != pending.incident_id:
                break  # another invocation finished it
            finished = current.evolve(
                candidate=None,
                pending_rollback=None,
                live_version=record.stable_version,
                live_revision_id=alias.revision_id,
                quarantined=tuple(sorted(set(current.quarantined) | set(rolled_back), key=_version_order)),
            )
            try:
                self._store.replace(current, finished)
                break
            except ConcurrentUpdate:
                current = self._store.get(self._function)  # type: ignore[assignment]
        return Outcome(
            "rolled_back",
            f"LIVE moved from version {from_version} back to STABLE {record.stable_version}",
            from_version=from_version,
            to_version=record.stable_version,
            severity=2,
            facts={"incident": pending.incident_id, "quarantined": list(rolled_back)},
        )

    # ------------------------------------------------------------------ freeze

    def _freeze_on_stable_failure(self, record: ControllerRecord, cause: Cause, signal: AlarmSignal | None) -> Outcome:
        reason = f"STABLE version {record.stable_version} failing: {cause.summary}"
        frozen = record.evolve(state=ControllerState.FROZEN, frozen_reason=reason)
        if signal is not None:
            frozen = self._with_watermark(frozen, signal)
        self._store.replace(record, frozen)
        now = to_iso(self._clock())
        self._journal("freeze", cause, "automation frozen", from_version=record.stable_version, at=now)
        self._alerts.publish(
            Alert(
                severity=1,
                brief=f"{self._function} STABLE v{record.stable_version} failing, automation frozen",
                occurred_at=now,
                impact="the last known good version is degraded; there is nothing left to roll back to",
                components=(f"Lambda {self._function}:{self._settings.live_alias}",),
                status="automation frozen: no automatic rollback or promotion until an operator acts",
                actions_taken=(f"controller frozen ({cause.summary})",),
                next_steps=(
                    "assess the failure: it is not explained by a recent release",
                    "recover from a backup or release a fixed version, then invoke unfreeze",
                ),
                event_type="stable_failed",
                function_name=self._function,
                facts={"cause": cause.summary},
            )
        )
        return Outcome("frozen", reason, from_version=record.stable_version, severity=1)

    def freeze(self, cause: Cause) -> Outcome:
        record = self.record()
        if record.state is ControllerState.FROZEN:
            return Outcome("noop", f"already frozen: {record.frozen_reason}")
        self._store.replace(record, record.evolve(state=ControllerState.FROZEN, frozen_reason=cause.summary))
        self._journal("freeze", cause, "automation frozen")
        return Outcome("frozen", cause.summary)

    def unfreeze(self, cause: Cause) -> Outcome:
        record = self.record()
        if record.state is not ControllerState.FROZEN:
            return Outcome("noop", f"not frozen (state {record.state.value})")
        state = ControllerState.BAKING if record.candidate else ControllerState.STEADY
        self._store.replace(record, record.evolve(state=state, frozen_reason=None))
        self._journal("unfreeze", cause, f"automation resumed in state {state.value}")
        return Outcome("unfrozen", f"automation resumed in state {state.value}")

    # ------------------------------------------------------------------ release and promotion

    def release(self, version: str, cause: Cause, canary_percent: float | None = None, force: bool = False) -> Outcome:
        """Send LIVE (or a canary share of it) to a published version and start baking it."""
        if version == LATEST:
            raise InvalidRequest(f"version must be a published version number, not {LATEST}")
        if not version.isdigit():
            raise InvalidRequest(f"version must be a published version number, got {version!r}")
        if canary_percent is not None and not 0 < canary_percent < 100:
            raise InvalidRequest(f"canary_percent must be between 0 and 100 exclusive, got {canary_percent}")
        record = self.record()
        if version == record.stable_version:
            raise InvalidRequest(f"version {version} is already STABLE: use rollback to serve it on LIVE")
        if record.is_quarantined(version) and not (force and cause.reason):
            raise InvalidRequest(f"version {version} is quarantined after a rollback; pass force with a reason")
        if not self._aliases.published_version_exists(version):
            raise InvalidRequest(f"{self._function} has no published version {version}")
        weight = None if canary_percent is None else round(canary_percent / 100, 4)
        live = self._read_alias(self._settings.live_alias)
        if weight is None:
            alias = self._aliases.point(self._settings.live_alias, version, revision_id=live.revision_id)
        else:
            alias = self._aliases.point(
                self._settings.live_alias, record.stable_version, revision_id=live.revision_id, weights={version: weight}
            )
        now = to_iso(self._clock())
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
        self._journal("release", cause, "candidate baking", from_version=live.version, to_version=version, at=now,
                      details={"canary_weight": weight})
        return Outcome("released", f"version {version} serves LIVE{'' if weight is None else f' at {weight:.0%}'}",
                       from_version=live.version, to_version=version)

    def promote(self, cause: Cause) -> Outcome:
        """An operator's promotion of the baking candidate, without waiting for the bake."""
        record = self.record()
        if record.candidate is None or record.state is not ControllerState.BAKING:
            return Outcome("noop", f"no candidate is baking (state {record.state.value})")
        since = parse_time(record.candidate.since)
        baseline = self._function_metrics.p99_duration_ms(record.candidate.version, since, self._clock())
        return self._promote(record, cause, baseline_ms=baseline)

    def _promote(self, record: ControllerRecord, cause: Cause, baseline_ms: float | None) -> Outcome:
        """STABLE to the candidate, then LIVE off its canary weights; the record last, so a crash in
        between shows up in the next tick as STABLE on the candidate, which it finishes."""
        candidate = record.candidate
        assert candidate is not None
        stable = self._aliases.point(self._settings.stable_alias, candidate.version, revision_id=record.stable_revision_id)
        live_revision = record.live_revision_id
        if candidate.weight is not None:
            live_revision = self._aliases.point(self._settings.live_alias, candidate.version, revision_id=live_revision).revision_id
        self._store.replace(
            record,
            record.evolve(
                state=ControllerState.STEADY,
                stable_version=candidate.version,
                live_version=candidate.version,
                candidate=None,
                stable_revision_id=stable.revision_id,
                live_revision_id=live_revision,
                stable_p99_ms=baseline_ms,
            ),
        )
        self._journal("promote", cause, "STABLE is the candidate", from_version=record.stable_version,
                      to_version=candidate.version, details={"stable_p99_ms": baseline_ms})
        return Outcome("promoted", f"STABLE moved from version {record.stable_version} to {candidate.version}",
                       from_version=record.stable_version, to_version=candidate.version,
                       facts={"stable_p99_ms": baseline_ms})

    def bake_verdict(self, record: ControllerRecord, alarms: dict[str, AlarmSignal], now: datetime) -> tuple[bool, str]:
        """Whether the baking candidate has proven itself; the reason either way."""
        candidate = record.candidate
        if record.state is not ControllerState.BAKING or candidate is None:
            return False, f"nothing is baking (state {record.state.value})"
        if candidate.forced or record.is_quarantined(candidate.version):
            return False, f"version {candidate.version} is quarantined: only an operator may promote it"
        since = parse_time(candidate.since)
        if now - since < timedelta(seconds=self._settings.bake_seconds):
            remaining = timedelta(seconds=self._settings.bake_seconds) - (now - since)
            return False, f"baking for another {int(remaining.total_seconds())}s"
        missing = sorted(set(self._settings.watched_alarms) - set(alarms))
        if missing:
            return False, f"alarm(s) not found: {', '.join(missing)}"
        not_ok = sorted(f"{name}={signal.state}" for name, signal in alarms.items() if signal.state != OK)
        if not_ok:  # INSUFFICIENT_DATA means "not yet", never "healthy"
            return False, f"alarms not OK: {', '.join(not_ok)}"
        served = self._function_metrics.invocations(candidate.version, since, now)
        if served < self._settings.min_bake_invocations:
            return False, f"served {served} invocations, fewer than the {self._settings.min_bake_invocations} required"
        return True, f"baked {int((now - since).total_seconds())}s, all alarms OK, served {served} invocations"

    # ------------------------------------------------------------------ the tick

    def reconcile(self) -> list[Outcome]:
        """Read the level and repair: finish crashed rollbacks, undo drift, act on alarms, promote."""
        record = self.record()
        now = self._clock()
        outcomes: list[Outcome] = []
        if record.pending_rollback is not None:
            started = parse_time(record.pending_rollback.started_at)
            if now - started < timedelta(seconds=self._settings.pending_repair_seconds):
                return [Outcome("waiting", "a rollback is in flight; it gets time to finish before repair")]
            live = self._point_live_at_stable(record)
            outcome = self._finish_rollback(record, live)
            outcomes.append(Outcome("rollback_completed", f"finished an interrupted rollback: {outcome.detail}",
                                    outcome.from_version, outcome.to_version, 2, outcome.facts))
            record = self._store.get(self._function)  # type: ignore[assignment]
        drift = self._repair_drift(record)
        if drift is not None:
            outcomes.append(drift)
            record = self._store.get(self._function)  # type: ignore[assignment]
        alarms = self._alarm_board.states(self._settings.watched_alarms)
        outcomes.append(self._act_on_alarm_levels(record, alarms, now))
        return outcomes

    def _repair_drift(self, record: ControllerRecord) -> Outcome | None:
        """Compare the aliases with the record: finish a crashed promotion, follow an operator's change
        of STABLE or release of LIVE, and revert LIVE from $LATEST or a quarantined version."""
        live = self._read_alias(self._settings.live_alias)
        stable = self._read_alias(self._settings.stable_alias)
        if stable.version != record.stable_version:
            if record.candidate is not None and stable.version == record.candidate.version:
                return self._finish_interrupted_promotion(record, live, stable)
            previous = record.stable_version
            cause = Cause(kind="reconcile", summary=f"STABLE alias found on {stable.version}, not {previous}")
            record = self._store.replace(record, record.evolve(
                stable_version=stable.version, stable_revision_id=stable.revision_id, stable_p99_ms=None))
            self._journal("adopt_stable", cause, "record follows the STABLE alias",
                          from_version=previous, to_version=stable.version)
        served = _served_version(live)
        expected = record.candidate.version if record.candidate else record.stable_version
        if served == expected and live.version == record.live_version:
            return None
        if served == LATEST or record.is_quarantined(served):
            return self._revert_live(record, live, stable)
        if served == stable.version and not live.weights:
            cause = Cause(kind="reconcile", summary=f"LIVE found on STABLE {stable.version} instead of {expected}")
            state = ControllerState.STEADY if record.state is ControllerState.BAKING else record.state
            self._store.replace(record, record.evolve(
                state=state, live_version=live.version, candidate=None, live_revision_id=live.revision_id))
            self._journal("adopt", cause, "record follows LIVE", from_version=expected, to_version=served)
            return Outcome("adopted", cause.summary, from_version=expected, to_version=served)
        # A version released outside the controller (by a deployment pipeline, say): bake it.
        now = to_iso(self._clock())
        weight = next(iter(live.weights.values())) if live.weights else None
        state = ControllerState.FROZEN if record.state is ControllerState.FROZEN else ControllerState.BAKING
        self._store.replace(record, record.evolve(state=state, live_version=live.version, live_revision_id=live.revision_id,
                                                  candidate=Candidate(version=served, since=now, weight=weight)))
        cause = Cause(kind="reconcile", summary=f"LIVE found on version {served}, released outside the controller")
        self._journal("adopt", cause, "candidate baking", from_version=expected, to_version=served, at=now)
        return Outcome("adopted", cause.summary, from_version=expected, to_version=served)

    def _finish_interrupted_promotion(self, record: ControllerRecord, live: AliasState, stable: AliasState) -> Outcome:
        if live.version != stable.version or live.weights:
            live = self._aliases.point(self._settings.live_alias, stable.version, revision_id=live.revision_id)
        self._store.replace(record, record.evolve(
            state=ControllerState.STEADY, stable_version=stable.version, live_version=stable.version, candidate=None,
            stable_revision_id=stable.revision_id, live_revision_id=live.revision_id))
        cause = Cause(kind="reconcile", summary=f"STABLE found on candidate {stable.version}: promotion was interrupted")
        self._journal("promote", cause, "promotion finished", from_version=record.stable_version, to_version=stable.version)
        return Outcome("promoted", cause.summary, from_version=record.stable_version, to_version=stable.version)

    def _revert_live(self, record: ControllerRecord, live: AliasState, stable: AliasState) -> Outcome:
        served = _served_version(live)
        why = f"LIVE found on {served}, which {'is unpublished' if served == LATEST else 'is quarantined'}"
        alias = self._aliases.point(self._settings.live_alias, stable.version, revision_id=live.revision_id)
        state = ControllerState.STEADY if record.state is ControllerState.BAKING else record.state
        self._store.replace(record, record.evolve(
            state=state, candidate=None, live_version=stable.version, live_revision_id=alias.revision_id))
        self._journal("revert", Cause(kind="reconcile", summary=why), "LIVE pointed back at STABLE",
                      from_version=served, to_version=stable.version)
        self._alerts.publish(Alert(
            severity=2, brief=f"{self._function} LIVE moved to {served}, reverted to v{stable.version}",
            occurred_at=to_iso(self._clock()), impact="LIVE served a version that must never serve traffic",
            components=(f"Lambda {self._function}:{self._settings.live_alias}",),
            status=f"LIVE serves STABLE version {stable.version}",
            actions_taken=(f"{self._settings.live_alias} pointed back at STABLE version {stable.version}",),
            next_steps=("find who moved LIVE, and release through the controller (force needs a reason)",),
            event_type="drift_reverted", function_name=self._function))
        return Outcome("reverted", why, from_version=served, to_version=stable.version, severity=2)

    def _act_on_alarm_levels(self, record: ControllerRecord, alarms: dict[str, AlarmSignal], now: datetime) -> Outcome:
        firing = sorted((signal for signal in alarms.values() if signal.state == ALARM), key=lambda s: s.changed_at)
        if record.state is ControllerState.FROZEN:
            return Outcome("held", f"automation frozen: {record.frozen_reason}")
        if record.state is ControllerState.BAKING and record.candidate is not None:
            since = parse_time(record.candidate.since)
            fresh = [signal for signal in firing if signal.changed_at >= since]
            if fresh:
                logger.warning("alarm in ALARM while baking; rolling back", extra={"alarm": fresh[0].alarm_name})
                return self.on_alarm_level(fresh[0])
            verdict, why = self.bake_verdict(record, alarms, now)
            if not verdict:
                return Outcome("baking", why)
            baseline = self._function_metrics.p99_duration_ms(record.candidate.version, since, now)
            return self._promote(record, Cause(kind="bake", summary=why), baseline_ms=baseline)
        if firing:
            if record.state is ControllerState.ROLLED_BACK and self._blames_rolled_back_version(record, now):
                return Outcome("settling", f"{len(firing)} alarm(s) still in ALARM from the rolled-back version")
            return self._freeze_on_stable_failure(record, _alarm_cause(firing[0]), None)
        if record.state is ControllerState.ROLLED_BACK and not self._blames_rolled_back_version(record, now):
            self._store.replace(record, record.evolve(state=ControllerState.STEADY))
            self._journal("settle", Cause(kind="reconcile", summary="every alarm OK after the settle time"), "steady")
            return Outcome("settled", "alarms recovered after the rollback; STABLE holds")
        return Outcome("steady" if record.state is ControllerState.STEADY else record.state.value, "nothing to do")

    def on_alarm_level(self, signal: AlarmSignal) -> Outcome:
        """A rollback decided from a tick's reading rather than an edge: no watermark check applies."""
        pending = PendingRollback(incident_id=signal.incident_id, started_at=to_iso(self._clock()), cause=_alarm_cause(signal))
        try:
            claimed = self._store.claim_rollback(self._function, pending)
        except RollbackRefused:
            return Outcome("noop", "the candidate was rolled back meanwhile")
        return self._flip_and_finish(claimed)

    def regression_check(self) -> Outcome:
        """Roll back a candidate whose p99 duration exceeds STABLE's baseline by the regression factor."""
        record = self.record()
        candidate = record.candidate
        if record.state is not ControllerState.BAKING or candidate is None:
            return Outcome("idle", f"nothing is baking (state {record.state.value})")
        if record.stable_p99_ms is None:
            return Outcome("idle", f"no duration baseline recorded for STABLE {record.stable_version}")
        now = self._clock()
        since = parse_time(candidate.since)
        served = self._function_metrics.invocations(candidate.version, since, now)
        if served < self._settings.regression_min_invocations:
            return Outcome("measuring", f"{served} invocations so far, {self._settings.regression_min_invocations} needed")
        p99 = self._function_metrics.p99_duration_ms(candidate.version, since, now)
        limit = record.stable_p99_ms * self._settings.regression_factor
        if p99 is None or p99 <= limit:
            return Outcome("within_baseline", f"p99 {p99} ms within {limit:.0f} ms", facts={"p99_ms": p99, "limit_ms": limit})
        signal = AlarmSignal(alarm_name="duration-regression", state=ALARM, changed_at=now,
                             reason=f"p99 {p99:.0f} ms > {self._settings.regression_factor}x STABLE's {record.stable_p99_ms:.0f} ms",
                             source="reconcile")
        outcome = self.on_alarm_level(signal)
        return Outcome(outcome.action, outcome.detail, outcome.from_version, outcome.to_version, outcome.severity,
                       {**outcome.facts, "p99_ms": p99, "limit_ms": limit})

    # ------------------------------------------------------------------ journal

    def journal(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest journal entries of the protected function."""
        return self._store.journal(self._function, limit)

    def last_journal_entry(self, action: str) -> dict[str, Any] | None:
        return self._store.latest_journal_entry(self._function, action)

    def _journal(self, action: str, cause: Cause, result: str, *, from_version: str | None = None,
                 to_version: str | None = None, at: str | None = None, details: dict[str, Any] | None = None) -> None:
        moment = at or to_iso(self._clock())
        self._store.append_journal(self._function, entry_id=f"{action}-{moment}", at=moment, action=action, cause=cause,
                                   result=result, from_version=from_version, to_version=to_version, details=details)


def _served_version(alias: AliasState) -> str:
    """The version a release put on LIVE: the canary's when LIVE is weighted, else its primary."""
    return next(iter(alias.weights)) if alias.weights else alias.version


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)
