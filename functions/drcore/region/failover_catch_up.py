"""Uploads that arrived while neither region processed: between the moment the primary's notification was removed
(or the failover began, when the primary was unreachable) and the moment the replica's was in place.

With the switch gates (drcore.region.switch_gate) these are known exactly: the uploads S3 sent to the replica's gate
(they reached the replica before its notification) that S3 also sent to the primary's gate (they were created after
the primary's notification). Without the primary's gate (unreachable), the replica's gate is intersected with the
listing window below; without gates, the listing window alone decides:

Such an upload reaches the replica by replication with its last-modified time kept, and triggers nothing: the
primary no longer processes it, and the replica's notification did not exist yet when it arrived. Each one gets
one asynchronous invocation of the secondary LIVE with the event S3 would have sent. An upload that replicates
only after the replica's notification is in place is notified by S3 itself and may be invoked here as well: the
window is seconds wide, and an upload processed twice is preferred to one lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from drcore.core.models import parse_time, to_iso
from drcore.region.switch_gate import GatedUpload, SwitchGate

# A catch-up lists at most this many versions of the replica (S3 lists by key, not by time).
LISTING_LIMIT = 100_000
PAGE_SIZE = 1000
CONFIGURATION_ID = "dr-failover-catch-up"


@dataclass(frozen=True)
class MissedUpload:
    key: str
    version_id: str
    last_modified: datetime
    size: int
    etag: str

    @property
    def name(self) -> str:
        """How the plan's progress records it: one invocation per version."""
        return f"{self.key}#{self.version_id}"


def missed_uploads(s3: Any, bucket: str, start: datetime, end: datetime) -> Iterator[MissedUpload]:
    """The current versions of `bucket` last modified within [start, end]."""
    params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": PAGE_SIZE}
    listed = 0
    while listed < LISTING_LIMIT:
        page = s3.list_object_versions(**params)
        for version in page.get("Versions", []):
            listed += 1
            if version.get("IsLatest") and start <= version["LastModified"] <= end:
                yield MissedUpload(version["Key"], version["VersionId"], version["LastModified"],
                                   int(version.get("Size", 0)), str(version.get("ETag", "")).strip('"'))
        if not page.get("IsTruncated"):
            return
        params.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])


def s3_event(upload: MissedUpload, bucket: str, region: str, partition: str = "aws") -> dict[str, Any]:
    """The event S3 sends a function for a created object (its notification's shape, version 2.1)."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region, "eventTime": to_iso(upload.last_modified),
        "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "dr-controller"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": CONFIGURATION_ID,
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "dr-controller"},
                          "arn": f"arn:{partition}:s3:::{bucket}"},
               "object": {"key": quote_plus(upload.key, safe="/"), "size": upload.size, "eTag": upload.etag,
                          "versionId": upload.version_id, "sequencer": "0"}},
    }]}


def drain(gate: SwitchGate, entry_id: str, record: Callable[[tuple[GatedUpload, ...]], None],
          remaining_ms: Callable[[], int], reserve_ms: int) -> bool:
    """Each batch of the gate's messages recorded (`record` checkpoints it), then deleted; False when the
    invocation must continue in a new one (the drain resumes where it stopped)."""
    for batch in gate.batches(entry_id):
        record(batch.uploads)
        gate.delete(batch.receipts)
        if remaining_ms() < reserve_ms:
            return False
    return True


def as_missed(upload: GatedUpload) -> MissedUpload:
    """A gated upload as the catch-up invokes it (the event's time standing for the object's)."""
    return MissedUpload(upload.key, upload.version_id, parse_time(upload.event_time), upload.size, upload.etag)


def invoke_each_once(uploads: Iterable[MissedUpload], progress: dict[str, Any], field: str,
                     invoke: Callable[[MissedUpload], None], save: Callable[[], None],
                     remaining_ms: Callable[[], int], reserve_ms: int) -> bool:
    """`invoke` each upload not yet named in `progress[field]`, naming each there (and `save`-ing) as soon as it is
    invoked, so that a resumption invokes none twice; False when the invocation must continue in a new one."""
    invoked = set(progress.get(field, []))
    for upload in uploads:
        if upload.name in invoked:
            continue
        if remaining_ms() < reserve_ms:
            return False
        invoke(upload)
        invoked.add(upload.name)
        progress[field] = sorted(invoked)
        save()
    return True


def invoke_once(lambda_client: Any, function_name: str, qualifier: str, event: dict[str, Any]) -> None:
    """One asynchronous invocation (Lambda queues it and retries a failure itself)."""
    lambda_client.invoke(FunctionName=function_name, Qualifier=qualifier, InvocationType="Event",
                         Payload=json.dumps(event).encode())
