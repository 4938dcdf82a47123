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

**Roles and deletions.** A change set runs as the configured stack role (the only one the recovery role
may pass), or as none; never as the backup's, which the plan notes. The only stack deleted is the
`<stack>-recovery` copy, and only while it holds no resources, as the role's DeleteStack grant allows.

This module reads and sends; the change set's parameters are worked out, without AWS, in
drcore.restore.stack_requests, and the plan and result types are in drcore.restore.stack_plan.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import CLOUDFORMATION_REFUSED, error_code
from drcore.aws.stacks import describe_change_set, describe_stack
from drcore.backup.stack_backup import FORMAT as BACKUP_FORMAT
from drcore.backup.stack_backup import STACK_DOCUMENT
from drcore.core.models import Clock, to_iso, utc_now
from drcore.restore.stack_plan import (
    MODES,
    NOTHING_TO_CHANGE,
    READY,
    RECOVERY_SUFFIX,
    ChangeSetFailed,
    PlanNotApplicable,
    ResourceChange,
    StackBackupCorrupt,
    StackBackupNotFound,
    StackChanged,
    StackRecoveryPlan,
    StackRecoveryRefused,
    StackRecoveryResult,
)
from drcore.restore.stack_requests import (
    SHELL,
    VerifiedStackBackup,
    change_set_request,
    fingerprint_of,
    plan_notes,
    planned_parameters,
    resource_changes,
    role_notes,
    template_argument,
    template_url,
    validation,
)
from drcore.state.backup_files import BACKUP_ID_EXAMPLE, INCOMPLETE, MALFORMED, BackupNotFound, BackupReader
from drcore.state.backup_store import BackupStore, Component, backup_prefix

logger = Logger(child=True)

CHANGE_SET_WAIT_SECONDS = 180.0
POLL_SECONDS = 5.0
# CloudFormation's reasons for a change set with nothing in it ("The submitted information didn't
# contain changes. ..."; "No updates are to be performed." for some updates).
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# Change set statuses CloudFormation is done with.
_CHANGE_SET_MADE = frozenset({"CREATE_COMPLETE", "FAILED"})
# States from which CloudFormation accepts an UPDATE change set.
_UPDATABLE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                        "IMPORT_ROLLBACK_COMPLETE"})
# A creation that failed and was rolled back: it holds no resources and can only be deleted.
_FAILED_CREATION = "ROLLBACK_COMPLETE"
_SUCCEEDED = {"new": "CREATE_COMPLETE", "update": "UPDATE_COMPLETE"}

T = TypeVar("T")


