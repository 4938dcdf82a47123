"""The two watcher functions: one code asset, Powertools from AWS's public layer, the shared environment."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.shared.version import VERSION as POWERTOOLS_UNDER_TEST

from drcore.core.config import ControllerSettings, EnvVar
from stacks.constructs.controller_functions import powertools_layer_parameter, powertools_version
from tests.infra.support import STANDBY_ONLY, Synthesized, failed_events_queue, logical_id

WATCHERS = {
    "health_watcher.handler.handler": "health_watcher",
    "performance_watcher.handler.handler": "performance_watcher",
}


def _function(synth: Synthesized, handler: str) -> dict:
    return synth.resources[logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)]


def test_the_deployed_functions_are_the_watchers_backup_retention_recovery_restore_shards_and_drill(
        synth: Synthesized):
    # Given the synthesized controller / Then its functions are, by handler string, the watchers, backup,
    # retention, recovery, the restore fan-out's shard worker and drill
    handlers = sorted(
        r["Properties"]["Handler"] for r in synth.resources.values() if r["Type"] == "AWS::Lambda::Function"
    )
    assert handlers == sorted([*WATCHERS, "backup.handler.handler", "retention.handler.handler",
                               "recovery.handler.handler", "restore_shard.handler.handler", "drill.handler.handler"])


@pytest.mark.parametrize("handler", WATCHERS)
def test_watcher_runs_on_the_newest_powertools_python_on_arm(synth: Synthesized, handler: str):
    # Given a watcher
    properties = _function(synth, handler)["Properties"]
    # Then it runs Python 3.14 on arm64 with a short timeout
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Timeout"] == 30
    # And Powertools is the public layer, resolved at deploy time from AWS's SSM parameter
    (layer,) = properties["Layers"]
    parameter = synth.template.to_json()["Parameters"][layer["Ref"]]
    assert parameter == {
        "Type": "AWS::SSM::Parameter::Value<String>",
        "Default": "/aws/service/powertools/python/arm64/python3.13/3.37.0",
    }


def test_powertools_layer_is_the_version_pinned_in_requirements():
    # Given requirements.txt pins aws-lambda-powertools / Then the layer parameter names that version
    # And it is the version the tests run against
    assert powertools_version() == POWERTOOLS_UNDER_TEST
    assert powertools_layer_parameter(powertools_version()).endswith(f"/{POWERTOOLS_UNDER_TEST}")


def test_every_function_shares_one_code_asset(synth: Synthesized):
    # Given every function / Then they run the same asset and differ only by handler
    codes = {
        str(r["Properties"]["Code"]) for r in synth.resources.values() if r["Type"] == "AWS::Lambda::Function"
    }
    assert len(codes) == 1


@pytest.mark.parametrize(("handler", "service"), WATCHERS.items())
def test_watcher_environment_is_what_the_handlers_read(synth: Synthesized, handler: str, service: str):
    # Given a watcher's environment
    variables = _function(synth, handler)["Properties"]["Environment"]["Variables"]
    resources = synth.resources
    # Then every controller variable is set, under the names drcore.core.config defines
    assert {name for name in variables if name.startswith("DR_")} == {name.value for name in EnvVar} - STANDBY_ONLY
    assert variables[EnvVar.PROTECTED_FUNCTION_NAME] == "apilados-pipeline-ingest"
    assert (variables[EnvVar.LIVE_ALIAS], variables[EnvVar.STABLE_ALIAS]) == ("LIVE", "STABLE")
    assert variables[EnvVar.STATE_TABLE_NAME] == {"Ref": logical_id(resources, "AWS::DynamoDB::GlobalTable")}
    assert variables[EnvVar.ALERT_TOPIC_ARN] == {
        "Ref": logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    }
    assert variables[EnvVar.EMERGENCY_TOPIC_ARN] == {
        "Ref": logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
    }
    assert variables[EnvVar.HEALTH_ALARM_NAMES] == (
        "apilados-pipeline-ingest-LIVE-errors,apilados-pipeline-ingest-LIVE-throttles,"
        "apilados-pipeline-ingest-LIVE-health-probe"
    )
    assert variables[EnvVar.PERFORMANCE_ALARM_NAMES] == (
        "apilados-pipeline-ingest-LIVE-avg-duration,apilados-pipeline-ingest-LIVE-p99-duration"
    )
    assert variables[EnvVar.BAKE_SECONDS] == "1800"
    assert variables[EnvVar.SETTLE_SECONDS] == "600"
    assert variables[EnvVar.METRICS_NAMESPACE] == "ApiladosDR"
    # And Powertools names the service and publishes in the controller's namespace
    assert variables["POWERTOOLS_SERVICE_NAME"] == service
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "ApiladosDR"


@pytest.mark.parametrize("handler", WATCHERS)
def test_watcher_environment_parses_as_controller_settings(synth: Synthesized, handler: str):
    # Given a watcher's environment, with the deploy-time references stood in for by names
    variables = _function(synth, handler)["Properties"]["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    # When the handler reads it as it does in Lambda
    settings = ControllerSettings.from_environ(environ)
    # Then the values are the ones cdk.json describes
    assert settings.bake_seconds == 1800
    assert settings.min_bake_invocations == 10
    assert settings.regression_factor == 1.5
    assert len(settings.watched_alarms) == 5


@pytest.mark.parametrize("handler", WATCHERS)
def test_watcher_has_its_own_role_and_log_group(synth: Synthesized, handler: str):
    # Given a watcher
    resources = synth.resources
    properties = _function(synth, handler)["Properties"]
    role = properties["Role"]["Fn::GetAtt"][0]
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    # Then its role is used by no other function, and carries no AWS managed policy
    users = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Role"]["Fn::GetAtt"][0] == role
    ]
    assert len(users) == 1
    assert "ManagedPolicyArns" not in resources[role]["Properties"]
    # And its logs are kept for the configured retention
    assert resources[log_group]["Properties"]["RetentionInDays"] == 90


@pytest.mark.parametrize("handler", WATCHERS)
def test_failed_async_invocations_are_retried_then_dead_lettered(synth: Synthesized, handler: str):
    # Given a watcher invoked asynchronously (alarm actions, EventBridge)
    resources = synth.resources
    function = logical_id(resources, "AWS::Lambda::Function", Handler=handler)
    queue = failed_events_queue(resources)
    # Then failures are retried twice, and events that still fail or grow stale land in the queue
    synth.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": function},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 900,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}},
        },
    )


def test_failed_events_queue_is_encrypted_tls_only_and_watched(synth: Synthesized):
    # Given the failed-events queue
    resources = synth.resources
    queue = failed_events_queue(resources)
    alert_topic = logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    # Then it is encrypted and refuses plain HTTP
    assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True
    (policy,) = [r for r in resources.values()
                 if r["Type"] == "AWS::SQS::QueuePolicy" and r["Properties"]["Queues"] == [{"Ref": queue}]]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    )
    # And a message waiting in it alerts people
    synth.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}],
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "AlarmActions": [{"Ref": alert_topic}],
        },
    )


RESPONDERS = ["health_watcher.handler.handler", "performance_watcher.handler.handler", "recovery.handler.handler"]


@pytest.mark.parametrize(("fixture", "reserved"), [("synth", [5, 5, 3]), ("tuned", [10, 4, 2])])
def test_the_functions_that_answer_an_incident_have_concurrency_of_their_own(
    fixture: str, reserved: list[int], request: pytest.FixtureRequest
):
    # Given the watchers and the recovery function, with cdk.json's reservations
    synth: Synthesized = request.getfixturevalue(fixture)
    # Then each reserves its own concurrent executions: the protected function throttling cannot starve them
    assert [_function(synth, handler)["Properties"]["ReservedConcurrentExecutions"] for handler in RESPONDERS] == (
        reserved
    )
    # And the backup and drill functions share the account's unreserved pool
    for handler in ("backup.handler.handler", "drill.handler.handler"):
        assert "ReservedConcurrentExecutions" not in _function(synth, handler)["Properties"]
