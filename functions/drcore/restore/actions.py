"""The destructive recovery actions, each a two-step action (drcore.state.plans) over its engine:
`restore_s3` (drcore.restore.bucket_restore), `recover_from_backup` (drcore.restore.function_restore),
`recover_stack` (drcore.restore.stack_recovery), and `comprehensive_rollback`, which chains the three."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from drcore.backup.catalog import BackupCatalog
from drcore.core.errors import InvalidRequest
from drcore.restore.bucket_plan import RestorePlan
from drcore.restore.bucket_restore import BucketRestorer
from drcore.restore.bucket_verification import VerificationAlerts
from drcore.restore.function_plan import FunctionRestorePlan
from drcore.restore.function_restore import FunctionRestorer
from drcore.restore.manual_actions import RecoverFromBackup, RecoverStack, RestoreS3
from drcore.restore.stack_plan import StackRecoveryPlan
from drcore.restore.stack_recovery import StackRecovery
from drcore.rollback.controller import AliasController
from drcore.state.backup_store import Component
from drcore.state.plans import WAITING_FOR, TwoStepAction


class S3RestoreAction:
    kind = "restore_s3"

    def __init__(self, restorer: BucketRestorer, data_bucket: str, allowed_targets: tuple[str, ...],
                 alerts: VerificationAlerts | None = None) -> None:
        self._restorer = restorer
        self._data_bucket = data_bucket
        self._allowed = (data_bucket, *allowed_targets)
        self._alerts = alerts

    def make_plan(self, request: RestoreS3) -> tuple[str, dict[str, Any], dict[str, Any]]:
        target = request.target_bucket or self._data_bucket
        if target not in self._allowed:
            raise InvalidRequest(f"target_bucket {target!r} is not allowed; allowed: {', '.join(self._allowed)}")
        plan = self._restorer.plan(source_bucket=self._data_bucket, snapshot_id=request.snapshot_id, at=request.at,
                                   prefix=request.prefix, target_bucket=target)
        summary = _without_fingerprint(plan.to_dict())
        return plan.plan_id, plan.to_dict(), summary

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._restorer.fingerprint(RestorePlan.from_dict(plan))

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return str(plan["fingerprint"])

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any = None) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        restore_plan = RestorePlan.from_dict(plan)
        done = dict(progress or {"copied": 0, "removed": 0, "bytes_copied": 0})
        step = self._restorer.apply(restore_plan, remaining_ms, safety_snapshot_id=done.get("safety_snapshot_id"),
                                    resume_request=_resuming(request))
        done.update(safety_snapshot_id=step.safety_snapshot_id, copied=done["copied"] + step.copied,
                    removed=done["removed"] + step.removed, bytes_copied=done["bytes_copied"] + step.bytes_copied)
        done.pop(WAITING_FOR, None)
        done.pop("safety_fan_out", None)  # shown while the safety snapshot's shards run only
        if step.fan_out is not None:
            done["fan_out"] = step.fan_out
        if step.safety_fan_out is not None:
            done["safety_fan_out"] = step.safety_fan_out
        if not step.finished:
            # A state machine runs the shards (the restore's, or its safety snapshot's): its last step resumes the plan
            running = (step.fan_out or step.safety_fan_out or {}).get("execution")
            if running:
                done[WAITING_FOR] = running
            return False, done, {}
        verification = step.verification
        assert verification is not None, "a finished apply carries its verification"
        if not verification.ok and self._alerts is not None:
            self._alerts.restore_failed(restore_plan, verification, step.safety_snapshot_id)
        result = {
            **done,
            "target_bucket": restore_plan.target_bucket,
            "snapshot_id": restore_plan.snapshot_id,
            "verification": verification.to_dict(),
            "undo": {"action": "restore_s3", "snapshot_id": step.safety_snapshot_id,
                     "target_bucket": restore_plan.target_bucket, "prefix": restore_plan.prefix},
        }
        return True, done, result


class FunctionRestoreAction:
    kind = "recover_from_backup"

    def __init__(self, restorer: FunctionRestorer, controller: AliasController, function_name: str) -> None:
        self._restorer = restorer
        self._controller = controller
        self._function = function_name

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        # IAM lets the recovery function create or change only the function and `<function>-<suffix>`.
        if request.target not in (None, self._function) and not request.target.startswith(f"{self._function}-"):
            raise InvalidRequest(f"target {request.target!r} must be {self._function} "
                                 f"or named {self._function}-<suffix>")
        plan = self._restorer.plan(request.backup_id, request.target)
        return plan.plan_id, plan.to_dict(), _without_fingerprint(plan.to_dict())

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._restorer.fingerprint(FunctionRestorePlan.from_dict(plan))

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return str(plan["fingerprint"])

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        restore_plan = FunctionRestorePlan.from_dict(plan)
        restored = self._restorer.apply(restore_plan)
        result = restored.to_dict()
        if restore_plan.in_place and restored.ok:
            # The restored version bakes on LIVE like any release, and STABLE stays a rollback away.
            result["live"] = self._controller.release(restored.version, request.cause()).to_dict()
        return True, {}, result


class StackRecoveryAction:
    kind = "recover_stack"

    def __init__(self, recovery: StackRecovery) -> None:
        self._recovery = recovery

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        plan = self._recovery.plan(request.backup_id, request.mode, request.parameter_values or None)
        return plan.plan_id, plan.to_dict(), _without_fingerprint(plan.to_dict())

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._recovery.fingerprint(StackRecoveryPlan.from_dict(plan))

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return str(plan["fingerprint"])

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any = None) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        stack_plan = StackRecoveryPlan.from_dict(plan)
        if progress and progress.get("executed"):
            outcome = self._recovery.status(stack_plan)
        else:
            wait = max(0.0, min(STACK_WAIT_SECONDS, remaining_ms() / 1000 - STACK_WAIT_MARGIN_SECONDS))
            outcome = self._recovery.apply(stack_plan, max_wait_seconds=wait)
        result = outcome.to_dict()
        return outcome.status != "in_progress", {"executed": True, "stack_status": outcome.stack_status}, result


class ComprehensiveRollbackAction:
    """The function (code, configuration, environment), the data and the stack, to the backups nearest
    before `at`, in that order; each step is verified before the next, and a failed one stops the rest."""

    kind = "comprehensive_rollback"

    def __init__(self, catalog: BackupCatalog, function: FunctionRestoreAction, data: S3RestoreAction,
                 stack: StackRecoveryAction) -> None:
        self._catalog = catalog
        self._steps: dict[str, TwoStepAction] = {"function": function, "data": data, "stack": stack}

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        def newest(component: Component) -> str:
            listing = self._catalog.newest_before(component, request.at)
            if listing is None:
                raise InvalidRequest(f"no complete {component.value} backup at or before {request.at.isoformat()}")
            return listing.backup_id

        common = {"requested_by": request.requested_by, "reason": request.reason}
        sub_requests = {
            "function": RecoverFromBackup(action="recover_from_backup", backup_id=newest(Component.LAMBDA), **common),
            "data": RestoreS3(action="restore_s3", at=request.at, **common),
            "stack": RecoverStack(action="recover_stack", backup_id=newest(Component.STACK), mode="update",
                                  parameter_values=request.parameter_values, **common),
        }
        plans, summaries = {}, {}
        for name, sub_request in sub_requests.items():
            _, plans[name], summaries[name] = self._steps[name].make_plan(sub_request)
        plan_id = f"cr-{secrets.token_hex(5)}"
        return plan_id, {"plan_id": plan_id, "steps": plans}, {"at": request.at.isoformat(), "steps": summaries}

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return json.dumps({name: self._steps[name].fingerprint(step) for name, step in plan["steps"].items()})

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return json.dumps({name: self._steps[name].planned_fingerprint(step) for name, step in plan["steps"].items()})

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        done = dict(progress or {"results": {}, "step_progress": {}})
        for name in ("function", "data", "stack"):
            if name in done["results"]:
                continue
            finished, step_progress, result = self._steps[name].apply(
                plan["steps"][name], done["step_progress"].get(name), remaining_ms, request)
            done["step_progress"][name] = step_progress
            done.pop(WAITING_FOR, None)
            if not finished:
                if step_progress.get(WAITING_FOR):  # the step's execution resumes this plan when it is done
                    done[WAITING_FOR] = step_progress[WAITING_FOR]
                return False, done, {}
            done["results"][name] = result
            if not _verified(name, result):
                return True, done, {"ok": False, "stopped_after": name, "steps": _report(done["results"])}
        return True, done, {"ok": True, "steps": _report(done["results"])}


STACK_WAIT_SECONDS = 300.0
STACK_WAIT_MARGIN_SECONDS = 60.0


def _resuming(request: Any) -> dict[str, Any] | None:
    """The request that resumes the plan `request` applies (this action's, or the one it is a step of), for what
    finishes it later; None when it is applied otherwise (a drill)."""
    plan_id = getattr(request, "confirm", None) or getattr(request, "resume", None)
    if plan_id is None:
        return None
    return {"action": request.action, "resume": plan_id, "requested_by": request.requested_by,
            "reason": request.reason}


def _without_fingerprint(document: dict[str, Any]) -> dict[str, Any]:
    """A plan as the operator reads it: without what only the controller compares or reads."""
    return {key: value for key, value in document.items() if key not in _PLAN_INTERNALS}


_PLAN_INTERNALS = frozenset({"fingerprint", "desired_digest", "listing_ranges", "format"})


def _verified(step: str, result: dict[str, Any]) -> bool:
    if step == "function":
        return bool(result.get("ok"))
    if step == "data":
        return bool(result["verification"]["ok"])
    return result.get("status") in ("complete", "nothing_to_change")


def _report(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One report: each step's verification, the environment apart from the rest of the function."""
    report: dict[str, Any] = {}
    if "function" in results:
        function = results["function"]
        report["function"] = {"ok": function.get("ok"), "version": function.get("version"),
                              "code_sha256_verified": function.get("code_sha256_verified")}
        report["environment"] = {"ok": function.get("environment_restored")}
    if "data" in results:
        data = results["data"]
        report["data"] = {"ok": data["verification"]["ok"], "safety_snapshot_id": data["safety_snapshot_id"],
                          "objects_matching": data["verification"]["objects_matching"],
                          "objects_expected": data["verification"]["objects_expected"]}
    if "stack" in results:
        report["stack"] = {"ok": _verified("stack", results["stack"]), "status": results["stack"].get("status")}
    return report
