"""S3 notifications to Lambda made observable as invocations of the pipeline (one of the fills embedded/moto_gaps.py
lists and applies), so that a drill step or the benchmark can count which upload was processed where, and how often.

What moto lacks, and what the fill does instead:

- Notification to a function: when an object is created in a bucket whose notification configuration has a
  `LambdaFunctionConfigurations` entry matching the event and the key's prefix/suffix filters, moto tries to run the
  function's code in Docker and, failing (there is no Docker here), drops the invocation silently. Here S3's
  asynchronous invocation is recorded instead of run: one `PipelineInvocation` (region, function ARN and qualifier,
  the version the qualifier named then, bucket, key, version id, time), `delivered` only when the target function
  (and its alias or version) exists in its region. Queue, topic and EventBridge notifications are left to moto as
  they were.
- Replicas: moto's S3 sends nothing for an object written by replication (embedded/s3_replication.py writes the
  replica into the destination bucket directly). S3 does: the replica is a new object of the destination bucket and
  S3 publishes `s3:ObjectCreated:Put` for it there (`s3:ObjectCreated:CompleteMultipartUpload` for a large object
  S3 copies in parts), so a bucket that notifies a function on ObjectCreated invokes it for every replicated upload.
  AWS's event-notification guide does not say it in so many words; the event type is what users observe on
  destination buckets (a replicated object shows up as ObjectCreated:Put, or CompleteMultipartUpload when it came
  in parts), and `s3:Replication:*` events are a different family (replication failures and RTC thresholds), sent by
  the source bucket. So here a replica of an object (not of a delete marker) is notified as `s3:ObjectCreated:Put`
  in its bucket, to every kind of destination, when the replicator writes it.
- The event's object: moto's S3 event names the object's key, size and ETag, not its `versionId` nor its
  `sequencer`, which S3 sends for every object created in a versioned bucket (the notification-content structure in
  S3's user guide). Here both are added, to every kind of destination: the switch gate (drcore.region.switch_gate)
  tells uploads of one key apart by version.
- Overlapping entries: S3 refuses a notification configuration in which two entries (of any destination kind)
  share an event type (`s3:ObjectCreated:*` covers `s3:ObjectCreated:Put`) with overlapping key filters (one
  prefix a prefix of the other, and one suffix a suffix of the other; an absent filter matches all): "Configuration
  is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes are overlapping for the same
  event type" (400 InvalidArgument; S3's user guide, "Configuring event notifications using object key name
  filtering"). moto stores it. Here it is refused as S3 refuses it: a switch must swap one pipeline entry for
  another, never hold both.
- Direct invocations: an Invoke (any invocation type) whose payload is an S3 notification event (`Records` of
  `eventSource` `aws:s3`) processes the objects it names, as the failover's catch-up invoke does: each record
  becomes an invocation of its key (the key URL-decoded as S3 encodes it in events), after Invoke answered.

Tests and the embedded world read them through `behaviour.invocations` (`PipelineInvocations`): `all()`,
`per_key()`, `double_processed(keys)`, `unprocessed(keys)`. Replication runs lazily (on S3 reads), so each read
first lets the replicator catch up.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import unquote_plus

from moto.awslambda.models import LambdaBackend, lambda_backends
from moto.s3 import notifications
from moto.s3.exceptions import InvalidArgumentError
from moto.s3.models import FakeBucket, FakeKey, S3Backend

OBJECT_CREATED_PUT = notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT


@dataclass(frozen=True)
class PipelineInvocation:
    region: str
    function_arn: str  # unqualified
    qualifier: str | None  # the alias or version the caller named (None: $LATEST)
    version: str | None  # the version that qualifier pointed to then (None: not delivered)
    bucket: str
    key: str
    version_id: str | None
    at: datetime
    source: str  # "notification" (S3 invoked it) or "invoke" (a direct Invoke with an S3 event)
    delivered: bool  # the target function and qualifier exist in that region

    @property
    def function_name(self) -> str:
        return self.function_arn.split(":")[6]


class PipelineInvocations:
    """Every S3-shaped invocation of a function, in the order they happened."""

    def __init__(self, before_read: Callable[[], Any] = lambda: None) -> None:
        self._before_read = before_read  # lets the (lazy) replicator write, and so notify, what is due
        self._lock = threading.Lock()
        self._recorded: list[PipelineInvocation] = []

    def record(self, invocation: PipelineInvocation) -> None:
        with self._lock:
            self._recorded.append(invocation)

    def all(self, function_name: str | None = None, since: datetime | None = None,
            delivered_only: bool = True) -> list[PipelineInvocation]:
        self._before_read()
        with self._lock:
            recorded = list(self._recorded)
        return [invocation for invocation in recorded
                if (function_name is None or invocation.function_name == function_name)
                and (since is None or invocation.at >= since) and (invocation.delivered or not delivered_only)]

    def per_key(self, function_name: str | None = None, since: datetime | None = None) -> Counter[str]:
        """How many times each key was processed (delivered invocations), in any region."""
        return Counter(invocation.key for invocation in self.all(function_name, since))

    def regions_per_key(self, function_name: str | None = None,
                        since: datetime | None = None) -> dict[str, Counter[str]]:
        regions: dict[str, Counter[str]] = {}
        for invocation in self.all(function_name, since):
            regions.setdefault(invocation.key, Counter())[invocation.region] += 1
        return regions

    def double_processed(self, keys: Iterable[str], function_name: str | None = None,
                         since: datetime | None = None) -> list[str]:
        """Of `keys` (uploads), those processed more than once: in both regions, or twice in one."""
        counts = self.per_key(function_name, since)
        return sorted(key for key in set(keys) if counts[key] > 1)

    def unprocessed(self, keys: Iterable[str], function_name: str | None = None,
                    since: datetime | None = None) -> list[str]:
        """Of `keys` (uploads), those never processed."""
        counts = self.per_key(function_name, since)
        return sorted(key for key in set(keys) if counts[key] == 0)

    def clear(self) -> None:
        with self._lock:
            self._recorded.clear()


def _target(account_id: str, arn: str) -> tuple[str, str, str | None, str | None]:
    """(region, unqualified ARN, qualifier, version it names now or None when it does not exist) of a function ARN."""
    parts = arn.split(":")
    region, name = parts[3], parts[6]
    qualifier = parts[7] if len(parts) > 7 else None
    unqualified = ":".join(parts[:7])
    try:
        backend: LambdaBackend = lambda_backends[account_id][region]
        function = backend.get_function(name, qualifier)
    except Exception:  # noqa: BLE001 - moto raises several kinds for a missing function, alias or version
        return region, unqualified, qualifier, None
    return region, unqualified, qualifier, str(function.version)


def _s3_records(body: Any) -> list[dict[str, Any]]:
    try:
        event = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        return []
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        return []
    return [record for record in records if isinstance(record, dict) and record.get("eventSource") == "aws:s3"
            and isinstance(record.get("s3"), dict)]


# The parts of a notification configuration as moto receives it (parsed from S3's XML).
_CONFIGURATION_PARTS = ("QueueConfiguration", "TopicConfiguration", "CloudFunctionConfiguration")


def overlapping_entries(configuration: dict[str, Any]) -> tuple[str, ...]:
    """The Ids of the first two entries S3 would call overlapping, or () (the fill above says when)."""
    entries = []
    for part in _CONFIGURATION_PARTS:
        found = configuration.get(part) or []
        for entry in found if isinstance(found, list) else [found]:
            events = entry.get("Event") or []
            rules = ((entry.get("Filter") or {}).get("S3Key") or {}).get("FilterRule") or []
            rules = rules if isinstance(rules, list) else [rules]
            named = {str(rule.get("Name", "")).lower(): str(rule.get("Value", "")) for rule in rules}
            entries.append((str(entry.get("Id", "")), events if isinstance(events, list) else [events],
                            named.get("prefix", ""), named.get("suffix", "")))
    for index, (first, events, prefix, suffix) in enumerate(entries):
        for second, other_events, other_prefix, other_suffix in entries[index + 1:]:
            if (any(_events_overlap(one, other) for one in events for other in other_events)
                    and (prefix.startswith(other_prefix) or other_prefix.startswith(prefix))
                    and (suffix.endswith(other_suffix) or other_suffix.endswith(suffix))):
                return first, second
    return ()


def _events_overlap(one: str, other: str) -> bool:
    """Whether two event types name a common event (`s3:ObjectCreated:*` covers each ObjectCreated type)."""
    if one == other:
        return True
    wide, narrow = (one, other) if one.endswith(":*") else (other, one)
    return wide.endswith(":*") and narrow.startswith(wide[:-1])


@contextmanager
def pipeline_invocations_recorded(invocations: PipelineInvocations,
                                  replica_listeners: list[Callable[[S3Backend, str, FakeKey], None]]
                                  ) -> Iterator[PipelineInvocations]:
    """Apply the fill while the block runs; `replica_listeners` is the replicator's list of what to tell about
    each replica it writes (ReplicationControl.replica_listeners)."""
    original_send_event = notifications.send_event
    # S3 sends each event by the configuration of one moment. Here the function entries are read above and moto's own
    # send reads the configuration again: a configuration written in between (a switch's swap, on another thread)
    # would send one upload to both the function and the entry that replaced it. Events and configuration writes
    # are therefore serialized.
    configuration_lock = threading.RLock()

    def send_event(account_id: str, event_name: Any, bucket: FakeBucket, key: Any) -> None:
        with configuration_lock:
            configuration = bucket.notification_configuration
            if configuration is not None and isinstance(key, FakeKey):
                for entry in configuration.cloud_function:
                    if entry.matches(event_name, key.name):
                        region, arn, qualifier, version = _target(account_id, entry.arn)
                        invocations.record(PipelineInvocation(
                            region=region, function_arn=arn, qualifier=qualifier, version=version,
                            bucket=bucket.name, key=key.name,
                            version_id=key.version_id if key.version_id != "null" else None,
                            at=datetime.now(UTC), source="notification", delivered=version is not None))
            original_send_event(account_id, event_name, bucket, key)

    def replica_written(backend: S3Backend, bucket_name: str, replica: FakeKey) -> None:
        notifications.send_event(backend.account_id, OBJECT_CREATED_PUT, backend.get_bucket(bucket_name), replica)

    original_invoke = LambdaBackend.invoke

    def invoke(self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: Any) -> Any:
        answer = original_invoke(self, function_name, qualifier, body, headers, response_headers)
        records = _s3_records(body)
        if records:
            name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
            region, arn, _, version = _target(self.account_id,
                                              f"arn:aws:lambda:{self.region_name}:{self.account_id}:function:{name}")
            version = response_headers.get("x-amz-executed-version") or version
            for record in records:
                bucket = record["s3"].get("bucket") or {}
                found = record["s3"].get("object") or {}
                invocations.record(PipelineInvocation(
                    region=region, function_arn=arn, qualifier=qualifier, version=version,
                    bucket=str(bucket.get("name", "")), key=unquote_plus(str(found.get("key", ""))),
                    version_id=found.get("versionId"), at=datetime.now(UTC), source="invoke", delivered=True))
        return answer

    original_event = notifications._get_s3_event

    def s3_event(event_name: Any, bucket: FakeBucket, key: Any, notification_id: str) -> dict[str, Any]:
        event = original_event(event_name, bucket, key, notification_id)
        version_id = getattr(key, "version_id", None)
        for record in event["Records"]:
            found = record["s3"]["object"]
            if version_id and version_id != "null":
                found["versionId"] = version_id
            found["sequencer"] = f"{int(key.last_modified.timestamp() * 1_000_000):016X}"
        return event

    original_put_configuration = S3Backend.put_bucket_notification_configuration

    def put_configuration(self: S3Backend, bucket_name: str, configuration: dict[str, Any]) -> None:
        overlapping = overlapping_entries(configuration)
        if overlapping:
            raise InvalidArgumentError(
                "Configuration is ambiguously defined. Cannot have overlapping suffixes in two rules if the prefixes "
                f"are overlapping for the same event type ({' and '.join(overlapping)})",
                "NotificationConfiguration", "")
        with configuration_lock:
            original_put_configuration(self, bucket_name, configuration)

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(S3Backend, "put_bucket_notification_configuration", put_configuration))
        patches.enter_context(mock.patch.object(notifications, "_get_s3_event", s3_event))
        # S3's invocation of a function is the one recorded above: moto's attempt to run it in Docker is not made.
        patches.enter_context(mock.patch.object(notifications, "_invoke_awslambda", lambda *args, **kwargs: None))
        patches.enter_context(mock.patch.object(notifications, "send_event", send_event))
        patches.enter_context(mock.patch.object(LambdaBackend, "invoke", invoke))
        replica_listeners.append(replica_written)
        patches.callback(replica_listeners.remove, replica_written)
        yield invocations
