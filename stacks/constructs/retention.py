"""Retention: the retention function, its schedule, and the one role of the stack that may hide a backup.

The retention function (drcore.backup.retention_run) prunes the data bucket's snapshots and the function,
stack and logs backups by `backup.retention`, keeping every backup a pending plan names (it reads the plans
in the state table): expired backups lose their manifest, then their other files, and content no remaining
snapshot references is hidden, each by a delete marker (DeleteObject without a version id: no role may
delete a version). The backup bucket's policy refuses every other principal of the account a delete marker
in the bucket (BackupBucket.let_only_retention_hide), so its role is the only one that can hide a backup,
and it is scoped to the backups (`snapshots/`, `backups/`) and the content. It then extends the Object Lock
retention (only ever later) of what the backups that stay need, and keeps its own index of the locks it
knows under `locks/` (drcore.backup.lock_extension). It runs every hour, alone (reserved concurrency 1), and
journals each run.
"""

from __future__ import annotations

import re

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import RetentionEnvVar
from drcore.state.backup_store import LOCKS_PREFIX, Component, backup_prefix
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.backups import BACKUP_KEY_USE, backup_environment, content_prefix
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.constructs.controller_functions import MAX_EVENT_AGE, RETRY_ATTEMPTS, ControllerFunctions
from stacks.constructs.state_table import JOURNAL_APPEND
from stacks.settings import RETENTION_CONCURRENCY, Settings

RETENTION_HANDLER = "retention.handler.handler"
# Lambda's maximum: a prune reads every kept snapshot's manifest.
RETENTION_TIMEOUT = Duration.minutes(15)
# As often as snapshots are taken by default: an expired snapshot goes within the hour.
RETENTION_INTERVAL = Duration.hours(1)
# What retention reads (manifests, checkpoints, a HEAD of each object it would hide, whose answer shows
# the object's Object Lock retention and legal hold only to a principal allowed to read them) and hides.
PRUNED_OBJECT_READS = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold")
# DeleteObject without a version id only places a delete marker; no role is granted s3:DeleteObjectVersion,
# and the bucket's policy refuses it to everyone. PutObjectRetention extends a lock (shortening a GOVERNANCE
# one would also take s3:BypassGovernanceRetention, which the bucket's policy refuses to everyone).
PRUNED_OBJECT_WRITES = ("s3:DeleteObject", "s3:PutObjectRetention")
# The lock index: read, written once per run that changed something, the replaced ones hidden.
LOCK_INDEX_ACCESS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")


# Retention reads the pending plans of two-step actions (drcore.state.plans): a backup a plan names stays.
PENDING_PLAN_READS = ("dynamodb:Query",)


def pruned_prefixes() -> list[str]:
    """The prefixes retention prunes: the bucket snapshots (snapshots/), the function, stack and logs backups
    (backups/) and the content the snapshots share (content/)."""
    roots = {backup_prefix(component, "subject", "id").split("/", 1)[0] + "/" for component in Component}
    return sorted({*roots, content_prefix()})


