"""The LIVE alias's alarms, and how they, EventBridge and the tick reach the right watcher."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.support import Synthesized, failed_events_queue, logical_id, synthesize

FUNCTION = "apilados-pipeline-ingest"
LIVE_DIMENSIONS = [
    {"Name": "FunctionName", "Value": FUNCTION},
    {"Name": "Resource", "Value": f"{FUNCTION}:LIVE"},
]
HEALTH = "health_watcher.handler.handler"
PERFORMANCE = "performance_watcher.handler.handler"

ALARMS: dict[str, tuple[str, dict[str, Any]]] = {
    f"{FUNCTION}-LIVE-errors": (
        HEALTH,
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "Errors",
            "Dimensions": LIVE_DIMENSIONS,
            "Statistic": "Sum",
            "Period": 60,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "TreatMissingData": "notBreaching",
        },
    ),
    f"{FUNCTION}-LIVE-throttles": (
        HEALTH,
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "Throttles",
            "Dimensions": LIVE_DIMENSIONS,
            "Statistic": "Sum",
            "Period": 60,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "TreatMissingData": "notBreaching",
        },
    ),
    f"{FUNCTION}-LIVE-health-probe": (
        HEALTH,
        {
            "Namespace": "ApiladosDR",
            "MetricName": "HealthProbeFailed",
            "Dimensions": [{"Name": "FunctionName", "Value": FUNCTION}, {"Name": "Alias", "Value": "LIVE"}],
            "Statistic": "Maximum",
            "Period": 60,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "EvaluationPeriods": 3,
            "DatapointsToAlarm": 2,
            "TreatMissingData": "missing",
        },
    ),
    # The seed's rule: average Duration above 300,000 ms over 10 minutes.
    f"{FUNCTION}-LIVE-avg-duration": (
        PERFORMANCE,
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "Duration",
            "Dimensions": LIVE_DIMENSIONS,
            "Statistic": "Average",
            "Period": 600,
            "Threshold": 300_000,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "TreatMissingData": "notBreaching",
        },
    ),
    f"{FUNCTION}-LIVE-p99-duration": (
        PERFORMANCE,
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "Duration",
            "Dimensions": LIVE_DIMENSIONS,
            "ExtendedStatistic": "p99",
            "Period": 600,
            "Threshold": 600_000,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "TreatMissingData": "notBreaching",
        },
    ),
}


def _alarm(synth: Synthesized, name: str) -> tuple[str, dict]:
    alarm = logical_id(synth.resources, "AWS::CloudWatch::Alarm", AlarmName=name)
    return alarm, synth.resources[alarm]["Properties"]


def _sorted(dimensions: list[dict]) -> list[dict]:
    return sorted(dimensions, key=lambda dimension: dimension["Name"])


def _watcher(synth: Synthesized, handler: str) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)


@pytest.mark.parametrize("name", ALARMS)
def test_alarm_watches_the_live_alias_with_the_configured_rule(synth: Synthesized, name: str):
    # Given an alarm on the LIVE alias / Then it watches the right metric with cdk.json's thresholds
    _, properties = _alarm(synth, name)
    _, expected = ALARMS[name]
    # (Dimension order carries no meaning.)
    actual = {key: properties.get(key) for key in expected} | {"Dimensions": _sorted(properties["Dimensions"])}
    assert actual == expected | {"Dimensions": _sorted(expected["Dimensions"])}


@pytest.mark.parametrize("name", ALARMS)
def test_alarm_action_invokes_its_watcher_and_only_it(synth: Synthesized, name: str):
    # Given an alarm and the watcher that handles it
    alarm, properties = _alarm(synth, name)
    watcher = _watcher(synth, ALARMS[name][0])
    # Then its only action is that watcher
    assert properties["AlarmActions"] == [{"Fn::GetAtt": [watcher, "Arn"]}]
    # And CloudWatch may invoke the watcher for this alarm only
    synth.template.has_resource_properties(
        "AWS::Lambda::Permission",
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [watcher, "Arn"]},
            "Principal": "lambda.alarms.cloudwatch.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [alarm, "Arn"]},
            "SourceAccount": {"Ref": "AWS::AccountId"},
        },
    )


def _rules(synth: Synthesized) -> list[dict]:
    return [r["Properties"] for r in synth.resources.values() if r["Type"] == "AWS::Events::Rule"]


@pytest.mark.parametrize("handler", [HEALTH, PERFORMANCE])
def test_alarm_state_changes_of_exactly_its_alarms_reach_the_watcher(synth: Synthesized, handler: str):
    # Given the watcher's alarms
    watcher = _watcher(synth, handler)
    its_alarms = [name for name, (owner, _) in ALARMS.items() if owner == handler]
    # When EventBridge matches CloudWatch alarm state changes
    (rule,) = [
        rule
        for rule in _rules(synth)
        if "EventPattern" in rule and any(t["Arn"] == {"Fn::GetAtt": [watcher, "Arn"]} for t in rule["Targets"])
    ]
    # Then the rule selects transitions into ALARM of exactly those alarms
    assert rule["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": its_alarms, "state": {"value": ["ALARM"]}},
    }
    # And it targets only this watcher
    assert [target["Arn"] for target in rule["Targets"]] == [{"Fn::GetAtt": [watcher, "Arn"]}]


def test_every_minute_the_tick_reaches_both_watchers(synth: Synthesized):
    # Given the schedule rules that target the watchers
    watchers = [{"Fn::GetAtt": [_watcher(synth, handler), "Arn"]} for handler in (HEALTH, PERFORMANCE)]
    (tick,) = [
        rule
        for rule in _rules(synth)
        if "ScheduleExpression" in rule and any(target["Arn"] in watchers for target in rule["Targets"])
    ]
    # Then one fires every minute with the scheduled event itself (no replacement input)
    assert tick["ScheduleExpression"] == "rate(1 minute)"
    assert all("Input" not in target for target in tick["Targets"])
    assert sorted(target["Arn"]["Fn::GetAtt"][0] for target in tick["Targets"]) == sorted(
        [_watcher(synth, HEALTH), _watcher(synth, PERFORMANCE)]
    )


def test_undeliverable_rule_events_are_retried_then_dead_lettered(synth: Synthesized):
    # Given every EventBridge target
    queue = failed_events_queue(synth.resources)
    targets = [target for rule in _rules(synth) for target in rule["Targets"]]
    # Then delivery is retried and a lost delivery lands in the failed-events queue (the watchers' two alarm
    # rules and tick, the four backup schedules and the configuration-change rule, the drill schedule, the
    # retention schedule, the two alerts on changes to the backups' protection)
    assert len(targets) == 4 + 4 + 1 + 1 + 1 + 2
    for target in targets:
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}


@pytest.fixture(scope="module")
def another_function() -> Synthesized:
    return synthesize(
        {
            "dr": {
                "protected_function": "orders-api",
                "live_alias": "prod",
                "metrics_namespace": "OrdersDR",
                "alarms": {"p99_duration": {"threshold_ms": 120_000, "period_minutes": 5, "evaluation_periods": 3}},
            }
        }
    )


def test_alarms_follow_the_settings(another_function: Synthesized):
    # Given another protected function, alias, namespace and p99 rule in cdk.json
    resources = another_function.resources
    # When synthesized / Then alarm names, dimensions and thresholds follow
    names = sorted(
        r["Properties"]["AlarmName"]
        for r in resources.values()
        if "AlarmName" in r.get("Properties", {}) and "-backup-" not in r["Properties"]["AlarmName"]
        and "-replication-" not in r["Properties"]["AlarmName"]  # the data bucket's (tests/infra/test_replication.py)
    )
    suffixes = ("errors", "throttles", "health-probe", "avg-duration", "p99-duration")
    heartbeats = [f"orders-api-{watcher}-heartbeat" for watcher in ("health_watcher", "performance_watcher")]
    fan_outs = ["orders-api-restore-fanout-unfinished"]  # the snapshot fan-out's is a backup alarm, above
    assert names == sorted([*(f"orders-api-prod-{suffix}" for suffix in suffixes), *heartbeats, *fan_outs])
    _, p99 = _alarm(another_function, "orders-api-prod-p99-duration")
    assert _sorted(p99["Dimensions"]) == [
        {"Name": "FunctionName", "Value": "orders-api"},
        {"Name": "Resource", "Value": "orders-api:prod"},
    ]
    assert (p99["Threshold"], p99["Period"], p99["EvaluationPeriods"]) == (120_000, 300, 3)
    _, probe = _alarm(another_function, "orders-api-prod-health-probe")
    assert probe["Namespace"] == "OrdersDR"
    # And the watchers wait out the longest window (15 minutes) after a rollback
    health = resources[_watcher(another_function, HEALTH)]["Properties"]["Environment"]["Variables"]
    assert health["DR_SETTLE_SECONDS"] == "900"
