"""What the backup function is asked to do, from the events that invoke it.

- an EventBridge schedule whose target input is `{"component": "lambda" | "s3" | "stack" | "logs" | "all"}`;
- its own continuation of a long bucket snapshot: `{"component": "s3", "resume": "<snapshot id>"}`;
- an EventBridge "AWS API Call via CloudTrail" event for a configuration change of the protected
  function, which backs up its configuration within seconds (the runbook's "real-time" RPO).
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from pydantic import BaseModel, ConfigDict, ValidationError

from drcore.core.errors import InvalidRequest

CLOUDTRAIL_DETAIL_TYPE = "AWS API Call via CloudTrail"
# CloudTrail names Lambda API calls with their API version (UpdateFunctionConfiguration20150331v2).
CONFIGURATION_CHANGES = (
    "UpdateFunctionConfiguration", "UpdateFunctionCode", "PublishVersion", "CreateAlias", "UpdateAlias",
    "DeleteAlias", "PutFunctionConcurrency", "DeleteFunctionConcurrency", "AddPermission", "RemovePermission",
    "PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig", "DeleteFunctionEventInvokeConfig",
    "PutProvisionedConcurrencyConfig", "DeleteProvisionedConcurrencyConfig", "CreateFunctionUrlConfig",
    "UpdateFunctionUrlConfig", "DeleteFunctionUrlConfig", "PutRuntimeManagementConfig",
    "PutFunctionRecursionConfig", "PutFunctionCodeSigningConfig", "TagResource", "UntagResource",
    "CreateEventSourceMapping", "UpdateEventSourceMapping", "DeleteEventSourceMapping",
)

Components = Literal["lambda", "s3", "stack", "logs", "all"]


class BackupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    component: Components
    resume: str | None = None  # the id of a bucket snapshot to continue
    reason: str = "scheduled"


def _names_function(parameters: dict[str, Any], function_name: str) -> bool:
    named = str(parameters.get("functionName") or parameters.get("resource") or "")
    # A name, a qualified name, or a (qualified) ARN: arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    parts = named.split(":")
    name = parts[6] if named.startswith("arn:") and len(parts) > 6 else parts[0]
    return name == function_name


def parse_backup_request(event: Any, function_name: str) -> BackupRequest | None:
    """The request an event carries; None for a CloudTrail event about something else (ignored).

    Raises InvalidRequest, naming the problem, for anything that is neither.
    """
    if not isinstance(event, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(event).__name__}")
    if event.get("detail-type") == CLOUDTRAIL_DETAIL_TYPE:
        detail = EventBridgeEvent(event).detail
        name = str(detail.get("eventName", ""))
        if detail.get("eventSource") != "lambda.amazonaws.com" or not name.startswith(CONFIGURATION_CHANGES):
            return None
        if detail.get("errorCode") or not _names_function(detail.get("requestParameters") or {}, function_name):
            return None  # a failed call changed nothing; another function is not ours
        who = (detail.get("userIdentity") or {}).get("arn", "unknown principal")
        return BackupRequest(component="lambda", reason=f"configuration change {name} by {who} at {event.get('time')}")
    try:
        return BackupRequest.model_validate(event)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, issue['loc'])) or 'event'}: {issue['msg']}" for issue in error.errors())
        raise InvalidRequest(
            f"not a backup request ({problems}); expected {{\"component\": \"lambda\" | \"s3\" | \"stack\" | "
            "\"logs\" | \"all\"}} or a CloudTrail configuration-change event"
        ) from error
