"""The snapshot fan-out: a big bucket snapshot run as shards by a Step Functions Distributed Map.

The backup function decides (drcore.backup.snapshot_shards): a snapshot whose base holds more than
`backup.fanout_threshold_objects` objects is cut into shards (key ranges) of about `backup.fanout_shard_objects`
keys, one JSON line per shard (`{"shard": <n>}`) is written to `shards/items.jsonl` under the snapshot's prefix,
and an execution named after the snapshot starts with `{"backup_id": "<snapshot id>", "items_key": "<that key>"}`:

- `Shards` reads the items and runs a child execution per shard, `backup.fanout_max_concurrency` at once. A child
  invokes the backup function with `{"component": "s3", "shard": {"backup_id": ..., "number": <n>}}` until it
  answers `finished`: a shard that outlasts one invocation goes on from its checkpoint in the next. One failed
  shard fails the map, and the execution: redriving it (the backup function does when the snapshot is resumed,
  `{"component": "s3", "resume": "<snapshot id>"}`) runs again only the shards that failed.
- `Merge`: with every shard done, the backup function writes the snapshot's manifest from the shards'
  checkpoints (`{"component": "s3", "resume": "<snapshot id>"}`).

The map writes its children's results (which shards failed, and why) to a bucket of their own rather than into its
output, which holds at most 256 KiB: a few thousand shards' results would not fit. Not to the backup bucket: every
write there must be create-only (`If-None-Match`) and carry a checksum (Object Lock), and Step Functions documents
neither for its result writer; and whatever is written there is locked and replicated to the standby as a backup
is. The results bucket holds no data, only shard numbers and errors: S3-managed encryption, no versioning, no lock,
and every object expires after RESULTS_EXPIRY.

The state machine invokes the backup function, and the function's environment and permissions name the state
machine: a reference each way would be a dependency cycle, so the state machine has a fixed name and the
function knows it by its ARN built from that name. Its role grants exactly what the definition needs; CDK's own
grants for the map (whole buckets for its reader and its writer) are left out.
"""

from __future__ import annotations

import re

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.backup.snapshot_shards import items_key
from drcore.core.config import BackupEnvVar
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.settings import Settings

# A fan-out that has not finished in a day has stopped making progress: it times out and alarms, to be redriven.
FANOUT_TIMEOUT = Duration.hours(24)
# The Map Run's label: its child executions are named "<state machine>/Shards:<id>".
SHARDS_LABEL = "Shards"
# Lambda's transient errors (the Step Functions guide's list): retried soon and often.
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
)
# A worker that failed (S3 still throttling after its own retries, say) is tried a little later, twice; then the
# shard fails and waits for the redrive.
WORKER_RETRY_INTERVAL = Duration.seconds(30)
WORKER_RETRIES = 2
# What a Distributed Map's result writer does in the results bucket: multipart uploads (Step Functions guide,
# "IAM policies for using Distributed Map states").
RESULT_WRITES = ("s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload")
# Where in the results bucket: "results/<map run id>/manifest.json", "SUCCEEDED_<n>.json", "FAILED_<n>.json".
RESULTS_PREFIX = "results"
# Kept five weeks, for whoever looks into a failed fan-out; an upload Step Functions left unfinished, a day.
RESULTS_EXPIRY = Duration.days(35)
RESULTS_INCOMPLETE_UPLOAD_EXPIRY = Duration.days(1)
# S3 asks the reader of an SSE-KMS object (the shard items, in the backup bucket) to decrypt it. The results bucket is
# encrypted with S3-managed keys: writing there asks KMS for nothing.
FANOUT_KEY_USE = ("kms:Decrypt",)
# What Step Functions needs of the role to deliver its logs (CloudWatch Logs' vended logs) and traces; none of these
# actions takes a resource.
LOG_DELIVERY = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
TRACING = ("xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets")
ALARM_PERIOD = Duration.minutes(5)
# The policy aws_stepfunctions.StateMachine makes for a Distributed Map's child executions.
CDK_DISTRIBUTED_MAP_POLICY = "DistributedMapPolicy"


def _literal(text: str) -> str:
    """`text` matched literally by a cdk-nag regex, which is written between slashes."""
    return re.escape(text).replace("/", r"\/")


def snapshot_fanout_name(settings: Settings) -> str:
    """The state machine's name: at most 64 + 16 characters, within the 80 Step Functions allows."""
    return f"{settings.protected_function}-snapshot-fanout"


