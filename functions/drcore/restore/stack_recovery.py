"""Recovery of the pipeline's CloudFormation stack from a stack backup (drcore.backup.stack_backup), by change set.

The runbook's manual recovery ran `create-stack <stack>-recovery` with the saved DescribeStacks output
as if it were a parameters file, CAPABILITY_IAM hard-coded, and nothing to review before it ran. Here:

**Plan.** The backup is read and checked against its manifest; its Original template, parameters,
capabilities (granted and required), tags, role, notification topics and rollback configuration go
into a CloudFormation change set, which *is* the plan: CloudFormation itself says what it would do.
Mode "new" creates the stack again beside the original as `<stack>-recovery`; mode "update" returns
the stack itself to the backup. NoEcho parameters are masked in every backup (CloudFormation never
returns them): a "new" recovery must be given their values; an "update" keeps the stack's current
value (`UsePreviousValue`) unless one is given. A change set with no changes is "nothing to change",
and is deleted at once. The plan is JSON (`to_dict`/`from_dict`) and names the change set, its
changes (action, logical id, type, replacement), the parameters (NoEcho values never), and the
target's `fingerprint`: its status and last change time, or "absent" for a stack not created yet.

**Apply.** Refused (`StackChanged`) when the target's fingerprint is no longer the plan's; otherwise
exactly the plan's change set is executed, and the stack is polled for a bounded time: a stack
operation takes minutes, so `in_progress` is a normal answer, and `status(plan)` tells later. Once a
"new" stack is created, it gets the backup's stack policy and termination protection, which a change
set cannot carry; `status` completes that too when `apply` did not wait long enough to do it.
`discard(plan)` deletes a change set that will not be executed (and the empty `-recovery` stack that
held it).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, fields
from datetime import timezone
from typing import Any, Callable
from urllib.parse import quote

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.state.backup_store import BackupStore, Component, backup_prefix, manifest_key
from drcore.core.errors import ConcurrentUpdate, DrError, InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.backup.stack_backup import FORMAT as BACKUP_FORMAT
from drcore.backup.stack_backup import STACK_DOCUMENT

logger = Logger(child=True)

PLAN_FORMAT = "stack-recovery-plan/1"
MODES = ("new", "update")
RECOVERY_SUFFIX = "-recovery"
ABSENT = "absent"
READY, NOTHING_TO_CHANGE = "ready", "nothing_to_change"
LISTED_BACKUPS = 5  # newest complete backup ids named when an id is unknown
TEMPLATE_BODY_LIMIT = 51_200  # bytes CreateChangeSet takes inline; a larger template is passed by URL
CHANGE_SET_WAIT_SECONDS = 180.0
POLL_SECONDS = 5.0
# CloudFormation's reasons for a change set with nothing in it ("The submitted information didn't
# contain changes. ..."; "No updates are to be performed." for some updates).
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# States from which CloudFormation accepts an UPDATE change set.
_UPDATABLE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                        "IMPORT_ROLLBACK_COMPLETE"})
# A stack that exists only to hold change sets: no resources yet.
_SHELL = "REVIEW_IN_PROGRESS"
# A creation that failed and was rolled back: it holds no resources and can only be deleted.
_FAILED_CREATION = "ROLLBACK_COMPLETE"
_SUCCEEDED = {"new": "CREATE_COMPLETE", "update": "UPDATE_COMPLETE"}


class StackBackupNotFound(InvalidRequest):
    """No complete backup of the stack has this id."""


class StackBackupCorrupt(DrError):
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


@dataclass(frozen=True)
class _Backup:
    backup_id: str
    document: dict[str, Any]  # stack.json
    template_file: str
    template_text: str
    template_sha256: str


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _stack_missing(error: ClientError) -> bool:
    # CloudFormation reports a missing stack as a ValidationError, whose message says so.
    return _code(error) == "ValidationError" and "does not exist" in str(error)


def _fingerprint_of(stack: dict[str, Any] | None) -> str:
    if stack is None or stack["StackStatus"] == _SHELL:
        return ABSENT
    changed_at = stack.get("LastUpdatedTime") or stack["CreationTime"]
    return f"{stack['StackStatus']}@{changed_at.astimezone(timezone.utc).isoformat()}"  # at the precision given


class StackRecovery:
    """Plans, applies and follows recoveries of `stack_name` from its backups in `store`."""

    def __init__(self, cloudformation_client: Any, store: BackupStore, stack_name: str, *, clock: Clock = utc_now,
                 wait: Callable[[float], None] = time.sleep) -> None:
        self._cloudformation = cloudformation_client
        self._store = store
        self._stack = stack_name
        self._clock = clock
        self._wait = wait

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, backup_id: str, mode: str, parameter_values: dict[str, str] | None = None) -> StackRecoveryPlan:
        if mode not in MODES:
            raise StackRecoveryRefused(f"mode {mode!r} is not one of {', '.join(MODES)}")
        backup = self._read_backup(backup_id)
        document = backup.document
        plan_id = f"sr-{secrets.token_hex(5)}"
        notes: list[str] = []
        if mode == "new":
            target = self._stack + RECOVERY_SUFFIX
            current = self._clear_new_target(target, notes)
        else:
            target = self._stack
            current = self._updatable_target(target)
        parameters, request_parameters = self._parameters(document, mode, dict(parameter_values or {}), current)
        fingerprint = _fingerprint_of(current)
        capabilities = sorted(set(document["capabilities"]) | set(document["required_capabilities"]))
        template_argument, passed_as = self._template_argument(backup)
        request: dict[str, Any] = {
            "StackName": target,
            "ChangeSetName": f"dr-recovery-{plan_id}",
            "ChangeSetType": "CREATE" if mode == "new" else "UPDATE",
            "Description": f"DR recovery of {self._stack} from backup {backup.backup_id} ({mode})",
            "ClientToken": plan_id,
            "Parameters": request_parameters,
            "Capabilities": capabilities,
            "Tags": document["tags"],
            "NotificationARNs": document["notification_arns"],
            **template_argument,
        }
        if document["role_arn"]:
            request["RoleARN"] = document["role_arn"]
        rollback = document.get("rollback_configuration") or {}
        if rollback.get("RollbackTriggers") or rollback.get("MonitoringTimeInMinutes"):
            request["RollbackConfiguration"] = rollback
        try:
            created = self._cloudformation.create_change_set(**request)
        except ClientError as error:
            if _code(error) in ("ValidationError", "InsufficientCapabilitiesException", "AlreadyExistsException"):
                raise ChangeSetFailed(f"CloudFormation refused the recovery change set for {target}: "
                                      f"{error.response['Error'].get('Message', error)}") from error
            raise
        change_set = self._await_change_set(created["Id"], target, shell_created=mode == "new" and current is None)
        status = READY
        if change_set["Status"] == "FAILED":  # nothing to change (_await_change_set raised on any other failure)
            status = NOTHING_TO_CHANGE
            self._cloudformation.delete_change_set(ChangeSetName=created["Id"])
        if mode == "new":
            if document["stack_policy"] or document["termination_protection"]:
                notes.append("the backup's stack policy and termination protection are applied once the stack is "
                             "created (a change set cannot carry them)")
        if document.get("timeout_in_minutes"):
            notes.append(f"the backup's creation timeout ({document['timeout_in_minutes']} min) cannot be set by a "
                         "change set")
        plan = StackRecoveryPlan(
            plan_id=plan_id, created_at=to_iso(self._clock()), backup_id=backup.backup_id,
            backup_captured_at=document["captured_at"], mode=mode, source_stack=self._stack, target_stack=target,
            stack_id=created["StackId"], change_set_id=created["Id"], change_set_name=request["ChangeSetName"],
            status=status, changes=tuple(self._changes(change_set)) if status == READY else (),
            parameters=tuple(parameters), capabilities=tuple(capabilities),
            tags={tag["Key"]: tag["Value"] for tag in document["tags"]}, role_arn=document["role_arn"],
            notification_arns=tuple(document["notification_arns"]),
            template={"file": backup.template_file, "sha256": backup.template_sha256,
                      "bytes": len(backup.template_text.encode()), "passed_as": passed_as},
            fingerprint=fingerprint,
            stack_policy=document["stack_policy"] if mode == "new" else None,
            termination_protection=bool(document["termination_protection"]) if mode == "new" else False,
            notes=tuple(notes),
        )
        logger.info("stack recovery planned", extra={
            "plan_id": plan_id, "backup_id": backup.backup_id, "mode": mode, "target": target, "status": status,
            "changes": len(plan.changes), "change_set_id": plan.change_set_id, "fingerprint": fingerprint})
        return plan

    def fingerprint(self, plan: StackRecoveryPlan) -> str:
        """The target's fingerprint now; differs from `plan.fingerprint` when it changed since the plan."""
        return _fingerprint_of(self._describe(plan.target_stack))

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: StackRecoveryPlan, *, max_wait_seconds: float = 300.0) -> StackRecoveryResult:
        """Execute the plan's change set, then follow the stack for up to `max_wait_seconds`.

        Called again for a plan already executed (a retried invocation), it only follows the stack.
        """
        if plan.status == NOTHING_TO_CHANGE:
            return self._result(plan, NOTHING_TO_CHANGE, None)
        change_set = self._describe_change_set(plan)
        if change_set is None:
            raise PlanNotApplicable(f"change set {plan.change_set_name} of plan {plan.plan_id} no longer exists "
                                    "(executed, discarded or expired): see the status, or plan again")
        execution = change_set["ExecutionStatus"]
        if execution == "AVAILABLE":
            current = self.fingerprint(plan)
            if current != plan.fingerprint:
                raise StackChanged(f"stack {plan.target_stack} changed since plan {plan.plan_id} "
                                   f"(then {plan.fingerprint}, now {current}): discard it and plan again")
            self._cloudformation.execute_change_set(ChangeSetName=plan.change_set_id, ClientRequestToken=plan.plan_id)
            logger.info("stack recovery executing", extra={"plan_id": plan.plan_id, "target": plan.target_stack,
                                                           "change_set_id": plan.change_set_id})
        elif not execution.startswith("EXECUTE_"):
            raise PlanNotApplicable(f"change set {plan.change_set_name} of plan {plan.plan_id} cannot be executed "
                                    f"({execution}: {change_set.get('StatusReason') or 'no reason given'}): plan again")
        return self._follow(plan, max_wait_seconds)

    def status(self, plan: StackRecoveryPlan) -> StackRecoveryResult:
        """Where the recovery stands; completes a "new" stack's policy and protection once it is created."""
        if plan.status == NOTHING_TO_CHANGE:
            return self._result(plan, NOTHING_TO_CHANGE, None)
        change_set = self._describe_change_set(plan)
        if change_set is not None and change_set["ExecutionStatus"] == "AVAILABLE":
            return self._result(plan, "planned", self._describe(plan.target_stack))
        return self._follow(plan, 0.0)

    def discard(self, plan: StackRecoveryPlan) -> bool:
        """Delete the plan's change set if it was not executed; False when there was nothing to delete."""
        change_set = self._describe_change_set(plan) if plan.status == READY else None
        if change_set is None:
            return False
        if change_set["ExecutionStatus"].startswith("EXECUTE_"):
            raise PlanNotApplicable(f"plan {plan.plan_id} was executed already ({change_set['ExecutionStatus']}); "
                                    "there is nothing to discard")
        self._cloudformation.delete_change_set(ChangeSetName=plan.change_set_id)
        if plan.mode == "new":
            self._delete_empty_shell(plan.stack_id)
        logger.info("stack recovery discarded", extra={"plan_id": plan.plan_id, "change_set_id": plan.change_set_id})
        return True

    # Rehearsal -----------------------------------------------------------------------------------

    def validate(self, backup_id: str) -> dict[str, Any]:
        """What a drill can check of a stack recovery without creating a second copy of the pipeline (its
        resources have fixed names): the backup against its manifest, its template by CloudFormation's
        ValidateTemplate, and every parameter the template declares against the values the backup holds.
        Changes nothing. Raises StackBackupNotFound/StackBackupCorrupt for an unusable backup and
        ChangeSetFailed when CloudFormation rejects the template."""
        backup = self._read_backup(backup_id)
        document = backup.document
        template_argument, passed_as = self._template_argument(backup)
        try:
            answer = self._cloudformation.validate_template(**template_argument)
        except ClientError as error:
            if _code(error) == "ValidationError":
                raise ChangeSetFailed(f"CloudFormation rejects the template of backup {backup_id} of {self._stack}: "
                                      f"{error.response['Error'].get('Message', error)}") from error
            raise
        declared = {parameter["ParameterKey"]: parameter for parameter in answer.get("Parameters", [])}
        recorded = {parameter["ParameterKey"] for parameter in document["parameters"]}
        no_echo = set(document["no_echo_parameters"])
        # A parameter with neither a recorded value nor a default could not be given at recovery time.
        unresolved = sorted(key for key, parameter in declared.items()
                            if key not in recorded and key not in no_echo and "DefaultValue" not in parameter)
        granted = set(document["capabilities"]) | set(document["required_capabilities"])
        missing_capabilities = sorted(set(answer.get("Capabilities", [])) - granted)
        return {
            "backup_id": backup.backup_id,
            "captured_at": document["captured_at"],
            "template": {"file": backup.template_file, "sha256": backup.template_sha256,
                         "bytes": len(backup.template_text.encode()), "passed_as": passed_as},
            "template_valid": True,
            "parameters_declared": len(declared),
            "parameters_unresolved": unresolved,
            # CloudFormation never returns NoEcho values: a recovery "new" must be given them.
            "no_echo_parameters_to_supply": sorted(no_echo),
            "capabilities_missing": missing_capabilities,
            "recoverable": not unresolved and not missing_capabilities,
        }

    # Backup --------------------------------------------------------------------------------------

    def _read_backup(self, backup_id: str) -> _Backup:
        try:
            manifest = self._store.get_json(manifest_key(Component.STACK, self._stack, backup_id))
        except ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):
                raise StackBackupNotFound(self._unknown_backup(backup_id)) from error
            raise
        recorded = {entry["path"]: entry["sha256"] for entry in manifest.get("files", [])}
        document = json.loads(self._verified(backup_id, STACK_DOCUMENT, recorded))
        if document.get("format") != BACKUP_FORMAT or document.get("stack_name") != self._stack:
            raise StackBackupCorrupt(f"backup {backup_id} of {self._stack} is not a format-{BACKUP_FORMAT} backup of "
                                     "this stack")
        template_file = document["template"]["original"]
        template = self._verified(backup_id, template_file, recorded)
        return _Backup(backup_id=backup_id, document=document, template_file=template_file,
                       template_text=template.decode(), template_sha256=recorded[template_file])

    def _verified(self, backup_id: str, path: str, recorded: dict[str, str]) -> bytes:
        """A file of the backup, checked against the SHA-256 its manifest recorded."""
        if path not in recorded:
            raise StackBackupCorrupt(f"backup {backup_id} of {self._stack}: its manifest does not list {path}")
        body = self._store.get_bytes(backup_prefix(Component.STACK, self._stack, backup_id) + path)
        if hashlib.sha256(body).hexdigest() != recorded[path]:
            raise StackBackupCorrupt(f"backup {backup_id} of {self._stack}: {path} does not match the SHA-256 its "
                                     "manifest recorded")
        return body

    def _unknown_backup(self, backup_id: str) -> str:
        listings = self._store.list_backups(Component.STACK, self._stack)
        complete = [listing.backup_id for listing in reversed(listings) if listing.complete][:LISTED_BACKUPS]
        incomplete = any(listing.backup_id == backup_id and not listing.complete for listing in listings)
        reason = "it is incomplete (its manifest was never written)" if incomplete else "there is no such backup"
        available = f"the newest complete ones: {', '.join(complete)}" if complete else "it has no complete backup"
        return f"backup {backup_id!r} of stack {self._stack} cannot be recovered: {reason}; {available}"

    # Target --------------------------------------------------------------------------------------

    def _describe(self, stack_name: str) -> dict[str, Any] | None:
        try:
            return self._cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        except ClientError as error:
            if _stack_missing(error):
                return None
            raise

    def _clear_new_target(self, target: str, notes: list[str]) -> dict[str, Any] | None:
        """The `-recovery` stack as a new change set may be created for it: absent, or an empty shell.

        A failed earlier recovery (rolled back, no resources) is deleted first; anything else is refused.
        """
        stack = self._describe(target)
        if stack is None or stack["StackStatus"] == _SHELL:
            return stack
        if stack["StackStatus"] != _FAILED_CREATION:
            raise StackRecoveryRefused(
                f"stack {target} already exists ({stack['StackStatus']}): a recovery beside {self._stack} creates it. "
                f"Delete it first, or recover {self._stack} in place with mode 'update'")
        reason = stack.get("StackStatusReason") or "no reason recorded"
        self._cloudformation.delete_stack(StackName=stack["StackId"])
        self._await_deleted(stack["StackId"], target)
        notes.append(f"deleted {target}, an earlier recovery whose creation failed and was rolled back "
                     f"({_FAILED_CREATION}: it held no resources): {reason}")
        logger.info("failed earlier recovery deleted", extra={"stack": target, "stack_id": stack["StackId"]})
        return None

    def _await_deleted(self, stack_id: str, target: str) -> None:
        deadline = self._clock().timestamp() + CHANGE_SET_WAIT_SECONDS
        while True:
            stack = self._describe(stack_id)  # by id, a deleted stack still answers, as DELETE_COMPLETE
            if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
                return
            if stack["StackStatus"] != "DELETE_IN_PROGRESS" or self._clock().timestamp() >= deadline:
                raise StackRecoveryRefused(f"stack {target} could not be deleted to make room for the recovery "
                                           f"({stack['StackStatus']}): delete it, then plan again")
            self._wait(POLL_SECONDS)

    def _updatable_target(self, target: str) -> dict[str, Any]:
        stack = self._describe(target)
        if stack is None:
            raise StackRecoveryRefused(f"stack {target} does not exist: recover it beside its name with mode 'new'")
        if stack["StackStatus"] not in _UPDATABLE:
            raise StackRecoveryRefused(f"stack {target} is {stack['StackStatus']} and cannot be updated now; it can "
                                       f"be from {', '.join(sorted(_UPDATABLE))}")
        return stack

    def _parameters(self, document: dict[str, Any], mode: str, given: dict[str, str],
                    current: dict[str, Any] | None) -> tuple[list[PlannedParameter], list[dict[str, Any]]]:
        """What the plan shows of each parameter, and what CreateChangeSet gets."""
        recorded = {parameter["ParameterKey"]: parameter["ParameterValue"] for parameter in document["parameters"]}
        no_echo = set(document["no_echo_parameters"])
        declared = list(recorded) + sorted(no_echo - recorded.keys())
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise StackRecoveryRefused(f"parameter_values names {', '.join(unknown)}, which the backup's template does "
                                       f"not declare; it declares: {', '.join(declared) or 'none'}")
        missing = sorted(no_echo - given.keys())
        if missing and mode == "new":
            raise StackRecoveryRefused(
                f"NoEcho parameters {', '.join(missing)} need values: a backup cannot hold them (CloudFormation "
                "never returns them); give them in parameter_values")
        current_keys = {parameter["ParameterKey"] for parameter in (current or {}).get("Parameters", [])}
        without_previous = [key for key in missing if key not in current_keys]
        if without_previous:
            raise StackRecoveryRefused(
                f"NoEcho parameters {', '.join(without_previous)} need values: the backup cannot hold them and stack "
                f"{self._stack} no longer has a previous value to keep; give them in parameter_values")
        shown: list[PlannedParameter] = []
        request: list[dict[str, Any]] = []
        for key in declared:
            secret = key in no_echo
            if key in given:
                shown.append(PlannedParameter(key, None if secret else given[key], "given", secret))
                request.append({"ParameterKey": key, "ParameterValue": given[key]})
            elif secret:
                shown.append(PlannedParameter(key, None, "previous_value", True))
                request.append({"ParameterKey": key, "UsePreviousValue": True})
            else:
                shown.append(PlannedParameter(key, recorded[key], "backup"))
                request.append({"ParameterKey": key, "ParameterValue": recorded[key]})
        return shown, request

    def _template_argument(self, backup: _Backup) -> tuple[dict[str, str], str]:
        """The template inline, or, over CreateChangeSet's inline limit, as the URL of the backup's file."""
        if len(backup.template_text.encode()) <= TEMPLATE_BODY_LIMIT:
            return {"TemplateBody": backup.template_text}, "body"
        key = backup_prefix(Component.STACK, self._stack, backup.backup_id) + backup.template_file
        region = self._store.s3.meta.region_name
        return {"TemplateURL": f"https://{self._store.bucket}.s3.{region}.amazonaws.com/{quote(key)}"}, "url"

    # Change sets ---------------------------------------------------------------------------------

    def _await_change_set(self, change_set_id: str, target: str, *, shell_created: bool) -> dict[str, Any]:
        """The change set once CloudFormation has made it: CREATE_COMPLETE, or FAILED for nothing to change.

        Any other end (or no end in time) deletes it, and the shell stack it alone held, and raises.
        """
        deadline = self._clock().timestamp() + CHANGE_SET_WAIT_SECONDS
        while True:
            change_set = self._cloudformation.describe_change_set(ChangeSetName=change_set_id)
            status, reason = change_set["Status"], change_set.get("StatusReason") or ""
            if status == "CREATE_COMPLETE" or (status == "FAILED" and any(text in reason for text in _NO_CHANGES)):
                return change_set
            if status == "FAILED" or self._clock().timestamp() >= deadline:
                self._cloudformation.delete_change_set(ChangeSetName=change_set_id)
                if shell_created:
                    self._delete_empty_shell(change_set["StackId"])
                why = reason or f"still {status} after {CHANGE_SET_WAIT_SECONDS:.0f} s"
                raise ChangeSetFailed(f"CloudFormation could not make the recovery change set for {target}: {why}")
            self._wait(POLL_SECONDS)

    def _changes(self, change_set: dict[str, Any]) -> list[ResourceChange]:
        entries = list(change_set.get("Changes", []))
        token = change_set.get("NextToken")
        while token:
            page = self._cloudformation.describe_change_set(ChangeSetName=change_set["ChangeSetId"], NextToken=token)
            entries += page.get("Changes", [])
            token = page.get("NextToken")
        return [ResourceChange(action=change["Action"], logical_id=change["LogicalResourceId"],
                               resource_type=change["ResourceType"], physical_id=change.get("PhysicalResourceId"),
                               replacement=change.get("Replacement"), scope=tuple(change.get("Scope", ())))
                for change in (entry["ResourceChange"] for entry in entries if entry.get("Type") == "Resource")]

    def _describe_change_set(self, plan: StackRecoveryPlan) -> dict[str, Any] | None:
        try:
            return self._cloudformation.describe_change_set(ChangeSetName=plan.change_set_id)
        except ClientError as error:
            if _code(error) in ("ChangeSetNotFound", "ChangeSetNotFoundException"):
                return None
            raise

    def _delete_empty_shell(self, stack_id: str) -> None:
        """Delete a stack that only held change sets, once none is left (an empty -recovery stack)."""
        stack = self._describe(stack_id)
        if stack is None or stack["StackStatus"] != _SHELL:
            return
        summaries = self._cloudformation.list_change_sets(StackName=stack_id).get("Summaries", [])
        if not any(summary["StackId"] == stack_id for summary in summaries):
            self._cloudformation.delete_stack(StackName=stack_id)

    # Following the stack -------------------------------------------------------------------------

    def _follow(self, plan: StackRecoveryPlan, max_wait_seconds: float) -> StackRecoveryResult:
        started = self._clock().timestamp()
        while True:
            stack = self._describe(plan.stack_id)
            status = stack["StackStatus"] if stack else None
            if status is None or not status.endswith("_IN_PROGRESS") or status == _SHELL:
                break
            left = max_wait_seconds - (self._clock().timestamp() - started)
            if left <= 0:
                return self._result(plan, "in_progress", stack)
            self._wait(min(POLL_SECONDS, left))
        if status != _SUCCEEDED[plan.mode]:
            logger.warning("stack recovery did not succeed", extra={"plan_id": plan.plan_id, "stack_status": status})
            return self._result(plan, "failed", stack)
        if plan.mode == "new":
            return self._finish_new(plan, stack)  # type: ignore[arg-type]
        logger.info("stack recovery complete", extra={"plan_id": plan.plan_id, "target": plan.target_stack})
        return self._result(plan, "complete", stack)

    def _finish_new(self, plan: StackRecoveryPlan, stack: dict[str, Any]) -> StackRecoveryResult:
        """Give a created stack what its change set could not: the stack policy, termination protection."""
        policy_applied = False
        if plan.stack_policy:
            body = self._cloudformation.get_stack_policy(StackName=plan.stack_id).get("StackPolicyBody")
            if not body or json.loads(body) != plan.stack_policy:
                self._cloudformation.set_stack_policy(StackName=plan.stack_id,
                                                      StackPolicyBody=json.dumps(plan.stack_policy))
            policy_applied = True
        protection = bool(stack.get("EnableTerminationProtection"))
        if plan.termination_protection and not protection:
            self._cloudformation.update_termination_protection(StackName=plan.stack_id,
                                                               EnableTerminationProtection=True)
            protection = True
        logger.info("stack recovery complete", extra={"plan_id": plan.plan_id, "target": plan.target_stack,
                                                      "stack_policy_applied": policy_applied,
                                                      "termination_protection": protection})
        return self._result(plan, "complete", stack, policy_applied, protection)

    @staticmethod
    def _result(plan: StackRecoveryPlan, status: str, stack: dict[str, Any] | None, policy_applied: bool = False,
                protection: bool | None = None) -> StackRecoveryResult:
        return StackRecoveryResult(
            plan_id=plan.plan_id, mode=plan.mode, target_stack=plan.target_stack, stack_id=plan.stack_id,
            status=status, stack_status=stack["StackStatus"] if stack else None,
            stack_status_reason=stack.get("StackStatusReason") if stack else None,
            stack_policy_applied=policy_applied, termination_protection=protection)
