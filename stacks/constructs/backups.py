"""Backups: the backup function, what triggers it, what it may do, and the alarms that say when a
component's last good backup is older than its recovery point objective.

Triggers:
- one EventBridge schedule per component, as often as its RPO, with the constant input
  `{"component": "lambda" | "s3" | "stack" | "logs"}`;
- CloudTrail "AWS API Call via CloudTrail" events for configuration changes of the protected function,
  delivered as they are, so its configuration is backed up seconds after it changes (the seed's "real
  time" configuration RPO);
- the function itself, asynchronously, to continue a bucket snapshot that does not fit in one invocation;
- the snapshot fan-out's state machine, for each shard of a big bucket snapshot and their merge
  (stacks/constructs/snapshot_fanout.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import BackupEnvVar, EnvVar
from drcore.core.metric_names import BACKUP_COMPLETED_AT_METRIC, BACKUP_SUCCEEDED_METRIC, COMPONENT_DIMENSION
from drcore.state.backup_store import Component, backup_prefix, content_key
from stacks.constructs.backup_bucket import BackupBucket, protected_log_group
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.constructs.controller_functions import MAX_EVENT_AGE, RETRY_ATTEMPTS, ControllerFunctions
from stacks.constructs.metric_publishing import metrics_publishing
from stacks.constructs.state_table import JOURNAL_APPEND
from stacks.constructs.watchers import every_version_of
from stacks.settings import Settings

BACKUP_HANDLER = "backup.handler.handler"
# Lambda's maximum: a bucket snapshot works until shortly before it and continues in a new invocation.
BACKUP_TIMEOUT = Duration.minutes(15)

# With a real-time configuration RPO, every change is backed up as it happens (CloudTrail) and the stack,
# whose changes show up there as the function's, is also backed up daily.
STACK_SAFETY_INTERVAL_MINUTES = 24 * 60
LOGS_FOLLOW_UP_MINUTES = 60
# CloudWatch's shortest sensible window for a metric published every few minutes.
MIN_RPO_WINDOW_MINUTES = 5

DATA_BUCKET_LISTING = ("s3:ListBucket", "s3:ListBucketVersions")
DATA_OBJECT_READS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
)
# A stored backup is read as the version it was written (GetObjectVersion), one written before versions were
# recorded by its key (GetObject).
BACKUP_OBJECT_READS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:ListMultipartUploadParts",
)
# What the restoring functions read of a stored backup: the version written, or an older backup's key.
STORED_BACKUP_READS = ("s3:GetObject", "s3:GetObjectVersion")
# The backup bucket itself: the listing of keys, of the content's current versions (drcore.backup.stored_content),
# and its default Object Lock retention (a snapshot records how long what it stores is locked).
BACKUP_BUCKET_READS = ("s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration")
# Writes only, each create-only (the bucket's policy): the retention function alone may hide a backup.
BACKUP_OBJECT_WRITES = ("s3:PutObject",)
# Only a snapshot's copy of an object above the multipart threshold is uploaded in parts, into content/; a
# failed one is aborted. Everything else in the backup store is a single PUT.
MULTIPART_ABORT = ("s3:AbortMultipartUpload",)
# A snapshot's copy brings its object's tags to the content object (CopyObject's default tagging directive, or
# the tags a copy in parts sets): S3 asks the copier for the tag write. A restore copies them back from the
# content object, and its verification reads them: content/ only.
CONTENT_TAG_WRITES = ("s3:PutObjectTagging",)
CONTENT_TAG_READS = ("s3:GetObjectTagging", "s3:GetObjectVersionTagging")
# S3 asks a writer of SSE-KMS objects for a data key and a reader to decrypt; never for kms:Encrypt.
BACKUP_KEY_USE = ("kms:Decrypt", "kms:GenerateDataKey*")
PROTECTED_FUNCTION_READS = (
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:ListVersionsByFunction",
    "lambda:ListAliases",
    "lambda:GetAlias",
    "lambda:GetPolicy",
    "lambda:GetFunctionConcurrency",
    "lambda:ListProvisionedConcurrencyConfigs",
    "lambda:GetProvisionedConcurrencyConfig",
    "lambda:GetFunctionUrlConfig",
    "lambda:GetFunctionEventInvokeConfig",
    "lambda:ListFunctionEventInvokeConfigs",
    "lambda:ListTags",
    "lambda:GetFunctionCodeSigningConfig",
    "lambda:GetFunctionRecursionConfig",
    "lambda:GetRuntimeManagementConfig",
)
PIPELINE_STACK_READS = (
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplate",
    # Which parameters are NoEcho, so the backup records that their values are not real.
    "cloudformation:GetTemplateSummary",
    "cloudformation:GetStackPolicy",
    "cloudformation:DescribeStackResources",
    "cloudformation:ListStackResources",
)

# CloudTrail event names of the Lambda API calls that change what a function backup records. CloudTrail
# appends the API version to some (`UpdateFunctionConfiguration20150331v2`), so they are matched as prefixes.
CONFIGURATION_CHANGES = (
    "UpdateFunctionConfiguration",
    "UpdateFunctionCode",
    "PublishVersion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "PutFunctionConcurrency",
    "DeleteFunctionConcurrency",
    "PutProvisionedConcurrencyConfig",
    "DeleteProvisionedConcurrencyConfig",
    "AddPermission",
    "RemovePermission",
    "PutFunctionEventInvokeConfig",
    "UpdateFunctionEventInvokeConfig",
    "DeleteFunctionEventInvokeConfig",
    "CreateFunctionUrlConfig",
    "UpdateFunctionUrlConfig",
    "DeleteFunctionUrlConfig",
    "PutFunctionCodeSigningConfig",
    "DeleteFunctionCodeSigningConfig",
    "PutFunctionRecursionConfig",
    "PutRuntimeManagementConfig",
    "CreateEventSourceMapping",
    "UpdateEventSourceMapping",
    "TagResource",
    "UntagResource",
)


def backup_interval_minutes(settings: Settings, component: Component) -> int:
    """How often a component is backed up on schedule: its RPO from the recovery objectives table.

    Logs are exported a day at a time and an export finishes minutes later, on a following run: they
    run hourly, and each run that finds the last full day exported counts as a good backup."""
    objectives = settings.recovery_objectives
    return {
        Component.LAMBDA: objectives.lambda_function.rpo_minutes,
        Component.S3: objectives.s3_data.rpo_minutes,
        Component.STACK: objectives.configuration.rpo_minutes or STACK_SAFETY_INTERVAL_MINUTES,
        Component.LOGS: min(LOGS_FOLLOW_UP_MINUTES, objectives.cloudwatch_logs.rpo_minutes),
    }[component]


def rpo_window_minutes(settings: Settings, component: Component) -> int:
    """The window in which a component must have had a good backup. With the real-time configuration
    RPO, the function's configuration is watched by the lambda alarm (its changes are function backups)
    and the stack by a daily window, matching its daily safety schedule; logs by their own RPO."""
    if component is Component.LOGS:
        return settings.recovery_objectives.cloudwatch_logs.rpo_minutes
    return max(MIN_RPO_WINDOW_MINUTES, backup_interval_minutes(settings, component))


def rpo_alarm_name(function_name: str, component: Component) -> str:
    return f"{function_name}-backup-{component.value}-rpo"


def content_prefix() -> str:
    """The backup store's prefix of deduplicated object content (content/), the only one written in parts."""
    return content_key("algorithm", "digest").split("/", 1)[0] + "/"


