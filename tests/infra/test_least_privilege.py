"""Each watcher's role does what its function needs, on the ARNs it needs, and nothing more."""

from __future__ import annotations

import pytest

from tests.infra.support import (
    TOPIC_KEY,
    Synthesized,
    arn_text,
    as_list,
    failed_events_queue,
    logical_id,
    role_statements,
    statements_granting,
)

HEALTH = "health_watcher.handler.handler"
PERFORMANCE = "performance_watcher.handler.handler"
WATCHERS = (HEALTH, PERFORMANCE)
FUNCTION_ARN = "arn:aws:lambda:us-east-1:${AWS::AccountId}:function:apilados-pipeline-ingest"
ALARM_ARN = "arn:aws:cloudwatch:us-east-1:${AWS::AccountId}:alarm:apilados-pipeline-ingest-LIVE-"

# Actions AWS offers no resource-level permission for; nothing else may be granted on "*".
UNSCOPABLE = {"cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:PutMetricData"}
MUTATING = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "lambda:UpdateAlias",
    "lambda:InvokeFunction",
    "sns:Publish",
    "kms:GenerateDataKey*",
    "sqs:SendMessage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "cloudwatch:PutMetricData",
}


def _statements(synth: Synthesized, handler: str) -> list[dict]:
    function = logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)
    return role_statements(synth.resources, function)


def _resources(statements: list[dict]) -> list:
    return sorted((arn_text(resource) for s in statements for resource in as_list(s["Resource"])), key=str)


@pytest.mark.parametrize("handler", WATCHERS)
def test_only_unscopable_cloudwatch_actions_are_granted_on_everything(synth: Synthesized, handler: str):
    # Given a watcher's policy
    statements = _statements(synth, handler)
    # Then "*" resources carry only actions that have no resource-level permission
    unscoped = [s for s in statements if "*" in as_list(s["Resource"])]
    assert {action for s in unscoped for action in as_list(s["Action"])} == UNSCOPABLE
    # And the one mutating action among them is held to the controller's namespace
    (put_metrics,) = statements_granting(unscoped, "cloudwatch:PutMetricData")
    assert as_list(put_metrics["Action"]) == ["cloudwatch:PutMetricData"]
    assert put_metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ApiladosDR"}}


@pytest.mark.parametrize("handler", WATCHERS)
def test_no_other_mutating_action_has_a_wildcard_in_its_resources(synth: Synthesized, handler: str):
    # Given the statements of a watcher's policy that change something, PutMetricData aside (see above), and the
    # health probe's invoke of the protected function's versions aside (IAM cannot name "every version number"
    # apart from aliases: test_only_the_health_watcher_invokes_and_only_the_protected_functions_versions)
    changing = [
        s
        for s in _statements(synth, handler)
        if set(as_list(s["Action"])) & MUTATING
        and not {"cloudwatch:PutMetricData", "lambda:InvokeFunction"} & set(as_list(s["Action"]))
    ]
    # Then each names its resources exactly
    assert changing
    for resource in _resources(changing):
        assert not (isinstance(resource, str) and "*" in resource), resource


@pytest.mark.parametrize("handler", WATCHERS)
def test_state_table_access_is_item_level_on_the_table_only(synth: Synthesized, handler: str):
    # Given a watcher's policy
    table = logical_id(synth.resources, "AWS::DynamoDB::GlobalTable")
    dynamodb = [
        s for s in _statements(synth, handler) if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))
    ]
    # Then it reads and writes items of the state table, and does nothing else in DynamoDB
    assert [sorted(as_list(s["Action"])) for s in dynamodb] == [
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    ]
    assert _resources(dynamodb) == [{"Fn::GetAtt": [table, "Arn"]}]


@pytest.mark.parametrize("handler", WATCHERS)
def test_aliases_move_only_on_the_protected_function(synth: Synthesized, handler: str):
    # Given a watcher's policy
    statements = _statements(synth, handler)
    # Then UpdateAlias names the protected function, as Lambda authorizes it (the alias is a parameter of the
    # request, not part of the resource: an alias ARN would match no request), nothing wider
    assert _resources(statements_granting(statements, "lambda:UpdateAlias")) == [FUNCTION_ARN]
    # And reads cover the function and its versions only
    for action in (
        "lambda:GetAlias",
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:ListVersionsByFunction",
        "lambda:ListAliases",
    ):
        assert _resources(statements_granting(statements, action)) == sorted([FUNCTION_ARN, f"{FUNCTION_ARN}:*"])


