"""What the recovery function's `preflight` action needs: its settings in the environment, and read-only grants
for every call it makes (drcore.restore.preflight), resource-scoped wherever the service allows."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from drcore.restore.preflight import PreflightEnvVar
from stacks.constructs.alerting import Alerting
from stacks.constructs.controller_functions import RUNTIME, powertools_layer_parameter, powertools_version
from stacks.constructs.restore_grants import passable_function_roles
from stacks.settings import Settings


def grant_preflight(function: lambda_.Function, settings: Settings, alerting: Alerting) -> None:
    """Set the preflight's variables on `function` and grant its role the preflight's reads."""
    stack = Stack.of(function)
    parameter = powertools_layer_parameter(powertools_version())
    for name, value in {
        PreflightEnvVar.LAYER_PARAMETER: parameter,
        PreflightEnvVar.RUNTIME: RUNTIME.name,
        # The roles a restore may pass (by default the pipeline stack's, in this account: a token until deploy).
        PreflightEnvVar.FUNCTION_ROLE_PATTERNS: stack.to_json_string(passable_function_roles(function, settings)),
        PreflightEnvVar.STACK_ROLE_ARN: settings.recovery.stack_role_arn or "",
    }.items():
        function.add_environment(str(name.value), value)

    partition, region = stack.partition, stack.region
    # The rest of what the checks read is granted to the recovery role already, for its restores: the
    # protected function and its aliases (alias control), every layer version (function recovery), the
    # pipeline stack (stack recovery) and the data bucket's versioning (bucket restores); the IAM
    # conformance test (tests/infra/test_iam_conformance.py) runs a preflight under that role.
    statements = [
        # AWS's public parameters belong to no account: their ARNs leave it empty.
        ("ReadPowertoolsLayerParameter", ["ssm:GetParameter"], [f"arn:{partition}:ssm:{region}::parameter{parameter}"]),
        # DescribeTrails supports no resource-level permission.
        ("ListTrails", ["cloudtrail:DescribeTrails"], ["*"]),
        # A trail logging this region may be homed in another region or account (multi-region, organization).
        ("ReadTrailLogging", ["cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors"],
         [f"arn:{partition}:cloudtrail:*:*:trail/*"]),
        ("ReadAlertSubscriptions", ["sns:ListSubscriptionsByTopic"],
         [alerting.alert_topic.topic_arn, alerting.emergency_topic.topic_arn]),
    ]
    for sid, actions, resources in statements:
        function.add_to_role_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant the preflight's reads")
    NagSuppressions.add_resource_suppressions(role, [
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            # DescribeTrails' Resource::* shares the recovery role's suppression for unscopable reads (one reason
            # per finding: cdk-nag keeps a single one).
            reason="Preflight reads (read-only): a trail that logs this region may be homed in another region or "
            "account.",
            applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:[^:]+:cloudtrail:\*:\*:trail\/\*$/")],
        ),
    ], apply_to_children=True)
