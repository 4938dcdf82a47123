"""Preflight (issue 11, build item 7): each check passes on an account that has what the controller needs, and
each fails, alone, when that one thing is missing. Against moto, with two narrow gaps faked and said so below."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sns.models import sns_backends
from moto.ssm.models import Parameter, ssm_backends

from drcore.restore.manual_actions import RunPreflight, parse_manual_action
from drcore.restore.preflight import (
    Preflight,
    PreflightEnvVar,
    PreflightSettings,
    PreflightTarget,
    role_pattern_matches,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTION = "apilados-pipeline-ingest"
BUCKET = "apilados-production-data"
STACK = "ApiladosPipelineStack"
RUNTIME = "python3.13"
LAYER_PARAMETER = "/aws/service/powertools/python/arm64/python3.13/3.23.0"
LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python314-arm64"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/apilados-pipeline-ingest-role"


def put_public_parameter(name: str, value: str) -> None:
    """moto refuses PutParameter under /aws/ (as AWS does) and holds only a few of AWS's public parameters:
    the Powertools layer's is placed in its backend, as AWS publishes it."""
    ssm_backends[ACCOUNT][REGION]._parameters[name].append(
        Parameter(  # type: ignore[abstract]  # typed abstract, built so by moto itself
            account_id=ACCOUNT, name=name, value=value, parameter_type="String", description=None,
                  allowed_pattern=None, keyid=None, last_modified_date=datetime.now(UTC), version=1,
                  data_type="text"))


def leave_unconfirmed(topic_arn: str) -> None:
    """moto confirms every subscription at once; AWS lists an unconfirmed one with the SubscriptionArn
    "PendingConfirmation", which is set here in moto's backend."""
    for subscription in sns_backends[ACCOUNT][REGION].subscriptions.values():
        if subscription.topic.arn == topic_arn:
            subscription.arn = "PendingConfirmation"


def _code() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return archive.getvalue()


@pytest.fixture
def account() -> Iterator[dict[str, Any]]:
    """An account with everything the controller needs: the checks all pass here."""
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        iam = session.client("iam")
        iam.create_role(RoleName="apilados-pipeline-ingest-role", AssumeRolePolicyDocument=json.dumps({}))
        lam: Any = session.client("lambda")
        layer = lam.publish_layer_version(LayerName=LAYER_NAME, Content={"ZipFile": _code()},
                                          CompatibleRuntimes=[RUNTIME, "python3.13"])
        put_public_parameter(LAYER_PARAMETER, layer["LayerVersionArn"])
        lam.create_function(FunctionName=FUNCTION, Runtime="python3.12", Role=ROLE_ARN, Handler="handler.handler",
                            Code={"ZipFile": _code()})
        version = lam.publish_version(FunctionName=FUNCTION)["Version"]
        for alias in ("LIVE", "STABLE"):
            lam.create_alias(FunctionName=FUNCTION, Name=alias, FunctionVersion=version)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket="trail-logs")
        cloudtrail = session.client("cloudtrail")
        cloudtrail.create_trail(Name="management", S3BucketName="trail-logs", IsMultiRegionTrail=True)
        cloudtrail.start_logging(Name="management")
        session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps({"Resources": {}}))
        sns = session.client("sns")
        topics = tuple(sns.create_topic(Name=name)["TopicArn"] for name in ("alerts", "emergencies"))
        sqs = session.client("sqs")
        queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for topic in topics:
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield {"session": session, "topics": topics}


def preflight(account: dict[str, Any], client: Callable[[str], Any] | None = None, **changes: Any) -> dict[str, Any]:
    settings = PreflightSettings(layer_parameter=LAYER_PARAMETER, runtime=RUNTIME,
                                 function_role_patterns=(f"arn:aws:iam::{ACCOUNT}:role/apilados-pipeline-*",))
    fields: dict[str, Any] = {"settings": settings, "protected_function": FUNCTION, "live_alias": "LIVE",
                              "stable_alias": "STABLE", "data_bucket": BUCKET, "pipeline_stack": STACK,
                              "alert_topic_arns": account["topics"]}
    session = account["session"]
    return Preflight(client or session.client, PreflightTarget(**{**fields, **changes})).run()


