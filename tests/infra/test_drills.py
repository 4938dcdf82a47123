"""The drill function: its schedule, its scratch bucket, its environment, and a role that can rehearse a
recovery without being able to touch production or delete anything for good."""

from __future__ import annotations

import json

import pytest

from tests.infra.support import (
    Synthesized,
    as_list,
    logical_id,
    rendered,
    role_statements,
    scratch_bucket_id,
    synthesize,
)

DRILL = "drill.handler.handler"
ACCOUNT = "${AWS::AccountId}"
PROTECTED_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:apilados-pipeline-ingest"
SCRATCH_FUNCTION_ARN = f"{PROTECTED_ARN}-drill"


def _drill(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=DRILL)


def _statements(synth: Synthesized) -> list[dict]:
    return [rendered(statement) for statement in role_statements(synth.resources, _drill(synth))]


def _resources_of(statements: list[dict], action_prefixes: tuple[str, ...]) -> set[str]:
    return {resource for statement in statements for action in as_list(statement["Action"])
            if action.startswith(action_prefixes) for resource in as_list(statement["Resource"])}


def test_the_drill_function_runs_for_up_to_15_minutes_with_its_settings(synth: Synthesized):
    function = synth.resources[_drill(synth)]["Properties"]
    assert function["Timeout"] == 900 and function["MemorySize"] == 1024
    variables = rendered(function["Environment"]["Variables"])
    assert variables["DR_DRILL_SCRATCH_FUNCTION"] == "apilados-pipeline-ingest-drill"
    assert variables["DR_DRILL_SCRATCH_BUCKET"] == "${" + scratch_bucket_id(synth.resources) + "}"
    # The RTOs of cdk.json's objectives table: function 15 min, data 30 min, configuration 5 min
    assert json.loads(variables["DR_RTO_SECONDS"]) == {"lambda": 900, "s3": 1800, "configuration": 300}
    assert variables["DR_DRILL_ENVIRONMENT"] == "aws"
    assert variables["DR_DATA_BUCKET_NAME"] == "apilados-production-data"


def test_drills_run_weekly_and_a_duplicated_schedule_event_names_the_same_drill(synth: Synthesized):
    [rule] = [resource["Properties"] for resource in synth.resources.values() if resource["Type"] == "AWS::Events::Rule"
              and resource["Properties"].get("ScheduleExpression") == "cron(0 6 ? * MON *)"]
    assert rule["State"] == "ENABLED"
    [target] = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [_drill(synth), "Arn"]}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"time": "$.time"}
    # EventBridge puts the time in as a JSON string (it quotes a string value given to a bare placeholder)
    assert json.loads(transformer["InputTemplate"].replace("<time>", "\"TIME\"")) == {
        "action": "drill", "requested_by": "schedule", "reason": "scheduled DR drill", "scheduled_at": "TIME"}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def test_an_unscheduled_drill_keeps_its_rule_disabled():
    synth = synthesize({"dr": {"drill": {"schedule": "rate(30 days)", "scheduled": False}}})
    [rule] = [resource["Properties"] for resource in synth.resources.values() if resource["Type"] == "AWS::Events::Rule"
              and resource["Properties"].get("ScheduleExpression") == "rate(30 days)"]
    assert rule["State"] == "DISABLED"


