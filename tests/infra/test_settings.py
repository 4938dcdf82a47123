"""The "dr" settings: seed defaults, cdk.json, and bad values failing synth with a message naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import build_app
from stacks.settings import InvalidSettings, Settings

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


def test_defaults_are_the_seed_runbooks_values():
    # Given no "dr" context at all / When it is validated
    settings = Settings.from_context(None)
    # Then the protected system and its objectives are the seed's
    assert settings.protected_function == "apilados-pipeline-ingest"
    assert (settings.live_alias, settings.stable_alias) == ("LIVE", "STABLE")
    assert (settings.data_bucket, settings.replica_bucket) == (
        "apilados-production-data",
        "apilados-production-data-replica",
    )
    assert settings.pipeline_stack == "ApiladosPipelineStack"
    assert (settings.primary_region, settings.secondary_region) == ("us-east-1", "us-west-2")
    objectives = settings.recovery_objectives
    assert [
        (objective.rto_minutes, objective.rpo_minutes)
        for objective in (
            objectives.lambda_function,
            objectives.s3_data,
            objectives.cloudwatch_logs,
            objectives.configuration,
            objectives.health_reports,
        )
    ] == [(15, 5), (30, 60), (60, 1440), (5, 0), (120, 240)]
    # And the seed's rollback rule: average Duration above 300,000 ms over 10 minutes; 30 minutes of bake
    assert settings.alarms.average_duration.threshold_ms == 300_000
    assert settings.alarms.average_duration.window_minutes == 10
    assert settings.bake_minutes == 30
    assert settings.alert_emails.emergency == settings.alert_emails.alert == ()


def test_cdk_json_spells_out_every_default():
    # Given the "dr" block an operator edits in cdk.json / When it is validated
    context = json.loads(CDK_JSON.read_text())["context"]["dr"]
    # Then it is valid, complete, and says exactly what the defaults say
    assert Settings.from_context(context) == Settings.from_context(None)
    assert set(context) == set(Settings.model_fields)


def test_settle_time_covers_the_longest_alarm_window():
    # Given an alarm that looks back 20 minutes
    settings = Settings.from_context(
        {"alarms": {"p99_duration": {"threshold_ms": 600_000, "period_minutes": 5, "evaluation_periods": 4}}}
    )
    # Then ALARMs are not blamed on STABLE for 20 minutes after a rollback
    assert settings.settle_seconds == 20 * 60


@pytest.mark.parametrize(
    ("dr", "expected"),
    [
        ({"bake_minutes": -1}, "dr.bake_minutes: Input should be greater than or equal to 0"),
        ({"bake_minuts": 5}, "dr.bake_minuts: Extra inputs are not permitted"),
        ({"protected_function": 42}, "dr.protected_function: Input should be a valid string"),
        ({"protected_function": "not a name"}, "dr.protected_function: String should match pattern"),
        ({"stable_alias": "LIVE"}, "dr.stable_alias: Value error, must differ from live_alias"),
        ({"live_alias": "7"}, "dr.live_alias: String should match pattern"),
        ({"secondary_region": "us-east-1"}, "dr.secondary_region: Value error, must differ from primary_region"),
        ({"primary_region": "Virginia"}, "dr.primary_region: String should match pattern"),
        ({"regression_factor": 1}, "dr.regression_factor: Input should be greater than 1"),
        ({"metrics_namespace": "AWS/Lambda"}, "dr.metrics_namespace: Value error, the AWS/ prefix is reserved"),
        ({"log_retention_days": 10}, "dr.log_retention_days: Input should be 1, 3, 5"),
        (
            {"alarms": {"average_duration": {"threshold_ms": 1_000_000}}},
            "dr.alarms.average_duration.threshold_ms: Input should be less than or equal to 900000",
        ),
        (
            {"alarms": {"errors": {"evaluation_periods": 2, "datapoints_to_alarm": 3}}},
            "dr.alarms.errors.datapoints_to_alarm: Value error, must not exceed evaluation_periods (2)",
        ),
        (
            {"alarms": {"health_probe": {"period_minutes": 60, "evaluation_periods": 25}}},
            "dr.alarms.health_probe.evaluation_periods: Value error, period_minutes x evaluation_periods is 1500",
        ),
        (
            {"recovery_objectives": {"s3_data": {"rto_minutes": 0, "rpo_minutes": 60}}},
            "dr.recovery_objectives.s3_data.rto_minutes: Input should be greater than 0",
        ),
        (
            {"alert_emails": {"emergency": ["ops-lead@company.com", "pager"]}},
            "dr.alert_emails.emergency.1: Value error, 'pager' is not an e-mail address",
        ),
        (
            {"alert_emails": {"alert": ["ops@company.com", "ops@company.com"]}},
            "dr.alert_emails.alert: Value error, lists an address twice",
        ),
    ],
)
def test_a_bad_setting_fails_synth_naming_the_key(dr, expected):
    # Given cdk.json's settings with one bad value / When the app is built
    with pytest.raises(InvalidSettings) as raised:
        build_app({"dr": dr})
    # Then synth stops with a message that names the key and the problem
    assert expected in str(raised.value)


def test_every_problem_is_reported_at_once():
    # Given two bad values / When the app is built
    with pytest.raises(InvalidSettings) as raised:
        build_app({"dr": {"bake_minutes": -1, "min_bake_invocations": -1}})
    # Then both are named, so one synth is enough to fix them
    assert "dr.bake_minutes" in str(raised.value)
    assert "dr.min_bake_invocations" in str(raised.value)


def test_the_dr_context_must_be_an_object():
    # Given a "dr" context that is not an object / When the app is built / Then synth names it
    with pytest.raises(InvalidSettings, match="dr: Input should be a valid dictionary"):
        build_app({"dr": "apilados-pipeline-ingest"})
