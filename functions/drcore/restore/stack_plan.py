"""What a stack recovery (drcore.restore.stack_recovery) plans and reports, as JSON-ready types, and the ways
it refuses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from drcore.core.errors import ConcurrentUpdate, InvalidRequest
from drcore.state.backup_files import CorruptBackup

PLAN_FORMAT = "stack-recovery-plan/1"
MODES = ("new", "update")
RECOVERY_SUFFIX = "-recovery"
READY, NOTHING_TO_CHANGE = "ready", "nothing_to_change"


class StackBackupNotFound(InvalidRequest):
    """No complete backup of the stack has this id."""


class StackBackupCorrupt(CorruptBackup):
    """A backup's files do not match what its manifest recorded."""


class StackRecoveryRefused(InvalidRequest):
    """The recovery cannot be planned as asked (missing NoEcho values, the target's state...)."""


class ChangeSetFailed(InvalidRequest):
    """CloudFormation refused the change set (its reason is in the message); it was deleted."""


class PlanNotApplicable(InvalidRequest):
    """The plan's change set can no longer be executed: plan again."""


class StackChanged(ConcurrentUpdate):
    """The target stack changed since the plan: plan again."""


@dataclass(frozen=True)
class ResourceChange:
    action: str  # Add | Modify | Remove | Import | Dynamic
    logical_id: str
    resource_type: str
    physical_id: str | None = None
    replacement: str | None = None  # for Modify: "True" | "False" | "Conditional"
    scope: tuple[str, ...] = ()  # what of the resource changes: Properties, Metadata, Tags, ...


@dataclass(frozen=True)
class PlannedParameter:
    key: str
    value: str | None  # None for a NoEcho parameter: its value is never written down
    source: str  # "backup" | "given" | "previous_value"
    no_echo: bool = False


@dataclass(frozen=True)
class StackRecoveryPlan:
    plan_id: str
    created_at: str
    backup_id: str
    backup_captured_at: str
    mode: str  # "new" | "update"
    source_stack: str  # the stack backed up
    target_stack: str  # the stack created ("new") or updated ("update")
    stack_id: str  # the target's id (for "new", the stack CloudFormation made to hold the change set)
    change_set_id: str
    change_set_name: str
    status: str  # "ready" | "nothing_to_change" (its change set is deleted already)
    changes: tuple[ResourceChange, ...]
    parameters: tuple[PlannedParameter, ...]
    capabilities: tuple[str, ...]
    tags: dict[str, str]
    role_arn: str | None
    notification_arns: tuple[str, ...]
    template: dict[str, Any]  # {"file", "sha256", "bytes", "passed_as": "body" | "url"}
    fingerprint: str  # the target's state when planned ("absent": not created yet)
    stack_policy: dict[str, Any] | None  # what a "new" stack gets once created (None: nothing)
    termination_protection: bool  # likewise
    notes: tuple[str, ...] = ()
    format: str = PLAN_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> StackRecoveryPlan:
        if document.get("format") != PLAN_FORMAT:
            raise InvalidRequest(f"not a {PLAN_FORMAT} plan (format {document.get('format')!r})")
        values = {item.name: document[item.name] for item in fields(cls) if item.name in document}
        values["changes"] = tuple(ResourceChange(**{**change, "scope": tuple(change.get("scope", ()))})
                                  for change in values.get("changes", ()))
        values["parameters"] = tuple(PlannedParameter(**parameter) for parameter in values.get("parameters", ()))
        for name in ("capabilities", "notification_arns", "notes"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


@dataclass(frozen=True)
class StackRecoveryResult:
    plan_id: str
    mode: str
    target_stack: str
    stack_id: str
    status: str  # "complete" | "in_progress" | "failed" | "nothing_to_change" | "planned" (not executed)
    stack_status: str | None  # CloudFormation's, when the stack exists
    stack_status_reason: str | None = None
    stack_policy_applied: bool = False  # a "new" stack got the backup's stack policy
    termination_protection: bool | None = None  # the stack's, once a "new" one is complete

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
