"""Failover in the synthesized stack: the `failover` settings (validated from cdk.json, set on the recovery function,
read back by it alike), the recovery role's failover grants and the health watcher's fence."""

from __future__ import annotations

import pytest

from drcore.core.config import FailoverSettings
from drcore.core.controller_settings import EnvVar
from stacks.settings import InvalidSettings, Settings
from tests.infra.support import (
    UNSUBSCRIBED_ACKNOWLEDGED,
    Synthesized,
    as_list,
    default_settings,
    logical_id,
    rendered,
    role_statements,
    statements_granting,
)

RECOVERY = "recovery.handler.handler"
HEALTH_WATCHER = "health_watcher.handler.handler"


def _variables(synth: Synthesized, handler: str = RECOVERY) -> dict[str, str]:
    function = logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)
    return dict(synth.resources[function]["Properties"]["Environment"]["Variables"])


def _granted(synth: Synthesized, handler: str, action: str) -> list:
    function = logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)
    statements = statements_granting(role_statements(synth.resources, function), action)
    return sorted(rendered(resource) for statement in statements for resource in as_list(statement["Resource"]))


def test_failover_defaults_are_the_recovery_functions_own():
    # Given no "dr" context, and the recovery function's defaults for an absent variable
    options, runtime = default_settings().failover, FailoverSettings.model_fields
    # Then the stack sets what the function would assume anyway: no data at risk without force, not automatic
    assert options.max_data_at_risk == runtime["max_data_at_risk"].default == 0
    assert options.detect_minutes == runtime["detect_minutes"].default == 5
    assert options.automatic is runtime["automatic"].default is False
    assert options.auto_after_minutes == runtime["auto_after_minutes"].default == 15
    assert options.stakeholder_topic_arn is None


def test_the_recovery_function_gets_every_failover_setting(synth: Synthesized, tuned: Synthesized):
    assert FailoverSettings.from_environ(_variables(synth)) == FailoverSettings(
        primary_region="us-east-1", switch_gate_queue="apilados-dr-switch-gate")
    assert FailoverSettings.from_environ(_variables(tuned)) == FailoverSettings(
        primary_region="eu-west-1", max_data_at_risk=25, detect_minutes=3, automatic=True,
        auto_after_minutes=20, stakeholder_topic_arn="arn:aws:sns:eu-central-1:123456789012:orders-stakeholders",
        switch_gate_queue="apilados-dr-switch-gate")


@pytest.mark.parametrize("failover, expected", [
    ({"max_data_at_risk": -1}, "dr.failover.max_data_at_risk: Input should be greater than or equal to 0"),
    ({"detect_minutes": 0}, "dr.failover.detect_minutes: Input should be greater than or equal to 1"),
    ({"auto_after_minutes": 0}, "dr.failover.auto_after_minutes: Input should be greater than or equal to 1"),
    ({"stakeholder_topic_arn": "stakeholders"},
     "dr.failover.stakeholder_topic_arn: Value error, 'stakeholders' is not the ARN of an SNS topic"),
    ({"automatic": "sometimes"}, "dr.failover.automatic: Input should be a valid boolean"),
    ({"unknown": 1}, "dr.failover.unknown: Extra inputs are not permitted"),
])
def test_a_bad_failover_setting_fails_synth_naming_the_key(failover, expected):
    with pytest.raises(InvalidSettings) as refused:
        Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "failover": failover})
    assert expected in str(refused.value)


def test_the_recovery_role_moves_only_the_pipelines_two_buckets_notifications(synth: Synthesized):
    for action in ("s3:GetBucketNotification", "s3:PutBucketNotification"):
        assert _granted(synth, RECOVERY, action) == [
            "arn:aws:s3:::apilados-production-data", "arn:aws:s3:::apilados-production-data-replica"], action


def test_the_recovery_role_changes_only_the_secondary_functions_environment_and_invokes_only_its_versions(
        synth: Synthesized):
    updated = [resource for resource in _granted(synth, RECOVERY, "lambda:UpdateFunctionConfiguration")
               if "us-west-2" in resource]
    assert updated == ["arn:aws:lambda:us-west-2:${AWS::AccountId}:function:apilados-pipeline-ingest"]
    # The failover's probe of the primary LIVE and its catch-up through the secondary LIVE are invocations of a
    # qualifier of the protected function, which the grants of the health check's versions cover in both regions
    invoked = [resource for resource in _granted(synth, RECOVERY, "lambda:InvokeFunction")
               if "apilados-pipeline-ingest" in resource]
    assert invoked == [f"arn:aws:lambda:{region}:${{AWS::AccountId}}:function:apilados-pipeline-ingest:*"
                       for region in ("us-east-1", "us-west-2")]


def test_the_stakeholder_topic_is_published_to_only_when_configured(synth: Synthesized, tuned: Synthesized):
    assert not [resource for resource in _granted(synth, RECOVERY, "sns:Publish") if "stakeholders" in resource]
    assert "arn:aws:sns:eu-central-1:123456789012:orders-stakeholders" in _granted(tuned, RECOVERY, "sns:Publish")


def test_the_health_watcher_fences_the_data_bucket_and_nothing_else(synth: Synthesized):
    variables = _variables(synth, HEALTH_WATCHER)
    assert variables[EnvVar.FENCED_BUCKET] == "apilados-production-data"
    assert variables[EnvVar.PRIMARY_REGION] == "us-east-1"
    for action in ("s3:GetBucketNotification", "s3:PutBucketNotification"):
        assert _granted(synth, HEALTH_WATCHER, action) == ["arn:aws:s3:::apilados-production-data"], action
