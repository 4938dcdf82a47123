"""What a region switch calls, failover and failback alike, granted once to the recovery role of either stack.

Both actions (drcore.region.failover_action, failback_action) run from either region, and both:

- move the pipeline's notification entry between the data bucket and the replica: each bucket's notification
  configuration read, then merged (never replaced), then read back;
- list the replica's object versions (the failover's catch-up of the uploads in the switch's gap, the failback's
  divergence), unless the replica is a restore target of this stack, whose listing the restores hold already;
- change the secondary function's environment (read, merged, read back): the failover's variables merged in, the
  failback's removal of them. In the standby the secondary function is this region's protected function, whose
  configuration the recovery role reads (alias control) and updates (function recovery) already;
- reach the other region's LIVE: its alias read and the versions it routes to invoked by number (the failover's
  probe of the primary and its catch-up of the secondary through their LIVE, the failback's probe of the primary,
  the validation of whichever region the switch made active), and its watched alarms read (the failover's view of
  the primary, the validation). This region's are granted already (alias control, the validation's probe).

What one action alone calls stays with it: stacks/constructs/failover.py, stacks/constructs/failback.py. A managed
policy of its own, as theirs: the recovery role's inline policy is near IAM's size limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.restore_grants import not_granted_to_restores
from stacks.constructs.watchers import NOTIFICATION_CONFIGURATION
from stacks.settings import Settings

REPLICA_LISTING = ("s3:ListBucketVersions",)
SECONDARY_ENVIRONMENT = ("lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration")


def other_region(scope: Construct, settings: Settings) -> str:
    """The region of the two that the stack of `scope` is not deployed in."""
    here = Stack.of(scope).region
    return settings.secondary_region if here == settings.primary_region else settings.primary_region


def function_arn_in(scope: Construct, settings: Settings, region: str, qualifier: str | None = None) -> str:
    """The protected function's ARN in `region` (the same name in both), qualified if `qualifier` is given."""
    stack = Stack.of(scope)
    name = settings.protected_function if qualifier is None else f"{settings.protected_function}:{qualifier}"
    return f"arn:{stack.partition}:lambda:{region}:{stack.account}:function:{name}"


def grant_region_switch(function: lambda_.Function, settings: Settings, alarms: LiveAliasAlarms,
                        restore_targets: Sequence[str]) -> None:
    """Grant `function`'s role (the recovery function's) what both switches call; `alarms`: LIVE's, named alike in
    both regions; `restore_targets`: the buckets its restores list and read already."""
    stack = Stack.of(function)
    partition = stack.partition
    data, replica = (f"arn:{partition}:s3:::{bucket}" for bucket in (settings.data_bucket, settings.replica_bucket))
    other = other_region(function, settings)
    other_function = function_arn_in(function, settings, other)
    statements = [
        iam.PolicyStatement(sid="SwitchPipelineNotifications", actions=list(NOTIFICATION_CONFIGURATION),
                            resources=[data, replica]),
        # GetAlias is authorized against the unqualified function (the alias is a parameter, as for UpdateAlias).
        iam.PolicyStatement(sid="ReadOtherRegionLive", actions=["lambda:GetAlias"], resources=[other_function]),
        iam.PolicyStatement(sid="InvokeOtherRegionLiveVersions", actions=["lambda:InvokeFunction"],
                            resources=[f"{other_function}:*"]),
        iam.PolicyStatement(sid="ReadOtherRegionAlarms", actions=["cloudwatch:DescribeAlarms"], resources=[
            f"arn:{partition}:cloudwatch:{other}:{stack.account}:alarm:{name}"
            for name in (*alarms.health_names, *alarms.performance_names)]),
    ]
    listing = not_granted_to_restores(REPLICA_LISTING, settings.replica_bucket, restore_targets)
    if listing:
        statements.append(iam.PolicyStatement(sid="ListReplicaVersions", actions=listing, resources=[replica]))
    # In the standby the secondary function is this region's own: alias control reads it, function recovery updates it.
    if other == settings.secondary_region:
        statements.append(iam.PolicyStatement(sid="MergeSecondaryEnvironment", actions=list(SECONDARY_ENVIRONMENT),
                                              resources=[other_function]))
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant the region switch to")
    grants = iam.ManagedPolicy(function, "RegionSwitchGrants", statements=statements, roles=[role])
    NagSuppressions.add_resource_suppressions(grants, [NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="The other region's LIVE routes to versions addressed by number, unknown at synth time (IAM cannot "
        "tell a version from an alias in a resource): they are invoked as the health check invokes them, the one "
        "function, in the other region.",
        applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:lambda:{re.escape(other)}:<AWS::AccountId>:"
                                         rf"function:{re.escape(settings.protected_function)}:\*$/")])])
