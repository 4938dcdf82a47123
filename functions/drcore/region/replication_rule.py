"""The replication rule the controller owns on the data bucket, how S3 reads a rule's filter, and the names of
the replication metrics S3 publishes for it.

The rule replicates every object of the data bucket to the replica bucket in the secondary region, with S3
Replication Time Control (most objects within 15 minutes, and the metrics that say how far behind the replica
is) and delete-marker replication (a deletion in the primary is a deletion in the replica, so a failover never
resurrects what was deleted). It is recognised by its ID alone: the controller changes no other rule.

Pure: no AWS call here. The stack's alarms (stacks/constructs/replication.py) take the metric names from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OWNED_RULE_ID = "apilados-dr-replica"
# S3 Replication Time Control offers exactly this threshold, for the replication time and for its metrics' events.
RTC_MINUTES = 15

# What S3 publishes per rule once the rule's Metrics are enabled (namespace AWS/S3, in the source bucket's region).
S3_NAMESPACE = "AWS/S3"
REPLICATION_LATENCY_METRIC = "ReplicationLatency"  # seconds the destination is behind the source
OPERATIONS_PENDING_METRIC = "OperationsPendingReplication"
BYTES_PENDING_METRIC = "BytesPendingReplication"
OPERATIONS_FAILED_METRIC = "OperationsFailedReplication"
SOURCE_BUCKET_DIMENSION = "SourceBucket"
DESTINATION_BUCKET_DIMENSION = "DestinationBucket"
RULE_ID_DIMENSION = "RuleId"

Rule = Mapping[str, Any]


def replication_dimensions(source_bucket: str, destination_bucket: str, rule_id: str = OWNED_RULE_ID) -> dict[str, str]:
    """The dimensions of a rule's replication metrics, as S3 publishes them (bucket names, not ARNs)."""
    return {SOURCE_BUCKET_DIMENSION: source_bucket, DESTINATION_BUCKET_DIMENSION: destination_bucket,
            RULE_ID_DIMENSION: rule_id}


def bucket_arn(bucket: str, partition: str) -> str:
    return f"arn:{partition}:s3:::{bucket}"


def bucket_of(arn: str) -> str:
    """The bucket a destination ARN names (`arn:aws:s3:::name`)."""
    return arn.rsplit(":", 1)[-1]


def owned_rule(replica_bucket_arn: str, priority: int) -> dict[str, Any]:
    """The controller's rule: everything, to the replica, with Replication Time Control and delete markers."""
    window = {"Minutes": RTC_MINUTES}
    return {
        "ID": OWNED_RULE_ID,
        "Priority": priority,
        "Status": "Enabled",
        # An empty prefix is every key; a Filter makes the rule S3's V2 schema, which RTC needs.
        "Filter": {"Prefix": ""},
        "DeleteMarkerReplication": {"Status": "Enabled"},
        "Destination": {
            "Bucket": replica_bucket_arn,
            "ReplicationTime": {"Status": "Enabled", "Time": window},
            # RTC requires the metrics; they are what `status` and the alarms read.
            "Metrics": {"Status": "Enabled", "EventThreshold": window},
        },
    }


@dataclass(frozen=True)
class KeyFilter:
    """Which keys a rule applies to: a key prefix and tags an object must all carry."""

    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def overlaps(self, other: KeyFilter) -> bool:
        """Whether some object could match both: one prefix extends the other, and no tag key is required with
        two different values."""
        if not (self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)):
            return False
        mine = dict(self.tags)
        return all(mine.get(key, value) == value for key, value in other.tags)


def _tags(value: Any) -> tuple[tuple[str, str], ...]:
    listed = value if isinstance(value, list) else [value] if value else []
    return tuple(sorted((str(tag.get("Key")), str(tag.get("Value"))) for tag in listed if isinstance(tag, Mapping)))


def is_v2(rule: Rule) -> bool:
    """S3 reads a rule with a Filter as its current (V2) schema, and one without as the first (V1), whose
    prefix is the rule's own `Prefix`."""
    return "Filter" in rule


def key_filter(rule: Rule) -> KeyFilter:
    """The keys a rule applies to, in either schema."""
    if not is_v2(rule):
        return KeyFilter(prefix=str(rule.get("Prefix") or ""))
    found = rule.get("Filter") or {}
    if "And" in found:
        both = found["And"] or {}
        return KeyFilter(prefix=str(both.get("Prefix") or ""), tags=_tags(both.get("Tags")))
    if "Tag" in found:
        return KeyFilter(tags=_tags(found["Tag"]))
    return KeyFilter(prefix=str(found.get("Prefix") or ""))


def is_enabled(rule: Rule) -> bool:
    return rule.get("Status") == "Enabled"


def destination_of(rule: Rule) -> str:
    return str((rule.get("Destination") or {}).get("Bucket", ""))


def owned_rule_problems(rule: Rule | None, replica_bucket: str) -> list[str]:
    """What keeps the rule found on the data bucket from being the controller's rule as configured: empty when it
    replicates everything to the replica with RTC, metrics and delete markers."""
    if rule is None:
        return [f"the data bucket has no rule {OWNED_RULE_ID!r}: run configure_replication"]
    destination = rule.get("Destination") or {}
    checks = {
        "is not Enabled": is_enabled(rule),
        f"does not replicate to {replica_bucket}": bucket_of(destination_of(rule)) == replica_bucket,
        "does not replicate every key": key_filter(rule) == KeyFilter(),
        "does not replicate delete markers": (rule.get("DeleteMarkerReplication") or {}).get("Status") == "Enabled",
        "has no Replication Time Control": (destination.get("ReplicationTime") or {}).get("Status") == "Enabled",
        "publishes no replication metrics": (destination.get("Metrics") or {}).get("Status") == "Enabled",
    }
    return [f"rule {OWNED_RULE_ID!r} {problem}" for problem, holds in checks.items() if not holds]
