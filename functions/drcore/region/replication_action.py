"""`configure_replication`: the two-step action (drcore.state.plans) that merges the controller's replication rule
into the data bucket's replication configuration.

Plan: both buckets must be versioned (S3 replicates versions only), the replica must be in the secondary region
(a replica beside the data does not survive the region), and the replication role configured; the current
configuration is read (none is fine) and the controller's rule merged into it, the rest kept exactly
(drcore.region.replication_merge). The plan shows the changes and the rules kept, and is refused, naming the
reason, where the merge could not work.

Apply (after the flow has checked that the configuration and both buckets' versioning are as planned): the
merged configuration is written (not at all when nothing changes), then read back: the controller's rule must
be there as written and every other rule exactly as it was. S3 offers no conditional PutBucketReplication, so
a change made by someone else between the flow's check and the write (milliseconds) would be overwritten; the
read-back cannot see that one, and the plan's record of the rules it kept is what to compare with.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools import Logger

from drcore.core.config import RegionSettings
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.region.replication_merge import fingerprint, merge_owned_rule, readback_differences
from drcore.region.replication_rule import OWNED_RULE_ID, bucket_arn
from drcore.region.replication_s3 import ReplicationGateway

logger = Logger(child=True)


@dataclass(frozen=True)
class ReplicationPlan:
    plan_id: str
    created_at: str
    bucket: str
    replica_bucket: str
    current: dict[str, Any] | None  # the configuration as read when planning
    merged: dict[str, Any]  # what the apply writes
    priority: int
    kept_rule_ids: tuple[str, ...]
    changes: tuple[dict[str, Any], ...]
    fingerprint: str  # of the configuration and both buckets' versioning, as planned

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ReplicationPlan:
        return cls(**{**document, "kept_rule_ids": tuple(document["kept_rule_ids"]),
                      "changes": tuple(document["changes"])})

    def summary(self) -> dict[str, Any]:
        """What the operator reviews: the changes, the rules kept unchanged, whether anything changes at all."""
        return {"bucket": self.bucket, "replica_bucket": self.replica_bucket, "rule_id": OWNED_RULE_ID,
                "priority": self.priority, "role": self.merged["Role"], "up_to_date": not self.changes,
                "changes": list(self.changes), "kept_rules": list(self.kept_rule_ids)}


class ConfigureReplicationAction:
    kind = "configure_replication"

    def __init__(self, source: ReplicationGateway, replica: ReplicationGateway, data_bucket: str,
                 region: RegionSettings, clock: Clock = utc_now) -> None:
        self._source = source
        self._replica = replica
        self._bucket = data_bucket
        self._region = region
        self._clock = clock

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        replica, role, secondary = self._configured()
        versioning = self._versioning(replica)
        self._check_buckets(replica, secondary, versioning)
        current = self._source.configuration(self._bucket)
        # The role's partition is the buckets' (aws, aws-cn, aws-us-gov).
        merged = merge_owned_rule(current, role, bucket_arn(replica, role.split(":")[1]))
        plan = ReplicationPlan(plan_id=f"rr-{secrets.token_hex(5)}", created_at=to_iso(self._clock()),
                               bucket=self._bucket, replica_bucket=replica, current=current,
                               merged=merged.configuration, priority=merged.priority,
                               kept_rule_ids=merged.kept_rule_ids, changes=merged.changes,
                               fingerprint=self._world(current, versioning))
        return plan.plan_id, plan.to_dict(), plan.summary()

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._world(self._source.configuration(self._bucket), self._versioning(str(plan["replica_bucket"])))

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return str(plan["fingerprint"])

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any = None) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        planned = ReplicationPlan.from_dict(plan)
        if planned.changes:
            self._source.put_configuration(planned.bucket, planned.merged)
        differences = readback_differences(planned.merged, self._source.configuration(planned.bucket))
        if differences:
            logger.warning("replication configuration differs after the write",
                           extra={"bucket": planned.bucket, "differences": differences})
        result = {"ok": not differences, "changed": bool(planned.changes), "bucket": planned.bucket,
                  "replica_bucket": planned.replica_bucket, "rule_id": OWNED_RULE_ID, "priority": planned.priority,
                  "kept_rules": len(planned.kept_rule_ids),
                  "verification": {"ok": not differences, "differences": differences}}
        return True, {}, result

    # Checks

    def _configured(self) -> tuple[str, str, str]:
        """The replica bucket, the replication role and the secondary region, all configured, or a refusal."""
        region = self._region
        replica, role, secondary = region.replica_bucket, region.replication_role_arn, region.secondary_region
        if replica and role and secondary:
            return replica, role, secondary
        missing = [name for name, value in (("replica_bucket", replica), ("secondary_region", secondary),
                                            ("replication.role_arn", role)) if not value]
        raise InvalidRequest(f"replication is not configured: set {', '.join(missing)} in cdk.json (dr) and "
                             "deploy; the role is the one S3 assumes to replicate into the replica bucket")

    def _versioning(self, replica: str) -> tuple[str | None, str | None]:
        """The data bucket's and the replica's versioning (None: no such bucket)."""
        return self._source.versioning(self._bucket), self._replica.versioning(replica)

    def _check_buckets(self, replica: str, secondary: str, versioning: tuple[str | None, str | None]) -> None:
        problems = []
        for label, bucket, status in (("data", self._bucket, versioning[0]), ("replica", replica, versioning[1])):
            if status is None:
                problems.append(f"the {label} bucket {bucket} does not exist")
            elif status != "Enabled":
                problems.append(f"versioning is {status} on the {label} bucket {bucket}: S3 replicates only from and "
                                "to versioned buckets; enable it first")
        if not problems:
            located = self._replica.region_of(replica)
            if located != secondary:
                problems.append(f"the replica bucket {replica} is in {located}, not in the secondary region "
                                f"{secondary}: a replica must survive the primary region")
        if problems:
            raise InvalidRequest("configure_replication refused: " + "; ".join(problems))

    @staticmethod
    def _world(current: dict[str, Any] | None, versioning: tuple[str | None, str | None]) -> str:
        """What a plan depends on: the configuration, and that both buckets are still versioned."""
        return fingerprint({"configuration": current, "data_versioning": versioning[0],
                            "replica_versioning": versioning[1]})