def test_the_scratch_bucket_is_encrypted_versioned_private_and_empties_itself(synth: Synthesized):
    bucket = synth.resources[scratch_bucket_id(synth.resources)]
    properties = bucket["Properties"]
    [encryption] = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": [logical_id(synth.resources, "AWS::KMS::Key", Description="Encrypts the backups of "
                                                                                 "apilados-pipeline-ingest"), "Arn"]}
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(properties["PublicAccessBlockConfiguration"].values())
    rules = {rule["Id"]: rule for rule in properties["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireDrillCopies"]["ExpirationInDays"] == 7
    assert rules["ExpireDrillCopies"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert rules["RemoveEmptyDeleteMarkers"]["ExpiredObjectDeleteMarker"] is True
    assert bucket["DeletionPolicy"] == "Retain"


def test_the_drill_role_changes_only_the_scratch_function_and_the_scratch_bucket(synth: Synthesized):
    statements = _statements(synth)
    # Lambda: every write is on the scratch function (or a layer it republishes), never on the protected one
    lambda_writes = _resources_of(statements, ("lambda:Create", "lambda:Update", "lambda:Publish", "lambda:Put",
                                               "lambda:Delete", "lambda:Tag", "lambda:Untag"))
    assert lambda_writes == {SCRATCH_FUNCTION_ARN, f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:*"}
    # and the versions it publishes of it are read back (by number: the qualified ARN), nothing else qualified
    assert _resources_of(statements, ("lambda:GetFunctionConfiguration",)) == {SCRATCH_FUNCTION_ARN,
                                                                               f"{SCRATCH_FUNCTION_ARN}:*"}
    invokes = _resources_of(statements, ("lambda:InvokeFunction",))
    assert invokes == {"${" + _drill(synth) + ".Arn}"}
    # S3: writes only into the scratch bucket and the backup store's prefixes; the data bucket is not named.
    # Not content/: the drill clears the scratch bucket first, so its safety snapshot stores no object.
    s3_writes = _resources_of(statements, ("s3:Put", "s3:Delete", "s3:Abort"))
    scratch = scratch_bucket_id(synth.resources)
    backups = logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    assert s3_writes == {"${" + scratch + ".Arn}/*"} | {"${" + backups + ".Arn}/" + prefix + "/*"
                                                        for prefix in ("drills", "restores", "snapshots")}
    # and only the scratch bucket's copies in parts are aborted
    assert _resources_of(statements, ("s3:Abort",)) == {"${" + scratch + ".Arn}/*"}
    # (the pipeline stack is named only as the creator of the roles a restored function may be given: below)
    everything = json.dumps([s for s in statements if as_list(s["Action"]) != ["iam:PassRole"]])
    assert "apilados-production-data" not in everything and "ApiladosPipelineStack" not in everything
    # Nothing is deleted for good, and no stack is created or changed
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    assert not actions & {"s3:DeleteObjectVersion", "lambda:DeleteFunction", "cloudformation:DeleteStack",
                          "cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet", "lambda:UpdateAlias"}
    assert {action for action in actions if action.startswith("cloudformation:")} == {"cloudformation:ValidateTemplate"}


def test_by_default_the_pipeline_stacks_roles_can_be_handed_to_the_scratch_function(synth: Synthesized):
    # Given no function roles in cdk.json / Then the scratch function may be given a role the pipeline stack
    # created (the protected function's own, as the first scheduled drill creates it), to Lambda only
    [statement] = [s for s in _statements(synth) if "iam:PassRole" in as_list(s["Action"])]
    assert statement["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/ApiladosPipelineStack-*"
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}


def test_only_roles_named_in_cdk_json_can_be_handed_to_the_scratch_function():
    role = "arn:aws:iam::123456789012:role/apilados-pipeline-*"
    synth = synthesize({"dr": {"recovery": {"function_role_arns": [role]}}})
    [statement] = [s for s in _statements(synth) if "iam:PassRole" in as_list(s["Action"])]
    assert statement["Resource"] == role
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}


@pytest.mark.parametrize("principal", ["arn:aws:iam::123456789012:role/dr-operator"])
def test_operators_may_start_a_drill(principal):
    synth = synthesize({"dr": {"operator_principals": [principal]}})
    drill = logical_id(synth.resources, "AWS::Lambda::Function", Handler=DRILL)
    grants = [resource["Properties"] for resource in synth.resources.values()
              if resource["Type"] == "AWS::Lambda::Permission"
              and resource["Properties"]["FunctionName"] == {"Fn::GetAtt": [drill, "Arn"]}
              and resource["Properties"]["Principal"] == principal]
    assert len(grants) == 1
