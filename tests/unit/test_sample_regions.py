"""The two-region sample world (embedded/sample_regions.py) is what the failover and failback act on: read back
through the API, region by region."""

from __future__ import annotations

import boto3

from embedded.moto_gaps import VersionBehaviour
from embedded.sample_regions import PIPELINE_NOTIFICATION_ID, SECONDARY_FUNCTION_ENVIRONMENT, build_two_region_system
from embedded.sample_system import FUNCTION_ENVIRONMENT, SECONDARY_REGION


def test_the_world_serves_both_regions(versions_behaviour: VersionBehaviour) -> None:
    world = build_two_region_system(boto3.session.Session(region_name="us-east-1"), objects=3)
    primary, secondary = world.clients["lambda"], world.clients["lambda_secondary"]
    name = world.function_name

    def code(client: object, alias: str) -> str:
        return str(client.get_function(FunctionName=name, Qualifier=alias)["Configuration"]["CodeSha256"])  # type: ignore[attr-defined]

    assert secondary.meta.region_name == SECONDARY_REGION
    assert code(secondary, "STABLE") == code(primary, "STABLE")
    assert code(secondary, "STABLE") != code(secondary, world.secondary_versions["bad"])
    for alias in ("LIVE", "STABLE"):
        assert secondary.get_alias(FunctionName=name, Name=alias)["FunctionVersion"] == world.secondary_versions["good"]
    assert secondary.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == \
        SECONDARY_FUNCTION_ENVIRONMENT
    assert primary.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == FUNCTION_ENVIRONMENT
    alarms = world.clients["cloudwatch_secondary"].describe_alarms(AlarmNames=list(world.secondary_alarms.values()))
    assert len(alarms["MetricAlarms"]) == len(world.alarms)

    [rule] = world.clients["s3"].get_bucket_replication(Bucket=world.data_bucket)["ReplicationConfiguration"]["Rules"]
    assert rule["Destination"]["Bucket"].endswith(world.replica_bucket)
    replica = world.clients["s3_secondary"]
    listed = replica.list_object_versions(Bucket=world.replica_bucket)["Versions"]
    assert len(listed) == 3
    copied = replica.head_object(Bucket=world.replica_bucket, Key=listed[0]["Key"])
    source = world.clients["s3"].head_object(Bucket=world.data_bucket, Key=listed[0]["Key"])
    assert copied["ReplicationStatus"] == "REPLICA"
    # A replica is the same object: same version id, same content, so the same ETag.
    assert (copied["ETag"], copied["VersionId"]) == (source["ETag"], source["VersionId"])

    [entry] = world.clients["s3"].get_bucket_notification_configuration(
        Bucket=world.data_bucket)["LambdaFunctionConfigurations"]
    assert (entry["Id"], entry["Events"]) == (PIPELINE_NOTIFICATION_ID, ["s3:ObjectCreated:*"])
    assert entry["LambdaFunctionArn"].endswith(f"us-east-1:123456789012:function:{name}:LIVE")
    assert versions_behaviour.invocations.regions_per_key() == {key["Key"]: {"us-east-1": 1} for key in listed}
