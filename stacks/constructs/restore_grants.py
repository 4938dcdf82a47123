"""What the functions that restore a function from its backup share: the recovery function (into the protected
function or beside it) and the drill function (into its scratch function). Both republish layers, hand the
backed-up execution role to Lambda, continue long work by invoking themselves, and may be invoked by the
operator principals."""

from __future__ import annotations

import hashlib
import re

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, RegexAppliesTo
from constructs import Construct

from stacks.constructs.watchers import regional_arn
from stacks.settings import Settings


def grant_layers_and_roles(function: lambda_.Function, settings: Settings, pass_role_sid: str) -> None:
    """Republish a restored function's layers in this account, read them wherever they were published, and
    pass it the execution roles `recovery.function_role_arns` names (to Lambda only)."""
    statements = [
        iam.PolicyStatement(sid="RepublishLayers", actions=["lambda:PublishLayerVersion"],
                            resources=[regional_arn(function, "lambda", "layer", "*")]),
        iam.PolicyStatement(sid="ReadLayers", actions=["lambda:GetLayerVersion"],
                            resources=[f"arn:{Stack.of(function).partition}:lambda:*:*:layer:*:*"]),
    ]
    roles = settings.recovery.function_role_arns
    if roles:
        statements.append(iam.PolicyStatement(
            sid=pass_role_sid, actions=["iam:PassRole"], resources=list(roles),
            conditions={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}))
    for statement in statements:
        function.add_to_role_policy(statement)


def layer_and_role_suppressions(settings: Settings) -> list[NagPackSuppression]:
    """Why `grant_layers_and_roles` needs its wildcards."""
    suppressions = [
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="A restored function's layers are republished under their backed-up names, known only at "
            "restore time; publishing is held to this account and region.",
            applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:[^:]+:lambda:[^:]+:<AWS::AccountId>:layer:\*$/")],
        ),
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="lambda:GetLayerVersion (read-only) for the layers a backed-up function uses, which may be "
            "published by any account in any region; no tighter ARN can name them ahead of time.",
            applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:[^:]+:lambda:\*:\*:layer:\*:\*$/")],
        ),
    ]
    role_patterns = [arn for arn in settings.recovery.function_role_arns if re.search(r"[*?]", arn)]
    if role_patterns:
        suppressions.append(
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="iam:PassRole on the execution-role patterns cdk.json names in "
                "recovery.function_role_arns, and only to lambda.amazonaws.com (iam:PassedToService).",
                applies_to=[f"Resource::{arn}" for arn in role_patterns],
            )
        )
    return suppressions


def continue_in_new_invocations(scope: Construct, policy_id: str, function: lambda_.Function) -> None:
    """Let `function` invoke itself, to continue work that outlasts an invocation. On a policy of its own:
    on the role's default policy, the function's ARN would make the function (which waits for that policy)
    and the policy depend on each other."""
    iam.Policy(
        scope,
        policy_id,
        roles=[function.role],
        statements=[
            iam.PolicyStatement(
                sid="ContinueInNewInvocation", actions=["lambda:InvokeFunction"], resources=[function.function_arn]
            )
        ],
    )


def let_operators_invoke(function: lambda_.Function, settings: Settings) -> None:
    for principal in settings.operator_principals:
        # Named after the principal, so reordering cdk.json's list replaces no permission.
        digest = hashlib.sha256(principal.encode()).hexdigest()[:12]
        function.add_permission(
            f"OperatorInvokes{digest}", principal=iam.ArnPrincipal(principal), action="lambda:InvokeFunction"
        )