def failing(answer: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["detail"] for check in answer["checks"] if not check["ok"]}


def test_every_check_passes_on_an_account_that_has_what_the_controller_needs(account: dict[str, Any]) -> None:
    # Given the account above; When preflight runs
    answer = preflight(account)
    # Then every check passes, each named, and so does the whole
    assert failing(answer) == {}
    assert answer["ok"] is True
    assert [check["name"] for check in answer["checks"]] == [
        "powertools_layer_parameter", "runtime_available", "cloudtrail_management_events",
        "protected_function_and_aliases", "roles_to_pass", "alert_subscriptions_confirmed", "data_bucket_versioned"]


def _no_layer_parameter(account: dict[str, Any]) -> dict[str, Any]:
    return {"settings": PreflightSettings(layer_parameter=LAYER_PARAMETER.replace("3.23.0", "0.0.1"),
                                          runtime=RUNTIME, function_role_patterns=(ROLE_ARN,))}


def _runtime_not_in_layer(account: dict[str, Any]) -> dict[str, Any]:
    return {"settings": PreflightSettings(layer_parameter=LAYER_PARAMETER, runtime="python3.99",
                                          function_role_patterns=(ROLE_ARN,))}


def _trail_stopped(account: dict[str, Any]) -> dict[str, Any]:
    account["session"].client("cloudtrail").stop_logging(Name="management")
    return {}


def _stable_on_latest(account: dict[str, Any]) -> dict[str, Any]:
    account["session"].client("lambda").update_alias(FunctionName=FUNCTION, Name="STABLE", FunctionVersion="$LATEST")
    return {}


def _role_not_listed(account: dict[str, Any]) -> dict[str, Any]:
    return {"settings": PreflightSettings(layer_parameter=LAYER_PARAMETER, runtime=RUNTIME,
                                          function_role_patterns=(f"arn:aws:iam::{ACCOUNT}:role/other-*",))}


def _subscription_pending(account: dict[str, Any]) -> dict[str, Any]:
    leave_unconfirmed(account["topics"][1])
    return {}


def _bucket_suspended(account: dict[str, Any]) -> dict[str, Any]:
    account["session"].client("s3").put_bucket_versioning(Bucket=BUCKET,
                                                          VersioningConfiguration={"Status": "Suspended"})
    return {}


@pytest.mark.parametrize(("breaking", "check", "says"), [
    (_no_layer_parameter, "powertools_layer_parameter", "does not exist in this region"),
    (_runtime_not_in_layer, "runtime_available", "not python3.99"),
    (_trail_stopped, "cloudtrail_management_events", "is not logging"),
    (_stable_on_latest, "protected_function_and_aliases", "STABLE points at $LATEST"),
    (_role_not_listed, "roles_to_pass", "matches no recovery.function_role_arns pattern"),
    (_subscription_pending, "alert_subscriptions_confirmed", "awaiting confirmation"),
    (_bucket_suspended, "data_bucket_versioned", "versioning is Suspended"),
])
def test_each_check_fails_alone_when_its_need_is_missing(account: dict[str, Any], breaking: Any, check: str,
                                                          says: str) -> None:
    # Given the account with one need taken away
    changes = breaking(account)
    # When preflight runs
    answer = preflight(account, **changes)
    # Then that check, and only that one (a missing layer parameter also leaves the runtime unprovable), fails
    expected = {check, "runtime_available"} if breaking is _no_layer_parameter else {check}
    assert set(failing(answer)) == expected
    assert says in failing(answer)[check]
    assert answer["ok"] is False


def test_a_trail_without_management_write_events_does_not_count(account: dict[str, Any]) -> None:
    # Given the only trail logs data events and management reads only
    account["session"].client("cloudtrail").put_event_selectors(
        TrailName="management", EventSelectors=[{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}])
    # When preflight runs; Then the trail check says so
    assert "logs no management write events" in failing(preflight(account))["cloudtrail_management_events"]


