"""The backup function, what triggers it (schedules, configuration changes, itself) and the RPO alarms."""

from __future__ import annotations

from enum import StrEnum
from types import SimpleNamespace
from typing import Any

import pytest

from drcore.core.config import BackupEnvVar, BackupSettings, EnvVar
from stacks.constructs import backups as backups_module
from stacks.constructs.backups import CONFIGURATION_CHANGES
from tests.infra.support import STANDBY_ONLY, Synthesized, default_settings, failed_events_queue, logical_id, rendered

BACKUP = "backup.handler.handler"
ACCOUNT = "${AWS::AccountId}"


def _backup(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=BACKUP)


def _rules_targeting_backup(synth: Synthesized) -> list[dict]:
    arn = {"Fn::GetAtt": [_backup(synth), "Arn"]}
    return [
        r["Properties"]
        for r in synth.resources.values()
        if r["Type"] == "AWS::Events::Rule" and any(t["Arn"] == arn for t in r["Properties"]["Targets"])
    ]


def _schedules(synth: Synthesized) -> dict[str, str]:
    """Each backup schedule's constant input, with its rate."""
    return {
        target["Input"]: rule["ScheduleExpression"]
        for rule in _rules_targeting_backup(synth)
        if "ScheduleExpression" in rule
        for target in rule["Targets"]
    }


# The function


def test_backup_function_runs_long_with_memory_from_the_shared_asset(synth: Synthesized, tuned: Synthesized):
    # Given the backup function
    resources = synth.resources
    properties = resources[_backup(synth)]["Properties"]
    watcher = resources[logical_id(resources, "AWS::Lambda::Function", Handler="health_watcher.handler.handler")]
    # Then it may run Lambda's full 15 minutes with 1 GB (backup.memory_mb, for a bigger bucket's fan-out: more),
    # on the runtime and asset the watchers use
    assert properties["Timeout"] == 900
    assert properties["MemorySize"] == 1024
    assert tuned.resources[_backup(tuned)]["Properties"]["MemorySize"] == 3584
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Code"] == watcher["Properties"]["Code"]
    assert properties["Layers"] == watcher["Properties"]["Layers"]


def test_backup_function_has_its_own_role_and_log_group(synth: Synthesized):
    # Given the backup function
    resources = synth.resources
    properties = resources[_backup(synth)]["Properties"]
    role = properties["Role"]["Fn::GetAtt"][0]
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    # Then no other function uses its role, and its logs are kept for the configured retention
    users = [
        r
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Role"]["Fn::GetAtt"][0] == role
    ]
    assert len(users) == 1
    assert resources[log_group]["Properties"]["RetentionInDays"] == 90


def test_failed_backup_invocations_are_retried_then_dead_lettered(synth: Synthesized):
    # Given the backup function, invoked asynchronously by EventBridge and by itself
    resources = synth.resources
    queue = failed_events_queue(resources)
    # Then failures are retried twice and then land in the failed-events queue
    synth.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": _backup(synth)},
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 900,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}},
        },
    )