class StackRecovery:
    """Plans, applies and follows recoveries of `stack_name` from its backups in `store`."""

    def __init__(self, cloudformation_client: Any, store: BackupStore, stack_name: str, *,
                 stack_role_arn: str | None = None, clock: Clock = utc_now,
                 wait: Callable[[float], None] = time.sleep) -> None:
        self._cloudformation = cloudformation_client
        self._store = store
        self._stack = stack_name
        self._recovery_stack = stack_name + RECOVERY_SUFFIX
        self._stack_role_arn = stack_role_arn
        self._clock = clock
        self._wait = wait
        self._backups = BackupReader(store, Component.STACK, stack_name, corrupt=StackBackupCorrupt)

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, backup_id: str, mode: str, parameter_values: dict[str, str] | None = None) -> StackRecoveryPlan:
        if mode not in MODES:
            raise StackRecoveryRefused(f"mode {mode!r} is not one of {', '.join(MODES)}")
        backup = self._read_backup(backup_id)
        document = backup.document
        plan_id = f"sr-{secrets.token_hex(5)}"
        notes: list[str] = []
        if mode == "new":
            target = self._recovery_stack
            current = self._clear_new_target(target, notes)
        else:
            target = self._stack
            current = self._updatable_target(target)
        parameters, request_parameters = planned_parameters(document, mode, dict(parameter_values or {}), current,
                                                            self._stack)
        fingerprint = fingerprint_of(current)
        template, passed_as = self._template_argument(backup)
        request = change_set_request(plan_id=plan_id, source_stack=self._stack, target=target, mode=mode,
                                     backup=backup, parameters=request_parameters, template=template,
                                     stack_role_arn=self._stack_role_arn)
        try:
            created = self._cloudformation.create_change_set(**request)
        except ClientError as error:
            if error_code(error) in CLOUDFORMATION_REFUSED:
                raise ChangeSetFailed(f"CloudFormation refused the recovery change set for {target}: "
                                      f"{error.response['Error'].get('Message', error)}") from error
            raise
        change_set = self._await_change_set(created["Id"], target, shell_created=mode == "new" and current is None)
        status = READY
        if change_set["Status"] == "FAILED":  # nothing to change (_await_change_set raised on any other failure)
            status = NOTHING_TO_CHANGE
            self._cloudformation.delete_change_set(ChangeSetName=created["Id"])
        plan = StackRecoveryPlan(
            plan_id=plan_id, created_at=to_iso(self._clock()), backup_id=backup.backup_id,
            backup_captured_at=document["captured_at"], mode=mode, source_stack=self._stack, target_stack=target,
            stack_id=created["StackId"], change_set_id=created["Id"], change_set_name=request["ChangeSetName"],
            status=status, changes=tuple(self._changes(change_set)) if status == READY else (),
            parameters=tuple(parameters), capabilities=tuple(request["Capabilities"]),
            tags={tag["Key"]: tag["Value"] for tag in document["tags"]}, role_arn=self._stack_role_arn,
            notification_arns=tuple(document["notification_arns"]), template=backup.template_record(passed_as),
            fingerprint=fingerprint,
            stack_policy=document["stack_policy"] if mode == "new" else None,
            termination_protection=bool(document["termination_protection"]) if mode == "new" else False,
            notes=tuple(notes + plan_notes(document, mode) + role_notes(document, mode, self._stack_role_arn)),
        )
        logger.info("stack recovery planned", extra={
            "plan_id": plan_id, "backup_id": backup.backup_id, "mode": mode, "target": target, "status": status,
            "changes": len(plan.changes), "change_set_id": plan.change_set_id, "fingerprint": fingerprint})
        return plan

    def fingerprint(self, plan: StackRecoveryPlan) -> str:
        """The target's fingerprint now; differs from `plan.fingerprint` when it changed since the plan."""
        return fingerprint_of(describe_stack(self._cloudformation, plan.target_stack))

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: StackRecoveryPlan, *, max_wait_seconds: float = 300.0) -> StackRecoveryResult:
        """Execute the plan's change set, then follow the stack for up to `max_wait_seconds`.

        Called again for a plan already executed (a retried invocation), it only follows the stack.
        """
        if plan.status == NOTHING_TO_CHANGE:
            return self._result(plan, NOTHING_TO_CHANGE, None)
        change_set = describe_change_set(self._cloudformation, plan.change_set_id)
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
        change_set = describe_change_set(self._cloudformation, plan.change_set_id)
        if change_set is not None and change_set["ExecutionStatus"] == "AVAILABLE":
            return self._result(plan, "planned", describe_stack(self._cloudformation, plan.target_stack))
        return self._follow(plan, 0.0)

    def discard(self, plan: StackRecoveryPlan) -> bool:
        """Delete the plan's change set if it was not executed; False when there was nothing to delete."""
        change_set = describe_change_set(self._cloudformation, plan.change_set_id) if plan.status == READY else None
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
        template, passed_as = self._template_argument(backup)
        try:
            answer = self._cloudformation.validate_template(**template)
        except ClientError as error:
            if error_code(error) in CLOUDFORMATION_REFUSED:
                raise ChangeSetFailed(f"CloudFormation rejects the template of backup {backup_id} of {self._stack}: "
                                      f"{error.response['Error'].get('Message', error)}") from error
            raise
        return validation(backup, answer, passed_as)

    # Backup --------------------------------------------------------------------------------------

    def _read_backup(self, backup_id: str) -> VerifiedStackBackup:
        try:
            stored = self._backups.open(backup_id)
        except BackupNotFound as missing:
            raise StackBackupNotFound(self._unknown(missing)) from missing
        document = json.loads(self._backups.read(stored, STACK_DOCUMENT))
        if document.get("format") != BACKUP_FORMAT or document.get("stack_name") != self._stack:
            raise StackBackupCorrupt(f"backup {backup_id} of {self._stack} is not a format-{BACKUP_FORMAT} backup of "
                                     "this stack")
        template_file = document["template"]["original"]
        template = self._backups.read(stored, template_file)
        return VerifiedStackBackup(backup_id, document, template_file, template.decode(),
                                   hashlib.sha256(template).hexdigest(),
                                   template_version_id=(stored.listed(template_file) or {}).get("version_id"))

    def _unknown(self, missing: BackupNotFound) -> str:
        reason = {MALFORMED: f"it is not a backup id (like {BACKUP_ID_EXAMPLE})",
                  INCOMPLETE: "it is incomplete (its manifest was never written)"}.get(missing.reason,
                                                                                        "there is no such backup")
        available = (f"the newest complete ones: {', '.join(missing.newest_complete)}" if missing.newest_complete
                     else "it has no complete backup")
        return f"backup {missing.backup_id!r} of stack {self._stack} cannot be recovered: {reason}; {available}"

    def _template_argument(self, backup: VerifiedStackBackup) -> tuple[dict[str, str], str]:
        key = backup_prefix(Component.STACK, self._stack, backup.backup_id) + backup.template_file
        return template_argument(backup, template_url(self._store.bucket, self._store.s3.meta.region_name, key,
                                                      backup.template_version_id))

    # Target --------------------------------------------------------------------------------------

    def _clear_new_target(self, target: str, notes: list[str]) -> dict[str, Any] | None:
        """The `-recovery` stack as a new change set may be created for it: absent, or an empty shell.

        A failed earlier recovery (rolled back, no resources) is deleted first; anything else is refused.
        """
        stack = describe_stack(self._cloudformation, target)
        if stack is None or stack["StackStatus"] == SHELL:
            return stack
        if stack["StackStatus"] != _FAILED_CREATION:
            raise StackRecoveryRefused(
                f"stack {target} already exists ({stack['StackStatus']}): a recovery beside {self._stack} creates it. "
                f"Delete it first, or recover {self._stack} in place with mode 'update'")
        reason = stack.get("StackStatusReason") or "no reason recorded"
        stack_id = stack["StackId"]
        self._cloudformation.delete_stack(StackName=stack_id)
        # By id, a deleted stack still answers, as DELETE_COMPLETE.
        after, ended = self._poll(lambda: describe_stack(self._cloudformation, stack_id),
                                  lambda now: now is None or now["StackStatus"] != "DELETE_IN_PROGRESS",
                                  CHANGE_SET_WAIT_SECONDS)
        if after is not None and (not ended or after["StackStatus"] != "DELETE_COMPLETE"):
            raise StackRecoveryRefused(f"stack {target} could not be deleted to make room for the recovery "
                                       f"({after['StackStatus']}): delete it, then plan again")
        notes.append(f"deleted {target}, an earlier recovery whose creation failed and was rolled back "
                     f"({_FAILED_CREATION}: it held no resources): {reason}")
        logger.info("failed earlier recovery deleted", extra={"stack": target, "stack_id": stack_id})
        return None

    def _updatable_target(self, target: str) -> dict[str, Any]:
        stack = describe_stack(self._cloudformation, target)
        if stack is None:
            raise StackRecoveryRefused(f"stack {target} does not exist: recover it beside its name with mode 'new'")
        if stack["StackStatus"] not in _UPDATABLE:
            raise StackRecoveryRefused(f"stack {target} is {stack['StackStatus']} and cannot be updated now; it can "
                                       f"be from {', '.join(sorted(_UPDATABLE))}")
        return stack

    # Change sets ---------------------------------------------------------------------------------

    def _await_change_set(self, change_set_id: str, target: str, *, shell_created: bool) -> dict[str, Any]:
        """The change set once CloudFormation has made it: CREATE_COMPLETE, or FAILED for nothing to change.

        Any other end (or no end in time) deletes it, and the shell stack it alone held, and raises.
        """
        change_set: dict[str, Any]
        change_set, _ = self._poll(
            lambda: self._cloudformation.describe_change_set(ChangeSetName=change_set_id),
            lambda answer: answer["Status"] in _CHANGE_SET_MADE, CHANGE_SET_WAIT_SECONDS)
        status, reason = change_set["Status"], change_set.get("StatusReason") or ""
        if status == "CREATE_COMPLETE" or (status == "FAILED" and any(text in reason for text in _NO_CHANGES)):
            return change_set
        self._cloudformation.delete_change_set(ChangeSetName=change_set_id)
        if shell_created:
            self._delete_empty_shell(change_set["StackId"])
        why = reason or f"still {status} after {CHANGE_SET_WAIT_SECONDS:.0f} s"
        raise ChangeSetFailed(f"CloudFormation could not make the recovery change set for {target}: {why}")

    def _changes(self, change_set: dict[str, Any]) -> list[ResourceChange]:
        entries = list(change_set.get("Changes", []))
        token = change_set.get("NextToken")
        while token:
            page = self._cloudformation.describe_change_set(ChangeSetName=change_set["ChangeSetId"], NextToken=token)
            entries += page.get("Changes", [])
            token = page.get("NextToken")
        return resource_changes(entries)

    def _delete_empty_shell(self, stack_id: str) -> None:
        """Delete the -recovery stack while it only held change sets, once none is left."""
        stack = describe_stack(self._cloudformation, stack_id)
        if stack is None or stack["StackStatus"] != SHELL:
            return
        if stack["StackName"] != self._recovery_stack:  # a plan names its stack by id: never delete another
            logger.warning("not deleting a stack a recovery did not create", extra={"stack_id": stack_id})
            return
        summaries = self._cloudformation.list_change_sets(StackName=stack_id).get("Summaries", [])
        if not any(summary["StackId"] == stack_id for summary in summaries):
            self._cloudformation.delete_stack(StackName=stack_id)

    # Following the stack -------------------------------------------------------------------------

    def _poll(self, read: Callable[[], T], done: Callable[[T], bool], max_wait_seconds: float) -> tuple[T, bool]:
        """`read()` every POLL_SECONDS until `done` with its answer, for up to `max_wait_seconds`: a stack
        operation takes minutes. The last answer, and whether it was done."""
        deadline = self._clock().timestamp() + max_wait_seconds
        while True:
            answer = read()
            if done(answer):
                return answer, True
            left = deadline - self._clock().timestamp()
            if left <= 0:
                return answer, False
            self._wait(min(POLL_SECONDS, left))

    def _follow(self, plan: StackRecoveryPlan, max_wait_seconds: float) -> StackRecoveryResult:
        stack, settled = self._poll(lambda: describe_stack(self._cloudformation, plan.stack_id),
                                    lambda now: now is None or not now["StackStatus"].endswith("_IN_PROGRESS")
                                    or now["StackStatus"] == SHELL, max_wait_seconds)
        if not settled:
            return self._result(plan, "in_progress", stack)
        status = stack["StackStatus"] if stack else None
        if stack is None or status != _SUCCEEDED[plan.mode]:
            logger.warning("stack recovery did not succeed", extra={"plan_id": plan.plan_id, "stack_status": status})
            return self._result(plan, "failed", stack)
        if plan.mode == "new":
            return self._finish_new(plan, stack)
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