def backup_key_prefixes() -> list[str]:
    """The top-level prefixes of the backup store's layout (drcore.state.backup_store): content/, snapshots/,
    backups/. The function reads and writes nothing else in the backup bucket."""
    keys = [content_key("algorithm", "digest"), *(backup_prefix(c, "subject", "id") for c in Component)]
    return sorted({key.split("/", 1)[0] + "/" for key in keys})


class Backups(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: ControllerFunctions,
        state_table: dynamodb.ITable,
        backup_bucket: BackupBucket,
        alert_topic: sns.ITopic,
        components: Sequence[Component] = tuple(Component),
    ) -> None:
        """Backs up `components` on schedule (every one by default; the standby backs up its region's function
        only), with an RPO alarm each, and grants what those backups read."""
        super().__init__(scope, construct_id)
        self._settings = settings
        self._failed_events = functions.failed_events
        self._components = tuple(components)
        subjects = {
            Component.LAMBDA: f"{settings.protected_function} (code and configuration)",
            Component.S3: settings.data_bucket,
            Component.STACK: settings.pipeline_stack,
            Component.LOGS: f"{settings.protected_function}'s logs",
        }
        self.function = functions.add(
            "Backup",
            handler=BACKUP_HANDLER,
            description=f"Backs up {', '.join(subjects[component] for component in self._components)}",
            environment=backup_environment(settings, state_table, backup_bucket),
            memory_size=settings.backup.memory_mb,
            timeout=BACKUP_TIMEOUT,
        )
        self._grant(state_table, backup_bucket)
        self._schedule()
        if Component.LAMBDA in self._components:
            self._back_up_configuration_changes()
        self.rpo_alarms = {component: self._rpo_alarm(component, alert_topic) for component in self._components}

    # Permissions

    def _arn(self, service: str, resource: str, name: str, arn_format: ArnFormat) -> str:
        return Stack.of(self).format_arn(service=service, resource=resource, resource_name=name, arn_format=arn_format)

    def _function_arn(self, qualifier: str | None = None) -> str:
        name = self._settings.protected_function
        return self._arn(
            "lambda", "function", name if qualifier is None else f"{name}:{qualifier}", ArnFormat.COLON_RESOURCE_NAME
        )

    def _grant(self, state_table: dynamodb.ITable, backup_bucket: BackupBucket) -> None:
        settings = self._settings
        stack = Stack.of(self)
        # S3 bucket ARNs name neither region nor account.
        data_bucket_arn = f"arn:{stack.partition}:s3:::{settings.data_bucket}"
        backups = backup_bucket.bucket
        log_group_arn = self._arn(
            "logs", "log-group", protected_log_group(settings), ArnFormat.COLON_RESOURCE_NAME
        )
        statements = [
            iam.PolicyStatement(sid="ListBackupBucket", actions=list(BACKUP_BUCKET_READS),
                                resources=[backups.bucket_arn]),
            iam.PolicyStatement(
                sid="ReadBackups",
                actions=list(BACKUP_OBJECT_READS),
                resources=[backups.arn_for_objects(f"{prefix}*") for prefix in backup_key_prefixes()],
            ),
            iam.PolicyStatement(
                sid="WriteBackups",
                actions=list(BACKUP_OBJECT_WRITES),
                resources=[backups.arn_for_objects(f"{prefix}*") for prefix in backup_key_prefixes()],
            ),
            iam.PolicyStatement(
                sid="UseBackupKey", actions=list(BACKUP_KEY_USE), resources=[backup_bucket.key.key_arn]
            ),
            metrics_publishing("PublishBackupMetrics", settings),
        ]
        # What each component's backup reads (and a snapshot's clean-up).
        reads: dict[Component, list[iam.PolicyStatement]] = {}
        reads[Component.S3] = [
            iam.PolicyStatement(sid="ListDataBucket", actions=list(DATA_BUCKET_LISTING), resources=[data_bucket_arn]),
            iam.PolicyStatement(
                sid="ReadDataObjects", actions=list(DATA_OBJECT_READS), resources=[f"{data_bucket_arn}/*"]
            ),
            # Only a snapshot copies in parts.
            iam.PolicyStatement(
                sid="AbortFailedContentCopies",
                actions=list(MULTIPART_ABORT),
                resources=[backups.arn_for_objects(f"{content_prefix()}*")],
            ),
            iam.PolicyStatement(
                sid="TagStoredContent",
                actions=list(CONTENT_TAG_WRITES),
                resources=[backups.arn_for_objects(f"{content_prefix()}*")],
            ),
        ]
        reads[Component.LAMBDA] = [
            iam.PolicyStatement(
                sid="ReadProtectedFunction",
                actions=list(PROTECTED_FUNCTION_READS),
                # Versions and aliases are qualifiers, read by name or number.
                resources=[self._function_arn(), self._function_arn("*")],
            ),
            # Event source mappings are listed by function name; the action has no resource-level permission.
            iam.PolicyStatement(
                sid="ListEventSourceMappings", actions=["lambda:ListEventSourceMappings"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="ReadLayers",
                actions=["lambda:GetLayerVersion"],
                # A function's layers may belong to any account and region (AWS's own, vendors').
                resources=[f"arn:{stack.partition}:lambda:*:*:layer:*:*"],
            ),
        ]
        reads[Component.STACK] = [
            iam.PolicyStatement(
                sid="ReadPipelineStack",
                actions=list(PIPELINE_STACK_READS),
                # The stack id after the name is assigned by CloudFormation.
                resources=[
                    self._arn(
                        "cloudformation", "stack", f"{settings.pipeline_stack}/*", ArnFormat.SLASH_RESOURCE_NAME
                    )
                ],
            ),
        ]
        reads[Component.LOGS] = [
            iam.PolicyStatement(
                sid="ExportFunctionLogs",
                actions=["logs:CreateExportTask"],
                resources=[log_group_arn, f"{log_group_arn}:*"],
            ),
            iam.PolicyStatement(sid="FollowLogExports", actions=["logs:DescribeExportTasks"], resources=["*"]),
        ]
        for component in self._components:
            statements += reads[component]
        if settings.backup.publish_version and Component.LAMBDA in self._components:
            statements.append(
                iam.PolicyStatement(
                    sid="PublishBackupVersion", actions=["lambda:PublishVersion"], resources=[self._function_arn()]
                )
            )
        for statement in statements:
            self.function.add_to_role_policy(statement)
        state_table.grant(self.function, *JOURNAL_APPEND)
        if Component.S3 in self._components:
            self._let_snapshots_continue()
        self._explain_wildcards(settings, backup_bucket)

    def _let_snapshots_continue(self) -> None:
        # Continuing a snapshot invokes this very function. On the role's default policy, its ARN would make
        # the function (which waits for that policy) and the policy depend on each other; a policy of its
        # own is created after the function.
        iam.Policy(
            self,
            "ContinueSnapshots",
            roles=[role_of(self.function)],
            statements=[
                iam.PolicyStatement(
                    sid="ContinueInNewInvocation",
                    actions=["lambda:InvokeFunction"],
                    resources=[self.function.function_arn],
                )
            ],
        )

    def _explain_wildcards(self, settings: Settings, backup_bucket: BackupBucket) -> None:
        bucket_id = Stack.of(self).get_logical_id(default_resource(backup_bucket.bucket, s3.CfnBucket))
        prefixes = "|".join(prefix.rstrip("/") for prefix in backup_key_prefixes())
        function = settings.protected_function
        data_bucket = re.escape(settings.data_bucket)
        # What only one component's grants need explained.
        by_component = {
            Component.S3: NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Snapshots read every object (and version) of the data bucket, whose keys are the "
                "pipeline's uploads and cannot be listed at synth time. Only read actions.",
                applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:s3:::{data_bucket}\/\*$/")],
            ),
            Component.STACK: NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Read-only CloudFormation actions on the pipeline stack; the stack id that follows its "
                "name in the ARN is assigned by CloudFormation at creation.",
                applies_to=[
                    RegexAppliesTo(
                        regex=rf"/^Resource::arn:[^:]+:cloudformation:[^:]+:<AWS::AccountId>:stack\/"
                        rf"{settings.pipeline_stack}\/\*$/"
                    )
                ],
            ),
            Component.LOGS: NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="logs:CreateExportTask on the protected function's log group only; CloudWatch Logs "
                "names a log group in IAM with the ':*' suffix, which covers that group's streams.",
                applies_to=[
                    RegexAppliesTo(
                        regex=rf"/^Resource::arn:[^:]+:logs:[^:]+:<AWS::AccountId>:log-group:"
                        rf"\/aws\/lambda\/{function}:\*$/"
                    )
                ],
            ),
        }
        NagSuppressions.add_resource_suppressions(
            role_of(self.function),
            [
                *(by_component[component] for component in self._components if component in by_component),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Backup object keys embed content digests and backup ids made at run time; access is "
                    "held to the backup store's own prefixes (content/, snapshots/, backups/) of the backup "
                    "bucket, and Object Lock keeps every object from deletion while its lock lasts.",
                    applies_to=[RegexAppliesTo(regex=rf"/^Resource::<{bucket_id}\.Arn>\/({prefixes})\/\*$/")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Read-only Lambda actions on the protected function's published versions and aliases, "
                    "which are addressed by qualifier and cannot be listed at synth time.",
                    applies_to=[every_version_of(settings)],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="lambda:GetLayerVersion (read-only) for the layers the protected function uses, which "
                    "may be published by any account in any region; no tighter ARN can name them ahead of time.",
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:[^:]+:lambda:\*:\*:layer:\*:\*$/")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="lambda:ListEventSourceMappings, logs:DescribeExportTasks and cloudwatch:PutMetricData "
                    "support no resource-level permissions. The first two only read; PutMetricData is held to "
                    "the controller's metrics namespace by a cloudwatch:namespace condition.",
                    applies_to=["Resource::*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="kms:GenerateDataKey* is what S3 needs from a writer of SSE-KMS objects (including "
                    "multipart copies); it is granted on the backup key only.",
                    applies_to=["Action::kms:GenerateDataKey*"],
                ),
            ],
            apply_to_children=True,
        )

    # Triggers

    def _target(self, event: events.RuleTargetInput | None = None) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function,
            event=event,
            dead_letter_queue=self._failed_events,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
        )

    def _schedule(self) -> None:
        settings = self._settings
        subjects = {
            Component.LAMBDA: f"{settings.protected_function}'s code and configuration",
            Component.S3: f"a snapshot of {settings.data_bucket}",
            Component.STACK: f"{settings.pipeline_stack}'s template, parameters, outputs, tags and policy",
            Component.LOGS: f"an export of {settings.protected_function}'s logs",
        }
        for component in self._components:
            minutes = backup_interval_minutes(settings, component)
            events.Rule(
                self,
                f"{component.value.capitalize()}Schedule",
                description=f"Every {minutes} minutes: {subjects[component]}",
                schedule=events.Schedule.rate(Duration.minutes(minutes)),
                targets=[self._target(events.RuleTargetInput.from_object({"component": component.value}))],
            )

    def _back_up_configuration_changes(self) -> None:
        stack = Stack.of(self)
        name = self._settings.protected_function
        arn = self._function_arn()
        partial_arn = f"{stack.account}:function:{name}"
        # The Lambda API takes a function as its name, ARN or partial ARN, each optionally with a qualifier.
        this_function = [
            value for form in (name, arn, partial_arn) for value in (form, {"prefix": f"{form}:"})
        ]
        # The backup function publishes versions itself when asked to; those calls must not trigger it again.
        own_calls = f"arn:{stack.partition}:sts::{stack.account}:assumed-role/{role_of(self.function).role_name}/"
        events.Rule(
            self,
            "ConfigurationChange",
            description=f"Back up {name}'s configuration as soon as it changes",
            event_pattern=events.EventPattern(
                source=["aws.lambda"],
                detail_type=["AWS API Call via CloudTrail"],
                detail={
                    "eventSource": ["lambda.amazonaws.com"],
                    "eventName": [{"prefix": change} for change in CONFIGURATION_CHANGES],
                    # A call that failed changed nothing.
                    "errorCode": [{"exists": False}],
                    "userIdentity": {"arn": [{"anything-but": {"prefix": own_calls}}]},
                    # Tagging names the function as "resource", every other call as "functionName".
                    "$or": [
                        {"requestParameters": {"functionName": this_function}},
                        {"requestParameters": {"resource": this_function}},
                    ],
                },
            ),
            targets=[self._target()],
        )

    # RPO

    def _rpo_alarm(self, component: Component, alert_topic: sns.ITopic) -> cloudwatch.Alarm:
        settings = self._settings
        window = rpo_window_minutes(settings, component)
        alarm = cloudwatch.Alarm(
            self,
            f"{component.value.capitalize()}Rpo",
            alarm_name=rpo_alarm_name(settings.protected_function, component),
            alarm_description=(
                f"No good {component.value} backup of {settings.protected_function} in the last {window} "
                "minutes: the recovery point objective is not met. See the backup function's logs and the "
                "failed-events queue."
            ),
            metric=backup_succeeded_metric(settings, component, Duration.minutes(window)),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=1,
            # No backup published nothing: silence is exactly what this alarm is about.
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(alert_topic))
        return alarm


def backup_succeeded_metric(settings: Settings, component: Component, period: Duration) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=settings.metrics_namespace,
        metric_name=BACKUP_SUCCEEDED_METRIC,
        dimensions_map={COMPONENT_DIMENSION: component.value},
        statistic="Sum",
        period=period,
    )


