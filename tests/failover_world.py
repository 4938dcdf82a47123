"""Both regions of the sample system for the failover tests: the primary's pipeline (function, LIVE/STABLE, the data
bucket with the pipeline's notification and another owner's), the secondary's (the same code under LIVE/STABLE, the
replica bucket with an entry of its own, S3 allowed to invoke LIVE from it), replication configured and filled by
embedded/s3_replication.py, and a function backup in the backup store.

moto serves both regions in one mock. The state table stands in for the global table: moto does not replicate
tables between regions, so the recovery function and the primary's watchers read and write the one table (the
region record's claims are immutable and per writer, which is what makes the global table's replication safe).
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from drcore.aws.pipeline_notification import live_alias_arn
from drcore.backup.function_backup import FunctionBackup
from drcore.core.config import FailoverEnvVar
from drcore.state.backup_store import BackupStore
from drcore.wiring.recovery import recovery_service
from embedded.sample_system import (
    FUNCTION_ENVIRONMENT,
    SECONDARY_REGION,
    SampleSystem,
    add_replica,
    execution_role_name,
)
from tests.support import WHO, act

PRIMARY_REGION = "us-east-1"
ACCOUNT = "123456789012"
PRIMARY_LIVE = live_alias_arn(PRIMARY_REGION, ACCOUNT, "apilados-pipeline-ingest", "LIVE")
SECONDARY_LIVE = live_alias_arn(SECONDARY_REGION, ACCOUNT, "apilados-pipeline-ingest", "LIVE")
PIPELINE_ENTRY = {"Id": "ProcessCSVFiles", "LambdaFunctionArn": PRIMARY_LIVE, "Events": ["s3:ObjectCreated:*"],
                  "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}}
SECONDARY_ENVIRONMENT = {**FUNCTION_ENVIRONMENT, "REGION_ROLE": "standby"}
FAILOVER = {"action": "failover", **WHO}


def audit_queue(sqs: Any, name: str) -> str:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def notifications(s3: Any, bucket: str) -> dict[str, Any]:
    answer = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    answer.pop("ResponseMetadata", None)
    return answer


def processing(s3: Any, bucket: str, target: str) -> bool:
    return any(entry["LambdaFunctionArn"] == target
               for entry in notifications(s3, bucket).get("LambdaFunctionConfigurations", []))


def build_regions(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    add_replica(world, boto3.session.Session(region_name=PRIMARY_REGION))
    for name, value in {**world.region_environment(), FailoverEnvVar.PRIMARY_REGION.value: PRIMARY_REGION}.items():
        monkeypatch.setenv(name, value)
    planned = act({"action": "configure_replication", **WHO})["result"]
    assert act({"action": "configure_replication", **WHO, "confirm": planned["plan_id"]})["result"]["result"]["ok"]
    primary_s3, secondary_s3 = world.clients["s3"], world.clients["s3_secondary"]
    # S3 replicates what is written after the rule exists: the operator copies the objects already there onto
    # themselves (as S3 Batch Replication would), so the replica holds them too.
    keys = [item["Key"] for page in primary_s3.get_paginator("list_objects_v2").paginate(Bucket=world.data_bucket)
            for item in page.get("Contents", [])]
    for key in keys:
        primary_s3.copy_object(Bucket=world.data_bucket, Key=key, MetadataDirective="COPY",
                               CopySource={"Bucket": world.data_bucket, "Key": key},
                               TaggingDirective="COPY", StorageClass="STANDARD")
    _replicated(primary_s3, world.data_bucket, keys)
    sqs = world.clients["sqs"]
    primary_s3.put_bucket_notification_configuration(Bucket=world.data_bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [PIPELINE_ENTRY],
        "QueueConfigurations": [{"Id": "audit", "QueueArn": audit_queue(sqs, "data-audit"),
                                 "Events": ["s3:ObjectRemoved:*"]}]})
    west_sqs = boto3.client("sqs", region_name=SECONDARY_REGION)
    secondary_s3.put_bucket_notification_configuration(Bucket=world.replica_bucket, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "replica-audit", "QueueArn": audit_queue(west_sqs, "replica-audit"),
                                 "Events": ["s3:ObjectRemoved:*"]}]})  # (ObjectCreated would overlap the pipeline's)
    _deploy_secondary_function(world)
    FunctionBackup(world.clients["lambda"], BackupStore(primary_s3, world.backup_bucket), world.function_name).run(
        reason="before the outage")
    return world


def _replicated(s3: Any, bucket: str, keys: list[str]) -> None:
    """Wait (bounded) until every key's current version is COMPLETED on the replica (the fill replicates in the
    background), then into the next whole second: S3 keeps last-modified times to the second, and a failover's
    catch-up window opens at the start of the second it began in; these uploads were processed long before."""
    deadline = time.monotonic() + 30
    while any(s3.head_object(Bucket=bucket, Key=key).get("ReplicationStatus") != "COMPLETED" for key in keys):
        assert time.monotonic() < deadline, "the replication fill did not complete the setup's copies"
        time.sleep(0.1)
    time.sleep(1.0 - datetime.now(UTC).microsecond / 1_000_000)


def _deploy_secondary_function(world: SampleSystem) -> None:
    """The pipeline in the secondary region: STABLE's code as the primary's STABLE has it, LIVE on it too."""
    primary = world.clients["lambda"]
    stable = primary.get_function(FunctionName=world.function_name, Qualifier="STABLE")
    with urllib.request.urlopen(stable["Code"]["Location"]) as response:  # the loopback archive server
        code = response.read()
    west = boto3.client("lambda", region_name=SECONDARY_REGION)
    world.clients["lambda_secondary"] = west
    role = world.clients["iam"].get_role(RoleName=execution_role_name(world.function_name))["Role"]["Arn"]
    west.create_function(FunctionName=world.function_name, Runtime="python3.13", Role=role, Handler="index.handler",
                         Code={"ZipFile": code}, Environment={"Variables": dict(SECONDARY_ENVIRONMENT)})
    version = west.publish_version(FunctionName=world.function_name)["Version"]
    for alias in ("STABLE", "LIVE"):
        west.create_alias(FunctionName=world.function_name, Name=alias, FunctionVersion=version)
    west.add_permission(FunctionName=world.function_name, Qualifier="LIVE", StatementId="s3-invokes-live",
                        Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                        SourceArn=f"arn:aws:s3:::{world.replica_bucket}")


def unreachable_primary(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call the failover makes to the primary region fails to connect, as in a region outage; returns the
    operations attempted."""
    attempted: list[str] = []

    def factory(region: str, seconds: int) -> Any:
        def client(service: str) -> Any:
            built = boto3.client(service, region_name=region)

            def refuse(model: Any, **_: Any) -> None:
                attempted.append(model.name)
                raise EndpointConnectionError(endpoint_url=f"https://{service}.{region}.amazonaws.com")

            built.meta.events.register("before-call.*.*", refuse)
            return built
        return client

    monkeypatch.setattr("drcore.wiring.failover.bounded_client_factory", factory)
    recovery_service.cache_clear()  # the next invocation builds its service anew, with these clients
    return attempted


def environment_of(world: SampleSystem) -> dict[str, str]:
    configuration = world.clients["lambda_secondary"].get_function_configuration(FunctionName=world.function_name)
    return dict(configuration["Environment"]["Variables"])


def plan_document(world: SampleSystem, plan_id: str) -> dict[str, Any]:
    item = world.clients["dynamodb"].get_item(TableName=world.table, Key={
        "pk": {"S": f"FUNCTION#{world.function_name}"}, "sk": {"S": f"PLAN#{plan_id}"}})["Item"]
    return {key: json.loads(value["S"]) for key, value in item.items() if key in ("progress", "result")}
