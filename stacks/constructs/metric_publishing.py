"""The one grant every function that publishes the controller's metrics gets."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from stacks.settings import Settings


def metrics_publishing(sid: str, settings: Settings) -> iam.PolicyStatement:
    """cloudwatch:PutMetricData, which names no resource: held to the controller's metrics namespace instead (the
    function's role still needs its Resource::* explained to cdk-nag)."""
    return iam.PolicyStatement(
        sid=sid,
        actions=["cloudwatch:PutMetricData"],
        resources=["*"],
        conditions={"StringEquals": {"cloudwatch:namespace": settings.metrics_namespace}},
    )
