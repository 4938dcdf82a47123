"""Test helpers shared by the unit and end-to-end tests: test modules import these, never each other."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto import mock_aws

import recovery.handler as recovery
from drcore.aws.state_machines import MapExecutions
from drcore.state.backup_store import Component, manifest_key, manifest_record_key
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem

MUTATING_PREFIXES = ("Update", "Put", "Create", "Delete", "Publish", "Invoke", "Set", "Transact", "Batch",
                     "Execute", "Copy", "Upload", "Complete", "Tag", "Untag", "Add", "Remove", "Restore")


class SimulatedClock:
    """A clock the test moves by hand; the controller reads it through its injected `clock`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class CallRecorder:
    """Records every AWS call made through the clients it is attached to, in order (botocore hooks)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, *clients: Any) -> CallRecorder:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._record)
        return self

    def spy_on_every_client(self, monkeypatch: Any) -> CallRecorder:
        """Record calls of every boto3 client, including those a handler builds for itself."""
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        recorder = self

        def recording(client: Any, operation_name: str, params: Any) -> Any:
            recorder.calls.append(operation_name)
            return original(client, operation_name, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recording)
        return self

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def mutating(self) -> list[str]:
        return [name for name in self.calls if name.startswith(MUTATING_PREFIXES)]

    def count(self) -> Counter[str]:
        return Counter(self.calls)


def put_alias_metrics(cloudwatch: Any, function_name: str, version: str, at: datetime, *, invocations: int = 0,
                      durations_ms: list[float] | None = None) -> None:
    """Record what Lambda would publish for traffic LIVE served with `version` (moto runs no code)."""
    dimensions = [{"Name": "FunctionName", "Value": function_name},
                  {"Name": "Resource", "Value": f"{function_name}:LIVE"},
                  {"Name": "ExecutedVersion", "Value": version}]
    data = [{"MetricName": "Invocations", "Dimensions": dimensions, "Value": 1.0, "Timestamp": at, "Unit": "Count"}
            for _ in range(invocations)]
    data += [{"MetricName": "Duration", "Dimensions": dimensions, "Value": value, "Timestamp": at,
              "Unit": "Milliseconds"} for value in durations_ms or []]
    for start in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data[start:start + 500])


# The recovery function, as the unit tests' `world` (tests/unit/conftest.py) stands it up.
RECOVERY_FUNCTION = "apilados-dr-recovery"
# Who asks for a manual action, and why: every action is journaled with both.
WHO = {"requested_by": "alice@example.com", "reason": "INC-7 bad upload overwrote data"}


def act(event: dict[str, Any], remaining_ms: int = 900_000) -> dict[str, Any]:
    """Invoke the recovery function's real handler, as an operator does."""
    return recovery.handler(event, LambdaContextStub(RECOVERY_FUNCTION, remaining_ms))