def test_a_stack_role_the_settings_do_not_list_fails_the_roles_check(account: dict[str, Any]) -> None:
    # Given the pipeline stack runs as a service role and recovery.stack_role_arn is unset
    stack_role = f"arn:aws:iam::{ACCOUNT}:role/pipeline-deployer"
    account["session"].client("cloudformation").update_stack(
        StackName=STACK, TemplateBody=json.dumps({"Resources": {}}), RoleARN=stack_role)
    # When preflight runs; Then the roles check names the role and the setting
    assert "recovery.stack_role_arn is unset" in failing(preflight(account))["roles_to_pass"]
    # And with the setting naming that role, it passes
    listed = PreflightSettings(layer_parameter=LAYER_PARAMETER, runtime=RUNTIME, function_role_patterns=(ROLE_ARN,),
                               stack_role_arn=stack_role)
    assert failing(preflight(account, settings=listed)) == {}


def test_a_check_that_cannot_be_made_says_so_and_is_not_ok(account: dict[str, Any]) -> None:
    # Given a role that may not read CloudTrail, and a controller stack not deployed yet
    def denied(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "DescribeTrails")

    def client(service: str) -> Any:
        real = account["session"].client(service)
        if service == "cloudtrail":
            real.describe_trails = denied
        return real

    # When preflight runs
    problems = failing(preflight(account, client=client, alert_topic_arns=None))
    # Then both checks say why they could not be made, and count as failed
    assert problems["cloudtrail_management_events"].startswith("could not be checked: AccessDeniedException")
    assert "not deployed yet" in problems["alert_subscriptions_confirmed"]


def test_role_patterns_match_as_iam_matches_them() -> None:
    assert role_pattern_matches("arn:aws:iam::1:role/app-*", "arn:aws:iam::1:role/app-ingest")
    assert role_pattern_matches("arn:aws:iam::1:role/*/ingest", "arn:aws:iam::1:role/service/x/ingest")
    assert role_pattern_matches("arn:aws:iam::1:role/app-?", "arn:aws:iam::1:role/app-a")
    assert not role_pattern_matches("arn:aws:iam::1:role/app-?", "arn:aws:iam::1:role/app-ab")
    assert not role_pattern_matches("arn:aws:iam::1:role/app.x", "arn:aws:iam::1:role/appzx")


def test_the_settings_are_read_from_the_environment_the_stack_sets() -> None:
    settings = PreflightSettings.from_environ({
        PreflightEnvVar.LAYER_PARAMETER: LAYER_PARAMETER, PreflightEnvVar.RUNTIME: RUNTIME,
        PreflightEnvVar.FUNCTION_ROLE_PATTERNS: json.dumps([ROLE_ARN]), PreflightEnvVar.STACK_ROLE_ARN: ""})
    assert settings == PreflightSettings(LAYER_PARAMETER, RUNTIME, (ROLE_ARN,), None)


def test_preflight_is_a_manual_action_without_parameters() -> None:
    assert isinstance(parse_manual_action({"action": "preflight"}), RunPreflight)
    with pytest.raises(Exception, match="preflight"):
        parse_manual_action({"action": "preflight", "confirm": "rs-abcdef"})


def test_make_preflight_finds_the_topics_of_the_deployed_controller_stack_or_says_it_is_not_deployed(
        account: dict[str, Any]) -> None:
    from embedded.preflight import deployed_topics

    cloudformation = account["session"].client("cloudformation")
    # Given no controller stack; Then there are no topics to check
    assert deployed_topics(cloudformation, "ApiladosDrController") is None
    # Given a deployed one with a topic; Then its topic is found
    template = {"Resources": {"Alerts": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "dr-alerts"}}}}
    cloudformation.create_stack(StackName="ApiladosDrController", TemplateBody=json.dumps(template))
    assert deployed_topics(cloudformation, "ApiladosDrController") == (
        f"arn:aws:sns:{REGION}:{ACCOUNT}:dr-alerts",)