class SnapshotFanOut(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        backup_function: lambda_.Function,
        backup_bucket: BackupBucket,
        alert_topic: sns.ITopic,
    ) -> None:
        """Runs the big snapshots of `backup_function` (which backs up the data bucket into `backup_bucket`, where
        the map reads each snapshot's shards), writes the map's results to a bucket of its own, and alerts
        `alert_topic` when an execution ends without finishing its snapshot."""
        super().__init__(scope, construct_id)
        self._settings = settings
        self.state_machine_name = snapshot_fanout_name(settings)
        self.state_machine_arn = self._arn("stateMachine", self.state_machine_name)
        self.results_bucket = self._results_bucket(backup_bucket)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"Runs the snapshot fan-out of {settings.data_bucket}",
            inline_policies={"SnapshotFanOut": iam.PolicyDocument(
                statements=self._role_statements(backup_function, backup_bucket)
            )},
        )
        log_group = logs.LogGroup(self, "Logs")
        # CloudWatch Logs takes any of its allowed periods, more than RetentionDays' names express directly.
        default_resource(log_group, logs.CfnLogGroup).retention_in_days = settings.log_retention_days
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(backup_function, backup_bucket)),
            timeout=FANOUT_TIMEOUT,
            comment=f"Snapshots {settings.data_bucket} in shards, then merges them (a big bucket snapshot)",
            role=role.without_policy_updates(),
            # Every state's events, without the payloads: which shard failed, when, with what error.
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        # CDK attaches a policy of its own for the map's child executions, which the immutable role drops; the role
        # has exact ones (`_role_statements`). Should CDK rename it, synth stops here rather than leave it behind.
        if not self.state_machine.node.try_remove_child(CDK_DISTRIBUTED_MAP_POLICY):
            raise RuntimeError(f"aws_stepfunctions.StateMachine made no {CDK_DISTRIBUTED_MAP_POLICY} to leave out")
        # CDK makes the state machine depend on its role explicitly although `RoleArn: GetAtt` already does; cfn-lint
        # warns about the redundancy (W3005), which is harmless.
        default_resource(self.state_machine, sfn.CfnStateMachine).add_metadata(
            "cfn-lint", {"config": {"ignore_checks": ["W3005"]}}
        )
        self._let_backup_function_run_it(backup_function)
        self.alarm = self._unfinished_alarm(alert_topic)
        self._explain_wildcards(role, backup_bucket)

    def _results_bucket(self, backup_bucket: BackupBucket) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Results",
            # Shard numbers and errors, no data of the bucket snapshotted.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            server_access_logs_bucket=backup_bucket.access_logs,
            server_access_logs_prefix="snapshot-fanout-results/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireMapRunResults",
                    expiration=RESULTS_EXPIRY,
                    abort_incomplete_multipart_upload_after=RESULTS_INCOMPLETE_UPLOAD_EXPIRY,
                )
            ],
            # Left behind if the stack goes, it empties itself by its lifecycle.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _arn(self, resource: str, name: str) -> str:
        return Stack.of(self).format_arn(
            service="states", resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )

    @property
    def _executions(self) -> str:
        return self._arn("execution", f"{self.state_machine_name}:*")

    @property
    def _shard_executions(self) -> str:
        return self._arn("execution", f"{self.state_machine_name}/{SHARDS_LABEL}:*")

    # The definition

    def _invoke(self, state_id: str, function: lambda_.IFunction, payload: dict[str, object], *,
                result_selector: dict[str, object] | None = None, result_path: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(payload),
            result_selector=result_selector,
            result_path=result_path,
            # The retries below instead: Lambda's transient errors, and the worker's own failures.
            retry_on_service_exceptions=False,
        )
        task.add_retry(errors=list(LAMBDA_TRANSIENT_ERRORS), interval=Duration.seconds(2), backoff_rate=2,
                       max_attempts=6, jitter_strategy=sfn.JitterType.FULL)
        # A shard and a merge are idempotent: each continues from its checkpoints.
        task.add_retry(errors=[sfn.Errors.TASKS_FAILED], interval=WORKER_RETRY_INTERVAL, backoff_rate=2,
                       max_attempts=WORKER_RETRIES, jitter_strategy=sfn.JitterType.FULL)
        return task

    def _definition(self, function: lambda_.IFunction, backup_bucket: BackupBucket) -> sfn.IChainable:
        snapshot_shard = self._invoke(
            "Snapshot shard",
            function,
            {
                "component": "s3",
                "shard": {"backup_id": sfn.JsonPath.string_at("$.backup_id"),
                          "number": sfn.JsonPath.number_at("$.shard")},
                "reason": "snapshot fan-out shard",
            },
            # The backup function answers a shard's invocation with `finished`: whether the shard is done.
            result_selector={"finished": sfn.JsonPath.string_at("$.Payload.finished")},
            result_path="$.result",
        )
        shard_finished = (
            sfn.Choice(self, "Shard finished")
            .when(sfn.Condition.boolean_equals("$.result.finished", True), sfn.Succeed(self, "Shard done"))
            .otherwise(snapshot_shard)
        )
        shards = sfn.DistributedMap(
            self,
            "Shards",
            item_reader=sfn.S3JsonLItemReader(bucket=backup_bucket.bucket, key=sfn.JsonPath.string_at("$.items_key")),
            item_selector={
                "backup_id": sfn.JsonPath.string_at("$.backup_id"),
                "shard": sfn.JsonPath.number_at("$$.Map.Item.Value.shard"),
            },
            max_concurrency=self._settings.backup.fanout_max_concurrency,
            # No failure tolerated (Step Functions' default, so CDK writes no ToleratedFailure field): one failed
            # shard fails the map, and the execution waits for its redrive.
            result_writer_v2=sfn.ResultWriterV2(bucket=self.results_bucket, prefix=RESULTS_PREFIX),
            # A shard may need several 15-minute invocations: more than an express child's 5 minutes.
            map_execution_type=sfn.StateMachineType.STANDARD,
            label=SHARDS_LABEL,
            # The execution's input (the snapshot's id) is what the merge needs next.
            result_path=sfn.JsonPath.DISCARD,
        )
        shards.item_processor(snapshot_shard.next(shard_finished))
        merge = self._invoke(
            "Merge",
            function,
            {"component": "s3", "resume": sfn.JsonPath.string_at("$.backup_id"), "reason": "snapshot fan-out merge"},
            result_path=sfn.JsonPath.DISCARD,
        )
        return shards.next(merge).next(sfn.Succeed(self, "Snapshot merged"))

    # Permissions

    def _role_statements(self, function: lambda_.IFunction, backup_bucket: BackupBucket) -> list[iam.PolicyStatement]:
        items = backup_bucket.bucket.arn_for_objects(items_key(self._settings.data_bucket, "*"))
        results = self.results_bucket.arn_for_objects(f"{RESULTS_PREFIX}/*")
        return [
            iam.PolicyStatement(sid="InvokeBackupFunction", actions=["lambda:InvokeFunction"],
                                resources=[function.function_arn]),
            iam.PolicyStatement(sid="ReadShardItems", actions=["s3:GetObject"], resources=[items]),
            iam.PolicyStatement(sid="WriteMapRunResults", actions=list(RESULT_WRITES), resources=[results]),
            iam.PolicyStatement(sid="DecryptShardItems", actions=list(FANOUT_KEY_USE),
                                resources=[backup_bucket.key.key_arn]),
            # A Distributed Map starts, follows and stops its children as executions of this state machine, and
            # redrives its failed ones when the execution is redriven.
            iam.PolicyStatement(sid="StartShardExecutions", actions=["states:StartExecution"],
                                resources=[self.state_machine_arn]),
            iam.PolicyStatement(sid="FollowShardExecutions",
                                actions=["states:DescribeExecution", "states:StopExecution"],
                                resources=[self._executions]),
            iam.PolicyStatement(sid="RedriveFailedShards", actions=["states:RedriveExecution"],
                                resources=[self._shard_executions]),
            iam.PolicyStatement(sid="DeliverLogsAndTraces", actions=[*LOG_DELIVERY, *TRACING], resources=["*"]),
        ]

    def _let_backup_function_run_it(self, function: lambda_.Function) -> None:
        function.add_environment(BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE.value, self.state_machine_arn)
        # A policy of its own, created after both the function and the state machine (see the module's docstring).
        policy = iam.Policy(
            self,
            "BackupFunctionRunsFanOut",
            roles=[role_of(function)],
            statements=[
                iam.PolicyStatement(sid="StartSnapshotFanOut", actions=["states:StartExecution"],
                                    resources=[self.state_machine_arn]),
                # An execution is named after its snapshot: the function finds it, counts its shards, and redrives it
                # when it failed.
                iam.PolicyStatement(
                    sid="FollowSnapshotFanOut",
                    actions=["states:DescribeExecution", "states:ListMapRuns", "states:RedriveExecution"],
                    resources=[self._executions],
                ),
                iam.PolicyStatement(sid="CountFanOutShards", actions=["states:DescribeMapRun"],
                                    resources=[self._arn("mapRun", f"{self.state_machine_name}/{SHARDS_LABEL}:*")]),
            ],
        )
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Executions of the snapshot fan-out's state machine are named after snapshot ids made at "
                    "run time, and its Map Runs get ids from Step Functions: this state machine's only.",
                    applies_to=[self._states_wildcard("execution", ":*"),
                                self._states_wildcard("mapRun", f"/{SHARDS_LABEL}:*")],
                )
            ],
        )

    def _states_wildcard(self, resource: str, tail: str) -> RegexAppliesTo:
        """cdk-nag's rendering of this state machine's `resource` ARN ending in `tail`."""
        return RegexAppliesTo(
            regex=rf"/^Resource::arn:[^:]+:states:[^:]+:<AWS::AccountId>:{resource}:"
            rf"{_literal(self.state_machine_name + tail)}$/"
        )

    def _explain_wildcards(self, role: iam.Role, backup_bucket: BackupBucket) -> None:
        stack = Stack.of(self)
        bucket_id = stack.get_logical_id(default_resource(backup_bucket.bucket, s3.CfnBucket))
        results_id = stack.get_logical_id(default_resource(self.results_bucket, s3.CfnBucket))
        items = _literal(items_key(self._settings.data_bucket, "*"))
        NagSuppressions.add_resource_suppressions(
            role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The map reads the shard list of whichever snapshot it runs (snapshot ids are made at run "
                    "time; read-only, that one file name of a snapshot only), and writes its results, named by Step "
                    "Functions after the Map Run, under their prefix of the fan-out's own results bucket.",
                    applies_to=[
                        RegexAppliesTo(regex=rf"/^Resource::<{bucket_id}\.Arn>\/{items}$/"),
                        RegexAppliesTo(regex=rf"/^Resource::<{results_id}\.Arn>\/{_literal(RESULTS_PREFIX + '/*')}$/"),
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="A Distributed Map's children are executions of its own state machine, named by Step "
                    "Functions at run time; the map follows, stops and redrives this state machine's only.",
                    applies_to=[self._states_wildcard("execution", ":*"),
                                self._states_wildcard("execution", f"/{SHARDS_LABEL}:*")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Step Functions delivers logs through CloudWatch Logs' log deliveries and traces to X-Ray: "
                    "none of these actions (logs:*LogDelivery*, logs:*ResourcePolic*, logs:DescribeLogGroups, "
                    "xray:Put*, xray:GetSampling*) takes a resource.",
                    applies_to=["Resource::*"],
                ),
            ],
        )

    # Alarm

    def _unfinished_alarm(self, alert_topic: sns.ITopic) -> cloudwatch.Alarm:
        settings = self._settings
        machine = self.state_machine
        alarm = cloudwatch.Alarm(
            self,
            "Unfinished",
            alarm_name=f"{settings.protected_function}-backup-s3-fanout-unfinished",
            alarm_description=(
                f"A fanned-out snapshot of {settings.data_bucket} failed, timed out or was aborted (state machine "
                f"{self.state_machine_name}): its manifest is not written, so it is no backup. Redrive it: send "
                'the backup function {"component": "s3", "resume": "<snapshot id>"}, the snapshot id being the '
                "execution's name; Step Functions runs again only the shards that failed, then the merge. The "
                "execution's Map Run names the failed shards and their errors; the backup function's logs say why. "
                "Scheduled snapshots go on meanwhile, each a new one."
            ),
            metric=cloudwatch.MathExpression(
                expression="FILL(failed, 0) + FILL(timed_out, 0) + FILL(aborted, 0)",
                using_metrics={
                    "failed": machine.metric_failed(period=ALARM_PERIOD, statistic="Sum"),
                    "timed_out": machine.metric_timed_out(period=ALARM_PERIOD, statistic="Sum"),
                    "aborted": machine.metric_aborted(period=ALARM_PERIOD, statistic="Sum"),
                },
                label="executions failed, timed out or aborted",
                period=ALARM_PERIOD,
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            # No execution ended: nothing to say.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(alert_topic))
        return alarm
