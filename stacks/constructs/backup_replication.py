"""Replication of the backup bucket to its copy in secondary_region (the standby stack's), so that a region outage
leaves every backup readable where the standby controller runs.

The copy is named in settings (Settings.backup_copy_bucket) and its key by alias (Settings.backup_copy_key_alias),
so this rule names both without a reference to the other stack; the standby stack is deployed first (app.py).
Objects are SSE-KMS on both sides: S3 replicates them (SourceSelectionCriteria) and encrypts the replicas with the
copy's own key (ReplicaKmsKeyID, an alias ARN). Delete markers are not replicated: what retention hides here stays
readable there. Replication Time Control (15 minutes, with its metrics) bounds how far the copy falls behind.

S3 replicates as a role of this stack that can do nothing else: read the backup bucket's object versions for
replication, write replicas into the copy (no deletes), decrypt with the backup key through S3 here, and encrypt
with the copy's key (chosen by its alias: kms:ResourceAliases) through S3 there.
"""

from __future__ import annotations

import re

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.cdk_types import default_resource
from stacks.settings import Settings

RULE_ID = "BackupCopy"
# S3 Replication Time Control's one threshold: 99.99% of objects replicated within 15 minutes.
REPLICATION_TIME_MINUTES = 15
SOURCE_BUCKET_READS = ("s3:GetReplicationConfiguration", "s3:ListBucket")
# What S3 reads of each version it replicates: the object, its ACL and tags, and (Object Lock) its retention
# and legal hold, which the replica keeps.
SOURCE_OBJECT_READS = (
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
)
# Replicas and their tags; never s3:ReplicateDelete (delete marker replication is disabled).
DESTINATION_OBJECT_WRITES = ("s3:ReplicateObject", "s3:ReplicateTags")
# With S3 Bucket Keys on the copy, S3 asks for a data key as well as an encryption.
DESTINATION_KEY_USE = ("kms:Encrypt", "kms:GenerateDataKey")
# How cdk-nag writes the account id in a resource it names.
NAG_ACCOUNT = "<AWS::AccountId>"


def backup_copy_arn(scope: Construct, settings: Settings) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:s3:::{settings.backup_copy_bucket(stack.account)}"


def backup_copy_key_alias_arn(scope: Construct, settings: Settings) -> str:
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:kms:{settings.secondary_region}:{stack.account}:{settings.backup_copy_key_alias()}"


class BackupReplication(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, backup_bucket: BackupBucket) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        source = backup_bucket.bucket
        copy = backup_copy_arn(self, settings)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            description=f"Replicates the backups of {settings.protected_function} to {settings.secondary_region}",
        )
        statements = [
            iam.PolicyStatement(sid="ReadReplicationSource", actions=list(SOURCE_BUCKET_READS),
                                resources=[source.bucket_arn]),
            iam.PolicyStatement(sid="ReadVersionsToReplicate", actions=list(SOURCE_OBJECT_READS),
                                resources=[source.arn_for_objects("*")]),
            iam.PolicyStatement(sid="WriteReplicas", actions=list(DESTINATION_OBJECT_WRITES), resources=[f"{copy}/*"]),
            iam.PolicyStatement(
                sid="DecryptBackupsThroughS3",
                actions=["kms:Decrypt"],
                resources=[backup_bucket.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="EncryptReplicasWithCopyKey",
                actions=list(DESTINATION_KEY_USE),
                # The copy's key id is the standby stack's; its alias is known here.
                resources=[f"arn:{stack.partition}:kms:{settings.secondary_region}:{stack.account}:key/*"],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{settings.secondary_region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": settings.backup_copy_key_alias()},
                },
            ),
        ]
        policy = iam.Policy(self, "Policy", statements=statements, roles=[self.role])
        default_resource(source, s3.CfnBucket).replication_configuration = (
            s3.CfnBucket.ReplicationConfigurationProperty(
                role=self.role.role_arn,
                rules=[
                    s3.CfnBucket.ReplicationRuleProperty(
                        id=RULE_ID,
                        status="Enabled",
                        priority=0,
                        filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=""),
                        delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Disabled"),
                        source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                            sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")
                        ),
                        destination=s3.CfnBucket.ReplicationDestinationProperty(
                            bucket=copy,
                            encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(
                                replica_kms_key_id=backup_copy_key_alias_arn(self, settings)
                            ),
                            replication_time=s3.CfnBucket.ReplicationTimeProperty(
                                status="Enabled",
                                time=s3.CfnBucket.ReplicationTimeValueProperty(minutes=REPLICATION_TIME_MINUTES),
                            ),
                            metrics=s3.CfnBucket.MetricsProperty(
                                status="Enabled",
                                event_threshold=s3.CfnBucket.ReplicationTimeValueProperty(
                                    minutes=REPLICATION_TIME_MINUTES
                                ),
                            ),
                        ),
                    )
                ],
            )
        )
        bucket_id = stack.get_logical_id(default_resource(source, s3.CfnBucket))
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="S3 replicates every object version of the backup bucket, whose keys are made at run "
                    "time: reads for replication of that bucket's objects only.",
                    applies_to=[f"Resource::<{bucket_id}.Arn>/*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Replicas of every backup are written into the copy in the secondary region "
                    "(s3:ReplicateObject and ReplicateTags only, no deletes); its keys are made at run time.",
                    applies_to=[RegexAppliesTo(
                        regex=rf"/^Resource::arn:[^:]+:s3:::{re.escape(settings.backup_copy_bucket(NAG_ACCOUNT))}\/\*$/"
                    )],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The copy's key is created by the standby stack and known here only by its alias: any "
                    "key of the secondary region is named, and the kms:ResourceAliases condition holds the grant "
                    "to the one with the copy's alias, used through S3 only.",
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::arn:[^:]+:kms:[^:]+:<AWS::AccountId>:key\/\*$/")],
                ),
            ],
        )
