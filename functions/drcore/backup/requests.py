"""What the backup function is asked to do, from the events that invoke it.

- an EventBridge schedule whose target input is `{"component": "lambda" | "s3" | "stack" | "logs" | "all"}`;
- its own continuation of a long bucket snapshot: `{"component": "s3", "resume": "<snapshot id>"}` (of a
  fanned-out one, from its state machine when every shard is done: the merge; or to redrive it);
- one shard of a fanned-out snapshot, from its state machine's map:
  `{"component": "s3", "shard": {"backup_id": "<snapshot id>", "number": <n>}}`;
- an EventBridge "AWS API Call via CloudTrail" event for a configuration change of the protected
  function, which backs up its configuration within seconds (the runbook's "real-time" RPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError, model_validator

from drcore.core.errors import InvalidRequest
from drcore.core.untrusted_input import describe_problems
from drcore.state.backup_files import BACKUP_ID
from drcore.state.backup_store import backup_time

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



def _a_real_time(backup_id: str) -> str:
    backup_time(backup_id)  # 20261399T000000Z-... has the form of an id but names no time
    return backup_id


# An id becomes part of backup-store keys, so nothing else (no "/", no "..") may pass for one.
BackupId = Annotated[str, Field(pattern=BACKUP_ID.pattern), AfterValidator(_a_real_time)]


class ShardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backup_id: BackupId
    number: int = Field(ge=0, le=10_000_000)


class BackupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    component: Components
    resume: BackupId | None = None  # the id of a bucket snapshot to continue
    shard: ShardRequest | None = None  # one shard of a fanned-out bucket snapshot to run
    reason: str = Field("scheduled", min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _only_a_snapshot_resumes(self) -> BackupRequest:
        # Only a bucket snapshot runs across invocations; any other backup is whole in one.
        for name, what in (("resume", "continues a bucket snapshot"), ("shard", "is a bucket snapshot's shard")):
            if getattr(self, name) is not None and self.component != "s3":
                raise ValueError(f"{name} {what}: it needs \"component\": \"s3\", not {self.component!r}")
        if self.resume is not None and self.shard is not None:
            raise ValueError("give resume (a whole snapshot) or shard (one of its shards), not both")
        return self


@dataclass(frozen=True)
class Ignored:
    """An event the backup function has nothing to do for: another function's change, or not a usable
    CloudTrail event. Answered as ignored, with the reason."""

    reason: str


class _LambdaRequestParameters(BaseModel):
    """The part of a Lambda API call's parameters that names the function it acted on."""

    function_name: StrictStr | None = Field(None, alias="functionName", max_length=256)
    resource: StrictStr | None = Field(None, max_length=256)


class _Caller(BaseModel):
    arn: StrictStr | None = Field(None, max_length=2048)


class _ApiCall(BaseModel):
    """The detail of an "AWS API Call via CloudTrail" event, as far as a backup needs it."""

    event_source: StrictStr = Field(alias="eventSource", max_length=128)
    event_name: StrictStr = Field(alias="eventName", max_length=128)
    error_code: StrictStr | None = Field(None, alias="errorCode", max_length=256)
    request_parameters: _LambdaRequestParameters | None = Field(None, alias="requestParameters")
    user_identity: _Caller | None = Field(None, alias="userIdentity")


class _CloudTrailEvent(EventBridgeModel):
    detail: _ApiCall  # Powertools' way of typing an EventBridge detail


def _names_function(parameters: _LambdaRequestParameters | None, function_name: str) -> bool:
    named = (parameters and (parameters.function_name or parameters.resource)) or ""
    # A name, a qualified name, or a (qualified) ARN: arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
    parts = named.split(":")
    name = parts[6] if named.startswith("arn:") and len(parts) > 6 else parts[0]
    return name == function_name


def _configuration_change(event: dict[str, Any], function_name: str) -> BackupRequest | Ignored:
    try:
        call = _CloudTrailEvent.model_validate(event)
    except ValidationError as error:
        return Ignored(f"not a usable CloudTrail event: {describe_problems(error)}")
    detail = call.detail
    name = detail.event_name
    if detail.event_source != "lambda.amazonaws.com" or not name.startswith(CONFIGURATION_CHANGES):
        return Ignored(f"{name} of {detail.event_source} is not a configuration change of a function")
    if detail.error_code:
        return Ignored(f"{name} failed ({detail.error_code}): it changed nothing")
    if not _names_function(detail.request_parameters, function_name):
        return Ignored(f"{name} was about another function than {function_name}")
    who = (detail.user_identity and detail.user_identity.arn) or "unknown principal"
    return BackupRequest(component="lambda", reason=f"configuration change {name} by {who} at {call.time.isoformat()}")


def parse_backup_request(event: Any, function_name: str) -> BackupRequest | Ignored:
    """The request an event carries, or Ignored for an AWS event the function has nothing to do for.

    Raises InvalidRequest, naming the problem, for a request (a schedule's input, an operator's event)
    that is not a valid one.
    """
    if not isinstance(event, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(event).__name__}")
    if event.get("detail-type") == CLOUDTRAIL_DETAIL_TYPE:
        return _configuration_change(event, function_name)
    try:
        return BackupRequest.model_validate(event)
    except ValidationError as error:
        raise InvalidRequest(
            f"not a backup request ({describe_problems(error)}); expected {{\"component\": \"lambda\" | \"s3\" | "
            "\"stack\" | \"logs\" | \"all\"}}, {\"component\": \"s3\", \"resume\": \"<snapshot id>\"}, "
            "{\"component\": \"s3\", \"shard\": {\"backup_id\": \"<snapshot id>\", \"number\": <n>}} or a "
            "CloudTrail configuration-change event"
        ) from error
