"""The backup bucket: every backup is written to it once and kept, out of reach even of the controller.

Objects are encrypted with a customer-managed key, versioned, and locked by S3 Object Lock (in
`backup.object_lock_mode`, GOVERNANCE by default) for `backup.object_lock_retention_days`, so a bug or a
stolen credential can neither overwrite nor delete a backup before its lock expires; the retention function
extends the lock of whatever a kept snapshot still needs. The bucket's policy holds every principal of the
account to create-only writes, lets only the retention function place delete markers, and lets no one
delete a version or bypass GOVERNANCE retention; the lifecycle rule removes the hidden bytes
`noncurrent_version_expiry_days` later, and S3 never removes a version while its lock lasts.

CloudWatch Logs writes the daily export of the protected function's logs itself, so the bucket policy and
the key policy let the logs service in, for that log group and under that function's logs prefix only.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from drcore.restore.validation_controls import CREATE_ONLY_STATEMENT_SID
from drcore.state.backup_store import Component, backup_prefix
from stacks.settings import Settings

# Server access logs of the backup bucket: who read, wrote or deleted backups, kept for a year.
ACCESS_LOG_RETENTION = Duration.days(365)
# Parts of an upload that never completed cost money and are no backup.
INCOMPLETE_UPLOAD_EXPIRY = Duration.days(7)


# What would make every backup unreadable at once: a disabled key decrypts nothing, a deleted one never again.
KEY_DESTRUCTION = ("kms:ScheduleKeyDeletion", "kms:DisableKey")


def backup_key_policy(break_glass_role_arn: str | None) -> iam.PolicyDocument:
    """The backup key's policy. The account administers the key and its IAM policies decide who uses it, as KMS
    requires (a key whose policy lets no one administer it cannot be managed again), but no one may disable the
    key or schedule its deletion: not through IAM (the account's statement leaves both out), not at all (an
    explicit deny, which also binds the account's root user). The break-glass is `backup.key_break_glass_role_arn`
    when set, spared by the deny and allowed both; otherwise changing this policy first. Either raises a
    severity-1 alert, and so does a try, refused or not (stacks/constructs/backup_guard.py)."""
    account = iam.AccountRootPrincipal()
    statements = [
        iam.PolicyStatement(sid="AccountAdministersAndIamDecidesUse", principals=[account],
                            not_actions=list(KEY_DESTRUCTION), resources=["*"]),
        iam.PolicyStatement(sid="NoOneDestroysTheBackupKey", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                            actions=list(KEY_DESTRUCTION), resources=["*"],
                            conditions={"ArnNotEquals": {"aws:PrincipalArn": break_glass_role_arn}}
                            if break_glass_role_arn else None),
    ]
    if break_glass_role_arn:
        statements.append(iam.PolicyStatement(sid="BreakGlassRoleMayDestroyTheBackupKey",
                                              principals=[iam.ArnPrincipal(break_glass_role_arn)],
                                              actions=list(KEY_DESTRUCTION), resources=["*"]))
    return iam.PolicyDocument(statements=statements)


def protected_log_group(settings: Settings) -> str:
    """The protected function's log group, which the daily logs backup exports."""
    return f"/aws/lambda/{settings.protected_function}"


def logs_export_prefix(settings: Settings) -> str:
    """Where the backup store keeps the protected function's log exports: "backups/logs/<function>/"."""
    some_backup = backup_prefix(Component.LOGS, settings.protected_function, "id")
    return some_backup[: -len("id/")]


class BackupBucket(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        bucket_name: str | None = None,
        key_alias: str | None = None,
        logs_export: bool = True,
    ) -> None:
        """The primary's backup bucket by default. The standby's copy (stacks/standby_stack.py) is the same bucket
        with a fixed `bucket_name` and `key_alias`, which the primary's replication names without referring to the
        other stack, and without `logs_export` (no log export writes there)."""
        super().__init__(scope, construct_id)
        backup = settings.backup
        self.key = kms.Key(
            self,
            "Key",
            description=f"Encrypts the backups of {settings.protected_function}",
            enable_key_rotation=True,
            policy=backup_key_policy(backup.key_break_glass_role_arn),
            removal_policy=RemovalPolicy.RETAIN,
            alias=key_alias,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 delivers server access logs only to buckets encrypted with S3-managed keys.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=ACCESS_LOG_RETENTION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            # One data key per bucket and requester instead of one KMS request per object: snapshots copy
            # many objects. CloudWatch Logs' export to SSE-KMS buckets expects it too.
            bucket_key_enabled=True,
            versioned=True,
            object_lock_enabled=True,
            object_lock_default_retention=(
                s3.ObjectLockRetention.compliance if backup.object_lock_mode == "COMPLIANCE"
                else s3.ObjectLockRetention.governance
            )(Duration.days(backup.object_lock_retention_days)),
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="backup-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="RemovePrunedBackups",
                    noncurrent_version_expiration=Duration.days(backup.noncurrent_version_expiry_days),
                    # A delete marker left with no version behind it marks nothing.
                    expired_object_delete_marker=True,
                    abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_EXPIRY,
                )
            ],
            # Backups must outlive the stack that made them.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self._require_create_only_writes()
        if logs_export:
            self._let_logs_export(settings)

    def _require_create_only_writes(self) -> None:
        """Every object the account's principals write into the backup bucket must be a new key: S3 accepts a
        PutObject, CopyObject or CompleteMultipartUpload only with `If-None-Match: *`, which fails when the key
        holds an object, so no role can replace what a restore reads with a new version. The parts of a
        multipart upload carry no conditional header (S3 takes none there): `s3:ObjectCreationOperation` is
        false for them, and their completion is the conditional write.

        Every prefix of the layout is write-once (drcore.state.backup_store): checkpoints are one object per
        page, restore records one per batch, and mutable state lives in the state table, so no prefix is
        exempt. The one writer this does not cover is CloudWatch Logs' export (a service principal, not the
        account's): it writes only new keys, under a new task id, below the logs prefix it is allowed."""
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid=CREATE_ONLY_STATEMENT_SID,  # the post-recovery validation looks for it
                effect=iam.Effect.DENY,
                principals=[iam.AccountRootPrincipal()],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}},
            )
        )

    def let_only_retention_hide(self, retention_role: iam.IRole | None) -> None:
        """No principal of the account but the retention function's role may place a delete marker (which hides
        an object from every read by key, lock or no lock), and none at all may delete a version or bypass
        GOVERNANCE retention: the lifecycle rule alone removes what retention hid, once Object Lock allows.
        An administrator who must do either changes this policy first, which raises a severity-1 alert
        (stacks/constructs/backup_guard.py). Without `retention_role` (the standby's copy, which no retention
        runs on) no principal of the account may place one, nor may replication bring one in."""
        account = iam.AccountRootPrincipal()
        everything = [self.bucket.arn_for_objects("*")]
        if retention_role is None:
            hiding = iam.PolicyStatement(
                sid="NoOneHidesBackups",
                effect=iam.Effect.DENY,
                principals=[account],
                # s3:ReplicateDelete is what a replicated delete marker needs: the copy's replication rule
                # replicates none, and this holds even if someone turned that on.
                actions=["s3:DeleteObject", "s3:ReplicateDelete"],
                resources=everything,
            )
        else:
            hiding = iam.PolicyStatement(
                sid="OnlyRetentionHidesBackups",
                effect=iam.Effect.DENY,
                principals=[account],
                actions=["s3:DeleteObject"],
                resources=everything,
                conditions={"ArnNotEquals": {"aws:PrincipalArn": retention_role.role_arn}},
            )
        self.bucket.add_to_resource_policy(hiding)
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="NoOneDestroysBackups",
                effect=iam.Effect.DENY,
                principals=[account],
                actions=["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
                resources=everything,
            )
        )

    def _let_logs_export(self, settings: Settings) -> None:
        """CloudWatch Logs' export task writes as the logs service, not as the function that created it."""
        stack = Stack.of(self)
        logs_service = iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=protected_log_group(settings),
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # Only exports of the protected function's log group, started in this account.
        source: dict[str, dict[str, Any]] = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": [log_group_arn, f"{log_group_arn}:*"]},
        }
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LogsExportChecksBucketAcl",
                principals=[logs_service],
                actions=["s3:GetBucketAcl"],
                resources=[self.bucket.bucket_arn],
                conditions=source,
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LogsExportWritesFunctionLogs",
                principals=[logs_service],
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{logs_export_prefix(settings)}*")],
                conditions={
                    **source,
                    "StringEquals": {
                        **source["StringEquals"],
                        "s3:x-amz-acl": "bucket-owner-full-control",
                    },
                },
            )
        )
        # The export writes SSE-KMS objects with the bucket's key (CloudWatch Logs user guide, "Exporting to
        # a bucket encrypted with SSE-KMS"). A condition on the bucket ARN would make the key and the bucket
        # depend on each other; the bucket policy above is what limits where the service writes.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LogsExportEncryptsWithBackupKey",
                principals=[logs_service],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
            )
        )
