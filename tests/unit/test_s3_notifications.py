"""The notification fill (embedded/s3_notifications.py): S3's notifications of a function, and direct invokes with an
S3 event, recorded as invocations per key, in the two-region sample world."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from embedded.moto_gaps import VersionBehaviour
from embedded.sample_regions import (
    add_audit_notifications,
    build_two_region_system,
    live_alias_arn,
    merge_notification,
)
from embedded.sample_system import SECONDARY_REGION, SampleSystem

SESSION = boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def two_regions(versions_behaviour: VersionBehaviour) -> SampleSystem:
    return build_two_region_system(SESSION, objects=0)


def put(s3: Any, bucket: str, key: str) -> str:
    return str(s3.put_object(Bucket=bucket, Key=key, Body=b"id\n1\n")["VersionId"])


def object_keys(sqs: Any, queue_url: str) -> list[str]:
    """The keys of the object events a queue received (S3 also sends a test event when a queue is configured)."""
    bodies = [json.loads(message["Body"]) for message in
              sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])]
    return [record["s3"]["object"]["key"] for body in bodies for record in body.get("Records", [])]


def notify_secondary_live(world: SampleSystem, **extra: Any) -> None:
    merge_notification(world.clients["s3_secondary"], world.replica_bucket, "LambdaFunctionConfigurations", {
        "Id": "secondary-live", "LambdaFunctionArn": live_alias_arn(world.clients["lambda_secondary"],
                                                                    world.function_name),
        "Events": ["s3:ObjectCreated:*"], **extra})


def test_a_put_notifies_the_live_alias_exactly_once(two_regions: SampleSystem,
                                                    versions_behaviour: VersionBehaviour) -> None:
    version_id = put(two_regions.clients["s3"], two_regions.data_bucket, "uploads/a.csv")
    [invocation] = versions_behaviour.invocations.all()
    assert (invocation.region, invocation.qualifier, invocation.version) == ("us-east-1", "LIVE",
                                                                             two_regions.versions["good"])
    assert invocation.function_arn.endswith(f":function:{two_regions.function_name}")
    assert (invocation.bucket, invocation.key, invocation.version_id) == (two_regions.data_bucket, "uploads/a.csv",
                                                                         version_id)
    assert invocation.source == "notification"
    assert versions_behaviour.invocations.per_key() == {"uploads/a.csv": 1}


def test_a_bucket_without_the_entry_records_nothing(two_regions: SampleSystem,
                                                    versions_behaviour: VersionBehaviour) -> None:
    put(two_regions.clients["s3"], two_regions.backup_bucket, "uploads/a.csv")
    put(two_regions.clients["s3_secondary"], two_regions.replica_bucket, "uploads/b.csv")
    assert versions_behaviour.invocations.all() == []
    assert versions_behaviour.invocations.unprocessed(["uploads/a.csv", "uploads/b.csv"]) == ["uploads/a.csv",
                                                                                              "uploads/b.csv"]


def test_key_filters_are_honoured(two_regions: SampleSystem, versions_behaviour: VersionBehaviour) -> None:
    notify_secondary_live(two_regions, Filter={"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"},
                                                                       {"Name": "suffix", "Value": ".csv"}]}})
    s3 = two_regions.clients["s3_secondary"]
    for key in ("uploads/a.csv", "uploads/a.json", "other/a.csv"):
        put(s3, two_regions.replica_bucket, key)
    assert versions_behaviour.invocations.per_key() == {"uploads/a.csv": 1}


def test_events_are_honoured(two_regions: SampleSystem, versions_behaviour: VersionBehaviour) -> None:
    """An entry for deletions only is not told of creations; a deletion notifies no ObjectCreated entry."""
    s3 = two_regions.clients["s3_secondary"]
    notify_secondary_live(two_regions, Events=["s3:ObjectRemoved:*"])
    put(s3, two_regions.replica_bucket, "uploads/a.csv")
    assert versions_behaviour.invocations.all() == []
    notify_secondary_live(two_regions)
    s3.delete_object(Bucket=two_regions.replica_bucket, Key="uploads/a.csv")
    assert versions_behaviour.invocations.all() == []


def test_a_missing_target_is_recorded_as_not_delivered(two_regions: SampleSystem,
                                                       versions_behaviour: VersionBehaviour) -> None:
    # (on the replica, which notifies nothing else: beside the pipeline's entry it would overlap, which S3 refuses)
    merge_notification(two_regions.clients["s3_secondary"], two_regions.replica_bucket, "LambdaFunctionConfigurations",
                       {"Id": "gone", "LambdaFunctionArn": "arn:aws:lambda:us-west-2:123456789012:function:gone",
                        "Events": ["s3:ObjectCreated:*"]})
    put(two_regions.clients["s3_secondary"], two_regions.replica_bucket, "uploads/a.csv")
    assert versions_behaviour.invocations.per_key() == {}  # nothing delivered
    missed = [invocation for invocation in versions_behaviour.invocations.all(delivered_only=False)
              if not invocation.delivered]
    assert [invocation.function_name for invocation in missed] == ["gone"]


def test_other_notification_kinds_are_untouched(two_regions: SampleSystem,
                                                versions_behaviour: VersionBehaviour) -> None:
    queues = add_audit_notifications(two_regions, SESSION)  # told of deletions
    version_id = put(two_regions.clients["s3"], two_regions.data_bucket, "uploads/a.csv")
    two_regions.clients["s3"].delete_object(Bucket=two_regions.data_bucket, Key="uploads/a.csv", VersionId=version_id)
    assert object_keys(SESSION.client("sqs"), queues[two_regions.data_bucket]) == ["uploads%2Fa.csv"]
    assert versions_behaviour.invocations.per_key() == {"uploads/a.csv": 1}


def test_replicas_notify_their_bucket_as_s3_does(two_regions: SampleSystem,
                                                 versions_behaviour: VersionBehaviour) -> None:
    """A replica is an ObjectCreated:Put in the replica bucket: a replica bucket notifying the secondary LIVE makes an
    upload to the data bucket processed in both regions (the double processing a failover must prevent)."""
    invocations = versions_behaviour.invocations
    put(two_regions.clients["s3"], two_regions.data_bucket, "uploads/before.csv")
    assert invocations.regions_per_key() == {"uploads/before.csv": {"us-east-1": 1}}  # replicated, not notified
    notify_secondary_live(two_regions)
    version_id = put(two_regions.clients["s3"], two_regions.data_bucket, "uploads/after.csv")
    assert invocations.regions_per_key()["uploads/after.csv"] == {"us-east-1": 1, SECONDARY_REGION: 1}
    [replica] = [invocation for invocation in invocations.all() if invocation.region == SECONDARY_REGION]
    assert (replica.bucket, replica.version_id, replica.qualifier) == (two_regions.replica_bucket, version_id, "LIVE")
    assert invocations.double_processed(["uploads/before.csv", "uploads/after.csv"]) == ["uploads/after.csv"]


def test_replicas_notify_a_queue_as_well(two_regions: SampleSystem, versions_behaviour: VersionBehaviour) -> None:
    sqs = SESSION.client("sqs", region_name=SECONDARY_REGION)
    url = sqs.create_queue(QueueName="replica-created")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    merge_notification(two_regions.clients["s3_secondary"], two_regions.replica_bucket, "QueueConfigurations",
                       {"Id": "created", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]})
    put(two_regions.clients["s3"], two_regions.data_bucket, "uploads/after.csv")
    versions_behaviour.replication.catch_up()
    assert object_keys(sqs, url) == ["uploads%2Fafter.csv"]


def test_replicated_delete_markers_notify_no_function(two_regions: SampleSystem,
                                                      versions_behaviour: VersionBehaviour) -> None:
    notify_secondary_live(two_regions)
    put(two_regions.clients["s3"], two_regions.data_bucket, "uploads/a.csv")
    two_regions.clients["s3"].delete_object(Bucket=two_regions.data_bucket, Key="uploads/a.csv")
    assert versions_behaviour.invocations.regions_per_key() == {"uploads/a.csv": {"us-east-1": 1,
                                                                                   SECONDARY_REGION: 1}}


def s3_event(bucket: str, key: str, version_id: str) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": SECONDARY_REGION,
                         "s3": {"bucket": {"name": bucket}, "object": {"key": key, "versionId": version_id}}}]}


def test_a_direct_invoke_with_an_s3_event_processes_its_keys(two_regions: SampleSystem,
                                                             versions_behaviour: VersionBehaviour) -> None:
    lam = two_regions.clients["lambda_secondary"]
    lam.invoke(FunctionName=two_regions.function_name, Qualifier="LIVE", InvocationType="Event",
               Payload=json.dumps(s3_event(two_regions.replica_bucket, "uploads/late+one.csv", "v1")))
    lam.invoke(FunctionName=two_regions.function_name, Qualifier="LIVE", Payload=json.dumps({"test": "health-check"}))
    [invocation] = versions_behaviour.invocations.all()
    assert (invocation.region, invocation.key, invocation.version_id, invocation.source) == (
        SECONDARY_REGION, "uploads/late one.csv", "v1", "invoke")
    assert invocation.version == two_regions.secondary_versions["good"]


@pytest.mark.parametrize(("first", "second", "refused"), [
    ({"Events": ["s3:ObjectCreated:*"]}, {"Events": ["s3:ObjectCreated:Put"]}, True),
    ({"Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}},
     {"Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "up/"}]}}},
     True),
    ({"Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a/"}]}}},
     {"Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "b/"}]}}},
     False),
    ({"Events": ["s3:ObjectCreated:*"]}, {"Events": ["s3:ObjectRemoved:*"]}, False),
])
def test_overlapping_entries_are_refused_as_s3_refuses_them(two_regions: SampleSystem, first: dict[str, Any],
                                                           second: dict[str, Any], refused: bool) -> None:
    # Given a queue entry and a function entry, on one bucket, in one configuration
    s3, sqs = two_regions.clients["s3"], two_regions.clients["sqs"]
    queue = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="gate")["QueueUrl"],
                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    configuration = {
        "QueueConfigurations": [{"Id": "gate", "QueueArn": queue, **first}],
        "LambdaFunctionConfigurations": [{"Id": "live", "LambdaFunctionArn": live_alias_arn(
            two_regions.clients["lambda"], two_regions.function_name), **second}]}
    bucket = two_regions.data_bucket
    if not refused:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
        return
    # Then S3 refuses entries sharing an event type with overlapping key filters, and keeps what it had
    def current() -> dict[str, Any]:
        found = s3.get_bucket_notification_configuration(Bucket=two_regions.data_bucket)
        return {part: entries for part, entries in found.items() if part != "ResponseMetadata"}

    before = current()
    with pytest.raises(s3.exceptions.ClientError, match=r"InvalidArgument.*overlapping"):
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    assert current() == before
