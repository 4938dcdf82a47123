"""What the alias controller decides, apart from the AWS calls that carry it out.

Pure functions of the controller record, the aliases as read and the alarm states: no clients, no clock
(the caller passes the time), so each rule can be read and tested on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from drcore.aws.alarms import ALARM, OK
from drcore.aws.aliases import LATEST
from drcore.core.models import (
    AlarmSignal,
    AliasState,
    Candidate,
    Cause,
    ControllerRecord,
    ControllerState,
    parse_time,
    to_iso,
)


def served_version(alias: AliasState) -> str:
    """The version a release put on LIVE: the canary's when LIVE is weighted, else its primary."""
    return next(iter(alias.weights)) if alias.weights else alias.version


def canary_weight(alias: AliasState) -> float | None:
    return next(iter(alias.weights.values())) if alias.weights else None


def version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)


def alarm_cause(signal: AlarmSignal) -> Cause:
    return Cause(
        kind="alarm" if signal.source != "reconcile" else "reconcile",
        summary=f"{signal.alarm_name} entered {signal.state}: {signal.reason}".strip(": "),
        alarm_name=signal.alarm_name,
        alarm_changed_at=to_iso(signal.changed_at),
    )


def unpublished_stable(version: str) -> str | None:
    """Why STABLE cannot be on `version`, as far as its name tells: a rollback goes to a published version, never
    to $LATEST (which changes under every deployment). None when the name is a version number."""
    if version.isdigit():
        return None
    return f"STABLE is on {version}, which is not a published version: there is nothing to roll back to"


def missing_stable(version: str) -> str:
    """Why STABLE cannot be on `version`, when Lambda says that version does not exist."""
    return f"STABLE version {version} does not exist: there is nothing to roll back to"


def adopted_record(function_name: str, live: AliasState, stable: AliasState, now: str) -> ControllerRecord:
    """The first record of a function new to the controller, taking its aliases as they are."""
    served = served_version(live)
    # LIVE on a released version bakes it; LIVE on $LATEST is drift that the next tick reverts.
    baking = served != stable.version and served.isdigit()
    candidate = Candidate(version=served, since=now, weight=canary_weight(live)) if baking else None
    return ControllerRecord(
        function_name=function_name,
        state=ControllerState.BAKING if baking else ControllerState.STEADY,
        stable_version=stable.version,
        live_version=live.version if baking or served == stable.version else stable.version,
        generation=0,
        candidate=candidate,
        live_revision_id=live.revision_id,
        stable_revision_id=stable.revision_id,
    )


# ---------------------------------------------------------------------- alarm edges


def is_new(record: ControllerRecord, signal: AlarmSignal) -> bool:
    """Whether `signal` is newer than the last transition processed for its alarm (edges repeat and reorder)."""
    seen = record.alarm_watermarks.get(signal.alarm_name)
    return seen is None or seen < to_iso(signal.changed_at)


def with_watermark(record: ControllerRecord, signal: AlarmSignal) -> ControllerRecord:
    return record.evolve(alarm_watermarks={**record.alarm_watermarks, signal.alarm_name: to_iso(signal.changed_at)})


def blames_rolled_back_version(record: ControllerRecord, moment: datetime, settle_seconds: int) -> bool:
    """Alarms keep evaluating the rolled-back version's datapoints until the settle time is over."""
    if record.pending_rollback is not None:
        return True
    if record.last_rollback_at is None:
        return False
    return moment <= parse_time(record.last_rollback_at) + timedelta(seconds=settle_seconds)


def firing(alarms: dict[str, AlarmSignal]) -> list[AlarmSignal]:
    """The alarms in ALARM, the longest-firing first."""
    return sorted((signal for signal in alarms.values() if signal.state == ALARM), key=lambda s: s.changed_at)


# ---------------------------------------------------------------------- rollback bookkeeping


