"""The switch gate: during a region switch, the uploads that no region's pipeline is sent, recorded by S3 itself.

A switch stops one bucket's pipeline entry before it starts the other's. Uploads in between must be processed once
by the region that takes over, and only they: listing times cannot say which (S3 keeps last-modified to the second,
and an upload in the second of the switch may have been processed or not). So the switch swaps, in one
PutBucketNotificationConfiguration (drcore.aws.pipeline_notification `swap`), each bucket's pipeline entry for an
entry with the same events and filter that sends to a queue of the bucket's region: S3 sends each upload's event to
exactly one of the two. The gate entry's Id names the switch's plan, and S3 puts it in every event
(`configurationId`), so messages of another switch are told apart and dropped.

The queue (one per region, `failover.switch_gate_queue`, the stack's own) is empty outside a switch. Draining it is
complete when a receive that waited `failover.switch_gate_settle_seconds` found nothing and SQS counts no message
in flight (one received by a drain that crashed before deleting it comes back when its visibility ends).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

logger = Logger(child=True)

GATE_ENTRY_PREFIX = "dr-switch-gate-"
# A drain that dies keeps the messages it received for this long before SQS offers them again.
VISIBILITY_SECONDS = 30


def gate_entry_id(plan_id: str) -> str:
    """The Id of a switch's gate entries (S3 wants an entry's Id unique within a bucket's configuration)."""
    return f"{GATE_ENTRY_PREFIX}{plan_id}"


@dataclass(frozen=True)
class GatedUpload:
    """An upload S3 sent to a gate: what the event S3 would have sent the pipeline says about the object."""

    key: str
    version_id: str
    size: int
    etag: str
    event_time: str

    @property
    def name(self) -> str:
        return f"{self.key}#{self.version_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> GatedUpload:
        return cls(**document)


@dataclass(frozen=True)
class Received:
    uploads: tuple[GatedUpload, ...]  # the switch's own, from this batch
    receipts: tuple[str, ...]  # every message of the batch (others' included: they are dropped too)


class SwitchGate:
    """One region's gate queue."""

    def __init__(self, sqs_client: Any, queue_name: str, settle_seconds: int) -> None:
        self._sqs = sqs_client
        self._name = queue_name
        self._settle_seconds = settle_seconds
        self._url: str | None = None
        self._arn: str | None = None

    @property
    def queue_arn(self) -> str:
        """What the gate entry sends to (read from SQS: the queue is the stack's, in this client's region)."""
        if self._arn is None:
            self._arn = str(self._sqs.get_queue_attributes(QueueUrl=self._queue_url(), AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"])
        return self._arn

    def _queue_url(self) -> str:
        if self._url is None:
            self._url = str(self._sqs.get_queue_url(QueueName=self._name)["QueueUrl"])
        return self._url

    def batches(self, entry_id: str) -> Iterator[Received]:
        """Batches of the queue's messages until it is drained (see the module's note); the caller records each
        batch's uploads, then deletes its receipts (`delete`), so a crash in between loses nothing."""
        wait = self._settle_seconds
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self._queue_url(), MaxNumberOfMessages=10, VisibilityTimeout=VISIBILITY_SECONDS,
                WaitTimeSeconds=wait).get("Messages", [])
            if messages:
                yield Received(tuple(upload for message in messages for upload in _uploads(message, entry_id)),
                               tuple(message["ReceiptHandle"] for message in messages))
            elif self._in_flight() == 0:
                return
            else:  # held by a drain that died: SQS offers it again within VISIBILITY_SECONDS; poll, not spin
                wait = max(self._settle_seconds, 1)

    def delete(self, receipts: tuple[str, ...]) -> None:
        for start in range(0, len(receipts), 10):
            chunk = receipts[start:start + 10]
            answer = self._sqs.delete_message_batch(QueueUrl=self._queue_url(), Entries=[
                {"Id": str(number), "ReceiptHandle": receipt} for number, receipt in enumerate(chunk)])
            if answer.get("Failed"):  # such a message comes back after its visibility: recorded twice, kept once
                logger.warning("gate messages not deleted", extra={"queue": self.queue_arn,
                                                                   "failed": answer["Failed"]})

    def held(self) -> int:
        """About how many messages the queue holds (SQS's approximate counts, in flight included)."""
        return self._in_flight()

    def _in_flight(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url(),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in ("ApproximateNumberOfMessages",
                                                             "ApproximateNumberOfMessagesNotVisible"))


def _uploads(message: dict[str, Any], entry_id: str) -> Iterator[GatedUpload]:
    """The switch's created objects in one message; anything else (another switch's, S3's test event, a body that
    is not an S3 event) yields nothing."""
    try:
        records = json.loads(message.get("Body") or "{}").get("Records") or []
    except (ValueError, AttributeError):
        logger.warning("gate message is not an S3 event", extra={"message_id": message.get("MessageId")})
        return
    for record in records if isinstance(records, list) else []:
        s3 = record.get("s3") if isinstance(record, dict) else None
        item = s3.get("object") if isinstance(s3, dict) else None
        if (not isinstance(item, dict) or s3.get("configurationId") != entry_id  # type: ignore[union-attr]
                or not str(record.get("eventName", "")).startswith("ObjectCreated") or "key" not in item):
            continue
        size = item.get("size")
        yield GatedUpload(key=unquote_plus(str(item["key"])), version_id=str(item.get("versionId") or "null"),
                          size=size if isinstance(size, int) else 0, etag=str(item.get("eTag") or ""),
                          event_time=str(record.get("eventTime") or ""))
