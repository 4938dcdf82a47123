"""What the recovery function's `failback` alone needs (drcore.region.failback_action), in a managed policy of its
own (the recovery role's inline policy is near IAM's size limit, as for replication.py's grants).

What it calls that a failover calls too (both buckets' notifications, the replica's versions listed, the secondary
function's environment, the other region's LIVE read and its versions invoked) is the region switch's
(stacks/constructs/region_switch.py); the primary's LIVE, when this is the primary stack, is read and probed under
alias control and the validation's probe. The copy-back's listing, reads and writes of the data bucket are the
restores' grants, and the replica's versions are read for replication status (replication.py). What is left:

- the copy-back of the replica's versions brings their tags (read), unless the replica is a restore target here
  (the standby's), whose object reads include them;
- the primary's health probe publishes its answer (the controller's namespace only).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from stacks.constructs.metric_publishing import metrics_publishing
from stacks.constructs.restore_grants import not_granted_to_restores
from stacks.settings import Settings

REPLICA_COPY_READS = ("s3:GetObjectVersionTagging",)


def grant_failback(function: lambda_.Function, settings: Settings, restore_targets: Sequence[str]) -> None:
    """Grant `function`'s role (the recovery function's) the failback's own calls; `restore_targets`: the buckets
    its restores read already."""
    replica = f"arn:{Stack.of(function).partition}:s3:::{settings.replica_bucket}"
    statements = [
        metrics_publishing("PublishPrimaryProbeMetrics", settings),
    ]
    copy_reads = not_granted_to_restores(REPLICA_COPY_READS, settings.replica_bucket, restore_targets, objects=True)
    if copy_reads:
        statements.append(iam.PolicyStatement(sid="CopyBackReplicaVersions", actions=copy_reads,
                                              resources=[f"{replica}/*"]))
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant failback to")
    grants = iam.ManagedPolicy(function, "FailbackGrants", statements=statements, roles=[role])
    suppressions = [NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="PutMetricData has no resource-level permissions; it is held to the controller's namespace.",
        applies_to=["Resource::*"])]
    if copy_reads:
        suppressions.append(NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="A failback copies back the replica's versions of whatever keys the secondary wrote during the "
            "failover (unknown at synth time; tags read only).",
            applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:s3:::{_escaped(settings.replica_bucket)}\/\*$/")]))
    NagSuppressions.add_resource_suppressions(grants, suppressions, apply_to_children=True)


def _escaped(bucket: str) -> str:
    return bucket.replace(".", r"\.")
