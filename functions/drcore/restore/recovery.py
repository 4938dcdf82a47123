"""The recovery function's actions: what an operator invokes from the console in an incident.

Each action is validated first (drcore.restore.manual_actions), journaled with who asked and why, and answers
with a structured result. The alias actions go through the same controller as the watchers, so the
invariants hold whoever acts: LIVE never on $LATEST, a quarantined version only with force and a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from drcore.aws.alarms import AlarmBoard
from drcore.core.config import ControllerSettings
from drcore.core.models import Clock, to_iso, utc_now
from drcore.restore.manual_actions import (
    Freeze,
    ListBackups,
    Promote,
    RecoverVersion,
    Release,
    Rollback,
    RunPreflight,
    Status,
    Unfreeze,
    Validate,
    VerifyBackup,
)
from drcore.rollback.controller import AliasController
from drcore.rollback.outcome import Outcome
from drcore.state.backup_store import Component
from drcore.state.plans import TwoStepAction, TwoStepFlow

if TYPE_CHECKING:  # built on first use, so the service's import does not load them
    from drcore.backup.catalog import BackupCatalog
    from drcore.restore.validation import PostRecoveryValidation


@dataclass(frozen=True)
class RecoveryEngines:
    """What the actions other than the alias actions use. `destructive`: each two-step action by its request type;
    `restores_running`: the bucket restores whose shards run."""
    catalog: BackupCatalog
    destructive: Mapping[type, TwoStepAction]
    preflight: Callable[[], dict[str, Any]]
    replication: Callable[[], dict[str, Any]]
    validation: PostRecoveryValidation
    region: Callable[[], dict[str, Any]]
    restores_running: Callable[[], list[dict[str, Any]]]


class RecoveryService:
    def __init__(self, settings: ControllerSettings, controller: AliasController, alarm_board: AlarmBoard,
                 flow: TwoStepFlow, engines: Callable[[], RecoveryEngines], clock: Clock = utc_now,
                 flows: dict[type, TwoStepFlow] | None = None) -> None:
        """`engines` builds the engines when an action first needs them: the alias actions (rollback, promote,
        release, freeze, recover_version) need none. `flows`: the destructive actions whose plans and journal live
        elsewhere than `flow`'s (the region switches', resumable from either region)."""
        self._settings = settings
        self._controller = controller
        self._alarm_board = alarm_board
        self._flow = flow
        self._build_engines = engines
        self._clock = clock
        self._flows = flows or {}

    @cached_property
    def _engines(self) -> RecoveryEngines:
        return self._build_engines()

    def perform(self, request: Any, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        # Each request type to what answers it; the models checked the request's fields already.
        handlers: dict[type, Callable[[Any], Any]] = {
            Status: lambda r: self.status(),
            ListBackups: lambda r: {"component": r.component,
                                    "backups": self._engines.catalog.describe(Component(r.component), r.limit)},
            Rollback: lambda r: self._controller.rollback(r.cause()),
            Promote: lambda r: self._controller.promote(r.cause()),
            Release: lambda r: self._controller.release(r.version, r.cause(), r.canary_percent, r.force),
            Freeze: lambda r: self._controller.freeze(r.cause()),
            Unfreeze: lambda r: self._controller.unfreeze(r.cause()),
            RecoverVersion: self.recover_version,
            VerifyBackup: self.verify_backup,
            RunPreflight: lambda r: self._engines.preflight(),
            Validate: self.validate,
        }
        if type(request) not in handlers:  # the two-step actions
            flow = self._flows.get(type(request), self._flow)
            return flow.run(self._engines.destructive[type(request)], request, remaining_ms)
        result = handlers[type(request)](request)
        return result.to_dict() if isinstance(result, Outcome) else dict(result)

    def verify_backup(self, request: VerifyBackup) -> dict[str, Any]:
        """Read-only: the backup's stored content compared with its manifest, a sample or all of it."""
        return self._engines.catalog.verify(Component(request.component), request.backup_id,
                                            None if request.full else request.sample)

    def recover_version(self, request: RecoverVersion) -> Outcome:
        """LIVE to a published version: STABLE's is a rollback; any other bakes as a candidate."""
        if request.version == self._controller.record().stable_version:
            return self._controller.rollback(request.cause())
        return self._controller.release(request.version, request.cause(), force=request.force)

    def validate(self, request: Validate) -> dict[str, Any]:
        """Read-only: the post-recovery validation of the region that processes uploads, journaled."""
        validation = self._engines.validation
        return validation.run(validation.active_region(), request.cause()).to_dict()

    def _last_drill(self) -> dict[str, Any] | None:
        entry = self._controller.last_journal_entry("drill")
        return None if entry is None else {"at": entry["at"], "result": entry["result"], **(entry.get("details") or {})}

    def status(self) -> dict[str, Any]:
        engines = self._engines
        record = self._controller.record()
        alarms = self._alarm_board.states(self._settings.watched_alarms)
        candidate = record.candidate
        return {
            "function": self._settings.protected_function,
            "at": to_iso(self._clock()),
            "state": record.state.value,
            "live_version": record.live_version,
            "stable_version": record.stable_version,
            "candidate": None if candidate is None else {
                "version": candidate.version, "since": candidate.since, "canary_weight": candidate.weight,
                "forced": candidate.forced},
            "quarantined": list(record.quarantined),
            "frozen_reason": record.frozen_reason,
            "alarms": {name: {"state": signal.state, "since": to_iso(signal.changed_at)}
                       for name, signal in alarms.items()},
            "backups": engines.catalog.latest(),
            # Bucket restores fanned out into shards, while their executions run (drcore.restore.restore_shards).
            "restores_running": engines.restores_running(),
            "last_drill": self._last_drill(),
            # Which region processes uploads, by the region record (drcore.state.region_record).
            "region": engines.region(),
            # The newest post-recovery validation (drcore.restore.validation), as journaled.
            "validation": engines.validation.latest(),
            # Replication to the secondary region (drcore.region.replication_health), read-only.
            "replication": engines.replication(),
            "recent_actions": [
                {key: entry.get(key) for key in ("at", "action", "from_version", "to_version", "result")}
                | {"cause": entry.get("cause", {}).get("summary")}
                for entry in self._controller.journal(limit=10)
            ],
        }
