"""The restore fan-out: the state machine that applies a big bucket restore as shards (a Distributed Map), its
shard worker, what each of their roles may do, what the recovery function may do with it, and its alarm; the standby
has none."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from drcore.core.config import BackupEnvVar, BackupSettings, RecoveryEnvVar, RecoverySettings
from drcore.restore.restore_shards import items_key
from embedded.aws_events import ACCOUNT
from embedded.iam.actions import permissions_of
from embedded.iam.evaluator import Decision, Outcome, evaluate
from embedded.iam.recorder import RecordedCall
from embedded.iam.template_roles import EmbeddedNames, Resolver, resolve_template, role_statements
from embedded.world import REGION
from stacks.constructs.restore_fanout import RESTORE_SHARD_HANDLER, RESULTS_PREFIX, restore_fanout_name
from stacks.constructs.shard_fanout import SHARD_REFUSED
from tests.infra.support import (
    Synthesized,
    arn_text,
    as_list,
    default_settings,
    fanout_results_bucket_id,
    logical_id,
    rendered,
)
from tests.infra.support import role_statements as function_role_statements

RECOVERY = "recovery.handler.handler"
BACKUP = "backup.handler.handler"
NAME = "apilados-pipeline-ingest-restore-fanout"
SNAPSHOT_FANOUT = "apilados-pipeline-ingest-snapshot-fanout"
STATES = "arn:aws:states:us-east-1:${AWS::AccountId}"
DATA_BUCKET = "apilados-production-data"
DATA_BUCKET_ARN = f"arn:aws:s3:::{DATA_BUCKET}"
BACKUP_KEY = "Encrypts the backups of apilados-pipeline-ingest"
LAMBDA_TRANSIENT = [
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
]
RETRIES = [
    {"ErrorEquals": LAMBDA_TRANSIENT, "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2,
     "JitterStrategy": "FULL"},
    {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 30, "MaxAttempts": 2, "BackoffRate": 2,
     "JitterStrategy": "FULL"},
]
PLAN = "rp-0123456789"


def _machine_id(resources: dict[str, dict[str, Any]], name: str = NAME) -> str:
    return logical_id(resources, "AWS::StepFunctions::StateMachine", StateMachineName=name)


def _definition(synth: Synthesized, name: str = NAME) -> dict[str, Any]:
    """The state machine's definition, its references to resources written as "${LogicalId.Attribute}"."""
    definition = synth.resources[_machine_id(synth.resources, name)]["Properties"]["DefinitionString"]
    parsed: dict[str, Any] = json.loads(rendered(definition))
    return parsed


def _function(synth: Synthesized, handler: str) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)


def _ids(synth: Synthesized) -> tuple[str, str, str, str]:
    """The worker's, the recovery function's, the backup bucket's and the backup key's logical ids (cdk.json's)."""
    resources = synth.resources
    return (_function(synth, RESTORE_SHARD_HANDLER), _function(synth, RECOVERY),
            logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True),
            logical_id(resources, "AWS::KMS::Key", Description=BACKUP_KEY))


def _role_id(synth: Synthesized) -> str:
    return str(synth.resources[_machine_id(synth.resources)]["Properties"]["RoleArn"]["Fn::GetAtt"][0])


def _role_statements(synth: Synthesized) -> list[dict[str, Any]]:
    """Every statement of the state machine's role: its inline policy, and any policy attached to it."""
    role = _role_id(synth)
    attached = [s for r in synth.resources.values() if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                and {"Ref": role} in r["Properties"].get("Roles", []) for s in r["Properties"]["PolicyDocument"]
                ["Statement"]]
    inline = [s for policy in synth.resources[role]["Properties"].get("Policies", [])
              for s in policy["PolicyDocument"]["Statement"]]
    return attached + inline


@pytest.fixture(scope="module")
def definition(synth: Synthesized) -> dict[str, Any]:
    return _definition(synth)


# The definition ---------------------------------------------------------------------------------------


def test_a_named_standard_state_machine_that_logs_every_state_and_traces(synth: Synthesized):
    # Given the controller stack / Then it has a standard state machine under the name the recovery function is
    # given without a reference to it (the state machine invokes the function: a reference back would be a cycle)
    assert restore_fanout_name(default_settings()) == NAME
    properties = synth.resources[_machine_id(synth.resources)]["Properties"]
    assert properties["StateMachineType"] == "STANDARD"
    # And it logs every state's events, without their payloads, to a log group kept as the functions' are, and traces
    logging = rendered(properties["LoggingConfiguration"])
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", False)
    (destination,) = logging["Destinations"]
    log_group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"].removeprefix("${").removesuffix(".Arn}")
    assert synth.resources[log_group]["Properties"]["RetentionInDays"] == 90
    assert properties["TracingConfiguration"] == {"Enabled": True}


