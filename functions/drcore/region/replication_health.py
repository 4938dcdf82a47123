"""How replication to the secondary region is doing, for the recovery function's `status`.

Three views, each answering on its own (one that cannot be read says why, and the others still answer: the
replica's region may be the one that is down):

- `rule`: whether the data bucket's configuration holds the controller's rule as configured;
- `metrics`: what S3 publishes for that rule (latency and operations and bytes pending, the latest minute;
  operations failed, summed over the last 15 minutes), from CloudWatch;
- `sample`: the newest object versions of the data bucket (a bounded listing), each asked for its replication
  status; a COMPLETED one is looked up on the replica too (the same version, the same size), so the check reads
  back rather than trusting the flag. PENDING and FAILED versions are named with their age.

`healthy` holds when the rule is as configured, no sampled version failed, is missing on the replica or was never
in scope of the rule (written before it: S3 Batch Replication copies those), no pending version is older than the
latency threshold, and the pending operations are within theirs (the replication alarms' thresholds, from the
same settings).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from drcore.aws.errors import error_code
from drcore.aws.metrics import window_end
from drcore.core.config import RegionSettings
from drcore.core.models import Clock, utc_now
from drcore.region.replication_rule import (
    BYTES_PENDING_METRIC,
    OPERATIONS_FAILED_METRIC,
    OPERATIONS_PENDING_METRIC,
    OWNED_RULE_ID,
    REPLICATION_LATENCY_METRIC,
    S3_NAMESPACE,
    owned_rule_problems,
    replication_dimensions,
)
from drcore.region.replication_s3 import ReplicationGateway

# How far back the metrics are read: S3 RTC's threshold, the window of the failed-operations sum.
METRICS_WINDOW = timedelta(minutes=15)
# The sample's listing reads at most this many versions (five pages).
LISTING_LIMIT = 5000
# Names listed per kind of finding; the counts are always whole.
NAMED_AT_MOST = 20

# Metric, statistic, and how the datapoints of the window become one figure.
_METRICS = {
    "latency_seconds": (REPLICATION_LATENCY_METRIC, "Maximum", "latest"),
    "operations_pending": (OPERATIONS_PENDING_METRIC, "Maximum", "latest"),
    "bytes_pending": (BYTES_PENDING_METRIC, "Maximum", "latest"),
    "operations_failed": (OPERATIONS_FAILED_METRIC, "Sum", "sum"),
}


class ReplicationHealth:
    def __init__(self, source: ReplicationGateway, replica: ReplicationGateway, cloudwatch_client: Any,
                 data_bucket: str, region: RegionSettings, clock: Clock = utc_now) -> None:
        self._source = source
        self._replica = replica
        self._cloudwatch = cloudwatch_client
        self._bucket = data_bucket
        self._region = region
        self._clock = clock

    def report(self) -> dict[str, Any]:
        replica = self._region.replica_bucket
        if not replica or not self._region.secondary_region:
            return {"configured": False, "healthy": False,
                    "detail": "no replica bucket or secondary region is configured (dr.replica_bucket, "
                              "dr.secondary_region)"}
        rule = _answered(lambda: self._rule(replica))
        metrics = _answered(lambda: self._metrics(replica))
        sample = _answered(self._sample)
        return {"configured": rule.get("problems") == [], "rule_id": OWNED_RULE_ID, "bucket": self._bucket,
                "replica_bucket": replica, "secondary_region": self._region.secondary_region,
                "healthy": self._healthy(rule, metrics, sample), "rule": rule, "metrics": metrics, "sample": sample}

    def _rule(self, replica: str) -> dict[str, Any]:
        configuration = self._source.configuration(self._bucket) or {}
        found = next((rule for rule in configuration.get("Rules") or [] if rule.get("ID") == OWNED_RULE_ID), None)
        return {"problems": owned_rule_problems(found, replica),
                "priority": None if found is None else found.get("Priority")}

    def _metrics(self, replica: str) -> dict[str, Any]:
        end = window_end(self._clock())
        dimensions = [{"Name": name, "Value": value}
                      for name, value in replication_dimensions(self._bucket, replica).items()]
        queries = [{"Id": name.replace("_", ""), "MetricStat": {
            "Metric": {"Namespace": S3_NAMESPACE, "MetricName": metric, "Dimensions": dimensions},
            "Period": 60, "Stat": statistic}} for name, (metric, statistic, _) in _METRICS.items()]
        response = self._cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=end - METRICS_WINDOW,
                                                    EndTime=end, ScanBy="TimestampDescending")
        values = {result["Id"]: list(result.get("Values", [])) for result in response["MetricDataResults"]}
        figures: dict[str, Any] = {"window_minutes": int(METRICS_WINDOW.total_seconds() // 60)}
        for name, (_, _, combine) in _METRICS.items():
            found = values.get(name.replace("_", ""), [])
            # None: no datapoint in the window (no rule with metrics, or nothing replicated yet).
            figures[name] = None if not found else found[0] if combine == "latest" else sum(found)
        return figures

    def _sample(self) -> dict[str, Any]:
        now = self._clock()
        replica = self._region.replica_bucket or ""
        recent = self._source.recent_versions(self._bucket, self._region.replication_sample_size, LISTING_LIMIT)
        found: dict[str, list[dict[str, Any]]] = {
            "pending": [], "failed": [], "missing_on_replica": [], "not_replicated": []}
        completed = 0
        for version in recent.versions:
            named = {"key": version.key, "version_id": version.version_id,
                     "age_seconds": int((now - version.last_modified).total_seconds())}
            state = self._source.replication_of(self._bucket, version.key, version.version_id)
            status = None if state is None else state.status
            if status == "COMPLETED":
                copy = self._replica.replication_of(replica, version.key, version.version_id)
                if copy is not None and copy.size == version.size:
                    completed += 1
                else:
                    found["missing_on_replica"].append(named)
            elif status in ("PENDING", "FAILED"):
                found[status.lower()].append(named)
            elif status != "REPLICA":
                # Written before the rule existed, or out of its scope: S3 never replicates it by itself.
                found["not_replicated"].append(named)
        late = [entry for entry in found["pending"]
                if entry["age_seconds"] > self._region.replication_max_latency_seconds]
        return {"checked": len(recent.versions), "completed": completed,
                **{kind: len(entries) for kind, entries in found.items()}, "late": len(late),
                "listed_versions": recent.listed, "listing_complete": recent.complete,
                "named": {kind: entries[:NAMED_AT_MOST] for kind, entries in found.items() if entries}}

    def _healthy(self, rule: dict[str, Any], metrics: dict[str, Any], sample: dict[str, Any]) -> bool:
        if "error" in rule or "error" in metrics or "error" in sample or rule["problems"]:
            return False
        # A version S3 never replicates (written before the rule) is as absent from the replica as a failed one.
        failed = (metrics["operations_failed"] or 0) + sample["failed"] + sample["missing_on_replica"] + sample[
            "not_replicated"]
        latency, pending = metrics["latency_seconds"] or 0, metrics["operations_pending"] or 0
        return (failed == 0 and sample["late"] == 0 and latency <= self._region.replication_max_latency_seconds
                and pending <= self._region.replication_max_pending_operations)


def _answered(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A view's answer, or why it has none: `status` answers even when a region cannot be reached."""
    try:
        return read()
    except ClientError as error:
        return {"error": f"{error_code(error)}: {error}"}
    except BotoCoreError as error:  # no connection to the endpoint, a timeout
        return {"error": f"{type(error).__name__}: {error}"}
