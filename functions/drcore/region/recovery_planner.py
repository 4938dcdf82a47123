"""The region watcher's way to a failover: it asks the recovery function of its region, as an operator would, so the
plan it alerts is the one an operator reads, made and applied by the same code under the same role, and the
watcher's own role needs nothing but the permission to invoke that function.

A refusal (`{"ok": false, "error": ...}`) is an answer, not an error: the watcher alerts it. A function error or an
invoke that fails raises, so the tick fails and the next one asks again.
"""

from __future__ import annotations

import json
from typing import Any

from drcore.region.region_watch import FailoverAnswer

REQUESTED_BY = "region-watcher"


class RecoveryFunctionError(Exception):
    """The recovery function failed rather than answered (an unhandled error, a timeout)."""


class RecoveryFunctionPlanner:
    def __init__(self, lambda_client: Any, recovery_function: str) -> None:
        self._lambda = lambda_client
        self._function = recovery_function

    def plan(self, reason: str) -> FailoverAnswer:
        answer = self._ask({"action": "failover", "requested_by": REQUESTED_BY, "reason": reason})
        if not answer.get("ok"):
            return FailoverAnswer(None, str(answer.get("error", "refused without a reason")), {})
        result = answer.get("result") or {}
        plan_id = result.get("plan_id")
        if result.get("status") != "planned" or not isinstance(plan_id, str):
            # A failover that needs no plan (this region is active already) answers so: nothing to raise.
            return FailoverAnswer(None, f"no failover plan: {json.dumps(result)[:500]}", result)
        return FailoverAnswer(plan_id, None, result)

    def confirm(self, plan_id: str, reason: str) -> FailoverAnswer:
        answer = self._ask({"action": "failover", "confirm": plan_id, "requested_by": REQUESTED_BY,
                            "reason": reason})
        if not answer.get("ok"):
            return FailoverAnswer(None, str(answer.get("error", "refused without a reason")), {})
        return FailoverAnswer(plan_id, None, answer.get("result") or {})

    def _ask(self, event: dict[str, Any]) -> dict[str, Any]:
        response = self._lambda.invoke(FunctionName=self._function, InvocationType="RequestResponse",
                                       Payload=json.dumps(event).encode())
        payload = response["Payload"].read()
        if response.get("FunctionError"):
            raise RecoveryFunctionError(f"{self._function} failed ({response['FunctionError']}): "
                                        f"{payload[:500]!r}")
        answer = json.loads(payload)
        if not isinstance(answer, dict):
            raise RecoveryFunctionError(f"{self._function} answered {payload[:200]!r}, not an object")
        return answer
