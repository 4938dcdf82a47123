"""`restore_s3` as a two-step action over the bucket restorer (drcore.bucket_restore)."""

from __future__ import annotations

from typing import Any, Callable

from drcore.bucket_restore import BucketRestorer, RestorePlan
from drcore.errors import InvalidRequest
from drcore.manual_actions import RestoreS3


class S3RestoreAction:
    kind = "restore_s3"

    def __init__(self, restorer: BucketRestorer, data_bucket: str, allowed_targets: tuple[str, ...]) -> None:
        self._restorer = restorer
        self._data_bucket = data_bucket
        self._allowed = (data_bucket, *allowed_targets)

    def make_plan(self, request: RestoreS3) -> tuple[str, dict[str, Any], dict[str, Any]]:
        target = request.target_bucket or self._data_bucket
        if target not in self._allowed:
            raise InvalidRequest(f"target_bucket {target!r} is not allowed; allowed: {', '.join(self._allowed)}")
        plan = self._restorer.plan(source_bucket=self._data_bucket, snapshot_id=request.snapshot_id, at=request.at,
                                   prefix=request.prefix, target_bucket=target)
        summary = {key: value for key, value in plan.to_dict().items() if key not in ("fingerprint", "desired_digest", "format")}
        return plan.plan_id, plan.to_dict(), summary

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._restorer.fingerprint(RestorePlan.from_dict(plan))

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return plan["fingerprint"]

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None,
              remaining_ms: Callable[[], int]) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        restore_plan = RestorePlan.from_dict(plan)
        done = dict(progress or {"copied": 0, "removed": 0, "bytes_copied": 0})
        step = self._restorer.apply(restore_plan, remaining_ms, safety_snapshot_id=done.get("safety_snapshot_id"))
        done.update(safety_snapshot_id=step.safety_snapshot_id, copied=done["copied"] + step.copied,
                    removed=done["removed"] + step.removed, bytes_copied=done["bytes_copied"] + step.bytes_copied)
        if not step.finished:
            return False, done, {}
        verification = step.verification
        assert verification is not None, "a finished apply carries its verification"
        result = {
            **done,
            "target_bucket": restore_plan.target_bucket,
            "snapshot_id": restore_plan.snapshot_id,
            "verification": verification.to_dict(),
            "undo": {"action": "restore_s3", "snapshot_id": step.safety_snapshot_id,
                     "target_bucket": restore_plan.target_bucket, "prefix": restore_plan.prefix},
        }
        return True, done, result