def test_the_map_runs_a_child_execution_per_line_of_the_restores_shard_items(definition: dict, synth: Synthesized):
    # Given the definition, whose input the recovery function writes: {"plan_id": ..., "target_bucket": ...,
    # "items_key": ...}
    _, _, bucket, _ = _ids(synth)
    shards = definition["States"]["Shards"]
    assert definition["StartAt"] == "Shards" and shards["Type"] == "Map"
    # Then the map reads the JSON lines at the execution's items_key in the backup bucket
    assert shards["ItemReader"] == {
        "Resource": "arn:${AWS::Partition}:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSONL"},
        "Parameters": {"Bucket": f"${{{bucket}}}", "Key.$": "$.items_key"},
    }
    # And gives each child its plan, its target bucket and its line's shard number
    assert shards["ItemSelector"] == {"plan_id.$": "$.plan_id", "target_bucket.$": "$.target_bucket",
                                      "shard.$": "$$.Map.Item.Value.shard"}
    # And runs the children as standard executions (a shard may take several 15-minute invocations), as many at once
    # as cdk.json says (its default, 100)
    assert shards["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert shards["MaxConcurrency"] == 100 == default_settings().backup.fanout_max_concurrency
    assert shards["Label"] == "Shards"
    # And tolerates no failed shard: the map fails, for a redrive to run the failed shards again
    assert not {"ToleratedFailurePercentage", "ToleratedFailureCount", "ToleratedFailurePercentagePath",
                "ToleratedFailureCountPath"} & set(shards)
    # And writes its children's results under a prefix of its own in the fan-outs' results bucket (the snapshot
    # fan-out's: one bucket), not into its output, which it discards: the state keeps the execution's input
    assert shards["ResultWriter"] == {
        "Resource": "arn:${AWS::Partition}:states:::s3:putObject",
        "Parameters": {"Bucket": f"${{{fanout_results_bucket_id(synth.resources)}}}", "Prefix": "restore-results"},
    }
    assert RESULTS_PREFIX == "restore-results"
    assert _definition(synth, SNAPSHOT_FANOUT)["States"]["Shards"]["ResultWriter"]["Parameters"]["Prefix"] == "results"
    assert shards["ResultPath"] is None and shards["Next"] == "Merge"
    # And the whole execution ends after a day at most
    assert definition["TimeoutSeconds"] == 24 * 3600


def test_a_shard_is_invoked_again_until_the_worker_answers_it_finished(definition: dict, synth: Synthesized):
    # Given the child workflow of one shard
    worker, _, _, _ = _ids(synth)
    child = definition["States"]["Shards"]["ItemProcessor"]
    assert child["StartAt"] == "Restore shard"
    task = child["States"]["Restore shard"]
    # Then it invokes the restore shard worker (unqualified) with the shard's request, and keeps its `ok` and
    # `finished`
    assert (task["Type"], task["Resource"]) == ("Task", "arn:${AWS::Partition}:states:::lambda:invoke")
    assert task["Parameters"] == {
        "FunctionName": f"${{{worker}.Arn}}",
        "Payload": {"shard": {"plan_id.$": "$.plan_id", "target_bucket.$": "$.target_bucket", "number.$": "$.shard"}},
    }
    assert task["ResultSelector"] == {"ok.$": "$.Payload.ok", "finished.$": "$.Payload.finished"}
    assert task["ResultPath"] == "$.result"
    # And a shard not finished yet goes on from its records in a new invocation; a finished one succeeds
    assert task["Next"] == "Shard finished"
    assert child["States"]["Shard finished"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.result.ok", "BooleanEquals": False, "Next": "Shard refused"},
                    {"Variable": "$.result.finished", "BooleanEquals": True, "Next": "Shard done"}],
        "Default": "Restore shard",
    }
    assert child["States"]["Shard done"] == {"Type": "Succeed"}
    # And a shard the worker refuses (its plan has no such shard) fails at once: asking again would be refused alike
    assert child["States"]["Shard refused"] == {"Type": "Fail", "Error": "ShardRefused", "Cause": SHARD_REFUSED}


def test_every_shard_done_the_recovery_function_resumes_the_plan_and_merges_them(definition: dict,
                                                                                 synth: Synthesized):
    # Given the state after the map, and the execution's input the recovery function writes, which holds the request
    # that resumes the plan: {"action": "restore_s3", "resume": "<plan id>", ...}, or the comprehensive rollback's
    # whose data step the restore is
    _, recovery, _, _ = _ids(synth)
    merge = definition["States"]["Merge"]
    # Then it sends the recovery function that request: the apply it resumes merges the shards' verifications, and the
    # action it belongs to goes on
    assert (merge["Type"], merge["Resource"]) == ("Task", "arn:${AWS::Partition}:states:::lambda:invoke")
    assert merge["Parameters"] == {"FunctionName": f"${{{recovery}.Arn}}", "Payload.$": "$.resume"}
    assert merge["ResultPath"] is None
    assert merge["Next"] == "Restore merged" and definition["States"]["Restore merged"] == {"Type": "Succeed"}


@pytest.mark.parametrize("state", ["Restore shard", "Merge"])
def test_lambdas_transient_errors_and_a_failed_worker_are_retried_with_backoff(definition: dict, state: str):
    # Given a task invoking the worker or the recovery function
    tasks = {**definition["States"], **definition["States"]["Shards"]["ItemProcessor"]["States"]}
    # Then Lambda's transient errors are retried soon and often, and a failed invocation twice more, later; all with
    # exponential backoff and full jitter
    assert tasks[state]["Retry"] == RETRIES


def test_the_definition_follows_the_settings(tuned: Synthesized):
    # Given another protected function, and 7 shards at once in cdk.json
    definition = _definition(tuned, "orders-api-restore-fanout")
    # Then the map runs 7 children at once, and the state machine is named after the function
    assert definition["States"]["Shards"]["MaxConcurrency"] == 7
    assert arn_text(tuned.resources[_function(tuned, RECOVERY)]["Properties"]["Environment"]["Variables"][
        RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE]) == (
        "arn:aws:states:eu-west-1:${AWS::AccountId}:stateMachine:orders-api-restore-fanout")


# The state machine's role ---------------------------------------------------------------------------


