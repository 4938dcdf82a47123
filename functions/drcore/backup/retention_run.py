"""One run of the retention function: what asks for it, what it does, and what it records.

The retention function runs on its own schedule, under its own role: the only role of the stack that may
place delete markers in the backup bucket (stacks/constructs/retention.py). A run prunes the data
bucket's snapshots by the retention policy (drcore.backup.retention), then keeps everything the snapshots
that stay need under Object Lock past the horizon (drcore.backup.lock_extension), and journals what it
removed, what Object Lock kept and what it extended. Runs never overlap: the function's reserved
concurrency is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drcore.backup.lock_extension import KeptObjects, LockExtender
from drcore.backup.retention import prune
from drcore.core.config import RetentionPolicy
from drcore.core.errors import InvalidRequest
from drcore.core.models import Cause, Clock, to_iso, utc_now
from drcore.core.untrusted_input import describe_problems
from drcore.state.backup_store import BackupStore
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
    """Prunes `data_bucket`'s snapshots in `store` by `policy`, extends the locks of what stays with `locks`, and
    journals each run under `function_name`."""

    def __init__(self, store: BackupStore, data_bucket: str, policy: RetentionPolicy, locks: LockExtender,
                 journal: ControllerStateStore, function_name: str, clock: Clock = utc_now) -> None:
        self._store = store
        self._data_bucket = data_bucket
        self._policy = policy
        self._locks = locks
        self._journal = journal
        self._function = function_name
        self._clock = clock

    def run(self, request: RetentionRequest, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        started = self._clock()
        kept = KeptObjects()
        pruned = prune(self._store, self._data_bucket, self._policy, started, kept)
        locks = self._locks.extend(kept.objects.values(), self._clock(), remaining_ms)
        result: dict[str, Any] = {"pruned": asdict(pruned), "locks": asdict(locks)}
        at = to_iso(self._clock())
        # A needed object that is gone is a kept backup that no longer restores in full: the journal says so.
        outcome = "complete, objects kept backups need are missing" if locks.missing else "complete"
        self._journal.append_journal(
            self._function, entry_id=f"retention-{to_iso(started)}", at=at, action="retention",
            cause=request.cause(), result=outcome, details=_figures(result))
        logger.info("retention run", extra={"removed": len(pruned.removed), "locked": len(pruned.locked),
                                            "content_removed": pruned.content_removed,
                                            "locks_extended": locks.extended, "needed_missing": len(locks.missing)})
        return result


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps counts and short facts, not whole listings."""
    return {part: {name: len(value) if isinstance(value, (list, tuple, dict)) else value
                   for name, value in figures.items()}
            for part, figures in result.items()}
