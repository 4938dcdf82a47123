"""Two-step destructive actions: a plan first, then `"confirm": "<plan id>"` applies exactly that plan.

A plan is stored with the request that made it and a fingerprint of the world it was made against.
A confirmation must repeat the same request; it is refused if the plan is unknown or expired, was
already applied, or the world changed since (the fingerprint no longer matches). A plan applies at
most once: the claim is a conditional write. Long applications record their progress on the plan
and continue in another invocation with `"resume": "<plan id>"`. An applied plan's journal entry is timed by
the moment its result was recorded, so a resumption can append it again, once, if the invocation that recorded
the result died before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.store import ControllerStateStore


@dataclass(frozen=True)
class StoredPlan:
    plan_id: str
    kind: str
    request: dict[str, Any]
    plan: dict[str, Any]
    expires_at: int
    applied_at: str | None = None
    applied_by: str | None = None
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    finished_at: str | None = None  # when the result was recorded: the time of the plan's journal entry


class PlanBook:
    def __init__(self, store: ControllerStateStore, function_name: str, ttl_seconds: int,
                 clock: Clock = utc_now) -> None:
        self._store = store
        self._function = function_name
        self._ttl = ttl_seconds
        self._clock = clock

    def save(self, plan_id: str, kind: str, request: dict[str, Any], plan: dict[str, Any]) -> int:
        expires_at = int(self._clock().timestamp()) + self._ttl
        # Stored as JSON text: a DynamoDB map would drop nulls and turn numbers into decimals.
        self._store.put_plan(self._function, plan_id,
                             {"kind": kind, "request": json.dumps(request), "plan": json.dumps(plan)}, expires_at)
        return expires_at

    def load(self, plan_id: str, kind: str, request: dict[str, Any] | None) -> StoredPlan:
        """The stored plan a confirmation (request given) or a resumption (None) names; refused clearly
        if unknown, expired, of another action, or made from another request."""
        item = self._store.get_plan(self._function, plan_id)
        if item is None:
            raise InvalidRequest(f"no plan {plan_id!r}: plan first (run the same request without confirm)")
        decoded = {name: json.loads(item[name])
                   for name in ("request", "plan", "progress", "result", "finished_at") if name in item}
        stored = StoredPlan(plan_id=plan_id, kind=item["kind"], expires_at=int(item["expires_at"]),
                            applied_at=item.get("applied_at"), applied_by=item.get("applied_by"), **decoded)
        if stored.kind != kind:
            raise InvalidRequest(f"plan {plan_id} is a {stored.kind} plan, not {kind}")
        if request is not None:
            if stored.applied_at is None and stored.expires_at < self._clock().timestamp():
                expired = to_iso(datetime.fromtimestamp(stored.expires_at, UTC))
                raise InvalidRequest(f"plan {plan_id} expired at {expired}: plan again")
            if request != stored.request:
                differing = sorted(key for key in set(request) | set(stored.request)
                                   if request.get(key) != stored.request.get(key))
                raise InvalidRequest(f"confirm {plan_id} does not match the current plan: {', '.join(differing)} "
                                     "differ; confirm the same request that made the plan")
        return stored

    def claim(self, plan_id: str, requested_by: str) -> bool:
        return self._store.claim_plan(self._function, plan_id, to_iso(self._clock()), requested_by)

    def record(self, plan_id: str, **fields: Any) -> None:
        self._store.update_plan(self._function, plan_id, **{name: json.dumps(value) for name, value in fields.items()})

    def finish(self, plan_id: str, progress: dict[str, Any], result: dict[str, Any]) -> str:
        """Record an applied plan's result; returns the time recorded, which its journal entry is appended at."""
        finished_at = to_iso(self._clock())
        self.record(plan_id, progress=progress, result=result, finished_at=finished_at)
        return finished_at


# The fields by which a plan (or a step of one, or its progress) names a stored backup it reads: a function or stack
# backup, the snapshot a bucket restore restores, the safety snapshot that undoes it.
BACKUP_ID_FIELDS = ("backup_id", "snapshot_id", "safety_snapshot_id")


def backups_named_by_pending_plans(store: ControllerStateStore, function_name: str, now: datetime) -> frozenset[str]:
    """The ids of the backups that a plan which may still be confirmed (not expired) or is being applied (claimed,
    no result yet; a drill run is kept as a plan too) names: retention keeps them, so that a plan never finds its
    backup gone."""
    named: set[str] = set()
    for item in store.plans(function_name):
        applying = "applied_at" in item and "result" not in item and "finished_at" not in item
        if applying or ("applied_at" not in item and int(item["expires_at"]) >= now.timestamp()):
            for part in ("plan", "progress"):
                if part in item:
                    named |= _backup_ids(json.loads(item[part]))
    return frozenset(named)