def test_the_role_allows_exactly_what_the_definition_needs(synth: Synthesized):
    # Given the state machine's role
    worker, recovery, bucket, key = _ids(synth)
    role = synth.resources[_role_id(synth)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}}
    ]
    assert "ManagedPolicyArns" not in role
    results = fanout_results_bucket_id(synth.resources)
    # Then it invokes the worker and the recovery function (unqualified: no versions nor aliases), reads the shard
    # items of any restore (decrypting them with the backup key), writes the Map Run results under its prefix of the
    # results bucket, runs its own children, follows, stops and redrives them, and delivers its logs and traces;
    # nothing else
    assert rendered(_role_statements(synth)) == [
        {"Sid": "InvokeRestoreShardWorker", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": f"${{{worker}.Arn}}"},
        {"Sid": "InvokeRecoveryFunction", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": f"${{{recovery}.Arn}}"},
        {"Sid": "ReadShardItems", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"${{{bucket}.Arn}}/restores/s3/*/shards/items.jsonl"},
        {"Sid": "WriteMapRunResults", "Effect": "Allow",
         "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
         "Resource": f"${{{results}.Arn}}/restore-results/*"},
        {"Sid": "DecryptShardItems", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": f"${{{key}.Arn}}"},
        {"Sid": "StartShardExecutions", "Effect": "Allow", "Action": "states:StartExecution",
         "Resource": f"{STATES}:stateMachine:{NAME}"},
        {"Sid": "FollowShardExecutions", "Effect": "Allow",
         "Action": ["states:DescribeExecution", "states:StopExecution"],
         "Resource": f"{STATES}:execution:{NAME}:*"},
        {"Sid": "RedriveFailedShards", "Effect": "Allow", "Action": "states:RedriveExecution",
         "Resource": f"{STATES}:execution:{NAME}/Shards:*"},
        {"Sid": "DeliverLogsAndTraces", "Effect": "Allow", "Action": [
            "logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
            "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
            "logs:PutResourcePolicy", "logs:UpdateLogDelivery", "xray:GetSamplingRules", "xray:GetSamplingTargets",
            "xray:PutTelemetryRecords", "xray:PutTraceSegments"], "Resource": "*"},
    ]


# The worker ---------------------------------------------------------------------------------------------


def _worker(synth: Synthesized) -> dict[str, Any]:
    properties: dict[str, Any] = synth.resources[_function(synth, RESTORE_SHARD_HANDLER)]["Properties"]
    return properties


def test_the_worker_runs_long_with_memory_from_the_shared_asset_without_reserved_concurrency(synth: Synthesized,
                                                                                             tuned: Synthesized):
    # Given the restore shard worker
    properties = _worker(synth)
    recovery = synth.resources[_ids(synth)[1]]["Properties"]
    # Then it runs its handler for Lambda's full 15 minutes with 1 GB (its slice, whatever the recovery function's
    # memory is set to), the recovery function's runtime and asset
    assert (properties["Timeout"], properties["MemorySize"]) == (900, 1024)
    assert _worker(tuned)["MemorySize"] == 1024  # the tuned recovery function has 2,560 (tests/infra/test_recovery.py)
    assert (properties["Runtime"], properties["Architectures"]) == (recovery["Runtime"], recovery["Architectures"])
    assert (properties["Code"], properties["Layers"]) == (recovery["Code"], recovery["Layers"])
    assert properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "restore_shard"
    # And reserves no concurrency of the account's: the map's MaxConcurrency bounds it
    assert "ReservedConcurrentExecutions" not in properties
    # And runs as a role of its own, logging to a log group of its own kept as the others' are
    role = properties["Role"]["Fn::GetAtt"][0]
    assert [name for name, r in synth.resources.items() if r["Type"] == "AWS::Lambda::Function"
            and r["Properties"]["Role"]["Fn::GetAtt"][0] == role] == [_ids(synth)[0]]
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    assert synth.resources[log_group]["Properties"]["RetentionInDays"] == 90


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
def test_the_workers_environment_is_the_backup_variables_and_the_restore_targets(fixture: str, request):
    # Given the worker's environment, deploy-time references stood in for by names
    synth: Synthesized = request.getfixturevalue(fixture)
    variables = _worker(synth)["Environment"]["Variables"]
    recovery = synth.resources[_function(synth, RECOVERY)]["Properties"]["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    # Then it reads as the handler reads it: the backup settings, and the targets it may restore into
    backup = BackupSettings.from_environ(environ)
    targets = RecoverySettings.from_environ(environ).restore_target_buckets
    assert backup.data_bucket == ("apilados-production-data" if fixture == "synth" else "orders.data.example")
    assert targets == (() if fixture == "synth" else ("orders-restore-scratch", "orders.drill.example"))
    # And every one of its backup variables and the targets have the recovery function's values, but the snapshot
    # fan-out's state machine: a shard takes no safety snapshot (the apply that fanned the restore out took it)
    snapshot_fan_out = BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE.value
    shared = {name for name in variables if name.startswith("DR_")} - {snapshot_fan_out}
    assert {name: variables[name] for name in shared} == {name: recovery[name] for name in shared}
    assert variables[snapshot_fan_out] == "" != recovery[snapshot_fan_out]
    assert RecoveryEnvVar.RESTORE_TARGET_BUCKETS in shared and RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE not in shared


def _worker_statements(synth: Synthesized) -> list[dict[str, Any]]:
    statements = rendered(function_role_statements(synth.resources, _function(synth, RESTORE_SHARD_HANDLER)))
    return [statement for statement in statements if "Sid" in statement]


def test_the_workers_role_is_the_restore_subset_of_the_recovery_role(synth: Synthesized):
    # Given the worker's role (besides its logs and the failed-events queue, as every function's, and its metrics)
    _, _, bucket, key = _ids(synth)
    *restore_subset, metrics = _worker_statements(synth)
    assert metrics["Sid"] == "PublishRestoreShardMetrics"
    # Then it lists, reads and rewrites the restore targets' versions, removing by delete markers only; lists the
    # backup bucket, reads the stored content (a copy's source, and its tags) and its restore's records, writes
    # those records, and uses the backup key; nothing else
    assert restore_subset == [
        {"Sid": "ListRestoreTargets", "Effect": "Allow", "Action": ["s3:GetBucketVersioning", "s3:ListBucketVersions"],
         "Resource": DATA_BUCKET_ARN},
        {"Sid": "ReadRestoreTargetObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion", "s3:GetObjectVersionTagging"],
         "Resource": f"{DATA_BUCKET_ARN}/*"},
        {"Sid": "RestoreObjectsByVersionsAndDeleteMarkers", "Effect": "Allow",
         "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject", "s3:PutObjectTagging"],
         "Resource": f"{DATA_BUCKET_ARN}/*"},
        {"Sid": "ListRestoreRecords", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"${{{bucket}.Arn}}"},
        {"Sid": "ReadStoredContentAndRestoreRecords", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": [f"${{{bucket}.Arn}}/content/*", f"${{{bucket}.Arn}}/restores/s3/*"]},
        {"Sid": "ReadTagsOfStoredContent", "Effect": "Allow",
         "Action": ["s3:GetObjectTagging", "s3:GetObjectVersionTagging"], "Resource": f"${{{bucket}.Arn}}/content/*"},
        {"Sid": "WriteRestoreRecords", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": f"${{{bucket}.Arn}}/restores/s3/*"},
        {"Sid": "UseBackupKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
         "Resource": f"${{{key}.Arn}}"},
    ]
    # And each of its actions on a target or in the backup bucket is one the recovery role has there too
    recovery = rendered(function_role_statements(synth.resources, _ids(synth)[1]))
    granted = {(action, resource) for s in recovery for action in as_list(s["Action"])
               for resource in as_list(s["Resource"])}
    covering = {"restores/s3/*": "restores/*"}
    for statement in restore_subset:
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                wider = next((resource.replace(tail, wide) for tail, wide in covering.items()
                              if resource.endswith(tail)), resource)
                assert (action, wider) in granted, (action, resource)


@pytest.mark.parametrize(("fixture", "namespace"), [("synth", "ApiladosDR"), ("tuned", "OrdersDR")])
def test_the_worker_publishes_metrics_in_the_controllers_namespace_only(fixture: str, namespace: str, request):
    # Given the worker's statements on every resource (cdk.json's namespace, or another)
    synth: Synthesized = request.getfixturevalue(fixture)
    unscoped = [s for s in _worker_statements(synth) if "*" in as_list(s["Resource"])]
    # Then the one is cloudwatch:PutMetricData (which names no resource), held to the controller's namespace
    (put_metrics,) = unscoped
    assert as_list(put_metrics["Action"]) == ["cloudwatch:PutMetricData"]
    assert put_metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": namespace}}
    # And it is the backup function's grant for its snapshot shards' metrics, under a Sid of its own
    backup = rendered(function_role_statements(synth.resources, _function(synth, BACKUP)))
    (backup_metrics,) = [s for s in backup if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    assert {**backup_metrics, "Sid": put_metrics["Sid"]} == put_metrics
    # And the worker is told that namespace
    variables = _worker(synth)["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    assert BackupSettings.from_environ(environ).metrics_namespace == namespace


def test_the_workers_targets_follow_the_allow_list(tuned: Synthesized):
    # Given two allow-listed target buckets besides the data bucket
    targets = ["arn:aws:s3:::orders.data.example", "arn:aws:s3:::orders-restore-scratch",
               "arn:aws:s3:::orders.drill.example"]
    statements = {s["Sid"]: s for s in _worker_statements(tuned)}
    # Then the worker may restore into exactly those
    assert sorted(statements["ListRestoreTargets"]["Resource"]) == sorted(targets)
    for sid in ("ReadRestoreTargetObjects", "RestoreObjectsByVersionsAndDeleteMarkers"):
        assert sorted(statements[sid]["Resource"]) == sorted(f"{arn}/*" for arn in targets), sid


# The recovery function's side ---------------------------------------------------------------------------


def test_the_recovery_function_is_given_the_state_machine_and_the_fanout_settings(synth: Synthesized):
    # Given the recovery function's environment
    _, recovery, _, _ = _ids(synth)
    variables = synth.resources[recovery]["Properties"]["Environment"]["Variables"]
    # Then it names the state machine by its ARN, built from its name: no reference to it, so no dependency cycle
    assert arn_text(variables[RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE]) == f"{STATES}:stateMachine:{NAME}"
    assert _machine_id(synth.resources) not in json.dumps(variables)
    environ = {name: text if isinstance(text := arn_text(value), str) else f"resolved-{name}"
               for name, value in variables.items()}
    assert RecoverySettings.from_environ(environ).restore_fanout_state_machine == f"{STATES}:stateMachine:{NAME}"
    # And when a restore fans out, and into shards of what size, as the backup function is told for snapshots
    settings = BackupSettings.from_environ(environ)
    assert (settings.fanout_threshold_objects, settings.fanout_shard_objects) == (100_000, 10_000)


def test_the_recovery_functions_fanout_settings_follow_cdk_json(tuned: Synthesized):
    variables = tuned.resources[_function(tuned, RECOVERY)]["Properties"]["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    settings = BackupSettings.from_environ(environ)
    assert (settings.fanout_threshold_objects, settings.fanout_shard_objects) == (50_000, 5_000)


def _states_policy(synth: Synthesized, handler: str, machine: str) -> list[dict[str, Any]]:
    """The statements of `handler`'s policy on the state machine named `machine`."""
    function = logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)
    role = synth.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    (policy,) = [r["Properties"] for r in synth.resources.values() if r["Type"] == "AWS::IAM::Policy"
                 and {"Ref": role} in r["Properties"]["Roles"] and f":{machine}" in json.dumps(r["Properties"])]
    statements: list[dict[str, Any]] = rendered(policy["PolicyDocument"]["Statement"])
    return statements


def test_the_recovery_function_may_start_follow_and_redrive_its_fanout_only(synth: Synthesized):
    # Given the recovery function's role / Then a policy of its own (created after the state machine, not one the
    # function waits for) lets it start the fan-out, find its execution, count its shards and redrive it, list the
    # running executions (its `status` reports them), and nothing else of Step Functions
    assert _states_policy(synth, RECOVERY, NAME) == [
        {"Sid": "StartRestoreFanOut", "Effect": "Allow", "Action": "states:StartExecution",
         "Resource": f"{STATES}:stateMachine:{NAME}"},
        {"Sid": "FollowRestoreFanOut", "Effect": "Allow",
         "Action": ["states:DescribeExecution", "states:ListMapRuns", "states:RedriveExecution"],
         "Resource": f"{STATES}:execution:{NAME}:*"},
        {"Sid": "CountFanOutShards", "Effect": "Allow", "Action": "states:DescribeMapRun",
         "Resource": f"{STATES}:mapRun:{NAME}/Shards:*"},
        {"Sid": "ListRunningRestoreFanOuts", "Effect": "Allow", "Action": "states:ListExecutions",
         "Resource": f"{STATES}:stateMachine:{NAME}"},
    ]
    # And, the listing aside, they are the backup function's grants on its own fan-out, on this state machine
    backup = _states_policy(synth, BACKUP, SNAPSHOT_FANOUT)
    assert json.loads(json.dumps(backup).replace(SNAPSHOT_FANOUT, NAME).replace("Snapshot", "Restore")) == (
        _states_policy(synth, RECOVERY, NAME)[:-1])
    # And its only other Step Functions grants are those same ones on the snapshot fan-out (a restore's safety snapshot
    # of the data bucket: tests/infra/test_snapshot_fanout.py)
    recovery = rendered(function_role_statements(synth.resources, _ids(synth)[1]))
    assert [s for s in recovery if "states:" in json.dumps(s["Action"])] == (
        _states_policy(synth, RECOVERY, SNAPSHOT_FANOUT) + _states_policy(synth, RECOVERY, NAME))
    assert _states_policy(synth, RECOVERY, SNAPSHOT_FANOUT) == backup


# The alarm ----------------------------------------------------------------------------------------------


def test_an_unfinished_fanout_alarms_with_what_to_do(synth: Synthesized):
    # Given the fan-out's alarm
    alarm = synth.resources[logical_id(synth.resources, "AWS::CloudWatch::Alarm", AlarmName=f"{NAME}-unfinished")]
    properties = alarm["Properties"]
    machine = _machine_id(synth.resources)
    alert_topic = logical_id(synth.resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    # Then any execution that failed, timed out or was aborted alarms to the alert topic, and silence does not
    assert properties["AlarmActions"] == [{"Ref": alert_topic}]
    (expression,) = [m for m in properties["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "FILL(failed, 0) + FILL(timed_out, 0) + FILL(aborted, 0)"
    watched = {m["Id"]: m["MetricStat"] for m in properties["Metrics"] if "MetricStat" in m}
    assert {id_: (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"], stat["Metric"]["Dimensions"],
                  stat["Stat"]) for id_, stat in watched.items()} == {
        id_: ("AWS/States", name, [{"Name": "StateMachineArn", "Value": {"Ref": machine}}], "Sum")
        for id_, name in (("failed", "ExecutionsFailed"), ("timed_out", "ExecutionsTimedOut"),
                          ("aborted", "ExecutionsAborted"))
    }
    assert (properties["Threshold"], properties["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert properties["TreatMissingData"] == "notBreaching"
    # And it says how to redrive the restore
    assert '"resume": "<plan id>"' in properties["AlarmDescription"]
    assert len(properties["AlarmDescription"]) <= 1024
    # And it is among the controller alarms the dashboard shows
    dashboard = synth.resources[logical_id(synth.resources, "AWS::CloudWatch::Dashboard")]
    assert logical_id(synth.resources, "AWS::CloudWatch::Alarm", AlarmName=f"{NAME}-unfinished") in json.dumps(
        dashboard["Properties"]["DashboardBody"])


def test_the_standby_fans_no_restore_out(synth: Synthesized):
    # Given the standby stack / Then it has no shard worker, and its recovery function is told of no state machine
    resources = synth.standby_resources
    handlers = {r["Properties"]["Handler"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"}
    assert RESTORE_SHARD_HANDLER not in handlers
    recovery = logical_id(resources, "AWS::Lambda::Function", Handler=RECOVERY)
    variables = resources[recovery]["Properties"]["Environment"]["Variables"]
    assert variables[RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE] == ""


# The calls the definition and the worker imply, evaluated as IAM would (embedded/iam) ------------------------


class _ResolvedStack:
    """The synthesized controller stack, resolved with stand-in names, and a judge of calls made under one role."""

    def __init__(self, template: dict[str, Any]) -> None:
        names = EmbeddedNames(account=ACCOUNT, region=REGION, environments={}, function_names={})
        self.resolved = resolve_template(template, names)
        resolver = Resolver(template, names)
        resources = template["Resources"]
        machine = _machine_id(resources)
        role = resources[machine]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        self.machine_role = (resolver.get_att(role, "Arn"), role_statements(template, role, names))
        self.machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{NAME}"
        self.backup_bucket = resolver.ref(logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True))
        self.results_bucket = resolver.ref(fanout_results_bucket_id(resources))
        self.function_arns = {
            handler: resolver.get_att(logical_id(resources, "AWS::Lambda::Function", Handler=handler), "Arn")
            for handler in (RESTORE_SHARD_HANDLER, RECOVERY, BACKUP)}
        self.table = resolver.ref(logical_id(resources, "AWS::DynamoDB::GlobalTable"))

    def arn(self, resource: str, name: str, machine: str = NAME) -> str:
        """The ARN of one of a state machine's executions or Map Runs, named `name` after the machine's name."""
        return f"arn:aws:states:{REGION}:{ACCOUNT}:{resource}:{machine}{name}"

    def role_of(self, handler: str) -> tuple[str, tuple[dict[str, Any], ...]]:
        role = self.resolved.roles[handler]
        return role.role_arn, role.statements

    def decisions(self, call: RecordedCall, role: tuple[str, tuple[dict[str, Any], ...]] | None = None
                  ) -> list[Decision]:
        role_arn, statements = role or self.machine_role
        return [evaluate(permission, statements, self.resolved.resource_statements, self.resolved.key_policies,
                         role_arn=role_arn, account=ACCOUNT)
                for permission in permissions_of(call, self.resolved.facts)]

    def refused(self, calls: list[RecordedCall], role: tuple[str, tuple[dict[str, Any], ...]] | None = None
                ) -> list[tuple[str, str, str]]:
        return [(call.describe(), decision.permission.action, decision.outcome.value)
                for call in calls for decision in self.decisions(call, role) if not decision.allowed]


def _call(service: str, operation: str, handler: str = "restore-fanout", **params: Any) -> RecordedCall:
    return RecordedCall(handler=handler, invoked_as=handler, service=service, operation=operation, params=params,
                        region=REGION)


@pytest.fixture(scope="module")
def evaluated(synth: Synthesized) -> _ResolvedStack:
    return _ResolvedStack(synth.template.to_json())


MAP_RUN = f"{PLAN}-map-run"
SHARDS = f"restores/s3/{DATA_BUCKET}/{PLAN}/shards"


def test_the_items_are_where_the_role_may_read_them():
    assert items_key(DATA_BUCKET, PLAN) == f"{SHARDS}/items.jsonl"


def test_what_step_functions_calls_for_the_definition_is_allowed(evaluated: _ResolvedStack):
    # Given the calls Step Functions makes, as the state machine's role, running a fan-out of one restore
    bucket, results = evaluated.results_bucket, f"restore-results/{MAP_RUN}"
    calls = [
        # the map's reader, the restore's shard items in the backup bucket (SSE-KMS: decrypted with the backup key)
        _call("s3", "GetObject", Bucket=evaluated.backup_bucket, Key=items_key(DATA_BUCKET, PLAN)),
        # the children, executions of the state machine itself, followed, stopped when the map fails, redriven
        _call("stepfunctions", "StartExecution", stateMachineArn=evaluated.machine_arn),
        _call("stepfunctions", "DescribeExecution", executionArn=evaluated.arn("execution", f":{PLAN}")),
        _call("stepfunctions", "StopExecution", executionArn=evaluated.arn("execution", f":{PLAN}")),
        _call("stepfunctions", "RedriveExecution", executionArn=evaluated.arn("execution", "/Shards:shard-7")),
        # each child's invocations of the worker, and the merge's of the recovery function
        _call("lambda", "Invoke", FunctionName=evaluated.function_arns[RESTORE_SHARD_HANDLER]),
        _call("lambda", "Invoke", FunctionName=evaluated.function_arns[RECOVERY]),
        # the result writer, in the results bucket under its prefix
        _call("s3", "PutObject", Bucket=bucket, Key=f"{results}/manifest.json"),
        _call("s3", "CreateMultipartUpload", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json"),
        _call("s3", "UploadPart", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json", UploadId="u", PartNumber=1),
        _call("s3", "ListParts", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json", UploadId="u"),
        _call("s3", "CompleteMultipartUpload", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json", UploadId="u"),
        _call("s3", "AbortMultipartUpload", Bucket=bucket, Key=f"{results}/FAILED_0.json", UploadId="u"),
        _call("s3", "GetObject", Bucket=bucket, Key=f"{results}/manifest.json"),
    ]
    # When each is evaluated as IAM would, against the role and the buckets' and the key's policies / Then every
    # one is allowed
    assert evaluated.refused(calls) == []


# Stand-in for the results bucket's name in the calls below, which are made before the template is resolved.
RESULTS_BUCKET = "<results bucket>"


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("read a stored body", _call("s3", "GetObject", Key="content/etag/x-1")),
        ("read another record of the restore", _call("s3", "GetObject", Key=f"{SHARDS}/plan.json")),
        ("read a snapshot's shard items", _call("s3", "GetObject",
                                                Key=f"snapshots/s3/{DATA_BUCKET}/20261126T132500Z-3f9a1c/shards/"
                                                "items.jsonl")),
        ("write a restore record", _call("s3", "PutObject", IfNoneMatch="*", Key=f"{SHARDS}/0/result.json")),
        ("write results in the backup bucket", _call("s3", "PutObject", IfNoneMatch="*",
                                                     Key=f"restore-results/{MAP_RUN}/manifest.json")),
        ("write under the snapshot fan-out's results", _call("s3", "PutObject", Bucket=RESULTS_BUCKET,
                                                             Key=f"results/{MAP_RUN}/manifest.json")),
        ("hide its own results", _call("s3", "DeleteObject", Bucket=RESULTS_BUCKET,
                                       Key=f"restore-results/{MAP_RUN}/manifest.json")),
        ("read the data bucket", _call("s3", "GetObject", Bucket=DATA_BUCKET, Key="uploads/a.csv")),
        ("delete a version of the data bucket", _call("s3", "DeleteObject", Bucket=DATA_BUCKET, Key="uploads/a.csv",
                                                      VersionId="v1")),
        ("invoke the protected function", _call("lambda", "Invoke", FunctionName="apilados-pipeline-ingest")),
        ("invoke the backup function", _call("lambda", "Invoke", FunctionName=BACKUP)),
        ("start the snapshot fan-out", _call("stepfunctions", "StartExecution",
                                             stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:"
                                             f"{SNAPSHOT_FANOUT}")),
    ],
)
def test_the_state_machines_role_can_do_nothing_else(evaluated: _ResolvedStack, what: str, call: RecordedCall):
    # Given a call outside what the definition needs (in the backup bucket unless it names another)
    if call.service == "s3":
        bucket = call.params.get("Bucket", evaluated.backup_bucket)
        call = replace(call, params={**call.params,
                                     "Bucket": evaluated.results_bucket if bucket == RESULTS_BUCKET else bucket})
    if call.service == "lambda" and call.params["FunctionName"] == BACKUP:
        call = replace(call, params={"FunctionName": evaluated.function_arns[BACKUP]})
    # When it is evaluated against the state machine's role / Then its own action is refused
    assert not evaluated.decisions(call)[0].allowed, what


CONTENT = "content/etag/x-1"
UPLOAD = "uploads/2026/a.csv"


def _worker_call(operation: str, **params: Any) -> RecordedCall:
    return _call("s3", operation, RESTORE_SHARD_HANDLER, **params)


def test_what_a_shard_calls_is_allowed_by_the_workers_role(evaluated: _ResolvedStack):
    # Given the calls a shard's worker makes (drcore.restore.shard_worker.ShardWorker.run): its plan, slice and
    # records in the backup bucket, the target's versions in its range, the copies back from the stored content (in
    # one request or in parts), the delete markers, its records written once, its metrics
    backups, role = evaluated.backup_bucket, evaluated.role_of(RESTORE_SHARD_HANDLER)
    source = {"Bucket": backups, "Key": CONTENT, "VersionId": "c1"}
    calls = [
        _worker_call("GetObject", Bucket=backups, Key=f"{SHARDS}/plan.json"),
        _worker_call("GetObject", Bucket=backups, Key=f"{SHARDS}/desired-00003.jsonl.gz", VersionId="p1"),
        _worker_call("ListObjectsV2", Bucket=backups, Prefix=f"{SHARDS}/3/applied/"),
        _worker_call("GetBucketVersioning", Bucket=DATA_BUCKET),
        _worker_call("ListObjectVersions", Bucket=DATA_BUCKET, Prefix="uploads/"),
        _worker_call("HeadObject", Bucket=DATA_BUCKET, Key=UPLOAD, VersionId="v1"),
        _worker_call("GetObjectTagging", Bucket=DATA_BUCKET, Key=UPLOAD, VersionId="v1"),
        _worker_call("HeadObject", Bucket=backups, Key=CONTENT, VersionId="c1"),
        _worker_call("GetObjectTagging", Bucket=backups, Key=CONTENT, VersionId="c1"),
        _worker_call("CopyObject", Bucket=DATA_BUCKET, Key=UPLOAD, CopySource=source),
        _worker_call("CopyObject", Bucket=DATA_BUCKET, Key=UPLOAD, CopySource=source, TaggingDirective="REPLACE",
                     Tagging="a=1"),
        _worker_call("CopyObject", Bucket=DATA_BUCKET, Key=UPLOAD, CopySource={**source, "Bucket": DATA_BUCKET,
                                                                               "Key": UPLOAD, "VersionId": "v0"}),
        _worker_call("CreateMultipartUpload", Bucket=DATA_BUCKET, Key=UPLOAD, Tagging="a=1"),
        _worker_call("UploadPartCopy", Bucket=DATA_BUCKET, Key=UPLOAD, UploadId="u", PartNumber=1, CopySource=source),
        _worker_call("CompleteMultipartUpload", Bucket=DATA_BUCKET, Key=UPLOAD, UploadId="u"),
        _worker_call("AbortMultipartUpload", Bucket=DATA_BUCKET, Key=UPLOAD, UploadId="u"),
        _worker_call("DeleteObject", Bucket=DATA_BUCKET, Key="uploads/2026/stray.csv"),
        _worker_call("PutObject", Bucket=backups, Key=f"{SHARDS}/3/applied/0001.json.gz", IfNoneMatch="*"),
        _worker_call("PutObject", Bucket=backups, Key=f"{SHARDS}/3/runs/20261126T1325Z-ab12.json", IfNoneMatch="*"),
        _worker_call("PutObject", Bucket=backups, Key=f"{SHARDS}/3/result.json", IfNoneMatch="*"),
        _call("cloudwatch", "PutMetricData", RESTORE_SHARD_HANDLER, Namespace="ApiladosDR", MetricData=[]),
    ]
    # When each is evaluated as IAM would, against its role and the buckets' and the backup key's policies
    # Then every one is allowed, the backup key's use included
    assert evaluated.refused(calls, role) == []
    actions = {decision.permission.action for call in calls for decision in evaluated.decisions(call, role)}
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= actions


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("delete a version for good", _worker_call("DeleteObject", Bucket=DATA_BUCKET, Key=UPLOAD, VersionId="v1")),
        ("delete versions in a batch", _worker_call("DeleteObjects", Bucket=DATA_BUCKET,
                                                    Delete={"Objects": [{"Key": UPLOAD, "VersionId": "v1"}]})),
        ("write a bucket that is no restore target", _worker_call("PutObject", Bucket="someone-elses", Key=UPLOAD)),
        ("read a bucket that is no restore target", _worker_call("GetObject", Bucket="someone-elses", Key=UPLOAD)),
        ("write stored content", _worker_call("PutObject", Bucket="<backups>", Key=CONTENT, IfNoneMatch="*")),
        ("write a snapshot", _worker_call("PutObject", Bucket="<backups>", IfNoneMatch="*",
                                          Key=f"snapshots/s3/{DATA_BUCKET}/20261126T132500Z-3f9a1c/manifest.json.gz")),
        ("write outside restores/s3/", _worker_call("PutObject", Bucket="<backups>", IfNoneMatch="*",
                                                    Key=f"restores/lambda/{PLAN}/x.json")),
        ("read a snapshot's manifest", _worker_call("GetObject", Bucket="<backups>",
                                                    Key=f"snapshots/s3/{DATA_BUCKET}/20261126T132500Z-3f9a1c/"
                                                    "manifest.json.gz")),
        ("tag stored content", _worker_call("PutObjectTagging", Bucket="<backups>", Key=CONTENT,
                                            Tagging={"TagSet": []})),
        ("change the target's versioning", _worker_call("PutBucketVersioning", Bucket=DATA_BUCKET,
                                                        VersioningConfiguration={"Status": "Suspended"})),
        ("publish metrics outside the controller's namespace", _call("cloudwatch", "PutMetricData",
                                                                     RESTORE_SHARD_HANDLER, Namespace="AWS/Lambda",
                                                                     MetricData=[])),
        ("write the journal", _call("dynamodb", "PutItem", RESTORE_SHARD_HANDLER, TableName="<table>", Item={})),
        ("invoke the recovery function", _call("lambda", "Invoke", RESTORE_SHARD_HANDLER, FunctionName=RECOVERY)),
        ("start the restore fan-out", _call("stepfunctions", "StartExecution", RESTORE_SHARD_HANDLER,
                                            stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{NAME}")),
        ("alert", _call("sns", "Publish", RESTORE_SHARD_HANDLER,
                        TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:apilados-dr-alerts", Message="m")),
        ("change the pipeline stack", _call("cloudformation", "CreateChangeSet", RESTORE_SHARD_HANDLER,
                                            StackName="ApiladosPipelineStack", ChangeSetName="c")),
    ],
)
def test_the_workers_role_can_do_nothing_else(evaluated: _ResolvedStack, what: str, call: RecordedCall):
    # Given a call outside what a shard needs
    stand_ins = {"<backups>": evaluated.backup_bucket, "<table>": evaluated.table,
                 RECOVERY: evaluated.function_arns[RECOVERY]}
    call = replace(call, params={name: stand_ins.get(value, value) if isinstance(value, str) else value
                                 for name, value in call.params.items()})
    # When it is evaluated against the worker's role / Then its own action is refused
    decisions = evaluated.decisions(call, evaluated.role_of(RESTORE_SHARD_HANDLER))
    assert not decisions[0].allowed, what


def test_the_recovery_functions_calls_to_its_fanout_are_allowed(evaluated: _ResolvedStack):
    # Given the calls the recovery function makes to start, follow and redrive a restore's fan-out
    # (drcore.aws.state_machines), with the ARNs it builds from the state machine's
    execution = evaluated.arn("execution", f":{PLAN}")
    map_run = evaluated.arn("mapRun", "/Shards:0bf1c9d3-5c1e-4a55-9f27-1f0f")
    calls = [
        _call("stepfunctions", "StartExecution", RECOVERY, stateMachineArn=evaluated.machine_arn, name=PLAN),
        _call("stepfunctions", "DescribeExecution", RECOVERY, executionArn=execution),
        _call("stepfunctions", "ListMapRuns", RECOVERY, executionArn=execution),
        _call("stepfunctions", "DescribeMapRun", RECOVERY, mapRunArn=map_run),
        _call("stepfunctions", "RedriveExecution", RECOVERY, executionArn=execution),
        _call("stepfunctions", "ListExecutions", RECOVERY, stateMachineArn=evaluated.machine_arn,
              statusFilter="RUNNING", maxResults=10),
    ]
    role = evaluated.role_of(RECOVERY)
    # When they are evaluated against the recovery function's role / Then each is allowed
    assert evaluated.refused(calls, role) == []
    # And another state machine's are not (the snapshot fan-out's, which it starts for a safety snapshot:
    # tests/infra/test_snapshot_fanout.py)
    other = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:someone-elses"
    refused = evaluated.decisions(_call("stepfunctions", "StartExecution", RECOVERY, stateMachineArn=other), role)
    assert [decision.outcome for decision in refused] == [Outcome.IMPLICITLY_DENIED]
