"""The region watcher in the standby stack: its function, environment, schedule, heartbeat alarm, output, and
exactly the grants its calls need (across regions in the primary, in its own region for the rest)."""

from __future__ import annotations

from typing import Any

from tests.infra.support import (
    Synthesized,
    arn_text,
    as_list,
    default_settings,
    logical_id,
    rendered,
    role_statements,
)

HANDLER = "region_watcher.handler.handler"
PRIMARY_FUNCTION = "arn:aws:lambda:us-east-1:${AWS::AccountId}:function:apilados-pipeline-ingest"


def _function_id(synth: Synthesized) -> str:
    return logical_id(synth.standby_resources, "AWS::Lambda::Function", Handler=HANDLER)


def _grants(synth: Synthesized) -> dict[str, list[Any]]:
    """Each granted action, with the resources (rendered) it is granted on, across the role's statements."""
    grants: dict[str, list[Any]] = {}
    for statement in role_statements(synth.standby_resources, _function_id(synth)):
        assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
        for action in as_list(statement["Action"]):
            grants.setdefault(action, []).extend(rendered(arn_text(r)) for r in as_list(statement["Resource"]))
    return grants


def test_the_standby_deploys_the_region_watcher_with_its_settings(synth: Synthesized):
    function = synth.standby_resources[_function_id(synth)]["Properties"]
    assert function["Timeout"] == 300 and function["ReservedConcurrentExecutions"] == 1
    variables = function["Environment"]["Variables"]
    recovery = logical_id(synth.standby_resources, "AWS::Lambda::Function", Handler="recovery.handler.handler")
    assert variables["DR_RECOVERY_FUNCTION_NAME"] == {"Ref": recovery}
    assert variables["DR_PRIMARY_REGION"] == "us-east-1" and variables["DR_SECONDARY_REGION"] == "us-west-2"
    failover = default_settings().failover
    assert variables["DR_FAILOVER_DETECT_MINUTES"] == str(failover.detect_minutes)
    assert variables["DR_FAILOVER_AUTO_AFTER_MINUTES"] == str(failover.auto_after_minutes)
    assert variables["DR_FAILOVER_AUTOMATIC"] == "false"  # the default: a person decides
    assert variables["DR_STATE_SCOPE"] == "us-west-2"
    assert variables["POWERTOOLS_SERVICE_NAME"] == "region_watcher"
    # The primary's watched alarms, by the names both stacks derive from the protected function
    assert variables["DR_HEALTH_ALARM_NAMES"].startswith("apilados-pipeline-ingest")


def test_the_tuned_failover_settings_reach_the_region_watcher(tuned: Synthesized):
    variables = tuned.standby_resources[_function_id(tuned)]["Properties"]["Environment"]["Variables"]
    failover = tuned.standby_stack.node.try_get_context("dr")["failover"]
    assert variables["DR_FAILOVER_DETECT_MINUTES"] == str(failover["detect_minutes"])
    assert variables["DR_FAILOVER_AUTOMATIC"] == ("true" if failover["automatic"] else "false")
    assert variables["DR_FAILOVER_AUTO_AFTER_MINUTES"] == str(failover["auto_after_minutes"])


def test_it_ticks_every_minute_with_the_failed_events_queue(synth: Synthesized):
    function = _function_id(synth)
    [rule] = [resource["Properties"] for resource in synth.standby_resources.values()
              if resource["Type"] == "AWS::Events::Rule"
              and any(target["Arn"] == {"Fn::GetAtt": [function, "Arn"]}
                      for target in resource["Properties"].get("Targets", []))]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    [target] = rule["Targets"]
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_its_heartbeat_alarm_alerts_the_alert_topic_when_its_ticks_stop(synth: Synthesized):
    [alarm] = [resource["Properties"] for resource in synth.standby_resources.values()
               if resource["Type"] == "AWS::CloudWatch::Alarm"
               and resource["Properties"].get("AlarmName") == "apilados-pipeline-ingest-region_watcher-heartbeat"]
    assert alarm["MetricName"] == "Ticks" and alarm["Dimensions"] == [{"Name": "service", "Value": "region_watcher"}]
    assert alarm["TreatMissingData"] == "breaching" and alarm["ComparisonOperator"] == "LessThanThreshold"
    # The alert topic: the one the standby outputs as AlertTopicArn
    assert alarm["AlarmActions"] == [synth.standby.to_json()["Outputs"]["AlertTopicArn"]["Value"]]


def test_it_is_granted_exactly_the_calls_it_makes(synth: Synthesized):
    grants = _grants(synth)
    recovery = logical_id(synth.standby_resources, "AWS::Lambda::Function", Handler="recovery.handler.handler")
    alarm_names = synth.standby_resources[_function_id(synth)]["Properties"]["Environment"]["Variables"]
    names = alarm_names["DR_HEALTH_ALARM_NAMES"].split(",") + alarm_names["DR_PERFORMANCE_ALARM_NAMES"].split(",")
    table = "arn:aws:dynamodb:us-west-2:${AWS::AccountId}:table/apilados-dr-state"
    assert grants.pop("lambda:GetAlias") == [PRIMARY_FUNCTION]
    assert sorted(map(str, grants.pop("lambda:InvokeFunction"))) == sorted(
        [f"{PRIMARY_FUNCTION}:*", f"${{{recovery}.Arn}}"])
    assert sorted(grants.pop("cloudwatch:DescribeAlarms")) == sorted(
        f"arn:aws:cloudwatch:us-east-1:${{AWS::AccountId}}:alarm:{name}" for name in names)
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"):
        resources = grants.pop(action)
        assert resources == [table], (action, resources)
    assert len(grants.pop("sns:Publish")) == 2
    assert set(grants.pop("kms:Decrypt")) == set(grants.pop("kms:GenerateDataKey*"))
    # Besides: its logs, and the failed-events queue every controller function sends what it gave up on to
    failed = ["${" + logical_id(synth.standby_resources, "AWS::SQS::Queue", MessageRetentionPeriod=1209600) + ".Arn}"]
    for action in ("sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"):
        assert grants.pop(action) == failed
    assert set(grants) == {"logs:CreateLogStream", "logs:PutLogEvents"}, grants


def test_the_standby_outputs_the_region_watchers_name(synth: Synthesized):
    output = synth.standby.to_json()["Outputs"]["RegionWatcherName"]
    assert output["Value"] == {"Ref": _function_id(synth)}
