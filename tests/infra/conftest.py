"""The synthesized controller app, shared by the infrastructure tests.

Synthesis takes seconds, so the default app is synthesized once per test session; tests that need other
settings synthesize their own app once per module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from app import build_app


@dataclass(frozen=True)
class Synthesized:
    app: cdk.App
    stack: cdk.Stack
    template: Template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]


def synthesize(context_overrides: dict[str, Any] | None = None) -> Synthesized:
    app = build_app(context_overrides)
    (stack,) = [child for child in app.node.children if isinstance(child, cdk.Stack)]
    return Synthesized(app=app, stack=stack, template=Template.from_stack(stack))


@pytest.fixture(scope="session")
def synth() -> Synthesized:
    """The app exactly as `cdk synth` builds it from cdk.json."""
    return synthesize()


# Another protected system, with every backup and recovery setting away from its default.
TUNED = {
    "dr": {
        "protected_function": "orders-api",
        "data_bucket": "orders.data.example",
        "replica_bucket": "orders-data-replica",
        "pipeline_stack": "OrdersStack",
        "primary_region": "eu-west-1",
        "secondary_region": "eu-central-1",
        "metrics_namespace": "OrdersDR",
        "recovery_objectives": {
            "lambda_function": {"rto_minutes": 15, "rpo_minutes": 1},
            "s3_data": {"rto_minutes": 30, "rpo_minutes": 30},
            "cloudwatch_logs": {"rto_minutes": 60, "rpo_minutes": 720},
            "configuration": {"rto_minutes": 5, "rpo_minutes": 120},
        },
        "backup": {
            "retention": {"keep_last": 5, "hourly": 0, "daily": 7, "weekly": 4, "monthly": 0},
            "copy_concurrency": 64,
            "publish_version": True,
            "object_lock_retention_days": 90,
            "noncurrent_version_expiry_days": 7,
        },
        "operator_principals": [
            "arn:aws:iam::123456789012:role/ops/dr-operator",
            "arn:aws:iam::210987654321:root",
        ],
        "recovery": {
            "restore_target_buckets": ["orders-restore-scratch", "orders.drill.example"],
            "plan_ttl_minutes": 15,
            "function_role_arns": [
                "arn:aws:iam::123456789012:role/orders-api-*",
                "arn:aws:iam::123456789012:role/service-role/orders-api-exec",
            ],
            "stack_role_arn": "arn:aws:iam::123456789012:role/orders-cfn-deployer",
        },
    }
}


@pytest.fixture(scope="session")
def tuned() -> Synthesized:
    """The app for the TUNED settings: schedules, alarms, bucket and permissions must follow them."""
    return synthesize(TUNED)
