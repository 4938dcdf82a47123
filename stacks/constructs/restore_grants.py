"""What the functions that restore a function from its backup share: the recovery function (into the protected
function or beside it) and the drill function (into its scratch function). Both republish layers, hand the
backed-up execution role to Lambda, continue long work by invoking themselves, and may be invoked by the
operator principals.

The roles they may hand to Lambda are `recovery.function_role_arns`, by default the roles the pipeline stack
creates: CloudFormation names a role created without a RoleName `<stack name>-<logical id>-<suffix>`, so the
protected function's execution role, deployed by that stack, matches `<pipeline_stack>-*`, and the first
scheduled drill and a restore beside the function work without any setting. (Names over IAM's 64 characters
are shortened, and a role named explicitly is named otherwise: such a role must be listed.)"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, RegexAppliesTo
from constructs import Construct

from stacks.constructs.backups import DATA_OBJECT_READS
from stacks.constructs.cdk_types import role_of
from stacks.constructs.watchers import regional_arn
from stacks.settings import Settings

# What a restore reads of its target buckets (the data bucket and the allow-listed ones; the drill's scratch bucket).
TARGET_BUCKET_READS = (
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
    # Whether a lifecycle rule may have expired the versions a point-in-time plan would use.
    "s3:GetLifecycleConfiguration",
)
# A restore target's objects are read as the backup reads the data bucket's: every version, with its tags (a version
# copied back brings them: CopyObject's default TaggingDirective COPY).
TARGET_OBJECT_READS = DATA_OBJECT_READS


def not_granted_to_restores(actions: Sequence[str], bucket: str, restore_targets: Sequence[str], *,
                            objects: bool = False) -> list[str]:
    """Of `actions` on `bucket` (on its objects, with `objects`), those the recovery role's restore grants do not
    give it already: all of them unless `bucket` is among its `restore_targets` (as the replica is in the standby)."""
    if bucket not in restore_targets:
        return list(actions)
    granted = TARGET_OBJECT_READS if objects else TARGET_BUCKET_READS
    return [action for action in actions if action not in granted]


def pipeline_stack_roles(settings: Settings) -> str:
    """The roles the pipeline stack creates, as a role name pattern: `<pipeline_stack>-*`."""
    return f"{settings.pipeline_stack}-*"


def passable_function_roles(scope: Construct, settings: Settings) -> list[str]:
    """The execution roles a restored function may be given: `recovery.function_role_arns`, or when it is not
    set, the roles the pipeline stack creates in this account."""
    configured = settings.recovery.function_role_arns
    if configured is not None:
        return list(configured)
    # IAM is global: a role's ARN names no region.
    return [Stack.of(scope).format_arn(service="iam", region="", resource="role",
                                       resource_name=pipeline_stack_roles(settings))]


def grant_layers_and_roles(function: lambda_.Function, settings: Settings, pass_role_sid: str) -> None:
    """Republish a restored function's layers in this account, read them wherever they were published, and
    pass it the execution roles `passable_function_roles` names (to Lambda only)."""
    statements = [
        iam.PolicyStatement(sid="RepublishLayers", actions=["lambda:PublishLayerVersion"],
                            resources=[regional_arn(function, "lambda", "layer", "*")]),
        iam.PolicyStatement(sid="ReadLayers", actions=["lambda:GetLayerVersion"],
                            resources=[f"arn:{Stack.of(function).partition}:lambda:*:*:layer:*:*"]),
    ]
    roles = passable_function_roles(function, settings)
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
    configured = settings.recovery.function_role_arns
    if configured is None:
        suppressions.append(
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="iam:PassRole, to lambda.amazonaws.com only (iam:PassedToService), on the roles the pipeline "
                "stack creates (CloudFormation names them after the stack), so that a function restored beside "
                "the original, and the drill's scratch function, run with the backed-up execution role.",
                applies_to=[
                    RegexAppliesTo(
                        regex=rf"/^Resource::arn:[^:]+:iam::<AWS::AccountId>:role\/"
                        rf"{re.escape(pipeline_stack_roles(settings))}$/"
                    )
                ],
            )
        )
    role_patterns = [arn for arn in configured or () if re.search(r"[*?]", arn)]
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
        roles=[role_of(function)],
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
