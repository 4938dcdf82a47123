"""Narrow fills for what moto does not emulate, applied to moto's own backends.

Filling the gaps in the emulator (rather than in the code under test) keeps the controller's code
path identical to AWS's. Each fill is exactly one missing behaviour:

- RevisionId on UpdateAlias: moto neither checks it nor changes it on update. Here a stale
  RevisionId is refused with PreconditionFailedException, and every update issues a new one.
- Percentile statistics (p50, p99, ...) in GetMetricData: moto fails on them. Here they are computed
  from the raw datapoints with the nearest-rank method.
- Invoke: moto cannot run function code without Docker, and it drops the Qualifier of the request.
  Here an invocation of an alias or version answers as that version of the sample pipeline would:
  healthy versions return a payload, failing ones a function error, slow ones after the delay a test
  sets (`behaviour.set_answer_delay`; over real HTTP only, with the embedded server, does a client's
  read timeout run out first). And, as Lambda does for every invocation, it publishes `Invocations`,
  `Duration` and (for a function error) `Errors` in AWS/Lambda under FunctionName, under FunctionName
  and Resource `<function>:<qualifier>`, and for an alias also with ExecutedVersion, at the time of
  `behaviour.clock` (the wall clock unless a test sets its simulated one).
- Code.Location: moto's GetFunction names a URL nothing serves, and its layer versions say `s3://`.
  Here a real loopback HTTP server (`ArchiveServer`, 127.0.0.1 on a free port) serves each function
  version's and layer version's zip bytes from moto's backend, and the `Location` of GetFunction and
  of the layer calls is rewritten to it; a test can make it serve a damaged archive
  (`behaviour.archives.corrupt_function`, `.corrupt_layer`).
- GetLayerVersionByArn: moto does not implement it. Here it answers as GetLayerVersion does.
- Stack capabilities: moto's CreateStack and UpdateStack drop the capabilities granted, so
  DescribeStacks never shows them. Here they are kept on the stack and DescribeStacks returns them.
- Export tasks: moto's CreateExportTask finishes synchronously and accepts any number at once. Here a
  task still answers RUNNING to the first DescribeExportTasks after its creation and COMPLETED from
  then on (an export takes minutes in AWS), and a CreateExportTask while another is RUNNING is refused
  with LimitExceededException, as AWS allows one active export task per account.
- Stack change sets and the stack attributes recovery reads (`stack_change_sets_as_aws`):
  - NoEcho parameters: moto's DescribeStacks compares parameter values with the NoEcho keys, so it
    never masks them. Here a NoEcho parameter's value shows as `****`, as AWS shows it.
  - LastUpdatedTime: moto never sets it. Here UpdateStack and an executed UPDATE change set set it.
  - UpdateTerminationProtection: moto does not implement it. Here it sets the stack's flag.
  - Change set contents: moto diffs resources against its own parsed (and altered) copy of the
    template, ignores parameter values, and has no Replacement. Here the changes are the resources
    added, removed, or modified (their definition differs once each parameter Ref is replaced by its
    value), each modified one with PhysicalResourceId, Scope and a Replacement taken from the
    properties that cannot be updated in place (`REPLACING_PROPERTIES`; "Conditional" for a type not
    listed there).
  - No changes: moto refuses an UPDATE change set whose template text and parameters equal the stack's
    ("No updates are to be performed"), and otherwise compares parameters without their defaults. Here
    one whose template and resolved parameter values equal the stack's ends FAILED with AWS's "didn't
    contain changes" reason.
  - CREATE change sets on an existing stack: moto creates a second stack of the same name. Here one
    for a stack in REVIEW_IN_PROGRESS is added to that stack, and one for a stack in any other state is
    refused with AWS's ValidationError.
  - Capabilities: a change set keeps the capabilities it was created with, and its stack has them once
    it is executed.
  - Execution takes time: moto executes a change set synchronously. Here its stack answers
    `<CREATE|UPDATE>_IN_PROGRESS` to the first DescribeStacks after ExecuteChangeSet, and its final
    status from then on.
  - DescribeChangeSet of a change set that does not exist answers ChangeSetNotFound, as AWS does, not
    a ValidationError about a stack.
- ValidateTemplate (`template_validation_as_aws`): moto rejects a template for any cfn-lint finding,
  warnings included (an unused parameter), and answers no Parameters and no Capabilities. Here only
  cfn-lint errors (E rules) reject it, and the answer lists the declared parameters (key, default,
  NoEcho, description) and the capabilities the template needs: CAPABILITY_IAM for IAM resources,
  CAPABILITY_NAMED_IAM when one is given a name, CAPABILITY_AUTO_EXPAND for a Transform.
- Copy conditions (embedded.s3_copy_conditions): moto ignores `x-amz-copy-source-if-match` and a copy's
  `If-None-Match: *`. Here a copy of another source ETag, or into a key that holds an object, answers 412.
- ListObjectVersions with a KeyMarker alone (embedded.s3_version_listing): moto returns the wrong versions
  around the marker. Here it lists the keys after the marker, as S3 does.
- Function configuration: moto's UpdateFunctionConfiguration applies only description, handler,
  memory, role, runtime, timeout, VPC, environment and layers, its CreateFunction drops the dead-letter,
  logging, file system and SnapStart settings, and its UpdateFunctionCode ignores Architectures. Here
  every field AWS accepts is applied (tracing, ephemeral storage, KMS key, dead-letter config, logging
  config, file systems, image config, SnapStart; architectures with the code), kept per version, and
  returned by GetFunction(Configuration) when set; an empty value clears a setting, as in AWS.
  moto's function configuration has no RevisionId: here it has one, a new one after every configuration
  or code update, and an UpdateFunctionConfiguration naming a stale one is refused with
  PreconditionFailedException, as AWS refuses it.
- PutFunctionEventInvokeConfig: moto appends a second config and keeps answering with the first.
  Here it replaces the function's config, as AWS does.
- Image by digest: with moto's stubbed ECR, an image function's CodeSha256 is a hash of its URI. Here
  a URI pinned by digest (`repo@sha256:<digest>`) gets that digest as CodeSha256, as in AWS.
- Conditional writes: moto's DynamoDB evaluates a ConditionExpression and then writes without a lock,
  so two threads can both pass the same condition. DynamoDB makes each conditional write atomic; here
  every write of moto's DynamoDB backend holds one lock (`dynamodb_writes_atomic`).
- S3 replication (`embedded/s3_replication.py`): moto stores a bucket's replication configuration but answers
  it mangled (every filter as an empty prefix, delete markers never replicated), refuses little of what S3
  refuses, replicates nothing, reports no ReplicationStatus and publishes no replication metrics. Here the
  configuration reads back as put, S3's refusals apply, versions are replicated to their destination bucket
  (same version id, status PENDING, then COMPLETED or FAILED, REPLICA on the copy) with a settable lag and
  backlog of pending versions, and the per-rule replication metrics are published (`behaviour.replication`).
- S3 notifications to Lambda (`embedded/s3_notifications.py`): moto tries to run the notified function in Docker
  and silently drops the invocation, and sends nothing for replicas. Here each notification of a function (events
  and key filters matched), including S3's ObjectCreated:Put for a replica, and each direct Invoke with an S3
  event, is recorded as an invocation of the pipeline per key (`behaviour.invocations`), not run.
- Function updates take time (opt-in, `function_updates_take_time`): moto applies a code or
  configuration update at once. In AWS an update is in progress for a while: GetFunctionConfiguration
  answers LastUpdateStatus InProgress (State Pending after CreateFunction), and another update or a
  PublishVersion meanwhile is refused with ResourceConflictException. Here the update settles at the
  first read of the function's configuration after it; a test can also make the next updates of a
  function conflict (`updates.conflict(name, times)`), as another writer's would. Opt-in because the
  sample system, like the runbook, publishes right after an update.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast
from unittest import mock
from urllib.parse import quote, unquote

import moto.s3.models
from moto import settings as moto_settings
from moto.awslambda.exceptions import LambdaClientError, PreconditionFailedException, UnknownLayerException
from moto.awslambda.models import ImageConfig, LambdaBackend, LambdaFunction, LayerVersion
from moto.awslambda.responses import LambdaResponse
from moto.cloudformation.exceptions import CloudFormationError
from moto.cloudformation.exceptions import ValidationError as CloudFormationValidationError
from moto.cloudformation.models import Change, ChangeSet, CloudFormationBackend, Stack
from moto.cloudformation.responses import CloudFormationResponse
from moto.cloudwatch.models import Statistics, cloudwatch_backends
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.dynamodb.models import DynamoDBBackend
from moto.logs.exceptions import LimitExceededException
from moto.logs.models import LogsBackend

from embedded.s3_copy_conditions import s3_copy_conditions_as_aws
from embedded.s3_notifications import PipelineInvocations, pipeline_invocations_recorded
from embedded.s3_replication import ReplicationControl, s3_replication_as_aws
from embedded.s3_version_listing import version_listing_after_key_marker

if TYPE_CHECKING:
    # The attributes the fills below keep on moto's own objects, where moto's serializers read them by name.

    class StackAsAws(Stack):
        capabilities: list[str]
        last_updated_time: datetime
        reported_in_progress: str | None  # the status the next DescribeStacks answers, once

    class ChangeSetAsAws(ChangeSet):
        capabilities: list[str]

    class LambdaFunctionAsAws(LambdaFunction):
        kept_settings: dict[str, Any]  # the settings named in _KEPT_SETTINGS
        kept_revision_id: str  # the configuration's RevisionId


class VersionBehaviour:
    """How each published version of the sample pipeline answers an invocation (and, beside it, how S3
    replicates: `replication`)."""

    def __init__(self) -> None:
        self.failing: set[tuple[str, str]] = set()
        self.answer_delays: dict[tuple[str, str], float] = {}
        self.answered: list[tuple[str, str]] = []  # (function, version) of each invocation, once it answered
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # when Lambda's metrics say it ran
        self.archives: ArchiveServer | None = None  # set while the fills are active
        self.replication = ReplicationControl()
        # S3-shaped invocations of functions (notifications and direct invokes), recorded instead of run.
        self.invocations = PipelineInvocations(before_read=self.replication.catch_up)

    def set_failing(self, function_name: str, version: str, failing: bool = True) -> None:
        (self.failing.add if failing else self.failing.discard)((function_name, version))

    def set_answer_delay(self, function_name: str, version: str, seconds: float) -> None:
        """Answer invocations of `version` only after `seconds` (0: at once), as a hanging function would."""
        self.answer_delays[(function_name, version)] = seconds


def _publish_invocation_metrics(backend: LambdaBackend, name: str, qualifier: str | None, version: str,
                                failed: bool, duration_ms: float, at: datetime) -> None:
    """What Lambda publishes for one invocation, under each combination of dimensions it uses."""
    dimension_sets = [[{"Name": "FunctionName", "Value": name}]]
    if qualifier:
        dimension_sets.append([*dimension_sets[0], {"Name": "Resource", "Value": f"{name}:{qualifier}"}])
        if qualifier != version:  # an alias: the version it routed to is a dimension of its own
            dimension_sets.append([*dimension_sets[1], {"Name": "ExecutedVersion", "Value": version}])
    values = [("Invocations", 1.0, "Count"), ("Duration", duration_ms, "Milliseconds")]
    values += [("Errors", 1.0, "Count")] if failed else []
    naive_utc = at.astimezone(UTC).replace(tzinfo=None)  # as moto keeps the timestamps its API is given
    cloudwatch_backends[backend.account_id][backend.region_name].put_metric_data("AWS/Lambda", [
        {"MetricName": metric, "Dimensions": dimensions, "Value": value, "Unit": unit, "Timestamp": naive_utc}
        for dimensions in dimension_sets for metric, value, unit in values])


def _percentile(values: list[float], stat: str) -> float | None:
    if not values:
        return None
    rank = float(stat[1:])
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


class ArchiveServer:
    """Serves the zip archives moto's Lambda responses point at, over real HTTP on the loopback.

    An archive is registered when a response names it, under a path that carries its SHA-256, so a URL
    keeps serving the bytes it was issued for, as an S3 pre-signed URL does. The server starts on the
    first registration: tests that never ask for a Location pay nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._archives: dict[str, tuple[tuple[str, str], bytes]] = {}  # path -> ((kind, name), bytes)
        self._corrupted: set[tuple[str, str]] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.served: list[str] = []  # paths downloaded, in order

    def location(self, kind: str, name: str, version: str, body: bytes) -> str:
        path = f"/{kind}/{quote(name, safe='')}/{quote(version, safe='')}/{hashlib.sha256(body).hexdigest()}.zip"
        with self._lock:
            self._archives[path] = ((kind, name), body)
            server = self._server or self._start()
        return f"http://127.0.0.1:{server.server_port}{path}"

    def corrupt_function(self, name: str) -> None:
        """Serve every archive of function `name` with one byte changed, as a damaged download would be."""
        self._corrupted.add(("functions", name))

    def corrupt_layer(self, name: str) -> None:
        self._corrupted.add(("layers", name))

    def archive(self, path: str) -> bytes | None:
        with self._lock:
            entry = self._archives.get(path.split("?", 1)[0])
            if entry is None:
                return None
            self.served.append(path)
        owner, body = entry
        if owner in self._corrupted and body:
            return body[:-1] + bytes([body[-1] ^ 0xFF])
        return body

    def _start(self) -> ThreadingHTTPServer:
        archives = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = archives.archive(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                """`served` keeps what tests need; a line per request on stderr would only be noise."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll keeps close() quick; it waits for the serving loop to notice.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="lambda-code-archives", daemon=True)
        self._thread.start()
        return self._server

    def close(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None


@contextmanager
def code_archives_served() -> Iterator[ArchiveServer]:
    """Serve function and layer archives at the Location moto's responses give (see the module doc)."""
    archives = ArchiveServer()
    original_get_code = LambdaFunction.get_code
    original_layer_version = LayerVersion.get_layer_version

    def get_code(self: LambdaFunction) -> dict[str, Any]:
        response = original_get_code(self)
        if "Location" in response.get("Code", {}):
            response["Code"]["Location"] = archives.location("functions", self.function_name, str(self.version),
                                                             self.code_bytes)
        return response

    def get_layer_version(self: LayerVersion) -> dict[str, Any]:
        response = original_layer_version(self)
        response["Content"]["Location"] = archives.location("layers", self.name, str(self.version), self.code_bytes)
        return response

    def get_layer_version_by_arn(self: LambdaResponse) -> str:
        layer = self.backend.layers_versions_by_arn(self._get_param("Arn"))
        if layer is None:
            raise UnknownLayerException()
        return json.dumps(layer.get_layer_version())

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(LambdaFunction, "get_code", get_code))
        patches.enter_context(mock.patch.object(LayerVersion, "get_layer_version", get_layer_version))
        patches.enter_context(mock.patch.object(LambdaResponse, "get_layer_version_by_arn", get_layer_version_by_arn,
                                                create=True))
        patches.callback(archives.close)
        yield archives


