"""Replication of the data bucket to the replica bucket in the secondary region: the alarms that watch it, and what
the recovery function needs to configure it (`configure_replication`) and report on it (`status`).

The alarms read the metrics S3 publishes for the controller's rule (drcore.region.replication_rule: namespace
AWS/S3, in the data bucket's region, this stack's), and alert the alert topic when the replica falls behind by more
than `replication.max_latency_seconds`, when more than `replication.max_pending_operations` operations wait, or when
any operation fails. S3 publishes nothing before configure_replication has put the rule in place, or while nothing
is written: missing data is not breaching, and `status` says whether the rule is there.

The recovery role gets exactly the calls drcore.region makes: the data bucket's replication configuration (read
and write); the replica bucket's versioning and location (the plan's checks) and its object versions (the
status's read-back of a sample; with s3:ListBucket, so that a missing version answers 404 rather than 403); and
iam:PassRole of the configured replication role to S3 only, which PutBucketReplication requires. The data bucket's
versioning, listing and object versions are granted to it already, for restores, and so are the replica's where it
is a restore target (the standby's).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import RegionEnvVar
from drcore.region.replication_rule import (
    OPERATIONS_FAILED_METRIC,
    OPERATIONS_PENDING_METRIC,
    REPLICATION_LATENCY_METRIC,
    S3_NAMESPACE,
    replication_dimensions,
)
from stacks.constructs.restore_grants import not_granted_to_restores
from stacks.settings import Settings

REPLICATION_CONFIGURATION = ("s3:GetReplicationConfiguration", "s3:PutReplicationConfiguration")
REPLICA_BUCKET_READS = ("s3:GetBucketVersioning", "s3:GetBucketLocation", "s3:ListBucket")
REPLICA_OBJECT_READS = ("s3:GetObjectVersion",)


def replication_alarm_name(settings: Settings, kind: str) -> str:
    return f"{settings.data_bucket}-replication-{kind}"


class ReplicationAlarms(Construct):
    """Latency, pending operations and failed operations of the controller's replication rule."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, alert_topic: sns.ITopic) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        options = settings.replication
        self.alarms = [
            self._alarm("Latency", "latency", REPLICATION_LATENCY_METRIC, "Maximum", options.max_latency_seconds,
                        f"The replica {settings.replica_bucket} is more than {options.max_latency_seconds} seconds "
                        f"behind {settings.data_bucket}: objects written since would be lost in a region outage."),
            self._alarm("Pending", "pending", OPERATIONS_PENDING_METRIC, "Maximum", options.max_pending_operations,
                        f"More than {options.max_pending_operations} operations of {settings.data_bucket} wait to be "
                        f"replicated to {settings.replica_bucket}: what a region outage now would leave behind."),
            self._alarm("Failed", "failed", OPERATIONS_FAILED_METRIC, "Sum", 0,
                        f"Objects of {settings.data_bucket} failed to replicate to {settings.replica_bucket} (S3 does "
                        "not retry them): check the replication role and the replica bucket, then replicate them "
                        "with S3 Batch Replication."),
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(alert_topic))

    def _alarm(self, construct_id: str, kind: str, metric_name: str, statistic: str, threshold: int,
               description: str) -> cloudwatch.Alarm:
        settings = self._settings
        window = settings.replication.alarm_window
        failures = metric_name == OPERATIONS_FAILED_METRIC
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=replication_alarm_name(settings, kind),
            alarm_description=description + " `status` on the recovery function shows the pending objects.",
            metric=cloudwatch.Metric(
                namespace=S3_NAMESPACE,
                metric_name=metric_name,
                dimensions_map=replication_dimensions(settings.data_bucket, settings.replica_bucket),
                statistic=statistic,
                period=Duration.minutes(window.period_minutes),
            ),
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            # One failed operation is one object the replica will not have: no waiting for a second period.
            evaluation_periods=1 if failures else window.evaluation_periods,
            datapoints_to_alarm=1 if failures else window.datapoints_to_alarm,
            # No rule yet, or nothing written: S3 publishes nothing, which is no fault (status tells the first).
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )


def region_environment(settings: Settings) -> dict[str, str]:
    """The recovery function's replication settings (drcore.core.config.RegionEnvVar), every one set."""
    options = settings.replication
    values = {
        RegionEnvVar.SECONDARY_REGION: settings.secondary_region,
        RegionEnvVar.REPLICA_BUCKET_NAME: settings.replica_bucket,
        RegionEnvVar.REPLICATION_ROLE_ARN: options.role_arn or "",
        RegionEnvVar.REPLICATION_SAMPLE_SIZE: str(options.sample_size),
        RegionEnvVar.REPLICATION_MAX_LATENCY_SECONDS: str(options.max_latency_seconds),
        RegionEnvVar.REPLICATION_MAX_PENDING_OPERATIONS: str(options.max_pending_operations),
    }
    unset = sorted(name.value for name in RegionEnvVar if name not in values)
    if unset:
        raise ValueError(f"drcore.core.config.RegionEnvVar defines {', '.join(unset)}, which the stack does not set")
    return {str(name.value): value for name, value in values.items()}


def grant_replication(function: lambda_.Function, settings: Settings, restore_targets: Sequence[str]) -> None:
    """Set the replication settings on `function` (the recovery function) and grant its role their calls;
    `restore_targets`: the buckets its restores list and read already."""
    for name, value in region_environment(settings).items():
        function.add_environment(name, value)
    partition = Stack.of(function).partition
    data, replica = (f"arn:{partition}:s3:::{bucket}" for bucket in (settings.data_bucket, settings.replica_bucket))
    statements = [
        iam.PolicyStatement(sid="MergeDataBucketReplication", actions=list(REPLICATION_CONFIGURATION),
                            resources=[data]),
    ]
    # The replica is a restore target in the standby, whose listing and object reads its restores hold already.
    bucket_reads = not_granted_to_restores(REPLICA_BUCKET_READS, settings.replica_bucket, restore_targets)
    if bucket_reads:
        statements.append(iam.PolicyStatement(sid="ReadReplicaBucket", actions=bucket_reads, resources=[replica]))
    object_reads = not_granted_to_restores(REPLICA_OBJECT_READS, settings.replica_bucket, restore_targets, objects=True)
    if object_reads:
        statements.append(iam.PolicyStatement(sid="ReadReplicaVersions", actions=object_reads,
                                              resources=[f"{replica}/*"]))
    if settings.replication.role_arn:
        statements.append(iam.PolicyStatement(
            sid="PassReplicationRoleToS3", actions=["iam:PassRole"], resources=[settings.replication.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "s3.amazonaws.com"}}))
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant replication to")
    # A managed policy of their own, not the role's inline one: the recovery role's inline policy is near IAM's
    # size limit, and what CDK moves into an overflow policy at synth escapes the suppressions made here.
    grants = iam.ManagedPolicy(function, "ReplicationGrants", statements=statements, roles=[role])
    if object_reads:
        NagSuppressions.add_resource_suppressions(grants, [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Replication status checks read object versions of the replica bucket by the keys of the data "
                "bucket's newest uploads, which cannot be listed at synth time; read-only.",
                applies_to=[RegexAppliesTo(
                    regex=rf"/^Resource::arn:[^:]+:s3:::{_escaped(settings.replica_bucket)}\/\*$/")],
            ),
        ], apply_to_children=True)


def _escaped(bucket: str) -> str:
    return bucket.replace(".", r"\.")
