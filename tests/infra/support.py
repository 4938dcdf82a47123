"""What the infrastructure tests share: the app synthesized for given settings, the TUNED settings, and
readable views of synthesized CloudFormation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

from app import build_app
from drcore.core.controller_settings import EnvVar
from stacks.settings import CONTEXT_KEY, Settings

# Variables only the standby stack's functions get (their controller items kept apart in the global table).
STANDBY_ONLY = frozenset({EnvVar.STATE_SCOPE.value})


@dataclass(frozen=True)
class Synthesized:
    """The app, its controller stack (`stack`, `template`) and its standby stack (`standby_stack`, `standby`)."""

    app: cdk.App
    stack: cdk.Stack
    template: Template
    standby_stack: cdk.Stack
    standby: Template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]

    @property
    def standby_resources(self) -> dict[str, dict[str, Any]]:
        return self.standby.to_json()["Resources"]


def synthesize(context_overrides: dict[str, Any] | None = None) -> Synthesized:
    app = build_app(context_overrides)
    settings = Settings.from_context(app.node.try_get_context(CONTEXT_KEY))
    stacks = {child.stack_name: child for child in app.node.children if isinstance(child, cdk.Stack)}
    assert set(stacks) == {settings.controller_stack, settings.standby_stack}, sorted(stacks)
    controller, standby = stacks[settings.controller_stack], stacks[settings.standby_stack]
    return Synthesized(app=app, stack=controller, template=Template.from_stack(controller),
                       standby_stack=standby, standby=Template.from_stack(standby))


# Every setting at its default but the one the settings model has no default for: who hears the alerts.
# cdk.json acknowledges that nobody does yet (README, "Configuration").
UNSUBSCRIBED_ACKNOWLEDGED = {"alerts_acknowledged_unsubscribed": True}


def default_settings() -> Settings:
    """The settings model's defaults, alerts unsubscribed and acknowledged (as cdk.json has them)."""
    return Settings.from_context(UNSUBSCRIBED_ACKNOWLEDGED)


# Another protected system, with every backup, recovery and replication setting away from its default.
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
            "full_manifest_every": 12,
            "fanout_threshold_objects": 50_000,
            "fanout_shard_objects": 5_000,
            "fanout_max_concurrency": 7,
            "memory_mb": 3584,
            "retention_memory_mb": 7168,
            "publish_version": True,
            "object_lock_retention_days": 90,
            "object_lock_mode": "COMPLIANCE",
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
            "memory_mb": 2560,
        },
        "replication": {
            "role_arn": "arn:aws:iam::123456789012:role/orders-s3-replication",
            "max_latency_seconds": 600,
            "max_pending_operations": 50,
            "alarm_window": {"period_minutes": 1, "evaluation_periods": 10, "datapoints_to_alarm": 5},
            "sample_size": 50,
        },
        "failover": {"max_data_at_risk": 25, "detect_minutes": 3, "automatic": True, "auto_after_minutes": 20,
                     "stakeholder_topic_arn": "arn:aws:sns:eu-central-1:123456789012:orders-stakeholders"},
        "alerts_acknowledged_unsubscribed": False,
        "alert_emails": {"emergency": ["oncall@orders.example"], "alert": ["orders-team@orders.example"]},
        "alert_subscriptions": {
            "emergency": [{"protocol": "sms", "endpoint": "+15555550100"}],
            "alert": [{"protocol": "https", "endpoint": "https://chat.orders.example/hooks/dr-alerts"}],
        },
        "reserved_concurrency": {"health_watcher": 10, "performance_watcher": 4, "recovery": 2, "account_limit": 120},
        "health_probe_timeout_seconds": 4,
    }
}


TOPIC_KEY = "Encrypts the DR controller's alert and emergency topics"


def arn_text(value: Any) -> Any:
    """An ARN built with Fn::Join as one string, pseudo parameters as ${AWS::...}, e.g.
    "arn:aws:lambda:us-east-1:${AWS::AccountId}:function:apilados-pipeline-ingest:LIVE"."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(arn_text(part) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"].startswith("AWS::"):
        return "${" + value["Ref"] + "}"
    return value


def rendered(value: Any) -> Any:
    """Any value with its intrinsics written out as text: Fn::Join joined, {"Ref": X} as "${X}" and
    {"Fn::GetAtt": [X, A]} as "${X.A}", e.g. a dashboard body that names alarm ARNs."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(rendered(part)) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if isinstance(value, dict):
        return {key: rendered(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rendered(item) for item in value]
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def logical_id(resources: dict[str, dict[str, Any]], resource_type: str, **properties: Any) -> str:
    """The one resource of `resource_type` whose properties include `properties`."""
    matches = [
        name
        for name, resource in resources.items()
        if resource["Type"] == resource_type
        and all(resource["Properties"].get(key) == value for key, value in properties.items())
    ]
    assert len(matches) == 1, f"expected one {resource_type} with {properties}, found {matches}"
    return matches[0]


def failed_events_queue(resources: dict[str, dict[str, Any]]) -> str:
    """The failed-events queue: the one queue CloudFormation names (the switch gate's name is fixed, from cdk.json)."""
    return logical_id(resources, "AWS::SQS::Queue", QueueName=None)


def role_statements(resources: dict[str, dict[str, Any]], function_logical_id: str) -> list[dict[str, Any]]:
    """Every policy statement attached to the execution role of a function (CDK moves what does not fit the
    role's inline policy into an overflow managed policy attached to it)."""
    role = resources[function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for resource in resources.values():
        attached = {"Ref": role} in resource.get("Properties", {}).get("Roles", [])
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and attached:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    inline = resources[role]["Properties"].get("Policies", [])
    for policy in inline:
        statements += policy["PolicyDocument"]["Statement"]
    return statements


def statements_granting(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [statement for statement in statements if action in as_list(statement["Action"])]


def scratch_bucket_id(resources: dict[str, dict[str, Any]]) -> str:
    """The drills' scratch bucket: the one whose lifecycle expires drill copies."""
    matches = [name for name, resource in resources.items() if resource["Type"] == "AWS::S3::Bucket"
               and any(rule.get("Id") == "ExpireDrillCopies"
                       for rule in resource["Properties"].get("LifecycleConfiguration", {}).get("Rules", []))]
    assert len(matches) == 1, matches
    return matches[0]


def fanout_results_bucket_id(resources: dict[str, dict[str, Any]]) -> str:
    """The snapshot fan-out's results bucket: the one whose lifecycle expires Map Run results."""
    matches = [name for name, resource in resources.items() if resource["Type"] == "AWS::S3::Bucket"
               and any(rule.get("Id") == "ExpireMapRunResults"
                       for rule in resource["Properties"].get("LifecycleConfiguration", {}).get("Rules", []))]
    assert len(matches) == 1, matches
    return matches[0]