def test_backup_environment_is_every_backup_variable_and_the_state_table(synth: Synthesized):
    # Given the backup function's environment
    resources = synth.resources
    variables = resources[_backup(synth)]["Properties"]["Environment"]["Variables"]
    # Then it sets every variable drcore.core.config.BackupEnvVar defines, plus the journal's table, and no more
    expected = ({v.value for v in BackupEnvVar} - STANDBY_ONLY) | {EnvVar.STATE_TABLE_NAME.value}
    assert {name for name in variables if name.startswith("DR_")} == expected
    assert variables[EnvVar.STATE_TABLE_NAME] == {"Ref": logical_id(resources, "AWS::DynamoDB::GlobalTable")}
    assert variables[BackupEnvVar.BACKUP_BUCKET_NAME] == {
        "Ref": logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    }
    assert variables[BackupEnvVar.LOG_GROUP_NAME] == "/aws/lambda/apilados-pipeline-ingest"
    assert variables["POWERTOOLS_SERVICE_NAME"] == "backup"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "synth",
            {
                "protected_function": "apilados-pipeline-ingest",
                "data_bucket": "apilados-production-data",
                "pipeline_stack": "ApiladosPipelineStack",
                "metrics_namespace": "ApiladosDR",
                "copy_concurrency": 16,
                "full_manifest_every": 24,
                "fanout_threshold_objects": 100_000,
                "fanout_shard_objects": 10_000,
                "publish_backup_version": False,
            },
        ),
        (
            "tuned",
            {
                "protected_function": "orders-api",
                "data_bucket": "orders.data.example",
                "pipeline_stack": "OrdersStack",
                "metrics_namespace": "OrdersDR",
                "copy_concurrency": 64,
                "full_manifest_every": 12,
                "fanout_threshold_objects": 50_000,
                "fanout_shard_objects": 5_000,
                "publish_backup_version": True,
            },
        ),
    ],
)
def test_backup_environment_parses_as_the_settings_in_cdk_json(fixture: str, expected: dict, request):
    # Given the backup function's environment, deploy-time references stood in for by names
    synth: Synthesized = request.getfixturevalue(fixture)
    variables = synth.resources[_backup(synth)]["Properties"]["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    # When the handler reads it as it does in Lambda
    settings = BackupSettings.from_environ(environ)
    # Then it holds the values cdk.json describes
    assert {field: getattr(settings, field) for field in expected} == expected
    assert settings.backup_bucket == f"resolved-{BackupEnvVar.BACKUP_BUCKET_NAME.value}"


def test_a_backup_variable_the_stack_does_not_set_fails_synth(monkeypatch):
    # Given the functions' side defines a new backup variable the stack knows nothing of
    # (mypy checks the functional Enum API only with literal members; these are the real enum's, plus one)
    grown = StrEnum("BackupEnvVar", {**{v.name: v.value for v in BackupEnvVar}, "NEW_KNOB": "DR_NEW_KNOB"})  # type: ignore[misc]
    monkeypatch.setattr(backups_module, "BackupEnvVar", grown)
    # Stand-ins for the table and the bucket, as far as the environment reads them
    table: Any = SimpleNamespace(table_name="table")
    bucket: Any = SimpleNamespace(bucket=SimpleNamespace(bucket_name="bucket"))
    # When the environment is built / Then synth stops and names it, rather than deploy its default silently
    with pytest.raises(ValueError, match="defines DR_NEW_KNOB, which the stack does not set"):
        backups_module.backup_environment(default_settings(), table, bucket)


# Schedules


def test_each_component_is_backed_up_as_often_as_its_rpo(synth: Synthesized):
    # Given the seed's objectives: function 5 min, data 60 min, configuration real time, logs one day
    # Then each component has one schedule with a constant input naming it; the stack, whose configuration
    # RPO is real time (changes are caught from CloudTrail), gets a daily safety schedule; logs run hourly,
    # since a day's export finishes on a run after the one that started it
    assert _schedules(synth) == {
        '{"component":"lambda"}': "rate(5 minutes)",
        '{"component":"s3"}': "rate(1 hour)",
        '{"component":"stack"}': "rate(1 day)",
        '{"component":"logs"}': "rate(1 hour)",
    }


def test_schedules_follow_the_objectives(tuned: Synthesized):
    # Given objectives of 1, 30, 120 (configuration, not real time) and 720 minutes / Then the rates follow
    assert _schedules(tuned) == {
        '{"component":"lambda"}': "rate(1 minute)",
        '{"component":"s3"}': "rate(30 minutes)",
        '{"component":"stack"}': "rate(2 hours)",
        '{"component":"logs"}': "rate(1 hour)",
    }


# Configuration changes


def _configuration_rule(synth: Synthesized) -> dict:
    (rule,) = [rule for rule in _rules_targeting_backup(synth) if "EventPattern" in rule]
    return rule


def test_configuration_changes_reach_the_backup_function_as_cloudtrail_delivers_them(synth: Synthesized):
    # Given the rule on CloudTrail events
    rule = _configuration_rule(synth)
    pattern = rule["EventPattern"]
    # Then it selects successful Lambda API calls recorded by CloudTrail
    assert pattern["source"] == ["aws.lambda"]
    assert pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert pattern["detail"]["eventSource"] == ["lambda.amazonaws.com"]
    assert pattern["detail"]["errorCode"] == [{"exists": False}]
    # And delivers the event itself (no input replaces it), retried then dead-lettered
    (target,) = rule["Targets"]
    assert "Input" not in target
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 900}


def test_every_configuration_change_is_matched_by_prefix(synth: Synthesized):
    # Given the event names the rule matches
    names = _configuration_rule(synth)["EventPattern"]["detail"]["eventName"]
    # Then each is a prefix, because CloudTrail appends API versions (UpdateFunctionConfiguration20150331v2)
    assert all(set(name) == {"prefix"} for name in names)
    prefixes = [name["prefix"] for name in names]
    for change in (
        "UpdateFunctionConfiguration",
        "UpdateFunctionCode",
        "PublishVersion",
        "CreateAlias",
        "UpdateAlias",
        "DeleteAlias",
        "PutFunctionConcurrency",
        "DeleteFunctionConcurrency",
        "AddPermission",
        "RemovePermission",
        "PutFunctionEventInvokeConfig",
        "TagResource",
        "UntagResource",
    ):
        assert change in prefixes
    assert prefixes == list(CONFIGURATION_CHANGES)
    # And no prefix is a read (Get..., List...), which would back up on every backup
    assert not [prefix for prefix in prefixes if prefix.startswith(("Get", "List"))]
    assert any("UpdateFunctionConfiguration20150331v2".startswith(prefix) for prefix in prefixes)