def contents(world: SampleSystem, bucket: str | None = None) -> dict[str, bytes]:
    """Every current object of a bucket (the data bucket by default), key to body."""
    s3, bucket = world.clients["s3"], bucket or world.data_bucket
    keys = [entry["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for entry in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def damage(world: SampleSystem) -> tuple[str, str, str]:
    """A same-size corruption, a deletion and an unwanted upload in the data bucket: (corrupted, deleted, added)."""
    s3, bucket = world.clients["s3"], world.data_bucket
    corrupted, deleted, added = "uploads/2026/11/batch-00001.csv", "uploads/2026/11/batch-00002.csv", "uploads/new.csv"
    original = s3.get_object(Bucket=bucket, Key=corrupted)["Body"].read()
    s3.put_object(Bucket=bucket, Key=corrupted, Body=bytes(reversed(original)))  # same size, other bytes
    s3.delete_object(Bucket=bucket, Key=deleted)
    s3.put_object(Bucket=bucket, Key=added, Body=b"id,amount\n99,1\n")
    return corrupted, deleted, added


@contextmanager
def data_and_backup_buckets(data: str, backups: str, object_lock: bool = False) -> Iterator[Any]:
    """moto's S3 with a versioned data bucket and a backup bucket (with Object Lock, as the stack builds it,
    when asked), the way the snapshot and restore engines find them."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=data)
        client.put_bucket_versioning(Bucket=data, VersioningConfiguration={"Status": "Enabled"})
        client.create_bucket(Bucket=backups, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
        yield client


# What a snapshot's manifest records since reads name the versions written; a manifest of an earlier release lacks
# these fields (drcore.backup.manifest.ManifestEntry reads them as None).
VERSIONED_READ_FIELDS = ("content_version_id",)


def written_before_versions(s3: Any, backup_bucket: str, bucket: str, backup_id: str) -> None:
    """Make a snapshot one of the previous format, as an earlier release left it in the backup store: its manifest
    without the content objects' versions, and no record of the manifest's own version, so that every read of it
    and of its content goes by key. Rewritten with the test's own rights (no role of the stack may)."""
    key = manifest_key(Component.S3, bucket, backup_id)
    lines = gzip.decompress(s3.get_object(Bucket=backup_bucket, Key=key)["Body"].read()).decode().splitlines()
    entries = [json.dumps({name: value for name, value in json.loads(line).items()
                           if name not in VERSIONED_READ_FIELDS}, separators=(",", ":")) for line in lines[1:]]
    body = gzip.compress(("\n".join([lines[0], *entries]) + "\n").encode(), mtime=0)
    s3.put_object(Bucket=backup_bucket, Key=key, Body=body, ContentType="application/gzip",
                  Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    s3.delete_object(Bucket=backup_bucket, Key=manifest_record_key(Component.S3, bucket, backup_id))


KEPT_HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")


def described_object(s3: Any, bucket: str, key: str, version_id: str | None = None) -> dict[str, Any]:
    """An object's content type, user metadata, kept headers and tags, as S3 answers them."""
    version = {"VersionId": version_id} if version_id else {}
    head = s3.head_object(Bucket=bucket, Key=key, **version)
    tags = s3.get_object_tagging(Bucket=bucket, Key=key, **version)["TagSet"]
    return {"ContentType": head.get("ContentType"), "Metadata": head.get("Metadata"),
            **{name: head.get(name) for name in KEPT_HEADERS}, "Expires": head.get("ExpiresString"),
            "Tags": {tag["Key"]: tag["Value"] for tag in tags}}


def written_in_format_1(s3: Any, backup_bucket: str, bucket: str, backup_id: str) -> None:
    """Make a snapshot one of format s3-snapshot/1, as an earlier release wrote it: every entry records the
    headers its object had (read here from its content object, which carries them), no tags, and the header
    names the old format. Like `written_before_versions`, rewritten with the test's own rights."""
    key = manifest_key(Component.S3, bucket, backup_id)
    lines = gzip.decompress(s3.get_object(Bucket=backup_bucket, Key=key)["Body"].read()).decode().splitlines()
    header = json.loads(lines[0]) | {"format": "s3-snapshot/1"}
    entries = []
    for line in lines[1:]:
        entry = json.loads(line)
        if entry.pop("described_by_content"):
            held = described_object(s3, backup_bucket, entry["content_key"])
            entry |= {"content_type": held["ContentType"], "metadata": held["Metadata"],
                      "headers": {name: held[name] for name in (*KEPT_HEADERS, "Expires") if held[name]}}
        del entry["tags"]
        entries.append(json.dumps(entry, separators=(",", ":")))
    body = gzip.compress(("\n".join([json.dumps(header), *entries]) + "\n").encode(), mtime=0)
    s3.put_object(Bucket=backup_bucket, Key=key, Body=body, ContentType="application/gzip",
                  Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    s3.delete_object(Bucket=backup_bucket, Key=manifest_record_key(Component.S3, bucket, backup_id))


class InvocationCrash(RuntimeError):
    """Stands for an invocation dying between two AWS calls (a timeout, running out of memory)."""


class CrashPlan:
    """Kills the invocation under way after its Nth AWS call, through a botocore hook on the clients it is
    attached to: calls 1..N happen, the next one raises InvocationCrash instead of being sent. Disarmed, it
    lets every call through; it disarms itself once it has fired."""

    def __init__(self) -> None:
        self._crash_after: int | None = None
        self._calls = 0

    def attach(self, *clients: Any) -> CrashPlan:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._before_call)
        return self

    def arm(self, after_calls: int | None) -> None:
        self._crash_after, self._calls = after_calls, 0

    def disarm(self) -> None:
        self._crash_after = None

    def _before_call(self, model: Any, **_: Any) -> None:
        if self._crash_after is None:
            return
        if self._calls >= self._crash_after:
            self._crash_after = None
            raise InvocationCrash(f"crashed before {model.name}, after {self._calls} AWS call(s)")
        self._calls += 1


class DyingInvocations:
    """Kills the invocation under way after its Nth AWS call, made by any boto3 client (the clients a handler
    builds for itself too: botocore's BaseClient._make_api_call is wrapped): calls 1..N happen; the next one,
    and every later one until the next `arm` (a new invocation), raise InvocationCrash from whichever thread
    makes them, as a process that died makes no more calls. Unlike CrashPlan, nothing the dying invocation
    would do after the crash (record what its other threads finished, answer an error) reaches AWS.

    Armed with `counting(operation, params)`, only the calls it picks count (the Nth copy into a bucket: a crash
    amid a restore's changes); the crash still comes before the next counted call. A call made while another is
    under way on the same thread (a test fake's own lookup, inside a hook of the outer call) is not counted.
    `answer(client, operation, params)` may answer a call itself, as AWS would where moto cannot (a response
    dict), or return None to send it; answered calls count like any other."""

    def __init__(self, answer: Any = None) -> None:
        self._answer = answer
        self._lock = threading.Lock()
        self._nested = threading.local()
        self._crash_after: int | None = None
        self._counting: Any = None
        self._calls = 0
        self.fired = False

    def install(self, monkeypatch: Any) -> DyingInvocations:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        plan = self

        def calling(client: Any, operation_name: str, params: Any) -> Any:
            depth = getattr(plan._nested, "depth", 0)
            if depth == 0:
                plan._before_call(operation_name, params)
            plan._nested.depth = depth + 1
            try:
                answered = plan._answer(client, operation_name, params) if plan._answer and depth == 0 else None
                return answered if answered is not None else original(client, operation_name, params)
            finally:
                plan._nested.depth = depth

        monkeypatch.setattr(BaseClient, "_make_api_call", calling)
        return self

    def arm(self, after_calls: int | None, counting: Any = None) -> None:
        """A new invocation begins; it dies after `after_calls` AWS calls (None: it does not), of those
        `counting` picks if given."""
        with self._lock:
            self._crash_after, self._counting, self._calls, self.fired = after_calls, counting, 0, False

    def disarm(self) -> None:
        with self._lock:
            self._crash_after, self.fired = None, False

    def die(self, operation_name: str) -> None:
        """Kill the invocation before the call under way is sent (from `answer`)."""
        with self._lock:
            self.fired = True
        raise InvocationCrash(f"crashed before {operation_name}")

    @property
    def calls(self) -> int:
        """The calls the invocation made since it was armed to die (none are counted otherwise)."""
        return self._calls

    def _before_call(self, operation_name: str, params: Any) -> None:
        with self._lock:
            if self.fired:
                raise InvocationCrash(f"the invocation died; {operation_name} is never sent")
            if self._crash_after is None or (self._counting and not self._counting(operation_name, params)):
                return
            if self._calls >= self._crash_after:
                self.fired = True
                raise InvocationCrash(f"crashed before {operation_name}, after {self._calls} AWS call(s)")
            self._calls += 1


class FanOutStateMachine:
    """A state machine in moto's Step Functions for a fan-out's executions (`executions`), and RedriveExecution,
    which moto lacks, answered by a hook that records each redriven execution in `redrives`. moto starts,
    describes and stops executions but does not run a Distributed Map: tests call the shard workers themselves."""

    def __init__(self, name: str, clock: Callable[[], datetime]) -> None:
        self.sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = self.sfn.create_state_machine(
            name=name, definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/fanout")
        self.arn = machine["stateMachineArn"]
        self.executions = MapExecutions(self.sfn, self.arn)
        self.redrives: list[str] = []

        def asked(params: dict[str, Any], **_: Any) -> None:
            self.redrives.append(params["executionArn"])

        def answered(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            return AWSResponse("https://states.us-east-1.amazonaws.com", 200, {}, None), {"redriveDate": clock()}

        self.sfn.meta.events.register("provide-client-params.sfn.RedriveExecution", asked)
        self.sfn.meta.events.register("before-call.sfn.RedriveExecution", answered)

    def execution_input(self, arn: str) -> dict[str, Any]:
        return dict(json.loads(self.sfn.describe_execution(executionArn=arn)["input"]))


def s3_metric_sum(system: SampleSystem, metric: str) -> float:
    """The sum of the controller's metric `metric` of the s3 component over the last hour (shard progress)."""
    stats = system.clients["cloudwatch"].get_metric_statistics(
        Namespace="ApiladosDR", MetricName=metric, Dimensions=[{"Name": "Component", "Value": "s3"}],
        Statistics=["Sum"], Period=3600, StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=5))
    return float(sum(point["Sum"] for point in stats["Datapoints"]))


def fan_out_configured(monkeypatch: Any, variable: str, name: str) -> FanOutStateMachine:
    """A fan-out state machine in moto, named by the environment's `variable` as the stack names it to a function,
    with the least threshold and shard size the settings allow (1,000 keys)."""
    machine = FanOutStateMachine(name, lambda: datetime.now(UTC))
    for setting, value in {variable: machine.arn, "DR_FANOUT_THRESHOLD_OBJECTS": "1000",
                           "DR_FANOUT_SHARD_OBJECTS": "1000"}.items():
        monkeypatch.setenv(setting, value)
    return machine