def test_only_the_health_watcher_invokes_and_only_the_protected_functions_versions(synth: Synthesized):
    # Given both watchers' policies / Then the health probe may invoke the protected function's qualifiers (it
    # invokes the versions LIVE routes to, by number), and nothing else is invocable
    (probe,) = statements_granting(_statements(synth, HEALTH), "lambda:InvokeFunction")
    assert as_list(probe["Action"]) == ["lambda:InvokeFunction"] and _resources([probe]) == [f"{FUNCTION_ARN}:*"]
    assert statements_granting(_statements(synth, PERFORMANCE), "lambda:InvokeFunction") == []


@pytest.mark.parametrize("handler", WATCHERS)
def test_alarm_states_are_read_for_the_watched_alarms_only(synth: Synthesized, handler: str):
    # Given a watcher's policy / Then DescribeAlarms names the five LIVE alarms
    assert _resources(statements_granting(_statements(synth, handler), "cloudwatch:DescribeAlarms")) == sorted(
        f"{ALARM_ARN}{suffix}" for suffix in ("errors", "throttles", "health-probe", "avg-duration", "p99-duration")
    )


@pytest.mark.parametrize("handler", WATCHERS)
def test_alerts_go_to_the_two_topics_through_their_key(synth: Synthesized, handler: str):
    # Given a watcher's policy
    resources = synth.resources
    statements = _statements(synth, handler)
    topics = sorted(({"Ref": name} for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"), key=str)
    key = logical_id(resources, "AWS::KMS::Key", Description=TOPIC_KEY)
    # Then it publishes to the alert and emergency topics only
    assert _resources(statements_granting(statements, "sns:Publish")) == topics
    # And may use the topics' key, and no other, to do so
    assert _resources(statements_granting(statements, "kms:GenerateDataKey*")) == [{"Fn::GetAtt": [key, "Arn"]}]
    assert _resources(statements_granting(statements, "kms:Decrypt")) == [{"Fn::GetAtt": [key, "Arn"]}]


@pytest.mark.parametrize("handler", WATCHERS)
def test_logs_and_dead_letters_go_to_its_own_log_group_and_the_failed_events_queue(
    synth: Synthesized, handler: str
):
    # Given a watcher's policy
    resources = synth.resources
    function = resources[logical_id(resources, "AWS::Lambda::Function", Handler=handler)]
    log_group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    queue = failed_events_queue(resources)
    statements = _statements(synth, handler)
    # Then it writes its own log group and sends failed events to the queue, nowhere else
    assert _resources(statements_granting(statements, "logs:PutLogEvents")) == [{"Fn::GetAtt": [log_group, "Arn"]}]
    assert _resources(statements_granting(statements, "sqs:SendMessage")) == [{"Fn::GetAtt": [queue, "Arn"]}]


@pytest.mark.parametrize("handler", WATCHERS)
def test_nothing_beyond_the_listed_permissions(synth: Synthesized, handler: str):
    # Given a watcher's policy / Then its actions are exactly what the watcher's code calls, plus logging
    expected = {
        *MUTATING,
        *UNSCOPABLE,
        "dynamodb:GetItem",
        "dynamodb:Query",
        "lambda:GetAlias",
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:ListVersionsByFunction",
        "lambda:ListAliases",
        "cloudwatch:DescribeAlarms",
        "kms:Decrypt",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    if handler == PERFORMANCE:
        expected.remove("lambda:InvokeFunction")
    else:  # the fence of a returning region (drcore.rollback.region_fence): the data bucket only, test_failover_stack
        expected |= {"s3:GetBucketNotification", "s3:PutBucketNotification"}
    granted = {action for s in _statements(synth, handler) for action in as_list(s["Action"])}
    assert granted == expected
    assert all(s["Effect"] == "Allow" for s in _statements(synth, handler))
