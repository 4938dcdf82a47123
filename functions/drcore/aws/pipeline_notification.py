"""The switch that decides whether a bucket processes uploads: the pipeline's entry in its notifications.

A bucket processes exactly when its notification configuration has a `LambdaFunctionConfigurations` entry
whose target is its region's `LIVE` alias. PutBucketNotificationConfiguration replaces the whole
configuration (the runbook's failover-region.sh dropped every other entry with it), so the pipeline's entry
is merged in and removed by its target, and everything else (other Lambda entries, queues, topics,
EventBridge) is written back exactly as S3 returned it.

A target is a Lambda ARN or, for the switch gate (drcore.region.switch_gate), an SQS queue ARN: `swap` puts one
in the other's place in a single write, so each upload's event goes to exactly one of them.

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
QUEUE_ENTRIES = "QueueConfigurations"
PIPELINE_EVENTS = ("s3:ObjectCreated:*",)
# The Id of an entry the controller merges in (where the bucket has none for the target yet).
PIPELINE_ENTRY_ID = "dr-pipeline-live"


def live_alias_arn(region: str, account: str, function_name: str, live_alias: str, partition: str = "aws") -> str:
    return f"arn:{partition}:lambda:{region}:{account}:function:{function_name}:{live_alias}"


def _part_of(target_arn: str) -> tuple[str, str]:
    """Where an entry for the target lives: (configuration part, the entry's target field)."""
    if target_arn.split(":")[2:3] == ["sqs"]:
        return QUEUE_ENTRIES, "QueueArn"
    return LAMBDA_ENTRIES, "LambdaFunctionArn"


def pipeline_entries(configuration: Mapping[str, Any], target_arn: str) -> list[dict[str, Any]]:
    """The configuration's entries that send to `target_arn`."""
    part, field = _part_of(target_arn)
    return [dict(entry) for entry in configuration.get(part) or [] if entry.get(field) == target_arn]


def with_pipeline_entry(configuration: Mapping[str, Any], target_arn: str,
                        template: Mapping[str, Any] | None = None, entry_id: str | None = None) -> dict[str, Any]:
    """The configuration with an entry sending to `target_arn` (unchanged if it has one).

    `template` gives the entry's events and filter (the primary's entry, so the replica processes the same
    uploads); without it, every object created. `entry_id`: the entry's Id (S3 names it in each event)."""
    merged = _parts(configuration)
    existing = pipeline_entries(merged, target_arn)
    if existing and (entry_id is None or existing[0].get("Id") == entry_id):
        return merged
    if existing:  # an entry of another switch's (its Id names its plan): this switch's takes its place
        merged = without_pipeline_entry(merged, target_arn)
    part, field = _part_of(target_arn)
    entry: dict[str, Any] = {"Id": entry_id or _free_id(merged), field: target_arn,
                             "Events": list((template or {}).get("Events") or PIPELINE_EVENTS)}
    if template and template.get("Filter"):
        entry["Filter"] = template["Filter"]
    merged[part] = [*merged.get(part, []), entry]
    return merged


def without_pipeline_entry(configuration: Mapping[str, Any], target_arn: str) -> dict[str, Any]:
    """The configuration without the entries sending to `target_arn`; every other entry kept, in its place."""
    kept = _parts(configuration)
    part, field = _part_of(target_arn)
    entries = [entry for entry in kept.get(part, []) if entry.get(field) != target_arn]
    if entries:
        kept[part] = entries
    else:
        kept.pop(part, None)
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

    def merge_in(self, bucket: str, target_arn: str, template: Mapping[str, Any] | None = None,
                 entry_id: str | None = None) -> NotificationChange:
        current = self.configuration(bucket)
        return self._write(bucket, target_arn, current, with_pipeline_entry(current, target_arn, template, entry_id))

    def remove(self, bucket: str, target_arn: str) -> NotificationChange:
        current = self.configuration(bucket)
        return self._write(bucket, target_arn, current, without_pipeline_entry(current, target_arn))

    def swap(self, bucket: str, removed_arn: str, added_arn: str, template: Mapping[str, Any] | None = None,
             entry_id: str | None = None) -> NotificationChange:
        """`added_arn`'s entry in place of `removed_arn`'s, in one write: S3 sends each event to one of the two
        (the change is about `added_arn`: `processing` says whether it is there on read-back)."""
        current = self.configuration(bucket)
        desired = with_pipeline_entry(without_pipeline_entry(current, removed_arn), added_arn, template, entry_id)
        return self._write(bucket, added_arn, current, desired, also_ours=removed_arn)

    def _write(self, bucket: str, target_arn: str, current: dict[str, Any], desired: dict[str, Any],
               also_ours: str | None = None) -> NotificationChange:
        changed = desired != current
        if changed:
            self._s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=desired)
        after = self.configuration(bucket)
        others = without_pipeline_entry(desired, target_arn)
        lost = _missing_entries(without_pipeline_entry(others, also_ours) if also_ours else others, after)
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
