"""A shard fan-out: a big bucket job run as shards by a Step Functions Distributed Map, then merged.

The controller has two: big snapshots (stacks/constructs/snapshot_fanout.py) and big restores
(stacks/constructs/restore_fanout.py). Both have the same shape, built here; a `ShardJob` says what differs: the
functions invoked, their payloads, where the shard items are, and the texts.

The function that plans the job cuts it into shards, writes one JSON line per shard (`{"shard": <n>}`) to an items
file in the backup bucket, and starts an execution named after the job with the job's ids and `items_key`:

- `Shards` reads the items and runs a child execution per shard, `backup.fanout_max_concurrency` at once, each
  given the job's ids (`ShardJob.item_fields`) and its shard number. A child invokes the job's worker until it
  answers `finished`: a shard that outlasts one invocation goes on from its checkpoint in the next; one the worker
  refuses (`ok: false`) fails at once. One failed shard fails the map, and the execution: redriving it runs again
  only the shards that failed.
- `Merge`: with every shard done, the job's merge function brings the shards' work together.
- `Resume requested` (a job that something may wait for: `ShardJob.then`): when the execution's input holds
  `resume`, `Resume` sends that request to the function waiting (a restore, whose safety snapshot this was).

The map writes its children's results (which shards failed, and why) to a results bucket rather than into its
output, which holds at most 256 KiB: a few thousand shards' results would not fit. Not to the backup bucket: every
write there must be create-only (`If-None-Match`) and carry a checksum (Object Lock), and Step Functions documents
neither for its result writer; and whatever is written there is locked and replicated to the standby as a backup
is. The results bucket holds no data, only shard numbers and errors: S3-managed encryption, no versioning, no lock,
and every object expires after RESULTS_EXPIRY. The first fan-out makes it; the others share it, each writing
under a prefix of its own (`ShardJob.results_prefix`) that its role alone may write. (Step Functions names a Map
Run's results after the Map Run, whose id is unique across state machines; the prefixes keep the roles apart.)

The state machine invokes functions whose environment and permissions name it (the planner starts it): a reference
each way would be a dependency cycle, so the state machine has a fixed name and a function knows it by its ARN
built from that name (`ShardFanOut.let_start`). Its role grants exactly what the definition needs; CDK's own
grants for the map (whole buckets for its reader and its writer) are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.settings import Settings

# A fan-out that has not finished in a day has stopped making progress: it times out and alarms, to be redriven.
FANOUT_TIMEOUT = Duration.hours(24)
# The Map Run's label: its child executions are named "<state machine>/Shards:<id>".
SHARDS_LABEL = "Shards"
# Where the execution's input names the shard items in the backup bucket.
ITEMS_KEY_PATH = "$.items_key"
# Where the execution's input holds the request that resumes what waits for the job (a restore's plan).
RESUME_PATH = "$.resume"
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
# A worker refuses a shard its job's plan does not hold (no shard plan, or no such shard): nothing to retry.
SHARD_REFUSED = ("the worker refused this shard: its job's plan does not hold it (no shard plan, or no such shard); "
                 "the worker's answer, in this execution's history and the worker's log, says why")
WORKER_RETRIES = 2
# What a Distributed Map's result writer does in the results bucket: multipart uploads (Step Functions guide,
# "IAM policies for using Distributed Map states").
RESULT_WRITES = ("s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload")
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
# What the function that plans a job does with its fan-out: starts it; finds an execution by the job's id, counts
# its shards and redrives it when it failed.
START = ("states:StartExecution",)
FOLLOW = ("states:DescribeExecution", "states:ListMapRuns", "states:RedriveExecution")
COUNT_SHARDS = ("states:DescribeMapRun",)
# What a planner that reports every running job does besides (the recovery function's `status`).
LIST_RUNNING = ("states:ListExecutions",)
ALARM_PERIOD = Duration.minutes(5)
# The policy aws_stepfunctions.StateMachine makes for a Distributed Map's child executions.
CDK_DISTRIBUTED_MAP_POLICY = "DistributedMapPolicy"


def _literal(text: str) -> str:
    """`text` matched literally by a cdk-nag regex, which is written between slashes."""
    return re.escape(text).replace("/", r"\/")


def fanout_name(settings: Settings, kind: str) -> str:
    """A fan-out's state machine name: at most 64 + 1 + len(kind) + 7 characters, within the 80 Step Functions
    allows for the kinds here."""
    return f"{settings.protected_function}-{kind}-fanout"


@dataclass(frozen=True)
class Invoked:
    """A function the state machine invokes, and the name its role's statement gives it ("Invoke<name>")."""

    function: lambda_.IFunction
    name: str


