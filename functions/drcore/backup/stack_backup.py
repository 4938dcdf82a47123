"""A backup of the pipeline's CloudFormation stack: what `recover_stack` needs to create it again.

The runbook saved `get-template` and `describe-stacks` output and recreated the stack with
CAPABILITY_IAM hard-coded; it lost the stack policy, termination protection, tags and which
parameters it could not read back (NoEcho ones come back as `****`). Under
`backups/stack/<stack>/<backup id>/` (drcore.state.backup_store), each file written once:

    template.json | template.yaml        the Original template, as CloudFormation stores it
    template-processed.json | .yaml      the Processed stage (transforms expanded), where available
    stack.json                           everything else about the stack (keys below)
    manifest.json                        last: every file with its size and SHA-256, the stack's status, times

stack.json: format, stack_name, stack_id, captured_at, description, stack_status, parameters, no_echo_parameters
(their values are masked: a restore must be given them), outputs, tags, capabilities (as granted),
required_capabilities (as the template needs), stack_policy (null: none), termination_protection,
role_arn, notification_arns, timeout_in_minutes, disable_rollback, rollback_configuration, resources
(ListStackResources' summaries), template {original, processed, format, stages_available}, and
`stack`, DescribeStacks' whole entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.stacks import describe_stack
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_files import BackupFiles
from drcore.state.backup_store import BackupStore, Component, new_backup_id

logger = Logger(child=True)

FORMAT = 1
STACK_DOCUMENT = "stack.json"
_CONTENT_TYPES = {"json": "application/json", "yaml": "application/yaml"}


class StackNotFound(InvalidRequest):
    """The stack to back up does not exist (or was deleted)."""


@dataclass(frozen=True)
class StackBackupResult:
    stack_name: str
    stack_id: str
    backup_id: str
    manifest_key: str
    stack_status: str
    template_format: str  # "json" | "yaml"
    template_stages: tuple[str, ...]  # the stages saved: "Original", and "Processed" where available
    resources: int
    bytes: int
    files: tuple[str, ...]


def _template_text(body: Any) -> tuple[str, str]:
    """The template as text and its format. botocore hands a JSON template over already parsed."""
    if not isinstance(body, str):
        return json.dumps(body, indent=1), "json"
    try:
        json.loads(body)
    except ValueError:
        return body, "yaml"
    return body, "json"


class StackBackup:
    def __init__(self, cloudformation_client: Any, store: BackupStore, stack_name: str, clock: Clock = utc_now) -> None:
        self._cloudformation = cloudformation_client
        self._store = store
        self._stack = stack_name
        self._clock = clock

    def run(self) -> StackBackupResult:
        started = self._clock()
        stack = self._describe()
        backup_id = new_backup_id(started)
        files = BackupFiles(self._store, Component.STACK, self._stack, backup_id)
        template = self._back_up_templates(files)
        summary = self._cloudformation.get_template_summary(StackName=self._stack)
        policy = self._cloudformation.get_stack_policy(StackName=self._stack).get("StackPolicyBody")
        resources = [resource for page in self._cloudformation.get_paginator("list_stack_resources").paginate(
            StackName=self._stack) for resource in page.get("StackResourceSummaries", [])]
        files.put_json(STACK_DOCUMENT, {
            "format": FORMAT,
            "stack_name": self._stack,
            "stack_id": stack["StackId"],
            "captured_at": to_iso(started),
            "description": stack.get("Description"),
            "stack_status": stack["StackStatus"],
            "parameters": stack.get("Parameters", []),
            "no_echo_parameters": [parameter["ParameterKey"] for parameter in summary.get("Parameters", [])
                                   if parameter.get("NoEcho")],
            "outputs": stack.get("Outputs", []),
            "tags": stack.get("Tags", []),
            # DescribeStacks leaves out an empty list: no key means none were granted.
            "capabilities": stack.get("Capabilities", []),
            "required_capabilities": summary.get("Capabilities", []),
            "stack_policy": json.loads(policy) if policy else None,
            "termination_protection": bool(stack.get("EnableTerminationProtection", False)),
            "role_arn": stack.get("RoleARN"),
            "notification_arns": stack.get("NotificationARNs", []),
            "timeout_in_minutes": stack.get("TimeoutInMinutes"),
            "disable_rollback": stack.get("DisableRollback"),
            "rollback_configuration": stack.get("RollbackConfiguration"),
            "resources": resources,
            "template": template,
            "stack": stack,
        })
        key = files.finish({
            "format": FORMAT,
            "component": Component.STACK.value,
            "backup_id": backup_id,
            "stack_name": self._stack,
            "stack_id": stack["StackId"],
            "stack_status": stack["StackStatus"],
            "template_format": template["format"],
            "started_at": to_iso(started),
            "completed_at": to_iso(self._clock()),
        })
        stages = ("Original", "Processed") if template["processed"] else ("Original",)
        logger.info("stack backed up", extra={"stack": self._stack, "backup_id": backup_id, "bytes": files.total_bytes,
                                              "resources": len(resources), "stages": stages})
        return StackBackupResult(
            stack_name=self._stack, stack_id=stack["StackId"], backup_id=backup_id, manifest_key=key,
            stack_status=stack["StackStatus"], template_format=template["format"], template_stages=stages,
            resources=len(resources), bytes=files.total_bytes, files=tuple(entry["path"] for entry in files.entries),
        )

    def _describe(self) -> dict[str, Any]:
        stack = describe_stack(self._cloudformation, self._stack)
        if stack is None:
            raise StackNotFound(f"stack {self._stack} does not exist")
        return stack

    def _back_up_templates(self, files: BackupFiles) -> dict[str, Any]:
        original = self._cloudformation.get_template(StackName=self._stack, TemplateStage="Original")
        text, template_format = _template_text(original["TemplateBody"])
        original_name = f"template.{template_format}"
        files.put(original_name, text.encode(), _CONTENT_TYPES[template_format])
        stages = original.get("StagesAvailable")
        processed_name = None
        if stages is None or "Processed" in stages:
            processed = self._cloudformation.get_template(StackName=self._stack, TemplateStage="Processed")
            processed_text, processed_format = _template_text(processed["TemplateBody"])
            processed_name = f"template-processed.{processed_format}"
            files.put(processed_name, processed_text.encode(), _CONTENT_TYPES[processed_format])
        return {"original": original_name, "processed": processed_name, "format": template_format,
                "stages_available": stages}
