"""The switch gate's drain (drcore.region.switch_gate) against moto's SQS, with S3 sending its events there: only
the switch's own created objects are kept, anything else in the queue is dropped, a batch is recorded before its
messages are deleted, and a drain is complete only when nothing is in flight."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from drcore.aws.pipeline_notification import BucketNotifications
from drcore.region.failover_catch_up import drain
from drcore.region.switch_gate import GatedUpload, SwitchGate, gate_entry_id

BUCKET, QUEUE = "apilados-production-data", "apilados-dr-switch-gate"


@pytest.fixture
def gated(versions_behaviour: Any) -> tuple[Any, Any, SwitchGate]:
    s3, sqs = boto3.client("s3", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    sqs.create_queue(QueueName=QUEUE)
    return s3, sqs, SwitchGate(sqs, QUEUE, settle_seconds=0)


def drained(gate: SwitchGate, plan_id: str) -> list[GatedUpload]:
    found: list[GatedUpload] = []
    assert drain(gate, gate_entry_id(plan_id), found.extend, lambda: 60_000, 0)
    return found


def test_the_gate_records_each_upload_s3_sends_it_by_key_and_version(gated):
    s3, _, gate = gated
    BucketNotifications(s3).merge_in(BUCKET, gate.queue_arn, {"Events": ["s3:ObjectCreated:*"]},
                                     gate_entry_id("fo-1"))
    versions = [s3.put_object(Bucket=BUCKET, Key="uploads/a b.csv", Body=body)["VersionId"]
                for body in (b"one", b"two")]
    uploads = drained(gate, "fo-1")
    assert [(upload.key, upload.version_id, upload.size) for upload in uploads] == [
        ("uploads/a b.csv", versions[0], 3), ("uploads/a b.csv", versions[1], 3)]
    # And the queue is empty after the drain: a second drain finds nothing
    assert drained(gate, "fo-1") == []


def test_messages_of_another_switch_s3_test_events_and_foreign_bodies_are_dropped(gated):
    s3, sqs, gate = gated
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    BucketNotifications(s3).merge_in(BUCKET, gate.queue_arn, None, gate_entry_id("fo-old"))
    s3.put_object(Bucket=BUCKET, Key="uploads/old.csv", Body=b"x")
    for body in ('{"Service":"Amazon S3","Event":"s3:TestEvent"}', "not json", "[1, 2]", '{"Records": [1, "x"]}',
                 '{"Records": [{"s3": "x"}, {"s3": {"object": "x"}}]}', '{"Records": {"s3": {}}}',
                 json.dumps({"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {
                     "configurationId": gate_entry_id("fo-new"), "object": {"key": "gone.csv"}}}]})):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    assert drained(gate, "fo-new") == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_drain_that_died_before_deleting_loses_nothing(gated):
    s3, sqs, gate = gated
    BucketNotifications(s3).merge_in(BUCKET, gate.queue_arn, None, gate_entry_id("fo-2"))
    s3.put_object(Bucket=BUCKET, Key="uploads/kept.csv", Body=b"x")
    # Given a drain that recorded nothing and died holding the message (received, not deleted)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    [held] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"]
    # When a drain runs again / Then it does not finish while the message is in flight, and records it once back
    uploads = drained(gate, "fo-2")
    assert [upload.key for upload in uploads] == ["uploads/kept.csv"] and held["ReceiptHandle"]