class Retention(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: ControllerFunctions,
        state_table: dynamodb.ITable,
        backup_bucket: BackupBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.function = functions.add(
            "Retention",
            handler=RETENTION_HANDLER,
            description=f"Prunes the backups of {settings.data_bucket}, {settings.protected_function}, its stack "
            "and logs past their retention; the only role that may hide a backup",
            environment=retention_environment(settings, state_table, backup_bucket),
            memory_size=settings.backup.retention_memory_mb,
            timeout=RETENTION_TIMEOUT,
            reserved_concurrency=RETENTION_CONCURRENCY,
        )
        self._grant(state_table, backup_bucket)
        backup_bucket.let_only_retention_hide(role_of(self.function))
        events.Rule(
            self,
            "Schedule",
            description="Every hour: prune the backups past their retention and extend the locks of those kept",
            schedule=events.Schedule.rate(RETENTION_INTERVAL),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    event=events.RuleTargetInput.from_object({"action": "retention"}),
                    dead_letter_queue=functions.failed_events,
                    retry_attempts=RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                )
            ],
        )
        self._explain_wildcards(backup_bucket)

    def _grant(self, state_table: dynamodb.ITable, backup_bucket: BackupBucket) -> None:
        backups = backup_bucket.bucket
        pruned = [backups.arn_for_objects(f"{prefix}*") for prefix in pruned_prefixes()]
        statements = [
            iam.PolicyStatement(sid="ListBackupBucket", actions=["s3:ListBucket"], resources=[backups.bucket_arn]),
            iam.PolicyStatement(sid="ReadBackupsAndContent", actions=list(PRUNED_OBJECT_READS), resources=pruned),
            iam.PolicyStatement(sid="HideExpiredAndLockKeptBackupsAndContent", actions=list(PRUNED_OBJECT_WRITES),
                                resources=pruned),
            iam.PolicyStatement(sid="KeepLockIndex", actions=list(LOCK_INDEX_ACCESS),
                                resources=[backups.arn_for_objects(f"{LOCKS_PREFIX}*")]),
            # S3 decrypts what is read, and encrypts the index, with the bucket's key under the caller's permissions.
            iam.PolicyStatement(sid="UseBackupKey", actions=list(BACKUP_KEY_USE),
                                resources=[backup_bucket.key.key_arn]),
        ]
        for statement in statements:
            self.function.add_to_role_policy(statement)
        state_table.grant(self.function, *JOURNAL_APPEND, *PENDING_PLAN_READS)

    def _explain_wildcards(self, backup_bucket: BackupBucket) -> None:
        bucket_id = Stack.of(self).get_logical_id(default_resource(backup_bucket.bucket, s3.CfnBucket))
        prefixes = "|".join(re.escape(prefix.rstrip("/")) for prefix in (*pruned_prefixes(), LOCKS_PREFIX))
        NagSuppressions.add_resource_suppressions(
            role_of(self.function),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Backup and content keys embed backup ids and content digests made at run time, lock "
                    "index keys run ids; retention reads, hides (delete markers only) and extends locks under "
                    "snapshots/, backups/ and content/, and keeps its index under locks/, and nowhere else.",
                    applies_to=[RegexAppliesTo(regex=rf"/^Resource::<{bucket_id}\.Arn>\/({prefixes})\/\*$/")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="kms:GenerateDataKey* is what S3 needs from a writer of SSE-KMS objects (the lock "
                    "index); it is granted on the backup key only.",
                    applies_to=["Action::kms:GenerateDataKey*"],
                ),
            ],
            apply_to_children=True,
        )


def retention_environment(settings: Settings, state_table: dynamodb.ITable,
                          backup_bucket: BackupBucket) -> dict[str, str]:
    """The backup function's variables (the buckets, the journal) and the retention policy
    (drcore.core.config.RetentionEnvVar)."""
    retention = settings.backup.retention
    own = {
        RetentionEnvVar.RETENTION_KEEP_LAST: str(retention.keep_last),
        RetentionEnvVar.RETENTION_HOURLY: str(retention.hourly),
        RetentionEnvVar.RETENTION_DAILY: str(retention.daily),
        RetentionEnvVar.RETENTION_WEEKLY: str(retention.weekly),
        RetentionEnvVar.RETENTION_MONTHLY: str(retention.monthly),
        RetentionEnvVar.OBJECT_LOCK_MODE: settings.backup.object_lock_mode,
        RetentionEnvVar.OBJECT_LOCK_DAYS: str(settings.backup.object_lock_retention_days),
    }
    # Plain strings for jsii.
    variables = {str(name.value): value for name, value in own.items()}
    # A variable the functions' side adds must be given a value here, not silently left to its default.
    unset = sorted(name.value for name in RetentionEnvVar if name.value not in variables)
    if unset:
        raise ValueError(f"drcore.core.config.RetentionEnvVar defines {', '.join(unset)}, which the stack does not set")
    return {**backup_environment(settings, state_table, backup_bucket), **variables}
