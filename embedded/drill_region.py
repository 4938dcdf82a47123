"""What a region switch is judged by, read back from the two-region world (embedded/sample_regions.py): for the drill's
`failover` and `failback` steps and the benchmark's `failover` section alike.

- which regions process uploads (a bucket whose notification has an entry targeting the pipeline's function);
- the environment variables and the notification entries a switch lost (entries other than the pipeline's, which
  a switch must leave in place);
- uploads processed more often than they were written, or never (the invocation fill's per-key counts,
  embedded/s3_notifications.py);
- writes whose content the primary no longer holds after a failback.

Uploads are written through `Writes`, which keeps what was written where, so the figures compare read-back state with
the writes, never with what the switch claims to have done.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from embedded.s3_notifications import PipelineInvocations
from embedded.sample_system import SECONDARY_REGION, SampleSystem

NOTIFICATION_KINDS = ("LambdaFunctionConfigurations", "QueueConfigurations", "TopicConfigurations")
_TARGET_FIELD = {"LambdaFunctionConfigurations": "LambdaFunctionArn", "QueueConfigurations": "QueueArn",
                 "TopicConfigurations": "TopicArn"}


def notification_configuration(s3: Any, bucket: str) -> dict[str, Any]:
    return {key: value for key, value in s3.get_bucket_notification_configuration(Bucket=bucket).items()
            if key != "ResponseMetadata"}


def _targets_function(arn: str, function_name: str) -> bool:
    """Whether a Lambda ARN names the function, qualified (an alias or version) or not."""
    parts = arn.split(":")
    return len(parts) >= 7 and parts[5] == "function" and parts[6] == function_name


def pipeline_entries(configuration: dict[str, Any], function_name: str) -> list[dict[str, Any]]:
    return [entry for entry in configuration.get("LambdaFunctionConfigurations", [])
            if _targets_function(entry.get("LambdaFunctionArn", ""), function_name)]


def other_entries(configuration: dict[str, Any], function_name: str) -> set[str]:
    """Every entry that is not the pipeline's (EventBridge as one entry), each as canonical JSON."""
    entries = {json.dumps({"kind": kind, **entry}, sort_keys=True) for kind in NOTIFICATION_KINDS
               for entry in configuration.get(kind, [])
               if not _targets_function(entry.get(_TARGET_FIELD[kind], ""), function_name)}
    if "EventBridgeConfiguration" in configuration:
        entries.add(json.dumps({"kind": "EventBridgeConfiguration"}))
    return entries


def notifications_lost(before: dict[str, Any], after: dict[str, Any], function_name: str) -> list[str]:
    """Entries other than the pipeline's that were there before and are not, unchanged, after."""
    return sorted(other_entries(before, function_name) - other_entries(after, function_name))


def environment_lost(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Variables there before that are gone or hold another value after (a merge adds, never loses)."""
    return sorted(name for name, value in before.items() if after.get(name) != value)


def function_environment(lambda_client: Any, function_name: str) -> dict[str, str]:
    configuration = lambda_client.get_function_configuration(FunctionName=function_name)
    return dict(configuration.get("Environment", {}).get("Variables", {}))


@dataclass(frozen=True)
class Buckets:
    """The two regions' buckets, each with its client."""

    system: SampleSystem

    def client(self, region: str) -> Any:
        return self.system.clients["s3" if region == self.system.region else "s3_secondary"]

    def bucket(self, region: str) -> str:
        return self.system.data_bucket if region == self.system.region else self.system.replica_bucket

    @property
    def regions(self) -> tuple[str, str]:
        return self.system.region, SECONDARY_REGION

    def configurations(self) -> dict[str, dict[str, Any]]:
        return {region: notification_configuration(self.client(region), self.bucket(region))
                for region in self.regions}

    def processing_regions(self) -> list[str]:
        """The regions whose bucket notifies the pipeline's function, read back now."""
        return [region for region, configuration in self.configurations().items()
                if pipeline_entries(configuration, self.system.function_name)]


@dataclass(frozen=True)
class Write:
    region: str
    key: str
    body: bytes
    at: datetime  # when S3 had answered the upload


@dataclass
class Writes:
    """Every upload a scenario made, in order, thread-safely."""

    buckets: Buckets
    made: list[Write] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, region: str, key: str, body: bytes) -> None:
        self.buckets.client(region).put_object(Bucket=self.buckets.bucket(region), Key=key, Body=body)
        with self._lock:
            self.made.append(Write(region, key, body, datetime.now(UTC)))

    def counts(self, made_before: datetime | None = None) -> Counter[str]:
        """How often each key was written (only the uploads answered before `made_before`, when given)."""
        with self._lock:
            return Counter(write.key for write in self.made if made_before is None or write.at < made_before)

    def made_within(self, keys: list[str], start: datetime, end: datetime) -> list[str]:
        """Of `keys`, those with an upload answered within [start, end]."""
        with self._lock:
            return sorted({write.key for write in self.made if write.key in keys and start <= write.at <= end})

    def last(self) -> dict[str, Write]:
        """Each key's last write: what last-writer-wins leaves current."""
        with self._lock:
            return {write.key: write for write in self.made}


def processing_figures(invocations: PipelineInvocations, writes: Writes, function_name: str,
                       since: datetime, made_before: datetime | None = None,
                       switch: tuple[datetime, datetime] | None = None) -> dict[str, Any]:
    """Of the scenario's uploads (those answered before `made_before`, when given): keys processed more times than
    they were written (in both regions, or twice), and keys never processed. With `switch` (the moment a region
    stopped processing, and when its notification's removal had been read back): how many of the keys processed
    twice were uploaded from that moment's second until then, which S3's one-second listing times cannot split."""
    written = writes.counts(made_before)
    processed = invocations.per_key(function_name, since)
    double = sorted(key for key, count in written.items() if processed[key] > count)
    unprocessed = sorted(key for key in written if processed[key] == 0)
    figures: dict[str, Any] = {"uploads": sum(written.values()), "double_processed": len(double),
                               "unprocessed": len(unprocessed), "double_processed_keys": double[:20],
                               "unprocessed_keys": unprocessed[:20]}
    if switch is not None:
        stopped, removed = switch
        figures["double_processed_at_the_switch"] = len(writes.made_within(double, stopped.replace(microsecond=0),
                                                                           removed))
    return figures


def writes_lost(buckets: Buckets, writes: Writes, region: str) -> list[str]:
    """Keys whose last write's content is not the current content in `region`'s bucket."""
    client, bucket = buckets.client(region), buckets.bucket(region)
    lost = []
    for key, write in writes.last().items():
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            body = None
        if body != write.body:
            lost.append(key)
    return sorted(lost)


class UploadStream:
    """Uploads to one region's bucket every `interval` seconds on a thread of its own, while a switch runs."""

    def __init__(self, writes: Writes, region: str, prefix: str, interval: float = 0.05) -> None:
        self._writes, self._region, self._prefix, self._interval = writes, region, prefix, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"uploads-{prefix}", daemon=True)
        self.written = 0

    def _run(self) -> None:
        while not self._stopped.is_set():
            key = f"{self._prefix}{self.written:05d}.csv"
            self._writes.put(self._region, key, f"id\n{key}\n".encode())
            self.written += 1
            self._stopped.wait(self._interval)

    def __enter__(self) -> UploadStream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)
