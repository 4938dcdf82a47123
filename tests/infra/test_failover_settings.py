"""The `failover` settings: validated from cdk.json, set on the recovery function, read back by it alike."""

from __future__ import annotations

import pytest

from drcore.core.config import FailoverSettings
from stacks.settings import InvalidSettings, Settings
from tests.infra.support import UNSUBSCRIBED_ACKNOWLEDGED, Synthesized, default_settings, logical_id

RECOVERY = "recovery.handler.handler"


def _variables(synth: Synthesized) -> dict[str, str]:
    recovery = logical_id(synth.resources, "AWS::Lambda::Function", Handler=RECOVERY)
    return dict(synth.resources[recovery]["Properties"]["Environment"]["Variables"])


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
    assert FailoverSettings.from_environ(_variables(synth)) == FailoverSettings(primary_region="us-east-1")
    assert FailoverSettings.from_environ(_variables(tuned)) == FailoverSettings(
        primary_region="eu-west-1", max_data_at_risk=25, detect_minutes=3, automatic=True,
        auto_after_minutes=20, stakeholder_topic_arn="arn:aws:sns:eu-central-1:123456789012:orders-stakeholders")


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