def _backup_ids(document: Any) -> set[str]:
    if isinstance(document, dict):
        found = {value for name, value in document.items() if name in BACKUP_ID_FIELDS and isinstance(value, str)}
        return found.union(*(_backup_ids(value) for value in document.values()))
    if isinstance(document, list):
        return set().union(*(_backup_ids(value) for value in document))
    return set()


class TwoStepRequest(Protocol):
    """What the flow reads from the request of a destructive action (the manual events' two-step models)."""

    @property
    def confirm(self) -> str | None: ...

    @property
    def resume(self) -> str | None: ...

    @property
    def requested_by(self) -> str: ...

    @property
    def reason(self) -> str: ...

    def plan_request(self) -> dict[str, Any]:
        """What defines the plan: its parameters, not who asks, why, or the confirmation."""
        ...


class TwoStepAction(Protocol):
    """What a destructive action provides to the two-step flow."""

    kind: str

    # `Any`: each action plans from its own request model, a different subtype of TwoStepRequest.
    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(plan id, the plan document to store, a summary for the operator); changes nothing."""
        ...

    def fingerprint(self, plan: dict[str, Any]) -> str:
        """The world's current fingerprint, to compare with the one the plan was made against."""
        ...

    def planned_fingerprint(self, plan: dict[str, Any]) -> str: ...

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        """(finished, progress to keep for a resumption, result); idempotent on resumption."""
        ...


# Journals an applied plan: (action kind, plan id, the confirming request, the result, the entry's time); an entry
# of the same plan and time is appended once.
PlanJournal = Callable[[str, str, TwoStepRequest, dict[str, Any], str], None]


# A progress naming what runs the rest of a plan (a Step Functions execution, which resumes the plan when it is done):
# the flow does not continue the plan itself.
WAITING_FOR = "waiting_for"


class TwoStepFlow:
    """Plan, confirm, apply once, resume: the same for every destructive action."""

    def __init__(self, book: PlanBook, journal: PlanJournal,
                 continue_later: Callable[[dict[str, Any]], None]) -> None:
        self._book = book
        self._journal = journal
        self._continue_later = continue_later

    def run(self, action: TwoStepAction, request: TwoStepRequest, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        if request.resume:
            stored = self._book.load(request.resume, action.kind, None)
            if stored.applied_at is None:
                raise InvalidRequest(f"plan {request.resume} was never confirmed: confirm it first")
            if stored.result is not None:
                if stored.finished_at is not None:  # the invocation that recorded it may have died before its entry
                    self._journal(action.kind, stored.plan_id, request, stored.result, stored.finished_at)
                return {"status": "already_applied", "plan_id": stored.plan_id, "result": stored.result}
            return self._apply(action, stored, request, remaining_ms)
        if request.confirm is None:
            plan_id, plan, summary = action.make_plan(request)
            expires_at = self._book.save(plan_id, action.kind, request.plan_request(), plan)
            return {"status": "planned", "plan_id": plan_id,
                    "expires_at": to_iso(datetime.fromtimestamp(expires_at, UTC)),
                    "plan": summary, "to_apply": {**request.plan_request(), "confirm": plan_id}}
        stored = self._book.load(request.confirm, action.kind, request.plan_request())
        if stored.applied_at is not None:
            raise InvalidRequest(f"plan {stored.plan_id} was already confirmed at {stored.applied_at} by "
                                 f"{stored.applied_by}; resume it with \"resume\" if it did not finish")
        if action.fingerprint(stored.plan) != action.planned_fingerprint(stored.plan):
            raise InvalidRequest(f"the world changed since plan {stored.plan_id} was made: plan again")
        if not self._book.claim(stored.plan_id, request.requested_by):
            raise InvalidRequest(f"plan {stored.plan_id} is being applied by another request")
        return self._apply(action, stored, request, remaining_ms)

    def _apply(self, action: TwoStepAction, stored: StoredPlan, request: TwoStepRequest,
               remaining_ms: Callable[[], int]) -> dict[str, Any]:
        finished, progress, result = action.apply(stored.plan, stored.progress, remaining_ms, request)
        if not finished:
            self._book.record(stored.plan_id, progress=progress)
            if progress.get(WAITING_FOR):
                return {"status": "in_progress", "plan_id": stored.plan_id, "progress": progress,
                        "note": f"runs in {progress[WAITING_FOR]}, whose last step resumes this plan; resume it with "
                                "the same plan id to see how far it is"}
            self._continue_later({"action": action.kind, "resume": stored.plan_id,
                                  "requested_by": request.requested_by, "reason": request.reason})
            return {"status": "in_progress", "plan_id": stored.plan_id, "progress": progress,
                    "note": "continues in a new invocation; resume with the same plan id if it stops"}
        finished_at = self._book.finish(stored.plan_id, progress, result)
        self._journal(action.kind, stored.plan_id, request, result, finished_at)
        return {"status": "applied", "plan_id": stored.plan_id, "result": result}
