"""DR drills in AWS: the drill function, its scratch bucket, its schedule, and what it may do.

The drill function (drcore.drill.runner) restores the newest backups into scratch resources and never touches the
protected function, bucket or stack; its role says so. It may:
- read every backup, and write into the backup bucket only its restore's safety snapshot manifest, its
  restore records and its reports (`drills/`), never deleting, never under `content/`: the drill clears the
  scratch bucket before restoring into it, so the safety snapshot has no object to store (were one there,
  the restore step fails on AccessDenied, and the drill with it, loudly);
- restore into the scratch bucket only: reading, writing, and hiding objects behind delete markers (no
  s3:DeleteObjectVersion); the bucket's lifecycle expires what a drill left after `scratch_expiry_days`;
- create and rewrite exactly one function, `<protected function>-drill`, read the versions it publishes of
  it, republish its layers, and pass it the execution roles restore_grants.passable_function_roles names (by
  default the pipeline stack's: the backed-up function's role must be among them, or the recover_lambda
  step reports AccessDenied);
- validate a stack template (CloudFormation's ValidateTemplate, read-only);
- read the LIVE alarms and the controller record, keep its runs and journal in the state table, publish
  the DrillPassed metric, alert on the alert topic, and invoke itself to continue a long restore.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import DrillEnvironment, DrillEnvVar
from drcore.state.backup_store import REPORTS_PREFIX
from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.backup_bucket import INCOMPLETE_UPLOAD_EXPIRY, BackupBucket
from stacks.constructs.backups import (
    BACKUP_BUCKET_READS,
    BACKUP_KEY_USE,
    CONTENT_TAG_READS,
    STORED_BACKUP_READS,
    content_prefix,
)
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.constructs.controller_functions import MAX_EVENT_AGE, RETRY_ATTEMPTS, ControllerFunctions
from stacks.constructs.metric_publishing import metrics_publishing
from stacks.constructs.recovery import (
    BACKUP_OBJECT_WRITES,
    FUNCTION_RECOVERY_ACTIONS,
    NEW_FUNCTION_ACTIONS,
    RECOVERY_READ_PREFIXES,
    RECOVERY_WRITE_PREFIXES,
    TARGET_OBJECT_WRITES,
    recovery_environment,
)
from stacks.constructs.restore_grants import (
    TARGET_BUCKET_READS,
    TARGET_OBJECT_READS,
    continue_in_new_invocations,
    grant_layers_and_roles,
    layer_and_role_suppressions,
    let_operators_invoke,
)
from stacks.constructs.state_table import STATE_ACCESS
from stacks.constructs.watchers import regional_arn
from stacks.settings import Settings

DRILL_HANDLER = "drill.handler.handler"
# Lambda's maximum: a restore works until shortly before it and the drill continues in a new invocation.
DRILL_TIMEOUT = Duration.minutes(15)
DRILL_MEMORY_MB = 1024
SCRATCH_FUNCTION_SUFFIX = "-drill"
# What the drill writes into the backup bucket: what a restore into an empty bucket writes (no content/), and its
# reports.
DRILL_WRITE_PREFIXES = tuple(sorted({*RECOVERY_WRITE_PREFIXES, REPORTS_PREFIX} - {content_prefix()}))
DRILL_READ_PREFIXES = tuple(sorted({*RECOVERY_READ_PREFIXES, REPORTS_PREFIX}))


def scratch_function_name(settings: Settings) -> str:
    """The function a drill restores the newest function backup as, beside the protected one."""
    return f"{settings.protected_function}{SCRATCH_FUNCTION_SUFFIX}"


def rto_seconds(settings: Settings) -> dict[str, int]:
    """The objective each restoring step of a drill is timed against."""
    objectives = settings.recovery_objectives
    return {
        "lambda": objectives.lambda_function.rto_minutes * 60,
        "s3": objectives.s3_data.rto_minutes * 60,
        "configuration": objectives.configuration.rto_minutes * 60,
    }


class Drills(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: ControllerFunctions,
        state_table: dynamodb.ITable,
        alerting: Alerting,
        alarms: LiveAliasAlarms,
        backup_bucket: BackupBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.scratch_bucket = s3.Bucket(
            self,
            "ScratchBucket",
            # Restored copies of production data stay under the backups' key.
            encryption=s3.BucketEncryption.KMS,
            encryption_key=backup_bucket.key,
            bucket_key_enabled=True,
            # A restore removes objects only by delete markers, so it needs a versioned target.
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            server_access_logs_bucket=backup_bucket.access_logs,
            server_access_logs_prefix="drill-scratch/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireDrillCopies",
                    expiration=Duration.days(settings.drill.scratch_expiry_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_EXPIRY,
                ),
                s3.LifecycleRule(id="RemoveEmptyDeleteMarkers", expired_object_delete_marker=True),
            ],
            # Left behind if the stack goes, it empties itself by its lifecycle.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.function = functions.add(
            "Drill",
            handler=DRILL_HANDLER,
            description=(
                f"DR drills of {settings.protected_function}: newest backups restored into scratch resources, "
                "timed against the RTOs, reported"
            ),
            environment=drill_environment(settings, state_table, alerting, alarms, backup_bucket, self.scratch_bucket),
            memory_size=DRILL_MEMORY_MB,
            timeout=DRILL_TIMEOUT,
        )
        self._grant(state_table, alerting, alarms, backup_bucket)
        continue_in_new_invocations(self, "ContinueDrills", self.function)
        let_operators_invoke(self.function, settings)
        self._schedule(functions)
        self._explain_wildcards(backup_bucket)

    # Permissions

    def _add(
        self, sid: str, actions: tuple[str, ...] | list[str], resources: list[str], **conditions: dict[str, Any]
    ) -> None:
        self.function.add_to_role_policy(
            iam.PolicyStatement(sid=sid, actions=list(actions), resources=resources, conditions=conditions or None)
        )

    def _grant(self, state_table: dynamodb.ITable, alerting: Alerting, alarms: LiveAliasAlarms,
               backup_bucket: BackupBucket) -> None:
        settings = self._settings
        scratch, backups = self.scratch_bucket, backup_bucket.bucket
        self._add("ListScratchBucket", TARGET_BUCKET_READS, [scratch.bucket_arn])
        self._add("ReadScratchObjects", TARGET_OBJECT_READS, [scratch.arn_for_objects("*")])
        self._add("RestoreIntoScratchBucket", TARGET_OBJECT_WRITES, [scratch.arn_for_objects("*")])
        self._add("ListBackupBucket", BACKUP_BUCKET_READS, [backups.bucket_arn])
        self._add("ReadBackups", STORED_BACKUP_READS,
                  [backups.arn_for_objects(f"{prefix}*") for prefix in DRILL_READ_PREFIXES])
        self._add(
            "WriteSafetySnapshotsRestoreRecordsAndReports",
            BACKUP_OBJECT_WRITES,
            [backups.arn_for_objects(f"{prefix}*") for prefix in DRILL_WRITE_PREFIXES],
        )
        # A restore into the scratch bucket copies the tags a snapshot's copy brought to the content, and reads them.
        self._add("ReadTagsOfStoredContent", CONTENT_TAG_READS,
                  [backup_bucket.bucket.arn_for_objects(f"{content_prefix()}*")])
        self._add("UseBackupKey", BACKUP_KEY_USE, [backup_bucket.key.key_arn])
        scratch_function = regional_arn(self, "lambda", "function", scratch_function_name(settings))
        self._add("RestoreScratchFunction", (*NEW_FUNCTION_ACTIONS, *FUNCTION_RECOVERY_ACTIONS), [scratch_function])
        # A restore checks the version it published (GetFunctionConfiguration with its number as Qualifier, which
        # Lambda authorizes against the qualified ARN): PublishVersion may answer with an existing version, and
        # only the version's own CodeSha256 says what it runs; $LATEST, read unqualified, would not.
        scratch_versions = regional_arn(self, "lambda", "function", f"{scratch_function_name(settings)}:*")
        self._add("ReadPublishedScratchVersions", ["lambda:GetFunctionConfiguration"], [scratch_versions])
        grant_layers_and_roles(self.function, settings, "PassRoleToScratchFunction")
        # ValidateTemplate supports no resource-level permissions; it reads the template it is given.
        self._add("ValidateStackTemplates", ["cloudformation:ValidateTemplate"], ["*"])
        self._add(
            "ReadAlarmStates",
            ["cloudwatch:DescribeAlarms"],
            [
                regional_arn(self, "cloudwatch", "alarm", name)
                for name in alarms.health_names + alarms.performance_names
            ],
        )
        self.function.add_to_role_policy(metrics_publishing("PublishDrillMetric", settings))
        state_table.grant(self.function, *STATE_ACCESS)
        alerting.alert_topic.grant_publish(self.function)

    # Trigger

    def _schedule(self, functions: ControllerFunctions) -> None:
        drill = self._settings.drill
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"DR drill of {self._settings.protected_function} on {drill.schedule}",
            schedule=events.Schedule.expression(drill.schedule),
            enabled=drill.scheduled,
            targets=[
                targets.LambdaFunction(
                    self.function,
                    # The event's time names the drill, so a duplicated delivery starts it once.
                    event=events.RuleTargetInput.from_object(
                        {"action": "drill", "requested_by": "schedule", "reason": "scheduled DR drill",
                         "scheduled_at": events.EventField.time}
                    ),
                    dead_letter_queue=functions.failed_events,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                )
            ],
        )

    def _explain_wildcards(self, backup_bucket: BackupBucket) -> None:
        settings = self._settings
        stack = Stack.of(self)
        backup_bucket_id = stack.get_logical_id(default_resource(backup_bucket.bucket, s3.CfnBucket))
        scratch_id = stack.get_logical_id(default_resource(self.scratch_bucket, s3.CfnBucket))
        prefixes = "|".join(re.escape(prefix.rstrip("/")) for prefix in DRILL_READ_PREFIXES)
        suppressions = [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="cloudformation:ValidateTemplate (read-only: it checks the template it is given) and "
                "cloudwatch:PutMetricData support no resource-level permissions; PutMetricData is held to the "
                "controller's metrics namespace by a cloudwatch:namespace condition.",
                applies_to=["Resource::*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="kms:GenerateDataKey* is what S3 needs from a writer of SSE-KMS objects and SNS from a "
                "publisher to a KMS-encrypted topic; granted on the backup key and the alert topic's key only.",
                applies_to=["Action::kms:GenerateDataKey*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="A drill restores any object of the newest snapshot into the scratch bucket, whose keys are "
                "the pipeline's uploads; it removes only by delete markers (no s3:DeleteObjectVersion).",
                applies_to=[f"Resource::<{scratch_id}.Arn>/*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Backup object keys embed content digests and backup ids made at run time; access is held "
                "to the backup store's prefixes (reads of backups, content, snapshots, restores and drills; writes "
                "of snapshots, restores and drills, never deletes), and Object Lock protects every object.",
                applies_to=[RegexAppliesTo(regex=rf"/^Resource::<{backup_bucket_id}\.Arn>\/({prefixes})\/\*$/")],
            ),
        ]
        suppressions.append(
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="lambda:GetFunctionConfiguration (read-only) of the versions the drill publishes of its "
                "scratch function, addressed by a number Lambda assigns at publication.",
                applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:lambda:[^:]+:<AWS::AccountId>:function:"
                                                 rf"{re.escape(scratch_function_name(settings))}:\*$/")],
            )
        )
        suppressions += layer_and_role_suppressions(settings)
        NagSuppressions.add_resource_suppressions(role_of(self.function), suppressions, apply_to_children=True)


def drill_environment(
    settings: Settings,
    state_table: dynamodb.ITable,
    alerting: Alerting,
    alarms: LiveAliasAlarms,
    backup_bucket: BackupBucket,
    scratch_bucket: s3.IBucket,
) -> dict[str, str]:
    """The recovery function's variables (the drill reads the same settings) and the drill's own."""
    own = {
        DrillEnvVar.SCRATCH_BUCKET_NAME: scratch_bucket.bucket_name,
        DrillEnvVar.SCRATCH_FUNCTION_NAME: scratch_function_name(settings),
        DrillEnvVar.RTO_SECONDS: json.dumps(rto_seconds(settings), separators=(",", ":")),
        DrillEnvVar.ENVIRONMENT: DrillEnvironment.AWS.value,
    }
    own_variables = {str(name.value): value for name, value in own.items()}
    unset = sorted(name.value for name in DrillEnvVar if name.value not in own_variables)
    if unset:
        raise ValueError(f"drcore.core.config.DrillEnvVar defines {', '.join(unset)}, which the stack does not set")
    return {**recovery_environment(settings, state_table, alerting, alarms, backup_bucket), **own_variables}
