"""What the alias controller does that both the alarm edges (controller.py) and the tick (reconcile.py) do:
adopt the aliases into a first record, carry out a claimed rollback, freeze on a failing STABLE, promote a
candidate, keep the journal. Each is safe to repeat after a crash at any step.

Every change of the controller, here and in controller.py and reconcile.py, keeps one order: the aliases first,
then the journal and the alerts, the record last. The record's conditional write is the commit: a crash before
it leaves the aliases and the record apart, which the tick (or the event's repeat) finds and finishes, so no
change goes unjournaled and no severity-1 alert is lost; the price is that a crash between the journal and the
record repeats their entry or alert (at least once).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.alerts import AlertPublisher
from drcore.aws.aliases import AliasGateway, UnservableVersion
from drcore.core.controller_settings import ControllerSettings
from drcore.core.errors import AliasChanged, ConcurrentUpdate, InvalidRequest
from drcore.core.models import (
    AlarmSignal,
    AliasState,
    Cause,
    Clock,
    ControllerRecord,
    ControllerState,
    PendingRollback,
    to_iso,
)
from drcore.rollback.decisions import (
    adopted_record,
    alarm_cause,
    finished_rollback,
    frozen_instead_of_rollback,
    missing_stable,
    rolled_back_versions,
    served_version,
    unpublished_stable,
    version_order,
    with_watermark,
)
from drcore.rollback.incidents import IncidentTexts
from drcore.rollback.outcome import Outcome
from drcore.state.store import ControllerStateStore, RollbackRefused

# A child of the handler's Powertools logger: the same structured JSON, the same service.
logger = Logger(child=True)

MAX_DECISION_ATTEMPTS = 5

# Work that need not wait for a rollback's journal, alert and record (a watcher's version gauge): started with
# the version LIVE serves as soon as the flip answered, and awaited before the rollback returns, so nothing
# is left running when the invocation ends and its failure surfaces as theirs do.
AfterFlip = Callable[[str], Future[None]]


class StableUnusable(Exception):
    """The flip of a rollback cannot happen: STABLE names no published version. `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ControllerOperations:
    def __init__(self, settings: ControllerSettings, store: ControllerStateStore, aliases: AliasGateway,
                 alerts: AlertPublisher, incidents: IncidentTexts, clock: Clock, after_flip: AfterFlip | None = None
                 ) -> None:
        self._settings = settings
        self._store = store
        self._aliases = aliases
        self._alerts = alerts
        self._incidents = incidents
        self._clock = clock
        self._after_flip = after_flip
        self._function = settings.protected_function

    # ------------------------------------------------------------------ record and journal

    def record(self) -> ControllerRecord:
        """The controller record, adopting the aliases as they are when the function is new to us. A STABLE that
        cannot serve is adopted frozen, so no rollback is ever claimed towards it."""
        existing = self._store.get(self._function)
        if existing is not None:
            return existing
        live = self.read_alias(self._settings.live_alias)
        stable = self.read_alias(self._settings.stable_alias)
        now = to_iso(self._clock())
        record = adopted_record(self._function, live, stable, now)
        unusable = self.stable_problem(stable.version)
        if unusable is not None:
            record = record.evolve(state=ControllerState.FROZEN, frozen_reason=unusable)
        # Journal and alert first, the record last (as everywhere): a crash before the record leaves nothing
        # that needs them, and the next invocation adopts again; two adopting at once both journal.
        cause = Cause(kind="reconcile", summary="first sight of the protected function: adopted its aliases")
        self.journal("adopt", cause, "adopted", to_version=live.version, at=now,
                     details={"state": record.state.value, "frozen_reason": record.frozen_reason})
        if unusable is not None:
            self._alert_unusable_stable(record, unusable, cause)
        try:
            self._store.create(record)
        except ConcurrentUpdate:
            return self.current()
        logger.info("adopted aliases", extra={"live": live.version, "stable": stable.version, "state": record.state})
        return record

    def current(self) -> ControllerRecord:
        """The record, known to exist (this or another invocation has written it)."""
        record = self._store.get(self._function)
        assert record is not None, "the controller record vanished"
        return record

    def stable_problem(self, version: str) -> str | None:
        """Why STABLE cannot be on `version` (None if it can): $LATEST tells by its name; a version number is asked
        of Lambda, so this is for where STABLE is first seen or moved, never for every alarm."""
        unpublished = unpublished_stable(version)
        if unpublished is not None:
            return unpublished
        return None if self._aliases.published_version_exists(version) else missing_stable(version)

    def read_alias(self, alias: str) -> AliasState:
        state = self._aliases.read(alias)
        if state is None:
            raise InvalidRequest(f"alias {alias} of {self._function} does not exist")
        return state

    def journal(self, action: str, cause: Cause, result: str, *, from_version: str | None = None,
                to_version: str | None = None, at: str | None = None, details: dict[str, Any] | None = None) -> None:
        """Journal a change made once, by this call: its own entry, even beside another of the same kind and
        millisecond (the journal keeps one entry per id, which is for the retries of one incident)."""
        moment = at or to_iso(self._clock())
        self._store.append_journal(self._function, entry_id=f"{action}-{moment}-{uuid.uuid4().hex[:8]}", at=moment,
                                   action=action, cause=cause, result=result, from_version=from_version,
                                   to_version=to_version, details=details)

    # ------------------------------------------------------------------ rollback

    def roll_back_on_level(self, signal: AlarmSignal) -> Outcome:
        """A rollback decided from a tick's reading rather than an edge: no watermark check applies."""
        pending = PendingRollback(incident_id=signal.incident_id, started_at=to_iso(self._clock()),
                                  cause=alarm_cause(signal))
        try:
            claimed = self._store.claim_rollback(self._function, pending)
        except RollbackRefused:
            return Outcome("noop", "the candidate was rolled back meanwhile")
        return self.roll_back(claimed)

    def roll_back(self, claimed: ControllerRecord) -> Outcome:
        """Carry out a rollback this invocation claimed: flip LIVE, then its bookkeeping."""
        try:
            live = self._point_live_at_stable(claimed)
        except StableUnusable as unusable:
            return self._freeze_instead_of_rollback(claimed, unusable.reason)
        beside = self._after_flip(live[0].version) if self._after_flip is not None else None
        try:
            outcome = self._finish_rollback(claimed, live)
        except BaseException:
            # Waited for all the same: nothing may run on once the invocation ends. The bookkeeping's failure
            # is the one that surfaces (the tick repairs it); this one is only logged.
            beside_error = beside.exception() if beside is not None else None
            if beside_error is not None:
                logger.warning("work beside the rollback failed too", extra={"error": repr(beside_error)})
            raise
        if beside is not None:
            beside.result()
        return outcome

    def complete_rollback(self, record: ControllerRecord) -> Outcome:
        """Finish a rollback that an invocation claimed and did not finish (each step repeats safely)."""
        try:
            live = self._point_live_at_stable(record)
        except StableUnusable as unusable:
            return self._freeze_instead_of_rollback(record, unusable.reason)
        return self._finish_rollback(record, live)

    def _point_live_at_stable(self, record: ControllerRecord) -> tuple[AliasState, str, bool]:
        """Flip LIVE to STABLE; returns the new alias state, the version LIVE served before, and whether this call
        moved it (False: it found LIVE on STABLE already). StableUnusable when STABLE names no published version:
        known from the record, or from Lambda refusing the flip."""
        unpublished = unpublished_stable(record.stable_version)
        if unpublished is not None:
            raise StableUnusable(unpublished)
        revision = record.live_revision_id
        served = record.candidate.version if record.candidate else record.live_version
        for _ in range(MAX_DECISION_ATTEMPTS):
            try:
                live = self._aliases.point(self._settings.live_alias, record.stable_version, revision_id=revision)
                return live, served, True
            except UnservableVersion:
                # Only now, off the path of every rollback that succeeds: is it STABLE's version that is gone?
                if self._aliases.published_version_exists(record.stable_version):
                    raise
                raise StableUnusable(missing_stable(record.stable_version)) from None
            except AliasChanged:
                current = self.read_alias(self._settings.live_alias)
                logger.warning("LIVE changed under the rollback; re-read it", extra={"live": current.version})
                if current.version == record.stable_version and not current.weights:
                    return current, served, False
                served, revision = served_version(current), current.revision_id
        raise ConcurrentUpdate("LIVE kept changing while rolling back")

    def _finish_rollback(self, record: ControllerRecord, live: tuple[AliasState, str, bool]) -> Outcome:
        """After the flip: journal, alert, quarantine, in this order. The record is written last: until it
        is, the tick sees the rollback pending and finishes it."""
        alias, served, flipped = live
        pending = record.pending_rollback
        assert pending is not None, "finishing a rollback that was never claimed"
        from_version, rolled_back = rolled_back_versions(record, served)
        restored = self._restore_stable_from(record, rolled_back)
        restored_from = restored[0] if restored else None
        journaled = self._store.append_journal(
            self._function,
            entry_id=pending.incident_id,
            at=pending.started_at,
            action="rollback",
            from_version=from_version,
            to_version=record.stable_version,
            cause=pending.cause,
            result="LIVE points at STABLE",
            details={"quarantined": list(rolled_back), "stable_restored_from": restored_from},
        )
        if not journaled:
            # Finishing a rollback that crashed after its journal entry: the flip it made may have found LIVE on
            # another version than the candidate (a pipeline's), which only that entry remembers.
            entry = self._store.journal_entry(self._function, pending.started_at, pending.incident_id) or {}
            earlier = (entry.get("details") or {}).get("quarantined", ())
            rolled_back = tuple(sorted(set(rolled_back) | set(earlier), key=version_order))
            if flipped:
                # LIVE moved again after that entry (a pipeline deployed meanwhile) and this call moved it back: a
                # change of its own, journaled once (the id names the alias revision this flip wrote).
                self._store.append_journal(
                    self._function, entry_id=f"{pending.incident_id}-again-{alias.revision_id}",
                    at=to_iso(self._clock()), action="rollback", from_version=served, to_version=record.stable_version,
                    cause=pending.cause, result="LIVE points at STABLE again: it had moved since the rollback began",
                    details={"quarantined": [served] if served != record.stable_version else []})
        self._alerts.publish(self._incidents.rolled_back(pending, from_version, record.stable_version, rolled_back))

        def settled(current: ControllerRecord) -> ControllerRecord:
            finished = finished_rollback(current, record.stable_version, alias.revision_id, rolled_back)
            return finished if restored is None else finished.evolve(stable_revision_id=restored[1].revision_id)

        self._settle_claim(record, settled)
        return Outcome(
            "rolled_back",
            f"LIVE moved from version {from_version} back to STABLE {record.stable_version}",
            from_version=from_version,
            to_version=record.stable_version,
            severity=2,
            facts={"incident": pending.incident_id, "quarantined": list(rolled_back)},
        )

    def _restore_stable_from(self, record: ControllerRecord, rolled_back: tuple[str, ...]
                             ) -> tuple[str, AliasState] | None:
        """Point STABLE back at the record's version if a promotion of what is being rolled back had moved it
        and crashed before its record: a version that failed must not stay STABLE. Returns the version STABLE
        was taken off and the alias as it is now, if it was. Only a candidate whose promotion began can be on
        STABLE (the claim and the promotion's mark are conditional writes of one record, so one of them saw the
        other), so STABLE is read only then; a STABLE someone else moved is the tick's to follow or revert."""
        if record.candidate is None or not record.candidate.promoting:
            return None
        stable = self.read_alias(self._settings.stable_alias)
        if stable.version == record.stable_version or stable.version not in rolled_back:
            return None
        restored = self._aliases.point(self._settings.stable_alias, record.stable_version,
                                       revision_id=stable.revision_id)
        logger.warning("STABLE taken off a rolled-back version", extra={"from": stable.version,
                                                                          "to": record.stable_version})
        return stable.version, restored

    def _freeze_instead_of_rollback(self, claimed: ControllerRecord, reason: str) -> Outcome:
        """A claimed rollback whose flip cannot happen: journal and alert first, the record last, so a crash in
        between leaves the claim pending and the tick completes it the same way (the alert at least once)."""
        pending = claimed.pending_rollback
        assert pending is not None, "freezing a rollback that was never claimed"
        frozen = frozen_instead_of_rollback(claimed, reason)
        served = claimed.candidate.version if claimed.candidate else frozen.live_version
        self._store.append_journal(self._function, entry_id=f"freeze-{pending.incident_id}", at=pending.started_at,
                                   action="freeze", cause=pending.cause, result="automation frozen, LIVE unchanged",
                                   from_version=served,
                                   details={"reason": reason, "stable_version": claimed.stable_version})
        self._alerts.publish(self._incidents.stable_unusable(reason, served, pending.cause, pending.started_at))
        self._settle_claim(claimed, lambda current: frozen_instead_of_rollback(current, reason))
        logger.error("STABLE unusable: froze instead of rolling back", extra={"reason": reason, "live": served})
        return Outcome("frozen", reason, from_version=served, severity=1,
                       facts={"incident": pending.incident_id, "stable_version": frozen.stable_version})

    def _settle_claim(self, claimed: ControllerRecord, settled: Callable[[ControllerRecord], ControllerRecord]) -> None:
        """Write `settled(record)` over the record while its pending rollback is still `claimed`'s: the last step of
        a rollback or of the freeze that replaces it. Another invocation may have settled it first (a tick
        completing it, or the watcher it thought crashed): then there is nothing left to write."""
        pending = claimed.pending_rollback
        assert pending is not None, "settling a rollback that was never claimed"
        current = claimed
        for _ in range(MAX_DECISION_ATTEMPTS):
            if current.pending_rollback is None or current.pending_rollback.incident_id != pending.incident_id:
                return
            try:
                self._store.replace(current, settled(current))
                return
            except ConcurrentUpdate:
                current = self.current()

    # ------------------------------------------------------------------ freeze and promotion

    def freeze_on_unusable_stable(self, record: ControllerRecord, reason: str) -> Outcome | None:
        """Freeze with a severity-1 alert because STABLE cannot serve; None if frozen for that already (no flapping)."""
        if record.state is ControllerState.FROZEN and record.frozen_reason == reason:
            return None
        cause = Cause(kind="reconcile", summary=reason)
        self.journal("freeze", cause, "automation frozen", from_version=record.stable_version)
        self._alert_unusable_stable(record, reason, cause)
        self._store.replace(record, record.evolve(state=ControllerState.FROZEN, frozen_reason=reason))
        return Outcome("frozen", reason, from_version=record.stable_version, severity=1)

    def _alert_unusable_stable(self, record: ControllerRecord, reason: str, cause: Cause) -> None:
        now = to_iso(self._clock())
        self._alerts.publish(self._incidents.stable_unusable(reason, record.live_version, cause, now))
        logger.error("STABLE unusable: automation frozen", extra={"reason": reason, "live": record.live_version})

    def freeze_on_stable_failure(self, record: ControllerRecord, cause: Cause, signal: AlarmSignal | None) -> Outcome:
        """Journal, alert, then the record: a crash before the record leaves the alarm unprocessed, and its
        repeat or the tick freezes again (the alert at least once, never lost)."""
        reason = f"STABLE version {record.stable_version} failing: {cause.summary}"
        frozen = record.evolve(state=ControllerState.FROZEN, frozen_reason=reason)
        if signal is not None:
            frozen = with_watermark(frozen, signal)
        now = to_iso(self._clock())
        self.journal("freeze", cause, "automation frozen", from_version=record.stable_version, at=now)
        self._alerts.publish(self._incidents.stable_failing(record.stable_version, cause, now))
        self._store.replace(record, frozen)
        return Outcome("frozen", reason, from_version=record.stable_version, severity=1)

    def _point_stable_at(self, version: str, record: ControllerRecord) -> AliasState:
        """STABLE to the candidate `version`, guarded by the revision the record knows. A newer revision of STABLE
        on the same version (an earlier attempt, a rollback taking it off a crashed promotion) is no reason to
        stop; STABLE on another version is someone else's change, which the tick follows first."""
        try:
            return self._aliases.point(self._settings.stable_alias, version, revision_id=record.stable_revision_id)
        except AliasChanged:
            current = self.read_alias(self._settings.stable_alias)
            if current.version not in (record.stable_version, version):
                raise
            return self._aliases.point(self._settings.stable_alias, version, revision_id=current.revision_id)

    def _point_live_off_canary(self, version: str, revision: str | None) -> AliasState:
        """LIVE all on `version`, once STABLE is on it: whatever moved LIVE meanwhile (a pipeline, an operator),
        STABLE has moved already, so LIVE follows it rather than leave the promotion half done."""
        for _ in range(MAX_DECISION_ATTEMPTS):
            try:
                return self._aliases.point(self._settings.live_alias, version, revision_id=revision)
            except AliasChanged:
                revision = self.read_alias(self._settings.live_alias).revision_id
        raise ConcurrentUpdate("LIVE kept changing while promoting")

    def promote(self, record: ControllerRecord, cause: Cause, baseline_ms: float | None) -> Outcome:
        """STABLE to the candidate, then LIVE off its canary weights; the record last, so a crash in
        between shows up in the next tick as STABLE on the candidate, which it finishes."""
        candidate = record.candidate
        assert candidate is not None, "promoting without a candidate"
        if not candidate.promoting:
            # Marked first: a rollback claimed after this sees it and takes STABLE back off the candidate if the
            # promotion crashes after moving it; a rollback claimed before makes this write fail (generation).
            candidate = replace(candidate, promoting=True)
            record = self._store.replace(record, record.evolve(candidate=candidate))
        stable = self._point_stable_at(candidate.version, record)
        live_revision = record.live_revision_id
        if candidate.weight is not None:
            live_revision = self._point_live_off_canary(candidate.version, live_revision).revision_id
        self.journal("promote", cause, "STABLE is the candidate", from_version=record.stable_version,
                     to_version=candidate.version, details={"stable_p99_ms": baseline_ms})
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
        return Outcome("promoted", f"STABLE moved from version {record.stable_version} to {candidate.version}",
                       from_version=record.stable_version, to_version=candidate.version,
                       facts={"stable_p99_ms": baseline_ms})