def rolled_back_versions(record: ControllerRecord, served: str) -> tuple[str, tuple[str, ...]]:
    """The version a rollback moved LIVE away from, and the versions it quarantines (the candidate and
    whatever LIVE actually served, never STABLE)."""
    from_version = record.candidate.version if record.candidate else served
    return from_version, tuple(sorted({from_version, served} - {record.stable_version}))


def finished_rollback(current: ControllerRecord, stable_version: str, live_revision_id: str | None,
                      quarantined: tuple[str, ...]) -> ControllerRecord:
    """The record once a rollback's bookkeeping is done: LIVE on STABLE, nothing pending, versions quarantined,
    the settle time counted from when the rollback was claimed."""
    pending = current.pending_rollback
    return current.evolve(
        state=ControllerState.FROZEN if current.state is ControllerState.FROZEN else ControllerState.ROLLED_BACK,
        candidate=None,
        pending_rollback=None,
        live_version=stable_version,
        live_revision_id=live_revision_id,
        quarantined=tuple(sorted(set(current.quarantined) | set(quarantined), key=version_order)),
        last_rollback_at=pending.started_at if pending is not None else current.last_rollback_at,
    )


def frozen_instead_of_rollback(claimed: ControllerRecord, reason: str) -> ControllerRecord:
    """The record of a claimed rollback whose flip cannot happen (STABLE cannot serve): nothing pending, LIVE as it
    was before the claim, the candidate kept (it is not rolled back, so not quarantined), automation frozen."""
    candidate = claimed.candidate
    serving = candidate.version if candidate is not None and candidate.weight is None else claimed.stable_version
    return claimed.evolve(state=ControllerState.FROZEN, frozen_reason=reason, pending_rollback=None,
                          live_version=serving)


# ---------------------------------------------------------------------- the tick


class LiveDrift(Enum):
    """How LIVE, as read, differs from what the record expects it to serve."""

    NONE = "none"
    FORBIDDEN = "forbidden"  # $LATEST or a quarantined version: revert it
    ON_STABLE = "on_stable"  # an operator put LIVE back on STABLE: the record follows
    RELEASED = "released"  # a version released outside the controller: bake it


def expected_live(record: ControllerRecord) -> str:
    return record.candidate.version if record.candidate else record.stable_version


def live_drift(record: ControllerRecord, live: AliasState, stable: AliasState) -> LiveDrift:
    served = served_version(live)
    if served == expected_live(record) and live.version == record.live_version:
        return LiveDrift.NONE
    if served == LATEST or record.is_quarantined(served):
        return LiveDrift.FORBIDDEN
    if served == stable.version and not live.weights:
        return LiveDrift.ON_STABLE
    return LiveDrift.RELEASED


def bake_blocker(record: ControllerRecord, alarms: dict[str, AlarmSignal], now: datetime, bake_seconds: int,
                 watched_alarms: tuple[str, ...]) -> str | None:
    """Why the baking candidate cannot be promoted yet, as far as the record and the alarms tell; None
    leaves only its traffic to check."""
    candidate = record.candidate
    if record.state is not ControllerState.BAKING or candidate is None:
        return f"nothing is baking (state {record.state.value})"
    if candidate.forced or record.is_quarantined(candidate.version):
        return f"version {candidate.version} is quarantined: only an operator may promote it"
    since = parse_time(candidate.since)
    if now - since < timedelta(seconds=bake_seconds):
        remaining = timedelta(seconds=bake_seconds) - (now - since)
        return f"baking for another {int(remaining.total_seconds())}s"
    missing = sorted(set(watched_alarms) - set(alarms))
    if missing:
        return f"alarm(s) not found: {', '.join(missing)}"
    not_ok = sorted(f"{name}={signal.state}" for name, signal in alarms.items() if signal.state != OK)
    if not_ok:  # INSUFFICIENT_DATA means "not yet", never "healthy"
        return f"alarms not OK: {', '.join(not_ok)}"
    return None