@dataclass(frozen=True)
class ShardJob:
    """What one fan-out runs, and how it speaks of it."""

    # Names the state machine ("<protected function>-<kind>-fanout"), its worker's and its last state ("<Kind>
    # shard", "<Kind> merged"), its role's policy and the planner's statements ("<Kind>FanOut").
    kind: str
    # What an execution runs, named after its id (made at run time): "snapshot", "restore plan".
    run: str
    # Invoked for each shard with `worker_payload` (which reads the item: "$.shard" and the `item_fields`) until it
    # answers `{"ok": true, "finished": true, ...}`; `{"ok": false, "finished": false, ...}` fails the shard.
    worker: Invoked
    worker_payload: sfn.TaskInput
    # The execution input's fields each shard is given, besides its number.
    item_fields: tuple[str, ...]
    # Invoked once every shard is done, with `merge_payload` (which reads the execution's input).
    merge: Invoked
    merge_payload: sfn.TaskInput
    # Any run's shard items in the backup bucket (an IAM object key pattern): the only thing the map reads there.
    items: str
    # Where in the results bucket the map writes its results: "<prefix>/<map run id>/manifest.json", ...
    results_prefix: str
    role_description: str
    comment: str
    alarm_name: str
    alarm_description: str
    # Invoked after the merge, when the execution's input holds `resume`, with that request: what waits for the job
    # (the recovery function, for a restore's safety snapshot). None: nothing waits for this kind of job.
    then: Invoked | None = None

    @property
    def title(self) -> str:
        return self.kind.capitalize()


