"""Failing over to the secondary region: the recovery function's failover settings (drcore.core.config.FailoverEnvVar)
and exactly the calls `failover` makes; the health watcher's fence of this region's bucket.

`failover` (drcore.region.failover_action) may run in this stack's region with the other region up (a planned
failover), so the recovery role reaches the secondary region's resources by their ARNs there:

- both buckets' notification configurations (the pipeline's entry merged in on the replica, removed on the data
  bucket; read back), the replica's versions listed for the catch-up of uploads in the switch's gap;
- the secondary function: its configuration, aliases and resource policy read (readiness), its environment merged
  (UpdateFunctionConfiguration of the unqualified function), its LIVE invoked asynchronously (catch-up);
- the primary LIVE invoked with the runbook's health check (the plan's probe of the primary);
- the stakeholder topic, when one is configured.

(The health watcher's fence of the data bucket is granted with the watchers: stacks/constructs/watchers.py.)
A managed policy of their own, as the replication grants: the recovery role's inline policy is near IAM's limit.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions

from drcore.core.config import FailoverEnvVar
from stacks.constructs.watchers import NOTIFICATION_CONFIGURATION, every_version_of
from stacks.settings import Settings

SECONDARY_FUNCTION_READS = ("lambda:GetFunctionConfiguration", "lambda:GetAlias", "lambda:GetPolicy")


# Set on the region watcher only (stacks/constructs/region_watcher.py), which names the function it asks.
REGION_WATCHER_ONLY = frozenset({FailoverEnvVar.RECOVERY_FUNCTION_NAME})


def failover_environment(settings: Settings) -> dict[str, str]:
    """The failover settings every function that fails over (or watches for it) reads, but REGION_WATCHER_ONLY."""
    options = settings.failover
    values = {
        FailoverEnvVar.PRIMARY_REGION: settings.primary_region,
        FailoverEnvVar.MAX_DATA_AT_RISK: str(options.max_data_at_risk),
        FailoverEnvVar.DETECT_MINUTES: str(options.detect_minutes),
        FailoverEnvVar.AUTOMATIC: "true" if options.automatic else "false",
        FailoverEnvVar.AUTO_AFTER_MINUTES: str(options.auto_after_minutes),
        FailoverEnvVar.STAKEHOLDER_TOPIC_ARN: options.stakeholder_topic_arn or "",
        FailoverEnvVar.SWITCH_GATE_QUEUE: options.switch_gate_queue,
        FailoverEnvVar.SWITCH_GATE_SETTLE_SECONDS: str(options.switch_gate_settle_seconds),
    }
    unset = sorted(name.value for name in FailoverEnvVar if name not in values and name not in REGION_WATCHER_ONLY)
    if unset:
        raise ValueError(f"drcore.core.config.FailoverEnvVar defines {', '.join(unset)}, which the stack does not set")
    return {str(name.value): value for name, value in values.items()}


def _function_arn(scope: lambda_.Function, settings: Settings, region: str, qualifier: str | None = None) -> str:
    stack = Stack.of(scope)
    name = settings.protected_function if qualifier is None else f"{settings.protected_function}:{qualifier}"
    return f"arn:{stack.partition}:lambda:{region}:{stack.account}:function:{name}"


def grant_failover(function: lambda_.Function, settings: Settings) -> None:
    """Set the failover settings on `function` (the recovery function) and grant its role the failover's calls."""
    for name, value in failover_environment(settings).items():
        function.add_environment(name, value)
    partition = Stack.of(function).partition
    data, replica = (f"arn:{partition}:s3:::{bucket}" for bucket in (settings.data_bucket, settings.replica_bucket))
    secondary = settings.secondary_region
    statements = [
        iam.PolicyStatement(sid="MovePipelineNotification", actions=list(NOTIFICATION_CONFIGURATION),
                            resources=[data, replica]),
        iam.PolicyStatement(sid="ListReplicaVersions", actions=["s3:ListBucketVersions"], resources=[replica]),
        iam.PolicyStatement(sid="ReadSecondaryFunction", actions=list(SECONDARY_FUNCTION_READS), resources=[
            _function_arn(function, settings, secondary), _function_arn(function, settings, secondary, "*")]),
        iam.PolicyStatement(sid="MergeSecondaryEnvironment", actions=["lambda:UpdateFunctionConfiguration"],
                            resources=[_function_arn(function, settings, secondary)]),
        iam.PolicyStatement(sid="InvokeLiveOfEitherRegion", actions=["lambda:InvokeFunction"], resources=[
            _function_arn(function, settings, region, settings.live_alias)
            for region in (settings.primary_region, secondary)]),
    ]
    if settings.failover.stakeholder_topic_arn:
        statements.append(iam.PolicyStatement(sid="NotifyStakeholders", actions=["sns:Publish"],
                                              resources=[settings.failover.stakeholder_topic_arn]))
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant failover to")
    grants = iam.ManagedPolicy(function, "FailoverGrants", statements=statements, roles=[role])
    NagSuppressions.add_resource_suppressions(grants, [
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="The secondary function's versions and aliases are read by qualifier (STABLE's version number "
            "is known only when read); read-only, the one function.",
            applies_to=[every_version_of(settings)],
        ),
    ], apply_to_children=True)

