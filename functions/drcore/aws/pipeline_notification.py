"""The switch that decides whether a bucket processes uploads: the pipeline's entry in its notifications.

A bucket processes exactly when its notification configuration has a `LambdaFunctionConfigurations` entry
whose target is its region's `LIVE` alias. PutBucketNotificationConfiguration replaces the whole
configuration (the runbook's failover-region.sh dropped every other entry with it), so the pipeline's entry
is merged in and removed by its target, and everything else (other Lambda entries, queues, topics,
EventBridge) is written back exactly as S3 returned it.

S3 has no conditional write of a notification configuration: a change made by someone else between the read
and the write (milliseconds) would be lost. Each change is read back, so a lost entry of ours is seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(child=True)

# The parts of a notification configuration S3 returns and accepts; the response's metadata is not one.
CONFIGURATION_PARTS = ("TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations",
                       "EventBridgeConfiguration")
LAMBDA_ENTRIES = "LambdaFunctionConfigurations"
PIPELINE_EVENTS = ("s3:ObjectCreated:*",)
# The Id of an entry the controller merges in (where the bucket has none for the target yet).
PIPELINE_ENTRY_ID = "dr-pipeline-live"


def live_alias_arn(region: str, account: str, function_name: str, live_alias: str, partition: str = "aws") -> str:
    return f"arn:{partition}:lambda:{region}:{account}:function:{function_name}:{live_alias}"


def pipeline_entries(configuration: Mapping[str, Any], target_arn: str) -> list[dict[str, Any]]:
    """The configuration's entries that invoke `target_arn`."""
    return [dict(entry) for entry in configuration.get(LAMBDA_ENTRIES) or []
            if entry.get("LambdaFunctionArn") == target_arn]


def with_pipeline_entry(configuration: Mapping[str, Any], target_arn: str,
                        template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The configuration with an entry invoking `target_arn` (unchanged if it has one).

    `template` gives the entry's events and filter (the primary's entry, so the replica processes the same
    uploads); without it, every object created."""
    merged = _parts(configuration)
    if pipeline_entries(merged, target_arn):
        return merged
    entry: dict[str, Any] = {"Id": _free_id(merged), "LambdaFunctionArn": target_arn,
                             "Events": list((template or {}).get("Events") or PIPELINE_EVENTS)}
    if template and template.get("Filter"):
        entry["Filter"] = template["Filter"]
    merged[LAMBDA_ENTRIES] = [*merged.get(LAMBDA_ENTRIES, []), entry]
    return merged


def without_pipeline_entry(configuration: Mapping[str, Any], target_arn: str) -> dict[str, Any]:
    """The configuration without the entries invoking `target_arn`; every other entry kept, in its place."""
    kept = _parts(configuration)
    entries = [entry for entry in kept.get(LAMBDA_ENTRIES, []) if entry.get("LambdaFunctionArn") != target_arn]
    if entries:
        kept[LAMBDA_ENTRIES] = entries
    else:
        kept.pop(LAMBDA_ENTRIES, None)
    return kept


def _parts(configuration: Mapping[str, Any]) -> dict[str, Any]:
    return {part: configuration[part] for part in CONFIGURATION_PARTS if configuration.get(part) is not None}


def _free_id(configuration: Mapping[str, Any]) -> str:
    """PIPELINE_ENTRY_ID, suffixed where another entry of any kind holds that Id (S3 wants them unique)."""
    taken = {entry.get("Id") for part in ("TopicConfigurations", "QueueConfigurations", LAMBDA_ENTRIES)
             for entry in configuration.get(part) or []}
    candidate, number = PIPELINE_ENTRY_ID, 1
    while candidate in taken:
        number += 1
        candidate = f"{PIPELINE_ENTRY_ID}-{number}"
    return candidate


@dataclass(frozen=True)
class NotificationChange:
    bucket: str
    target_arn: str
    changed: bool  # False: the configuration already was as asked
    processing: bool  # whether the bucket's read-back configuration invokes the target
    lost_entries: tuple[str, ...]  # entries of others missing on read-back (someone wrote meanwhile)

    @property
    def ok(self) -> bool:
        return not self.lost_entries

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "target": self.target_arn, "changed": self.changed,
                "processing": self.processing, "lost_entries": list(self.lost_entries)}


class BucketNotifications:
    """The pipeline's entry of buckets reached through one S3 client (one region's)."""

    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client

    def configuration(self, bucket: str) -> dict[str, Any]:
        return _parts(self._s3.get_bucket_notification_configuration(Bucket=bucket))

    def processing(self, bucket: str, target_arn: str) -> bool:
        return bool(pipeline_entries(self.configuration(bucket), target_arn))

    def merge_in(self, bucket: str, target_arn: str, template: Mapping[str, Any] | None = None) -> NotificationChange:
        current = self.configuration(bucket)
        return self._write(bucket, target_arn, current, with_pipeline_entry(current, target_arn, template))

    def remove(self, bucket: str, target_arn: str) -> NotificationChange:
        current = self.configuration(bucket)
        return self._write(bucket, target_arn, current, without_pipeline_entry(current, target_arn))

    def _write(self, bucket: str, target_arn: str, current: dict[str, Any],
               desired: dict[str, Any]) -> NotificationChange:
        changed = desired != current
        if changed:
            self._s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=desired)
        after = self.configuration(bucket)
        lost = _missing_entries(without_pipeline_entry(desired, target_arn), after)
        if lost:
            logger.warning("notification entries missing after the write",
                           extra={"bucket": bucket, "missing": list(lost)})
        change = NotificationChange(bucket, target_arn, changed, bool(pipeline_entries(after, target_arn)), lost)
        logger.info("pipeline notification written", extra=change.to_dict())
        return change


def _missing_entries(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> tuple[str, ...]:
    """The entries of `expected` (by part and Id) that `actual` lacks or holds changed."""
    missing: list[str] = []
    for part in CONFIGURATION_PARTS:
        wanted = expected.get(part)
        if part == "EventBridgeConfiguration":
            if wanted is not None and actual.get(part) is None:
                missing.append(part)
            continue
        present = {entry.get("Id"): entry for entry in _entries(actual.get(part))}
        missing.extend(f"{part}/{entry.get('Id')}" for entry in _entries(wanted)
                       if not _same_entry(entry, present.get(entry.get("Id"))))
    return tuple(missing)


def _entries(value: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    return list(value or [])


def _same_entry(expected: Mapping[str, Any], actual: Mapping[str, Any] | None) -> bool:
    if actual is None:
        return False
    return all(actual.get(key) == value for key, value in expected.items() if key != "Id")
