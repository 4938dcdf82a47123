"""Every applied recovery ends with the post-recovery validation (DESIGN.md invariant 12).

`Validated` wraps a two-step action (restore_s3, recover_from_backup, recover_stack, comprehensive_rollback):
planning and confirming are the action's own; once its apply has finished, the validation runs against the active
region, is journaled, is alerted unless every check is ok (drcore.restore.validation), and its result is the
`validation` of the action's result. An apply still in progress is not validated: its last invocation is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from drcore.core.models import Cause
from drcore.restore.validation import UNKNOWN, PostRecoveryValidation
from drcore.state.plans import TwoStepAction

logger = Logger(child=True)


class Validated:
    def __init__(self, action: TwoStepAction, validation: PostRecoveryValidation) -> None:
        self.kind = action.kind
        self._action = action
        self._validation = validation

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        return self._action.make_plan(request)

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._action.fingerprint(plan)

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return self._action.planned_fingerprint(plan)

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        finished, done, result = self._action.apply(plan, progress, remaining_ms, request)
        if not finished:
            return finished, done, result
        cause = request.cause() if request is not None else Cause(kind="manual", summary=self.kind)
        validation = validated_after(self._validation, self.kind, str(plan.get("plan_id", "")), cause)
        return True, done, {**result, "validation": validation, "validation_status": validation["status"]}


def validated_after(validation: PostRecoveryValidation, action: str, plan_id: str, cause: Cause,
                    active_region: str | None = None) -> dict[str, Any]:
    """The validation that ends an applied recovery or region switch, as a document for its result. The action is
    applied whatever happens here, so a validation that cannot run is reported (and can be run again), not raised."""
    try:
        return validation.after_recovery(action, plan_id, cause, active_region).to_dict()
    except Exception as error:
        logger.exception("post-recovery validation could not run", extra={"action": action, "plan_id": plan_id})
        return {"ok": False, "status": UNKNOWN, "error": f"{type(error).__name__}: {error}",
                "to_retry": {"action": "validate"}}
