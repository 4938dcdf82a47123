"""One run of the retention function: what asks for it, what it does, and what it records.

The retention function runs on its own schedule, under its own role: the only role of the stack that may
place delete markers in the backup bucket (stacks/constructs/retention.py). A run prunes the data
bucket's snapshots (drcore.backup.retention) and the function, stack and logs backups
(drcore.backup.component_retention) by the one retention policy, never a backup a pending plan names, then
keeps everything the backups that stay need under Object Lock past the horizon (drcore.backup.lock_extension),
and journals what it removed, what Object Lock kept and what it extended. Runs never overlap: the function's
reserved concurrency is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drcore.backup.component_retention import PRUNED_COMPONENTS, prune_component
from drcore.backup.lock_extension import KeptObjects, LockExtender
from drcore.backup.retention import prune
from drcore.core.config import RetentionPolicy
from drcore.core.errors import InvalidRequest
from drcore.core.models import Cause, Clock, to_iso, utc_now
from drcore.core.untrusted_input import describe_problems
from drcore.state.backup_store import BackupStore, Component
from drcore.state.plans import backups_named_by_pending_plans
from drcore.state.store import ControllerStateStore

logger = Logger(child=True)


class RetentionRequest(BaseModel):
    """`{"action": "retention"}`, as the schedule sends it; an operator adds who asks and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["retention"]
    requested_by: str = Field("schedule", min_length=1, max_length=256)
    reason: str = Field("scheduled retention", min_length=1, max_length=4096)

    def cause(self) -> Cause:
        if self.requested_by == "schedule":
            return Cause(kind="schedule", summary=self.reason)
        return Cause(kind="manual", summary=self.reason, requested_by=self.requested_by, reason=self.reason)


def parse_retention_request(event: Any) -> RetentionRequest:
    """The request an event carries; InvalidRequest, naming the problem, for anything else."""
    if not isinstance(event, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(event).__name__}")
    try:
        return RetentionRequest.model_validate(event)
    except ValidationError as error:
        raise InvalidRequest(f"not a retention request ({describe_problems(error)}); expected "
                             '{"action": "retention"} with optional "requested_by" and "reason"') from error


class RetentionRun:
    """Prunes the backups of `subjects` (each component's: the data bucket for `Component.S3`, the protected
    function, its stack, its log group's subject) in `store` by `policy`, extends the locks of what stays with
    `locks`, and journals each run under `function_name`, whose pending plans name backups that stay."""

    def __init__(self, store: BackupStore, subjects: Mapping[Component, str], policy: RetentionPolicy,
                 locks: LockExtender, state: ControllerStateStore, function_name: str, clock: Clock = utc_now) -> None:
        self._store = store
        self._subjects = dict(subjects)
        self._policy = policy
        self._locks = locks
        self._state = state
        self._function = function_name
        self._clock = clock

    def run(self, request: RetentionRequest, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        started = self._clock()
        kept = KeptObjects()
        pinned = backups_named_by_pending_plans(self._state, self._function, started)
        pruned = prune(self._store, self._subjects[Component.S3], self._policy, started, kept, pinned)
        components = {component.value: asdict(prune_component(self._store, component, self._subjects[component],
                                                               self._policy, started, kept, pinned))
                      for component in PRUNED_COMPONENTS}
        locks = self._locks.extend(kept.objects.values(), self._clock(), remaining_ms)
        result: dict[str, Any] = {"pruned": asdict(pruned), "components": components, "locks": asdict(locks)}
        at = to_iso(self._clock())
        # A needed object that is gone, unreadable or left unlocked is a kept backup that may not restore in full
        # (or not for long): the journal says so.
        problems = [what for what, found in (
            ("objects kept backups need are missing", locks.missing),
            ("locks S3 refused to extend", locks.refused),
            ("kept backups whose manifest does not read back",
             any(figures["unreadable"] for figures in components.values()))) if found]
        outcome = "complete, " + "; ".join(problems) if problems else "complete"
        self._state.append_journal(
            self._function, entry_id=f"retention-{to_iso(started)}", at=at, action="retention",
            cause=request.cause(), result=outcome, details=_figures(result))
        logger.info("retention run", extra={"removed": len(pruned.removed), "locked": len(pruned.locked),
                                            "components_removed": {name: len(figures["removed"])
                                                                   for name, figures in components.items()},
                                            "content_removed": pruned.content_removed,
                                            "locks_extended": locks.extended, "needed_missing": len(locks.missing)})
        return result


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps counts and short facts, not whole listings."""
    return {part: _counted(figures) for part, figures in result.items()}


def _counted(figures: dict[str, Any]) -> dict[str, Any]:
    return {name: _counted(value) if isinstance(value, dict) and name not in _LISTINGS
            else len(value) if isinstance(value, (list, tuple, dict)) else value
            for name, value in figures.items()}


# The mappings of a result that list keys or ids (counted in the journal), as opposed to the nested figures.
_LISTINGS = frozenset({"content_refused", "unreadable", "refused"})
