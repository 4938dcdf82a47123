"""What the recovery function's post-recovery validation needs (drcore.restore.validation): the values it compares
the security controls with, in its environment, and read-only grants for every call its checks make.

The rest of what it reads is granted to the recovery role already: LIVE and its alarms, the metrics and the
state table (alias control), the data bucket's versions and objects (bucket restores), the replica's
(replication), the backup store (restores) and the backup bucket's Object Lock configuration (its listing). The
IAM conformance test (tests/infra/test_iam_conformance.py) runs a validation and a restore that ends with one
under that role.

A failover or failback ends with the validation of the region it made active, which may be the other one: the
role may also read that region's LIVE alias, invoke its versions (the health check) and read its watched alarms.
"""

from __future__ import annotations

import re

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo

from drcore.core.config import HEALTH_ALARM_KINDS, PERFORMANCE_ALARM_KINDS, alarm_name
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
    partition = Stack.of(function).partition
    buckets = [f"arn:{partition}:s3:::{bucket}" for bucket in dict.fromkeys((settings.data_bucket,
                                                                             settings.replica_bucket))]
    statements = [
        iam.PolicyStatement(sid="ReadPipelineNotifications", actions=["s3:GetBucketNotification"], resources=buckets),
        iam.PolicyStatement(sid="ReadBackupBucketControls", actions=list(BACKUP_CONTROL_READS),
                            resources=[backup_bucket.bucket.bucket_arn]),
        iam.PolicyStatement(sid="ReadAlertTopicEncryption", actions=["sns:GetTopicAttributes"],
                            resources=[alerting.alert_topic.topic_arn, alerting.emergency_topic.topic_arn]),
        *_other_region_reads(function, settings),
    ]
    role = function.role
    if role is None:
        raise ValueError("the recovery function has no role of its own to grant the validation's reads")
    # A managed policy of its own, as the replication grants: the recovery role's inline policy is near IAM's limit.
    policy = iam.ManagedPolicy(function, "ValidationGrants", statements=statements, roles=[role])
    NagSuppressions.add_resource_suppressions(policy, [NagPackSuppression(
        id="AwsSolutions-IAM5",
        reason="The health check of the other region (after a switch made it active) reads its LIVE alias and invokes "
        "the versions LIVE routes to, which are addressed by number and cannot be listed at synth time.",
        applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:lambda:[^:]+:<AWS::AccountId>:function:"
                                         rf"{re.escape(settings.protected_function)}:\*$/")])])


def _other_region_reads(function: lambda_.Function, settings: Settings) -> list[iam.PolicyStatement]:
    """The validation of the other region, when a switch made it the active one: its LIVE read and its versions
    invoked by number (the health check), its watched alarms read."""
    stack = Stack.of(function)
    other = settings.secondary_region if stack.region == settings.primary_region else settings.primary_region
    function_arn = f"arn:{stack.partition}:lambda:{other}:{stack.account}:function:{settings.protected_function}"
    alarms = [f"arn:{stack.partition}:cloudwatch:{other}:{stack.account}:alarm:"
              f"{alarm_name(settings.protected_function, settings.live_alias, kind)}"
              for kind in (*HEALTH_ALARM_KINDS, *PERFORMANCE_ALARM_KINDS)]
    return [
        iam.PolicyStatement(sid="ValidateOtherRegionLive", actions=["lambda:GetAlias"],
                            resources=[function_arn, f"{function_arn}:*"]),
        iam.PolicyStatement(sid="ProbeOtherRegionVersions", actions=["lambda:InvokeFunction"],
                            resources=[f"{function_arn}:*"]),
        iam.PolicyStatement(sid="ReadOtherRegionAlarms", actions=["cloudwatch:DescribeAlarms"], resources=alarms),
    ]