class ShardFanOut(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        job: ShardJob,
        backup_bucket: BackupBucket,
        alert_topic: sns.ITopic,
        results_bucket: s3.Bucket | None = None,
    ) -> None:
        """Runs `job` over the shard items it writes to `backup_bucket`, writes the map's results to
        `results_bucket` (None: a bucket of its own, `self.results_bucket`, for other fan-outs to share), and alerts
        `alert_topic` when an execution ends without finishing its job."""
        super().__init__(scope, construct_id)
        self._settings = settings
        self._job = job
        self.state_machine_name = fanout_name(settings, job.kind)
        self.state_machine_arn = self._arn("stateMachine", self.state_machine_name)
        self.results_bucket = results_bucket or self._results_bucket(backup_bucket)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=job.role_description,
            inline_policies={f"{job.title}FanOut": iam.PolicyDocument(statements=self._role_statements(backup_bucket))},
        )
        log_group = logs.LogGroup(self, "Logs")
        # CloudWatch Logs takes any of its allowed periods, more than RetentionDays' names express directly.
        default_resource(log_group, logs.CfnLogGroup).retention_in_days = settings.log_retention_days
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(backup_bucket)),
            timeout=FANOUT_TIMEOUT,
            comment=job.comment,
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
        self.alarm = self._unfinished_alarm(alert_topic)
        self._explain_wildcards(role, backup_bucket)

    def _results_bucket(self, backup_bucket: BackupBucket) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Results",
            # Shard numbers and errors, no data of the buckets the jobs work on.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            server_access_logs_bucket=backup_bucket.access_logs,
            server_access_logs_prefix=f"{self._job.kind}-fanout-results/",
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

    @property
    def _map_runs(self) -> str:
        return self._arn("mapRun", f"{self.state_machine_name}/{SHARDS_LABEL}:*")

    # The definition

    def _invoke(self, state_id: str, function: lambda_.IFunction, payload: sfn.TaskInput, *,
                result_selector: dict[str, object] | None = None, result_path: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=function,
            payload=payload,
            result_selector=result_selector,
            result_path=result_path,
            # The retries below instead: Lambda's transient errors, and the worker's own failures.
            retry_on_service_exceptions=False,
        )
        task.add_retry(errors=list(LAMBDA_TRANSIENT_ERRORS), interval=Duration.seconds(2), backoff_rate=2,
                       max_attempts=6, jitter_strategy=sfn.JitterType.FULL)
        # A shard, a merge and a resume are idempotent: each continues from its checkpoints (a resume, the plan's).
        task.add_retry(errors=[sfn.Errors.TASKS_FAILED], interval=WORKER_RETRY_INTERVAL, backoff_rate=2,
                       max_attempts=WORKER_RETRIES, jitter_strategy=sfn.JitterType.FULL)
        return task

    def _definition(self, backup_bucket: BackupBucket) -> sfn.IChainable:
        job = self._job
        shard = self._invoke(
            f"{job.title} shard",
            job.worker.function,
            job.worker_payload,
            # The worker answers a shard's invocation with `ok` (false: it refused the request) and `finished`
            # (whether the shard is done).
            result_selector={"ok": sfn.JsonPath.string_at("$.Payload.ok"),
                             "finished": sfn.JsonPath.string_at("$.Payload.finished")},
            result_path="$.result",
        )
        shard_finished = (
            sfn.Choice(self, "Shard finished")
            # Asking again what was refused would be refused alike: the shard fails, and with it the execution.
            .when(sfn.Condition.boolean_equals("$.result.ok", False),
                  sfn.Fail(self, "Shard refused", error="ShardRefused", cause=SHARD_REFUSED))
            .when(sfn.Condition.boolean_equals("$.result.finished", True), sfn.Succeed(self, "Shard done"))
            .otherwise(shard)
        )
        shards = sfn.DistributedMap(
            self,
            SHARDS_LABEL,
            item_reader=sfn.S3JsonLItemReader(bucket=backup_bucket.bucket, key=sfn.JsonPath.string_at(ITEMS_KEY_PATH)),
            item_selector={
                **{field: sfn.JsonPath.string_at(f"$.{field}") for field in job.item_fields},
                "shard": sfn.JsonPath.number_at("$$.Map.Item.Value.shard"),
            },
            max_concurrency=self._settings.backup.fanout_max_concurrency,
            # No failure tolerated (Step Functions' default, so CDK writes no ToleratedFailure field): one failed
            # shard fails the map, and the execution waits for its redrive.
            result_writer_v2=sfn.ResultWriterV2(bucket=self.results_bucket, prefix=job.results_prefix),
            # A shard may need several 15-minute invocations: more than an express child's 5 minutes.
            map_execution_type=sfn.StateMachineType.STANDARD,
            label=SHARDS_LABEL,
            # The execution's input (the job's ids) is what the merge needs next.
            result_path=sfn.JsonPath.DISCARD,
        )
        shards.item_processor(shard.next(shard_finished))
        merge = self._invoke("Merge", job.merge.function, job.merge_payload, result_path=sfn.JsonPath.DISCARD)
        merged = sfn.Succeed(self, f"{job.title} merged")
        if job.then is None:
            return shards.next(merge).next(merged)
        resume = self._invoke("Resume", job.then.function, sfn.TaskInput.from_json_path_at(RESUME_PATH),
                              result_path=sfn.JsonPath.DISCARD)
        resume_requested = (sfn.Choice(self, "Resume requested")
                            .when(sfn.Condition.is_present(RESUME_PATH), resume.next(merged))
                            .otherwise(merged))
        return shards.next(merge).next(resume_requested)

    # Permissions

    def _role_statements(self, backup_bucket: BackupBucket) -> list[iam.PolicyStatement]:
        job = self._job
        invoked: dict[str, lambda_.IFunction] = {}
        for target in (job.worker, job.merge, *((job.then,) if job.then else ())):
            # One statement for a function that is both the worker and the merge (the backup function).
            if invoked.setdefault(f"Invoke{target.name}", target.function) is not target.function:
                raise ValueError(f"{job.kind} fan-out: two functions named {target.name}")
        results = self.results_bucket.arn_for_objects(f"{job.results_prefix}/*")
        return [
            *(iam.PolicyStatement(sid=sid, actions=["lambda:InvokeFunction"], resources=[function.function_arn])
              for sid, function in invoked.items()),
            iam.PolicyStatement(sid="ReadShardItems", actions=["s3:GetObject"],
                                resources=[backup_bucket.bucket.arn_for_objects(job.items)]),
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

    def let_start(self, function: lambda_.Function, variable: str, *, policy_id: str,
                  list_running: bool = False) -> None:
        """Let `function`, which plans the job, start it and follow it (and with `list_running`, list the running
        executions): its ARN in `variable` of its environment, and a policy of its own (`policy_id`), created after
        both the function and the state machine (see the module's docstring)."""
        function.add_environment(variable, self.state_machine_arn)
        title = self._job.title
        statements = [
            iam.PolicyStatement(sid=f"Start{title}FanOut", actions=list(START), resources=[self.state_machine_arn]),
            # An execution is named after its job: the function finds it, counts its shards, and redrives it when it
            # failed.
            iam.PolicyStatement(sid=f"Follow{title}FanOut", actions=list(FOLLOW), resources=[self._executions]),
            iam.PolicyStatement(sid="CountFanOutShards", actions=list(COUNT_SHARDS), resources=[self._map_runs]),
        ]
        if list_running:
            statements.append(iam.PolicyStatement(sid=f"ListRunning{title}FanOuts", actions=list(LIST_RUNNING),
                                                  resources=[self.state_machine_arn]))
        policy = iam.Policy(self, policy_id, roles=[role_of(function)], statements=statements)
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=f"Executions of the {self._job.kind} fan-out's state machine are named after "
                    f"{self._job.run} ids made at run time, and its Map Runs get ids from Step Functions: this state "
                    "machine's only.",
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
        job = self._job
        stack = Stack.of(self)
        bucket_id = stack.get_logical_id(default_resource(backup_bucket.bucket, s3.CfnBucket))
        results_id = stack.get_logical_id(default_resource(self.results_bucket, s3.CfnBucket))
        NagSuppressions.add_resource_suppressions(
            role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason=f"The map reads the shard list of whichever {job.run} it runs ({job.run} ids are made at "
                    f"run time; read-only, that one file name of a {job.run} only), and writes its results, named by "
                    "Step Functions after the Map Run, under its own prefix of the fan-out results bucket.",
                    applies_to=[
                        RegexAppliesTo(regex=rf"/^Resource::<{bucket_id}\.Arn>\/{_literal(job.items)}$/"),
                        RegexAppliesTo(
                            regex=rf"/^Resource::<{results_id}\.Arn>\/{_literal(job.results_prefix + '/*')}$/"
                        ),
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
        machine = self.state_machine
        alarm = cloudwatch.Alarm(
            self,
            "Unfinished",
            alarm_name=self._job.alarm_name,
            alarm_description=self._job.alarm_description,
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
