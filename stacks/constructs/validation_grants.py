"""What the recovery function's post-recovery validation needs (drcore.restore.validation): the values it compares
the security controls with, in its environment, and read-only grants for every call its checks make.

The rest of what it reads is granted to the recovery role already: LIVE and its alarms, the metrics and the
state table (alias control), the data bucket's versions and objects (bucket restores), the replica's
(replication), the backup store (restores), the backup bucket's Object Lock configuration (its listing), both
buckets' notification configurations and, when a switch made the other region active, that region's LIVE and
alarms (the region switch: stacks/constructs/region_switch.py). The IAM conformance test
(tests/infra/test_iam_conformance.py) runs a validation, a restore, a failover and a failback that end with one
under that role.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from drcore.restore.validation_controls import ValidationEnvVar
from drcore.restore.validation_data import DEFAULT_SAMPLE_SIZE
from stacks.constructs.alerting import Alerting
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.watchers import grant_live_probe
from stacks.settings import Settings

# The backup bucket's controls as the validation reads them (its Object Lock configuration is read by the listing).
BACKUP_CONTROL_READS = ("s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:GetBucketPolicy")


def grant_validation(function: lambda_.Function, settings: Settings, alerting: Alerting,
                     backup_bucket: BackupBucket) -> None:
    """Set the validation's variables on `function` (the recovery function) and grant its role the checks' reads."""
    for name, value in {
        ValidationEnvVar.BACKUP_KEY_ARN: backup_bucket.key.key_arn,
        ValidationEnvVar.OBJECT_LOCK_MODE: settings.backup.object_lock_mode,
        ValidationEnvVar.OBJECT_LOCK_DAYS: str(settings.backup.object_lock_retention_days),
        ValidationEnvVar.SAMPLE_SIZE: str(DEFAULT_SAMPLE_SIZE),
    }.items():
        function.add_environment(str(name.value), value)
    # The health check invokes the versions LIVE routes to, by number, as the watchers' probe does.
    grant_live_probe(function, settings)
    statements = [
        iam.PolicyStatement(sid="ReadBackupBucketControls", actions=list(BACKUP_CONTROL_READS),
                            resources=[backup_bucket.bucket.bucket_arn]),
        iam.PolicyStatement(sid="ReadAlertTopicEncryption", actions=["sns:GetTopicAttributes"],
                            resources=[alerting.alert_topic.topic_arn, alerting.emergency_topic.topic_arn]),
    ]
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant the validation's reads")
    # A managed policy of its own, as the replication grants: the recovery role's inline policy is near IAM's limit.
    iam.ManagedPolicy(function, "ValidationGrants", statements=statements, roles=[role])