@contextmanager
def stack_capabilities_kept() -> Iterator[None]:
    """DescribeStacks shows the capabilities a stack was created or updated with."""
    originals = {name: getattr(CloudFormationResponse, name) for name in ("create_stack", "update_stack")}

    def keeping(name: str) -> Any:
        def operation(self: CloudFormationResponse) -> Any:
            result = originals[name](self)
            stack = cast("StackAsAws", self.cloudformation_backend.get_stack(self._get_param("StackName")))
            stack.capabilities = self._get_param("Capabilities", [])  # serialized as the stack's Capabilities
            return result
        return operation

    with ExitStack() as patches:
        for name in originals:
            patches.enter_context(mock.patch.object(CloudFormationResponse, name, keeping(name)))
        yield


# Properties whose change makes CloudFormation replace the resource (its create-only properties).
REPLACING_PROPERTIES = {
    "AWS::SQS::Queue": frozenset({"QueueName", "FifoQueue"}),
    "AWS::SNS::Topic": frozenset({"TopicName", "FifoTopic"}),
    "AWS::IAM::Role": frozenset({"RoleName", "Path"}),
    "AWS::S3::Bucket": frozenset({"BucketName", "ObjectLockEnabled"}),
    "AWS::Lambda::Function": frozenset({"FunctionName", "PackageType"}),
    "AWS::DynamoDB::Table": frozenset({"TableName", "KeySchema"}),
    "AWS::SSM::Parameter": frozenset({"Name"}),
}
NO_CHANGES_REASON = ("The submitted information didn't contain changes. "
                     "Submit different information to create a change set.")


