"""Failing over to the secondary region: the recovery function's failover settings (drcore.core.config.FailoverEnvVar).

Set on the recovery function here, every one, so a variable the functions' side adds cannot be silently left to
its default.
"""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_

from drcore.core.config import FailoverEnvVar
from stacks.settings import Settings


def failover_environment(settings: Settings) -> dict[str, str]:
    options = settings.failover
    values = {
        FailoverEnvVar.PRIMARY_REGION: settings.primary_region,
        FailoverEnvVar.MAX_DATA_AT_RISK: str(options.max_data_at_risk),
        FailoverEnvVar.DETECT_MINUTES: str(options.detect_minutes),
        FailoverEnvVar.AUTOMATIC: "true" if options.automatic else "false",
        FailoverEnvVar.AUTO_AFTER_MINUTES: str(options.auto_after_minutes),
        FailoverEnvVar.STAKEHOLDER_TOPIC_ARN: options.stakeholder_topic_arn or "",
    }
    unset = sorted(name.value for name in FailoverEnvVar if name not in values)
    if unset:
        raise ValueError(f"drcore.core.config.FailoverEnvVar defines {', '.join(unset)}, which the stack does not set")
    return {str(name.value): value for name, value in values.items()}


def set_failover_settings(function: lambda_.Function, settings: Settings) -> None:
    for name, value in failover_environment(settings).items():
        function.add_environment(name, value)