def test_only_changes_of_the_protected_function_match(synth: Synthesized):
    # Given the rule's function filter
    detail = rendered(_configuration_rule(synth)["EventPattern"]["detail"])
    arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:apilados-pipeline-ingest"
    partial = f"{ACCOUNT}:function:apilados-pipeline-ingest"
    # Then the function is matched by name, ARN or partial ARN, each also with a qualifier (name:LIVE)...
    this_function = [
        "apilados-pipeline-ingest",
        {"prefix": "apilados-pipeline-ingest:"},
        arn,
        {"prefix": f"{arn}:"},
        partial,
        {"prefix": f"{partial}:"},
    ]
    # ...as requestParameters.functionName, or as requestParameters.resource for tagging calls
    assert detail["$or"] == [
        {"requestParameters": {"functionName": this_function}},
        {"requestParameters": {"resource": this_function}},
    ]
    # And never by a bare prefix of the name, which would also match "apilados-pipeline-ingest-v2"
    assert {"prefix": "apilados-pipeline-ingest"} not in this_function


def test_the_backup_functions_own_calls_do_not_trigger_it_again(synth: Synthesized):
    # Given the backup function may publish versions (PublishVersion is itself a configuration change)
    detail = rendered(_configuration_rule(synth)["EventPattern"]["detail"])
    role = synth.resources[_backup(synth)]["Properties"]["Role"]["Fn::GetAtt"][0]
    # Then calls made in its role's sessions are excluded, and only those
    assert detail["userIdentity"] == {
        "arn": [{"anything-but": {"prefix": f"arn:aws:sts::{ACCOUNT}:assumed-role/${{{role}}}/"}}]
    }


def test_eventbridge_may_invoke_the_backup_function_for_each_rule(synth: Synthesized):
    # Given the backup's rules / Then each has its own permission to invoke the function
    resources = synth.resources
    backup_arn = {"Fn::GetAtt": [_backup(synth), "Arn"]}
    targeting = _rules_targeting_backup(synth)
    rules = {name for name, r in resources.items() if r["Type"] == "AWS::Events::Rule" and r["Properties"] in targeting}
    permitted = {
        r["Properties"]["SourceArn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["FunctionName"] == backup_arn
        and r["Properties"]["Principal"] == "events.amazonaws.com"
    }
    assert len(rules) == 5
    assert permitted == rules


# RPO alarms


def _rpo_alarms(synth: Synthesized) -> dict[str, dict]:
    return {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in synth.resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("AlarmName", "").endswith("-rpo")
    }


def test_one_rpo_alarm_per_component_over_its_window(synth: Synthesized):
    # Given the RPO alarms
    alarms = _rpo_alarms(synth)
    alert_topic = logical_id(synth.resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    # Then each sums the good backups of its component over its window: the function 5 minutes, the data
    # one hour, the stack one day (its safety schedule), the logs one day
    windows = {"lambda": 300, "s3": 3600, "stack": 86400, "logs": 86400}
    assert set(alarms) == {f"apilados-pipeline-ingest-backup-{component}-rpo" for component in windows}
    for component, seconds in windows.items():
        alarm = alarms[f"apilados-pipeline-ingest-backup-{component}-rpo"]
        assert {key: alarm[key] for key in ("Namespace", "MetricName", "Dimensions", "Statistic", "Period")} == {
            "Namespace": "ApiladosDR",
            "MetricName": "BackupSucceeded",
            "Dimensions": [{"Name": "Component", "Value": component}],
            "Statistic": "Sum",
            "Period": seconds,
        }
        # And fewer than one good backup in the window, or no datapoint at all, is an alarm
        assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["EvaluationPeriods"]) == (
            1,
            "LessThanThreshold",
            1,
        )
        assert alarm["TreatMissingData"] == "breaching"
        # And people hear of it
        assert alarm["AlarmActions"] == [{"Ref": alert_topic}]


def test_rpo_alarms_follow_the_objectives(tuned: Synthesized):
    # Given objectives of 1, 30, 120 and 720 minutes
    alarms = _rpo_alarms(tuned)
    # Then the windows follow, never under five minutes, in the configured namespace
    assert {name: alarm["Period"] for name, alarm in alarms.items()} == {
        "orders-api-backup-lambda-rpo": 300,
        "orders-api-backup-s3-rpo": 1800,
        "orders-api-backup-stack-rpo": 7200,
        "orders-api-backup-logs-rpo": 43200,
    }
    assert {alarm["Namespace"] for alarm in alarms.values()} == {"OrdersDR"}