class ChangeSetNotFound(CloudFormationError):
    code = "ChangeSetNotFound"


class ModifiedResource(Change):
    """A Modify change as AWS describes it; moto's Change has no physical id, scope or replacement."""

    def __init__(self, logical_resource_id: str, resource_type: str, physical_resource_id: str | None,
                 scope: list[str], replacement: str) -> None:
        super().__init__("Modify", logical_resource_id, resource_type)
        self.physical_resource_id = physical_resource_id
        self.scope = scope
        self.replacement = replacement


def _template_dict(template: Any) -> dict[str, Any]:
    if isinstance(template, dict):
        return template
    return Stack.parse_template(template) if template else {}


def _with_parameters(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in values:
            return str(values[node["Ref"]])
        return {key: _with_parameters(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_parameters(value, values) for value in node]
    return node


def _resolved_values(template: dict[str, Any], given: dict[str, Any]) -> dict[str, str]:
    declared = template.get("Parameters", {})
    values = {key: spec["Default"] for key, spec in declared.items() if "Default" in spec}
    return {key: str(value) for key, value in {**values, **given}.items() if key in declared}


def _resource_changes(stack: Stack, template: dict[str, Any], values: dict[str, str]) -> list[Change]:
    old = _with_parameters(_template_dict(stack.template).get("Resources", {}),
                           {key: str(value) for key, value in stack.stack_parameters.items()})
    new = _with_parameters(template.get("Resources", {}), values)
    changes = [Change("Add", name, new[name]["Type"]) for name in new if name not in old]
    for name in (name for name in new if name in old and new[name] != old[name]):
        resource = stack.resource_map._parsed_resources.get(name)
        scope = sorted(key for key in new[name].keys() | old[name].keys()
                       if key != "Type" and new[name].get(key) != old[name].get(key))
        properties_new, properties_old = new[name].get("Properties", {}), old[name].get("Properties", {})
        changed = {key for key in properties_new.keys() | properties_old.keys()
                   if properties_new.get(key) != properties_old.get(key)}
        replacing = REPLACING_PROPERTIES.get(new[name]["Type"])
        if new[name]["Type"] != old[name]["Type"] or (replacing is not None and changed & replacing):
            replacement = "True"
        else:
            replacement = "False" if replacing is not None else "Conditional"
        changes.append(ModifiedResource(name, new[name]["Type"], getattr(resource, "physical_resource_id", None),
                                        scope, replacement))
    changes += [Change("Remove", name, old[name]["Type"]) for name in old if name not in new]
    return changes


@contextmanager
def stack_change_sets_as_aws() -> Iterator[None]:
    """Change sets, and the stack attributes a recovery reads, as AWS has them (see the module doc)."""
    original_create = CloudFormationBackend.create_change_set
    original_execute = CloudFormationBackend.execute_change_set
    original_describe_change_set = CloudFormationBackend.describe_change_set
    original_describe_stacks = CloudFormationBackend.describe_stacks
    original_update_stack = CloudFormationBackend.update_stack
    original_create_response = CloudFormationResponse.create_change_set

    def parameter_list(self: Stack) -> list[dict[str, Any]]:
        hidden = self.resource_map.no_echo_parameter_keys
        return [{"ParameterKey": key, "ParameterValue": "****" if key in hidden else value}
                for key, value in self.resource_map.resolved_parameters.items()]

    def create_change_set_response(self: CloudFormationResponse) -> Any:
        # For this request only: AWS answers an unchanged update with a FAILED change set instead.
        self._validate_different_update = lambda *args: None  # type: ignore[method-assign]  # see above
        result = original_create_response(self)
        change_set_id = cast("dict[str, str]", result.result)["Id"]
        change_set = cast("ChangeSetAsAws", self.cloudformation_backend.change_sets[change_set_id])
        change_set.capabilities = self._get_param("Capabilities", [])
        return result

    def create_change_set(self: CloudFormationBackend, stack_name: str, change_set_name: str, template: str,
                          parameters: dict[str, str], *args: Any, **kwargs: Any) -> tuple[str, str]:
        change_set_type = kwargs.get("change_set_type", "CREATE")
        existing = next((stack for stack in self.stacks.values() if stack.name == stack_name), None)
        if change_set_type == "CREATE" and existing is not None and existing.status != "REVIEW_IN_PROGRESS":
            raise CloudFormationValidationError(message=f"Stack [{stack_name}] already exists and cannot be created "
                                                        f"again with the changeSet [{change_set_name}].")
        change_set_id, stack_id = original_create(self, stack_name, change_set_name, template, parameters,
                                                  *args, **kwargs)
        change_set: ChangeSet = self.change_sets[change_set_id]
        if change_set_type == "CREATE" and existing is not None:
            del self.stacks[stack_id]
            change_set.stack, change_set.stack_id, stack_id = existing, existing.stack_id, existing.stack_id
        if change_set_type == "UPDATE":
            stack = change_set.stack
            values = _resolved_values(change_set.template_dict, parameters)
            change_set.changes = _resource_changes(stack, change_set.template_dict, values)
            current = {key: str(value) for key, value in stack.stack_parameters.items()}
            if _template_dict(stack.template) == change_set.template_dict and current == values:
                change_set.status, change_set.execution_status = "FAILED", "UNAVAILABLE"
                change_set.status_reason = NO_CHANGES_REASON
            else:
                change_set.status, change_set.execution_status, change_set.status_reason = (
                    "CREATE_COMPLETE", "AVAILABLE", None)
        return change_set_id, stack_id

    def execute_change_set(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = original_describe_change_set(self, change_set_name)
        assert change_set is not None, "moto raises ValidationError for a change set it does not have"
        original_execute(self, change_set_name, stack_name)
        stack = cast("StackAsAws", self.stacks[change_set.stack_id])
        stack.capabilities = getattr(change_set, "capabilities", [])
        if change_set.change_set_type == "UPDATE":
            stack.last_updated_time = utcnow()
        stack.reported_in_progress = f"{change_set.change_set_type}_IN_PROGRESS"

    def describe_change_set(self: CloudFormationBackend, change_set_name: str) -> Any:
        try:
            return original_describe_change_set(self, change_set_name)
        except CloudFormationValidationError:
            raise ChangeSetNotFound(f"ChangeSet [{change_set_name}] does not exist") from None

    def describe_stacks(self: CloudFormationBackend, name_or_stack_id: str) -> list[Stack]:
        answer: list[Stack] = []
        for stack in cast("list[StackAsAws]", original_describe_stacks(self, name_or_stack_id)):
            in_progress = getattr(stack, "reported_in_progress", None)
            if in_progress:
                stack.reported_in_progress = None
                stack = copy.copy(stack)
                stack.status = in_progress
            answer.append(stack)
        return answer

    def update_stack(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> Stack:
        stack = cast("StackAsAws", original_update_stack(self, *args, **kwargs))
        stack.last_updated_time = utcnow()
        return stack

    def update_termination_protection(self: CloudFormationResponse) -> ActionResult:
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        stack.enable_termination_protection = self._get_bool_param("EnableTerminationProtection", False)
        return ActionResult({"StackId": stack.stack_id})

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(Stack, "parameter_list", property(parameter_list)))
        patches.enter_context(mock.patch.object(CloudFormationResponse, "create_change_set",
                                                create_change_set_response))
        patches.enter_context(mock.patch.object(CloudFormationResponse, "update_termination_protection",
                                                update_termination_protection, create=True))
        for name, replacement in (("create_change_set", create_change_set), ("execute_change_set", execute_change_set),
                                  ("describe_change_set", describe_change_set), ("describe_stacks", describe_stacks),
                                  ("update_stack", update_stack)):
            patches.enter_context(mock.patch.object(CloudFormationBackend, name, replacement))
        yield


_ACTIVE_EXPORT = ("PENDING", "RUNNING")


# IAM resource types, and the property that names each one (which needs CAPABILITY_NAMED_IAM).
IAM_NAME_PROPERTIES = {
    "AWS::IAM::Role": "RoleName", "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName", "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::Policy": None, "AWS::IAM::AccessKey": None, "AWS::IAM::UserToGroupAddition": None,
}


@contextmanager
def template_validation_as_aws() -> Iterator[None]:
    def validate_template(self: CloudFormationResponse) -> ActionResult:
        url = self._get_param("TemplateURL")
        body = self._get_stack_from_s3_url(url) if url else self._get_param("TemplateBody")
        errors = [match for match in self.cloudformation_backend.validate_template(body)
                  if match.rule.id.startswith("E")]
        if errors:
            raise CloudFormationValidationError(message=f"Template format error: {errors[0].message}")
        template = _template_dict(body)
        resources = template.get("Resources", {}).values()
        iam = [resource for resource in resources if resource.get("Type") in IAM_NAME_PROPERTIES]
        named = any((resource.get("Properties") or {}).get(IAM_NAME_PROPERTIES[resource["Type"]] or "")
                    for resource in iam)
        capabilities = (["CAPABILITY_NAMED_IAM"] if named else ["CAPABILITY_IAM"]) if iam else []
        if template.get("Transform"):
            capabilities.append("CAPABILITY_AUTO_EXPAND")
        parameters = [
            {"ParameterKey": key, "NoEcho": bool(spec.get("NoEcho", False)), "Description": spec.get("Description", ""),
             **({"DefaultValue": str(spec["Default"])} if "Default" in spec else {})}
            for key, spec in template.get("Parameters", {}).items()]
        return ActionResult({"Description": template.get("Description", ""), "Parameters": parameters,
                             "Capabilities": capabilities, "DeclaredTransforms": []})

    with mock.patch.object(CloudFormationResponse, "validate_template", validate_template):
        yield


@contextmanager
def export_tasks_take_time() -> Iterator[None]:
    """Export tasks run one at a time and finish after a while (see the module doc)."""
    original_create = LogsBackend.create_export_task
    original_describe = LogsBackend.describe_export_tasks

    def create_export_task(self: LogsBackend, **request: Any) -> str:
        if any(task.status["code"] in _ACTIVE_EXPORT for task in self.export_tasks.values()):
            raise LimitExceededException()
        task_id = original_create(self, **request)
        # moto wrote the objects already; AWS writes them while the task runs, so a reader may see some.
        self.export_tasks[task_id].status = {"code": "RUNNING", "message": "Task is running"}
        return task_id

    def describe_export_tasks(self: LogsBackend, task_id: str) -> Any:
        answer = [copy.copy(task) for task in original_describe(self, task_id)]  # the state as it was asked
        for task in self.export_tasks.values():
            if task.status["code"] in _ACTIVE_EXPORT:
                task.status = {"code": "COMPLETED", "message": "Completed successfully"}
        return answer

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(LogsBackend, "create_export_task", create_export_task))
        patches.enter_context(mock.patch.object(LogsBackend, "describe_export_tasks", describe_export_tasks))
        yield


# The settings moto's LambdaFunction does not hold itself, kept beside it (see the module doc).
_KEPT_SETTINGS = ("DeadLetterConfig", "LoggingConfig", "FileSystemConfigs", "SnapStart")


def _kept_value(function: LambdaFunction, name: str, value: Any) -> Any:
    """What AWS holds after a request sets `name` to `value`; None when the request cleared it."""
    if name == "DeadLetterConfig":
        return value if value.get("TargetArn") else None
    if name == "LoggingConfig":
        default = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{function.function_name}"}
        kept = {**default, **getattr(function, "kept_settings", {}).get(name, {}), **value}
        if kept["LogFormat"] == "Text":  # log levels apply to JSON logs only; AWS reports none for Text
            kept = {key: value for key, value in kept.items()
                    if key not in ("ApplicationLogLevel", "SystemLogLevel")}
        return kept
    return value or None


def _revision_of(function: LambdaFunction) -> str:
    """The function's RevisionId: issued on first asking, renewed by every update (see the module doc)."""
    if not getattr(function, "kept_revision_id", None):
        function.kept_revision_id = str(uuid.uuid4())  # type: ignore[attr-defined]  # kept beside moto's function
    return str(function.kept_revision_id)  # type: ignore[attr-defined]


@contextmanager
def function_configuration_applied() -> Iterator[None]:
    """Every configuration field AWS accepts is applied and returned (see the module doc)."""
    original_init = LambdaFunction.__init__
    original_update = LambdaFunction.update_configuration
    original_configuration = LambdaFunction.get_configuration
    original_set_code = LambdaFunction._set_function_code
    original_update_code = LambdaFunction.update_function_code
    original_put_invoke_config = LambdaBackend.put_function_event_invoke_config

    def keep(function: LambdaFunctionAsAws, spec: dict[str, Any]) -> None:
        # A new dict each time: published versions are shallow copies and keep what they were published with.
        kept = dict(getattr(function, "kept_settings", {}))
        for name in _KEPT_SETTINGS:
            if name in spec:
                kept[name] = _kept_value(function, name, spec[name])
        function.kept_settings = {name: value for name, value in kept.items() if value is not None}

    def init(self: LambdaFunctionAsAws, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        keep(self, spec)

    def update_configuration(self: LambdaFunctionAsAws, updates: dict[str, Any]) -> dict[str, Any]:
        if updates.get("RevisionId") and updates["RevisionId"] != _revision_of(self):
            raise PreconditionFailedException("The Revision Id provided does not match the latest Revision Id. "
                                              "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        self.kept_revision_id = str(uuid.uuid4())
        if "TracingConfig" in updates:
            self.tracing_config = updates["TracingConfig"]
        if "EphemeralStorage" in updates:
            self.ephemeral_storage = updates["EphemeralStorage"]["Size"]
        if "KMSKeyArn" in updates:
            self.kms_key_arn = updates["KMSKeyArn"] or None
        if "ImageConfig" in updates:
            self.image_config = ImageConfig(updates["ImageConfig"])
        keep(self, updates)
        return original_update(self, updates)

    def get_configuration(self: LambdaFunction, on_create: bool = False) -> dict[str, Any]:
        configuration = original_configuration(self, on_create)
        configuration["RevisionId"] = _revision_of(self)
        kept = getattr(self, "kept_settings", {})
        for name in ("DeadLetterConfig", "LoggingConfig", "FileSystemConfigs"):
            if name in kept:
                configuration[name] = kept[name]
        if "SnapStart" in kept:
            apply_on = kept["SnapStart"].get("ApplyOn", "None")
            optimization = "Off" if apply_on == "None" else "On"
            configuration["SnapStart"] = {"ApplyOn": apply_on, "OptimizationStatus": optimization}
        return configuration

    def set_function_code(self: LambdaFunction, spec: dict[str, Any]) -> None:
        original_set_code(self, spec)
        uri = spec.get("ImageUri") or ""
        if "@sha256:" in uri and moto_settings.lambda_stub_ecr():
            self.code_sha_256 = uri.rsplit("@sha256:", 1)[1]

    def update_function_code(self: LambdaFunction, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("Architectures") and not spec.get("DryRun"):
            self.architectures = spec["Architectures"]
        if not spec.get("DryRun"):
            self.kept_revision_id = str(uuid.uuid4())  # type: ignore[attr-defined]  # kept beside moto's function
        return original_update_code(self, spec)

    def put_function_event_invoke_config(self: LambdaBackend, function_name: str, config: dict[str, Any]) -> Any:
        self.get_function(function_name).event_invoke_config = []
        return original_put_invoke_config(self, function_name, config)

    with ExitStack() as patches:
        for name, replacement in (("__init__", init), ("update_configuration", update_configuration),
                                  ("get_configuration", get_configuration), ("_set_function_code", set_function_code),
                                  ("update_function_code", update_function_code)):
            patches.enter_context(mock.patch.object(LambdaFunction, name, replacement))
        patches.enter_context(mock.patch.object(LambdaBackend, "put_function_event_invoke_config",
                                                put_function_event_invoke_config))
        yield


class ResourceConflictException(LambdaClientError):
    code = 409

    def __init__(self, function_name: str) -> None:
        super().__init__("ResourceConflictException", "The operation cannot be performed at this time. "
                                                      f"An update is in progress for resource: {function_name}")


class FunctionUpdates:
    """Functions with an update in progress, and conflicts a test asks for (`function_updates_take_time`)."""

    def __init__(self) -> None:
        self.in_progress: dict[str, str] = {}  # function name -> "Pending" (created) | "InProgress" (updated)
        self.conflicts: dict[str, int] = {}
        self.refused: list[tuple[str, str]] = []  # (operation, function) answered ResourceConflictException

    def conflict(self, function_name: str, times: int = 1) -> None:
        """Refuse the next `times` updates of the function, as an update of another writer would."""
        self.conflicts[function_name] = times

    def admit(self, operation: str, function_name: str) -> None:
        if function_name in self.in_progress or self.conflicts.get(function_name, 0) > 0:
            if self.conflicts.get(function_name, 0) > 0:
                self.conflicts[function_name] -= 1
            self.refused.append((operation, function_name))
            raise ResourceConflictException(function_name)


def _function_name(name_or_arn: str) -> str:
    return name_or_arn.split(":")[6] if name_or_arn.startswith("arn:") else name_or_arn.split(":")[0]


@contextmanager
def function_updates_take_time() -> Iterator[FunctionUpdates]:
    """Function updates stay in progress until their configuration is read (see the module doc)."""
    updates = FunctionUpdates()
    originals = {name: getattr(LambdaResponse, name) for name in (
        "create_function", "update_function_code", "update_function_configuration", "publish_version",
        "get_function", "get_function_configuration")}

    def updating(operation: str, name_of: Any, state: str) -> Any:
        def respond(self: LambdaResponse) -> Any:
            name = _function_name(name_of(self))
            if operation != "create_function":
                updates.admit(operation, name)
            response = originals[operation](self)
            if state:
                updates.in_progress[name] = state
            return response
        return respond

    def reading(operation: str, name_of: Any, nested: bool) -> Any:
        def respond(self: LambdaResponse) -> str:
            name = _function_name(name_of(self))
            body = json.loads(originals[operation](self))
            state = None if self._get_param("Qualifier") else updates.in_progress.pop(name, None)
            configuration = body["Configuration"] if nested else body
            if state == "Pending":
                configuration.update(State="Pending", StateReason="The function is being created.")
            elif state == "InProgress":
                configuration.update(LastUpdateStatus="InProgress",
                                     LastUpdateStatusReason="The function is being updated.")
            return json.dumps(body)
        return respond

    def in_path(parts_from_end: int) -> Any:
        return lambda response: unquote(response.path.rstrip("/").split("/")[-parts_from_end])

    replacements = {
        "create_function": updating("create_function", lambda response: response.json_body["FunctionName"], "Pending"),
        "update_function_code": updating("update_function_code", in_path(2), "InProgress"),
        "update_function_configuration": updating("update_function_configuration", in_path(2), "InProgress"),
        "publish_version": updating("publish_version", in_path(2), ""),
        "get_function": reading("get_function", in_path(1), nested=True),
        "get_function_configuration": reading("get_function_configuration", in_path(2), nested=False),
    }
    with ExitStack() as patches:
        for name, replacement in replacements.items():
            patches.enter_context(mock.patch.object(LambdaResponse, name, replacement))
        yield updates


@contextmanager
def dynamodb_writes_atomic() -> Iterator[None]:
    lock = threading.RLock()

    def atomic(name: str) -> Any:
        original = getattr(DynamoDBBackend, name)

        def write(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)
        return write

    with ExitStack() as patches:
        for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
            patches.enter_context(mock.patch.object(DynamoDBBackend, name, atomic(name)))
        yield


@contextmanager
def moto_gaps_filled(behaviour: VersionBehaviour | None = None) -> Iterator[VersionBehaviour]:
    behaviour = behaviour or VersionBehaviour()
    original_update_alias = LambdaResponse.update_alias
    original_statistic = Statistics.get_statistics_for_type
    original_invoke = LambdaResponse.invoke

    def update_alias(self: LambdaResponse) -> Any:
        function_name = self.path.rsplit("/")[-3]
        alias_name = self.path.rsplit("/", 2)[-1]
        expected = json.loads(self.body or "{}").get("RevisionId")
        alias = self.backend.get_alias(alias_name, function_name)
        if expected and expected != alias.revision_id:
            raise PreconditionFailedException(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetAlias API to retrieve the latest Revision Id"
            )
        response = original_update_alias(self)
        alias.revision_id = str(uuid.uuid4())
        body = json.loads(response[2])
        body["RevisionId"] = alias.revision_id
        return response[0], response[1], json.dumps(body)

    def statistic(self: Statistics, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            return _percentile(self.metric_single_values_list, stat)
        return original_statistic(self, stat)

    def invoke_with_qualifier(self: LambdaResponse) -> Any:
        qualifier = self.querystring.get("Qualifier")
        if qualifier:
            self.querystring["qualifier"] = qualifier
        return original_invoke(self)

    def invoke(self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: Any) -> bytes:
        name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
        version = qualifier or "$LATEST"
        if qualifier and not qualifier.isdigit() and qualifier != "$LATEST":
            version = self.get_alias(qualifier, name).function_version
        response_headers["x-amz-executed-version"] = version
        started = time.monotonic()
        time.sleep(behaviour.answer_delays.get((name, version), 0))
        failed = (name, version) in behaviour.failing
        _publish_invocation_metrics(self, name, qualifier, version, failed, (time.monotonic() - started) * 1000,
                                    behaviour.clock())
        behaviour.answered.append((name, version))
        if failed:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorMessage": f"version {version} is failing", "errorType": "RuntimeError"}).encode()
        return json.dumps({"statusCode": 200, "version": version, "healthy": True}).encode()

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(LambdaResponse, "update_alias", update_alias))
        patches.enter_context(mock.patch.object(Statistics, "get_statistics_for_type", statistic))
        patches.enter_context(mock.patch.object(LambdaResponse, "invoke", invoke_with_qualifier))
        patches.enter_context(mock.patch.object(LambdaBackend, "invoke", invoke))
        behaviour.archives = patches.enter_context(code_archives_served())
        patches.enter_context(stack_capabilities_kept())
        patches.enter_context(stack_change_sets_as_aws())
        patches.enter_context(template_validation_as_aws())
        patches.enter_context(export_tasks_take_time())
        patches.enter_context(function_configuration_applied())
        patches.enter_context(dynamodb_writes_atomic())
        patches.enter_context(s3_replication_as_aws(behaviour.replication))
        patches.enter_context(s3_copy_conditions_as_aws())
        patches.enter_context(version_listing_after_key_marker())
        # After the Invoke fill above, so an S3-shaped invocation is recorded once it was answered as a version would.
        patches.enter_context(pipeline_invocations_recorded(behaviour.invocations,
                                                            behaviour.replication.replica_listeners))
        yield behaviour


@contextmanager
def versions_listed_without_copying_bodies() -> Iterator[None]:
    """A gap in moto's performance, filled for the benchmarks: for every ListObjectVersions page, moto
    deep-copies every version of every key in the bucket, bodies included, so each page costs time in
    proportion to the whole bucket's bytes (S3 has no such cost). The copies exist only to carry the
    IsLatest flag, which nothing else in moto reads: here the listing marks the stored versions
    themselves, and returns exactly what it did."""
    with mock.patch.object(moto.s3.models, "copy", SimpleNamespace(copy=copy.copy, deepcopy=list)):
        yield