def backup_completed_at_metric(settings: Settings, component: Component, period: Duration) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=settings.metrics_namespace,
        metric_name=BACKUP_COMPLETED_AT_METRIC,
        dimensions_map={COMPONENT_DIMENSION: component.value},
        statistic="Maximum",
        period=period,
    )


def backup_environment(
    settings: Settings, state_table: dynamodb.ITable, backup_bucket: BackupBucket
) -> dict[str, str]:
    """What `drcore.core.config.BackupSettings.from_environ` reads, under the names drcore.core.config defines, plus
    the state table for the journal. No snapshot fans out unless the stack runs a snapshot fan-out, which names its
    state machine to the backup function (stacks/constructs/snapshot_fanout.py)."""
    backup = settings.backup
    environment = {
        BackupEnvVar.PROTECTED_FUNCTION_NAME: settings.protected_function,
        BackupEnvVar.DATA_BUCKET_NAME: settings.data_bucket,
        BackupEnvVar.BACKUP_BUCKET_NAME: backup_bucket.bucket.bucket_name,
        BackupEnvVar.PIPELINE_STACK_NAME: settings.pipeline_stack,
        BackupEnvVar.LOG_GROUP_NAME: protected_log_group(settings),
        BackupEnvVar.METRICS_NAMESPACE: settings.metrics_namespace,
        BackupEnvVar.COPY_CONCURRENCY: str(backup.copy_concurrency),
        BackupEnvVar.FULL_MANIFEST_EVERY: str(backup.full_manifest_every),
        BackupEnvVar.PUBLISH_BACKUP_VERSION: "true" if backup.publish_version else "false",
        BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE: "",
        BackupEnvVar.FANOUT_THRESHOLD_OBJECTS: str(backup.fanout_threshold_objects),
        BackupEnvVar.FANOUT_SHARD_OBJECTS: str(backup.fanout_shard_objects),
        EnvVar.STATE_TABLE_NAME: state_table.table_name,
    }
    # Plain strings for jsii.
    variables = {str(name.value): value for name, value in environment.items()}
    # A variable the functions' side adds must be given a value here, not silently left to its default.
    # (The state scope excepted: ControllerFunctions sets it on every function of a standby, and on none here.)
    unset = sorted(name.value for name in BackupEnvVar
                   if name.value not in variables and name is not BackupEnvVar.STATE_SCOPE)
    if unset:
        raise ValueError(f"drcore.core.config.BackupEnvVar defines {', '.join(unset)}, which the stack does not set")
    return variables
