"""The pure half of a stack recovery: a stack backup translated into CreateChangeSet's parameters, the
target's fingerprint, the resource changes a change set lists, and what a validation concludes.

Nothing here calls AWS: drcore.restore.stack_recovery reads the backup and the stacks, and sends what these
functions return. NoEcho parameters never have a value in a backup (CloudFormation never returns them): a
"new" recovery must be given them, an "update" keeps the stack's current value unless one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import quote

from drcore.restore.stack_plan import PlannedParameter, ResourceChange, StackRecoveryRefused

TEMPLATE_BODY_LIMIT = 51_200  # bytes CreateChangeSet takes inline; a larger template is passed by URL
ABSENT = "absent"  # the fingerprint of a stack not created yet
# A stack that exists only to hold change sets: no resources yet.
SHELL = "REVIEW_IN_PROGRESS"


@dataclass(frozen=True)
class VerifiedStackBackup:
    """A stack backup whose files match its manifest: stack.json and the Original template."""

    backup_id: str
    document: dict[str, Any]  # stack.json
    template_file: str
    template_text: str
    template_sha256: str
    template_version_id: str | None = None  # as the backup's manifest recorded it (older manifests: none)

    def template_record(self, passed_as: str) -> dict[str, Any]:
        """How a plan or a validation names the template: its file, digest, size and how it is passed."""
        return {"file": self.template_file, "sha256": self.template_sha256,
                "bytes": len(self.template_text.encode()), "passed_as": passed_as}


def fingerprint_of(stack: dict[str, Any] | None) -> str:
    """The target's status and last change time, or "absent" for a stack not created yet (or a shell)."""
    if stack is None or stack["StackStatus"] == SHELL:
        return ABSENT
    changed_at = stack.get("LastUpdatedTime") or stack["CreationTime"]
    return f"{stack['StackStatus']}@{changed_at.astimezone(UTC).isoformat()}"  # at the precision given


def capabilities(document: dict[str, Any]) -> list[str]:
    """What the stack was granted and what its template requires."""
    return sorted(set(document["capabilities"]) | set(document["required_capabilities"]))


def planned_parameters(document: dict[str, Any], mode: str, given: dict[str, str], current: dict[str, Any] | None,
                       stack_name: str) -> tuple[list[PlannedParameter], list[dict[str, Any]]]:
    """What the plan shows of each parameter, and what CreateChangeSet gets; StackRecoveryRefused when a
    value is needed and cannot be had."""
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
            f"{stack_name} no longer has a previous value to keep; give them in parameter_values")
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


def template_url(bucket: str, region: str, key: str, version_id: str | None = None) -> str:
    """Where CloudFormation reads a template in the backup bucket: the version written, where one is named."""
    version = f"?versionId={quote(version_id)}" if version_id else ""
    return f"https://{bucket}.s3.{region}.amazonaws.com/{quote(key)}{version}"


def template_argument(backup: VerifiedStackBackup, url: str) -> tuple[dict[str, str], str]:
    """The template inline, or, over CreateChangeSet's inline limit, as `url` (its file in the backup
    bucket); and which of the two ("body" | "url")."""
    if len(backup.template_text.encode()) <= TEMPLATE_BODY_LIMIT:
        return {"TemplateBody": backup.template_text}, "body"
    return {"TemplateURL": url}, "url"


def change_set_request(*, plan_id: str, source_stack: str, target: str, mode: str, backup: VerifiedStackBackup,
                       parameters: list[dict[str, Any]], template: dict[str, str],
                       stack_role_arn: str | None) -> dict[str, Any]:
    """CreateChangeSet of a recovery: "new" creates `target`, "update" updates it, each as the backup had
    the stack (parameters, capabilities, tags, notifications, rollback configuration), run as
    `stack_role_arn`: the configured stack role, the only one the recovery function may pass, never the
    backup's (`role_notes` says what that means when they differ)."""
    document = backup.document
    request: dict[str, Any] = {
        "StackName": target,
        "ChangeSetName": f"dr-recovery-{plan_id}",
        "ChangeSetType": "CREATE" if mode == "new" else "UPDATE",
        "Description": f"DR recovery of {source_stack} from backup {backup.backup_id} ({mode})",
        "ClientToken": plan_id,
        "Parameters": parameters,
        "Capabilities": capabilities(document),
        "Tags": document["tags"],
        "NotificationARNs": document["notification_arns"],
        **template,
    }
    if stack_role_arn:
        request["RoleARN"] = stack_role_arn
    rollback = document.get("rollback_configuration") or {}
    if rollback.get("RollbackTriggers") or rollback.get("MonitoringTimeInMinutes"):
        request["RollbackConfiguration"] = rollback
    return request


def plan_notes(document: dict[str, Any], mode: str) -> list[str]:
    """What of the backup a change set cannot carry, and what happens to it instead."""
    notes = []
    if mode == "new" and (document["stack_policy"] or document["termination_protection"]):
        notes.append("the backup's stack policy and termination protection are applied once the stack is "
                     "created (a change set cannot carry them)")
    if document.get("timeout_in_minutes"):
        notes.append(f"the backup's creation timeout ({document['timeout_in_minutes']} min) cannot be set by a "
                     "change set")
    return notes


def role_notes(document: dict[str, Any], mode: str, stack_role_arn: str | None) -> list[str]:
    """What the plan says when the change set runs as another role than the backed-up stack did."""
    backed_up = document["role_arn"]
    if backed_up == stack_role_arn:
        return []
    if stack_role_arn:
        note = (f"the change set runs as {stack_role_arn} (recovery.stack_role_arn), the only role the recovery "
                f"function may pass; the backed-up stack ran as {backed_up or 'no service role'}")
    elif mode == "update":
        # CreateChangeSet without RoleARN keeps the role already associated with the stack.
        note = (f"the backed-up stack ran as {backed_up}; no stack role is configured (recovery.stack_role_arn), so "
                "CloudFormation runs the change set as the role the stack has now, or with the recovery function's "
                "own permissions if it has none")
    else:
        note = (f"the backed-up stack ran as {backed_up}; no stack role is configured (recovery.stack_role_arn), so "
                "CloudFormation creates the stack with the recovery function's own permissions, which cannot create "
                "arbitrary resources: configure the stack role to recover a stack beside the original")
    return [note]


def resource_changes(entries: list[dict[str, Any]]) -> list[ResourceChange]:
    """DescribeChangeSet's Changes (every page), the resources' ones."""
    return [ResourceChange(action=change["Action"], logical_id=change["LogicalResourceId"],
                           resource_type=change["ResourceType"], physical_id=change.get("PhysicalResourceId"),
                           replacement=change.get("Replacement"), scope=tuple(change.get("Scope", ())))
            for change in (entry["ResourceChange"] for entry in entries if entry.get("Type") == "Resource")]


def validation(backup: VerifiedStackBackup, answer: dict[str, Any], passed_as: str) -> dict[str, Any]:
    """What ValidateTemplate's `answer` says of recovering from `backup`: every declared parameter has a
    value, a default or is NoEcho (to be given), and every capability the template needs was granted."""
    document = backup.document
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
        "template": backup.template_record(passed_as),
        "template_valid": True,
        "parameters_declared": len(declared),
        "parameters_unresolved": unresolved,
        # CloudFormation never returns NoEcho values: a recovery "new" must be given them.
        "no_echo_parameters_to_supply": sorted(no_echo),
        "capabilities_missing": missing_capabilities,
        "recoverable": not unresolved and not missing_capabilities,
    }
