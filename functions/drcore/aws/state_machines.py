"""The Step Functions executions that run big jobs as a Distributed Map of shards, named by the job.

An execution is named after its job (a snapshot's id), so starting it twice starts it once, and the job
finds its execution again without recording an ARN. A failed execution is redriven: Step Functions runs
again only what failed (a Distributed Map's failed child executions), from where it failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import error_code, retrying

RUNNING = "RUNNING"
# What redrive can take up again (Step Functions redrives failed, timed-out and aborted standard executions).
REDRIVABLE = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
EXECUTION_MISSING = frozenset({"ExecutionDoesNotExist"})
EXECUTION_EXISTS = frozenset({"ExecutionAlreadyExists"})


@dataclass(frozen=True)
class ExecutionState:
    arn: str
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED | PENDING_REDRIVE
    # The map's items (shards) by state, as the Map Run counts them: pending, running, succeeded, failed, total, ...
    map_items: dict[str, int] = field(default_factory=dict)
    redriven: bool = False  # this call redrove it

    def to_dict(self) -> dict[str, Any]:
        return {"execution": self.arn, "status": self.status, "map_items": self.map_items, "redriven": self.redriven}


class MapExecutions:
    """Executions of the state machine `state_machine_arn`, one per job name."""

    def __init__(self, sfn_client: Any, state_machine_arn: str) -> None:
        self._sfn = sfn_client
        self._state_machine_arn = state_machine_arn

    def arn_of(self, name: str) -> str:
        prefix, _, machine = self._state_machine_arn.partition(":stateMachine:")
        return f"{prefix}:execution:{machine}:{name}"

    def start(self, name: str, execution_input: dict[str, Any]) -> str:
        """Start the execution `name` (an execution of that name already there is the one started before)."""
        try:
            retrying(lambda: self._sfn.start_execution(stateMachineArn=self._state_machine_arn, name=name,
                                                       input=json.dumps(execution_input)))
        except ClientError as error:
            if error_code(error) not in EXECUTION_EXISTS:
                raise
        return self.arn_of(name)

    def state(self, name: str) -> ExecutionState | None:
        """The execution `name` and its shards, or None if it was never started."""
        arn = self.arn_of(name)
        try:
            described = retrying(lambda: self._sfn.describe_execution(executionArn=arn))
        except ClientError as error:
            if error_code(error) in EXECUTION_MISSING:
                return None
            raise
        return ExecutionState(arn, described["status"], self._map_items(arn))

    def running(self, most: int) -> list[tuple[str, dict[str, Any]]]:
        """The name and input of up to `most` running executions, newest first."""
        listed = retrying(lambda: self._sfn.list_executions(stateMachineArn=self._state_machine_arn,
                                                             statusFilter=RUNNING, maxResults=most))
        return [(execution["name"], self._input_of(execution["executionArn"]))
                for execution in listed.get("executions", [])[:most]]

    def _input_of(self, execution_arn: str) -> dict[str, Any]:
        described = retrying(lambda: self._sfn.describe_execution(executionArn=execution_arn))
        return dict(json.loads(described.get("input") or "{}"))

    def redrive(self, name: str) -> ExecutionState:
        """Redrive the failed execution `name`: only its failed shards run again."""
        arn = self.arn_of(name)
        retrying(lambda: self._sfn.redrive_execution(executionArn=arn))
        return ExecutionState(arn, RUNNING, self._map_items(arn), redriven=True)

    def _map_items(self, execution_arn: str) -> dict[str, int]:
        runs = retrying(lambda: self._sfn.list_map_runs(executionArn=execution_arn)).get("mapRuns", [])
        if not runs:
            return {}
        run = retrying(lambda: self._sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]))
        return {name: int(value) for name, value in run.get("itemCounts", {}).items()}
