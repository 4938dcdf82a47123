"""What the recovery function's `failback` needs (drcore.region.failback_action), in a managed policy of its own (the
recovery role's inline policy is near IAM's size limit, as for replication.py's grants).

- The primary's health probe: the protected function's alias read and its versions invoked in the primary region,
  the probe's metrics published (the controller's namespace only).
- The copy-back: the replica's object versions listed and read with their tags (a copy brings them); the data
  bucket's listing, reads and writes are the restores' grants already, and the replica's versions are read for
  replication status already (replication.py).
- The switch: the pipeline's notification entry of the data bucket and of the replica read and written (merged, never
  replaced), and the failover's variables removed from the secondary function's environment (read, then written).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from stacks.settings import Settings

NOTIFICATION_SWITCH = ("s3:GetBucketNotification", "s3:PutBucketNotification")
REPLICA_LISTING = ("s3:ListBucketVersions",)
REPLICA_COPY_READS = ("s3:GetObjectVersionTagging",)
SECONDARY_ENVIRONMENT = ("lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration")
PRIMARY_PROBE_READS = ("lambda:GetAlias",)


def grant_failback(function: lambda_.Function, settings: Settings) -> None:
    stack = Stack.of(function)
    partition = stack.partition
    data, replica = (f"arn:{partition}:s3:::{bucket}" for bucket in (settings.data_bucket, settings.replica_bucket))

    def function_arn(region: str, qualifier: str | None = None) -> str:
        name = settings.protected_function if qualifier is None else f"{settings.protected_function}:{qualifier}"
        return stack.format_arn(service="lambda", region=region, resource="function", resource_name=name,
                                arn_format=ArnFormat.COLON_RESOURCE_NAME)

    statements = [
        iam.PolicyStatement(sid="SwitchPipelineNotifications", actions=list(NOTIFICATION_SWITCH),
                            resources=[data, replica]),
        iam.PolicyStatement(sid="ListReplicaVersions", actions=list(REPLICA_LISTING), resources=[replica]),
        iam.PolicyStatement(sid="CopyBackReplicaVersions", actions=list(REPLICA_COPY_READS),
                            resources=[f"{replica}/*"]),
        iam.PolicyStatement(sid="RestoreSecondaryEnvironment", actions=list(SECONDARY_ENVIRONMENT),
                            resources=[function_arn(settings.secondary_region)]),
        iam.PolicyStatement(sid="ReadPrimaryLiveAlias", actions=list(PRIMARY_PROBE_READS),
                            resources=[function_arn(settings.primary_region)]),
        iam.PolicyStatement(sid="ProbePrimaryLiveVersions", actions=["lambda:InvokeFunction"],
                            resources=[function_arn(settings.primary_region, "*")]),
        iam.PolicyStatement(sid="PublishPrimaryProbeMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                            conditions={"StringEquals": {"cloudwatch:namespace": settings.metrics_namespace}}),
    ]
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant failback to")
    grants = iam.ManagedPolicy(function, "FailbackGrants", statements=statements, roles=[role])
    NagSuppressions.add_resource_suppressions(grants, [
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="A failback copies back the replica's versions of whatever keys the secondary wrote during the "
            "failover (unknown at synth time; tags read only); the health probe invokes the versions LIVE routes to "
            "by number (IAM cannot tell a version from an alias); PutMetricData has no resource-level permissions "
            "and is held to the controller's namespace.",
            applies_to=[
                RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:s3:::{_escaped(settings.replica_bucket)}\/\*$/"),
                RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:lambda:[^:]+:<AWS::AccountId>:function:"
                                     rf"{settings.protected_function}:\*$/"),
                "Resource::*",
            ],
        ),
    ], apply_to_children=True)


def _escaped(bucket: str) -> str:
    return bucket.replace(".", r"\.")
