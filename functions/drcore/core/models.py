"""The controller's vocabulary: its state, the record it keeps per protected function, causes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """A sortable UTC timestamp with milliseconds, the form every record and journal key uses."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    """Parse the timestamps AWS sends: ISO 8601 with 'Z', '+00:00' or CloudWatch's '+0000'."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    elif len(value) > 5 and value[-5] in "+-" and value[-4:].isdigit():
        value = value[:-2] + ":" + value[-2:]
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ControllerState(StrEnum):
    STEADY = "steady"  # LIVE serves STABLE, nothing in flight
    BAKING = "baking"  # LIVE serves a released candidate that has not proven itself yet
    ROLLED_BACK = "rolled_back"  # LIVE was just put back on STABLE; alarms are settling
    FROZEN = "frozen"  # STABLE itself failed: automation waits for an operator


@dataclass(frozen=True)
class Cause:
    """Why an action happened: an alarm transition, a reconcile finding, or an operator's request."""

    kind: str  # "alarm" | "reconcile" | "manual" | "bake"
    summary: str
    alarm_name: str | None = None
    alarm_changed_at: str | None = None
    requested_by: str | None = None
    reason: str | None = None

    def to_item(self) -> dict[str, str]:
        return {key: value for key, value in self.__dict__.items() if value is not None}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Cause:
        return cls(**item)


@dataclass(frozen=True)
class Candidate:
    """A released version serving LIVE (all of it, or `weight` of it next to STABLE) while it bakes."""

    version: str
    since: str
    weight: float | None = None  # canary share in (0, 1); None means LIVE points at it entirely
    forced: bool = False  # released although quarantined: never promoted automatically
    # Its promotion has begun (written before STABLE moves): STABLE may be on it, so a rollback that finds it
    # set reads STABLE after the flip to take it off; without it no read is needed on the rollback's path.
    promoting: bool = False


@dataclass(frozen=True)
class PendingRollback:
    """A rollback whose alias flip was claimed; cleared when its journal entry and alert are done.

    It rolls back from the record's candidate to the record's STABLE, both kept until it is finished.
    """

    incident_id: str
    started_at: str
    cause: Cause


@dataclass(frozen=True)
class ControllerRecord:
    function_name: str
    state: ControllerState
    stable_version: str
    live_version: str  # the version LIVE's primary routing points at
    generation: int
    candidate: Candidate | None = None
    quarantined: tuple[str, ...] = ()
    live_revision_id: str | None = None
    stable_revision_id: str | None = None
    pending_rollback: PendingRollback | None = None
    last_rollback_at: str | None = None
    frozen_reason: str | None = None
    stable_p99_ms: float | None = None  # duration baseline recorded when STABLE was promoted
    alarm_watermarks: dict[str, str] = field(default_factory=dict)

    def evolve(self, **changes: Any) -> ControllerRecord:
        return replace(self, **changes)

    def is_quarantined(self, version: str) -> bool:
        return version in self.quarantined


@dataclass(frozen=True)
class AliasState:
    name: str
    version: str
    weights: dict[str, float]
    revision_id: str | None


@dataclass(frozen=True)
class AlarmSignal:
    """One alarm state change, whichever way it arrived (alarm action, EventBridge, or a tick's read)."""

    alarm_name: str
    state: str  # "OK" | "ALARM" | "INSUFFICIENT_DATA"
    changed_at: datetime
    reason: str = ""
    source: str = "alarm_action"  # "alarm_action" | "eventbridge" | "reconcile"

    @property
    def incident_id(self) -> str:
        return f"{self.alarm_name}@{to_iso(self.changed_at)}"
