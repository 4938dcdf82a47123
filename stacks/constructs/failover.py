"""Failing over to the secondary region: the recovery function's failover settings (drcore.core.config.FailoverEnvVar)
and what `failover` alone calls.

`failover` (drcore.region.failover_action) may run in either stack's region (in the primary with the other region
up: a planned failover). What it calls that a failback calls too (both buckets' notifications, the replica's
versions listed, the secondary function's environment, the other region's LIVE and alarms) is the region switch's
(stacks/constructs/region_switch.py); this region's LIVE is read, probed and watched under alias control and the
validation's probe. What is left, its own:

- the secondary's readiness: the resource policy of the secondary LIVE read (may S3 invoke it from the replica?),
  and, from the primary, the configuration of the secondary STABLE's version (its CodeSha256);
- the stakeholder topic, when one is configured.

(The health watcher's fence of the data bucket is granted with the watchers: stacks/constructs/watchers.py.)
A managed policy of their own, as the replication grants: the recovery role's inline policy is near IAM's limit.
"""

from __future__ import annotations

import re

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from drcore.core.config import FailoverEnvVar
from stacks.constructs.region_switch import function_arn_in, other_region
from stacks.settings import Settings

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
        FailoverEnvVar.REPLICATION_WAIT_SECONDS: str(options.replication_wait_seconds),
    }
    unset = sorted(name.value for name in FailoverEnvVar if name not in values and name not in REGION_WATCHER_ONLY)
    if unset:
        raise ValueError(f"drcore.core.config.FailoverEnvVar defines {', '.join(unset)}, which the stack does not set")
    return {str(name.value): value for name, value in values.items()}


def grant_failover(function: lambda_.Function, settings: Settings) -> None:
    """Set the failover settings on `function` (the recovery function) and grant its role the failover's own calls."""
    for name, value in failover_environment(settings).items():
        function.add_environment(name, value)
    secondary = settings.secondary_region
    statements = [
        # GetPolicy with the alias as qualifier is authorized against the alias's ARN.
        iam.PolicyStatement(sid="ReadSecondaryLivePolicy", actions=["lambda:GetPolicy"],
                            resources=[function_arn_in(function, settings, secondary, settings.live_alias)]),
    ]
    reads_secondary_versions = other_region(function, settings) == secondary
    if reads_secondary_versions:
        # In the standby the secondary's versions are this region's, read under alias control.
        statements.append(iam.PolicyStatement(
            sid="ReadSecondaryVersions", actions=["lambda:GetFunctionConfiguration"],
            resources=[function_arn_in(function, settings, secondary, "*")]))
    if settings.failover.stakeholder_topic_arn:
        statements.append(iam.PolicyStatement(sid="NotifyStakeholders", actions=["sns:Publish"],
                                              resources=[settings.failover.stakeholder_topic_arn]))
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant failover to")
    grants = iam.ManagedPolicy(function, "FailoverGrants", statements=statements, roles=[role])
    if reads_secondary_versions:
        NagSuppressions.add_resource_suppressions(grants, [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="The secondary STABLE's version is read by number, known only once its alias is read; "
                "read-only, the one function in the secondary region.",
                applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:lambda:{re.escape(secondary)}:"
                                                 rf"<AWS::AccountId>:function:{re.escape(settings.protected_function)}"
                                                 rf":\*$/")],
            ),
        ], apply_to_children=True)
