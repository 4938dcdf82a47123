"""The switch gate of a region (drcore.region.switch_gate): the queue that records, during a failover or failback only,
the uploads to this region's bucket that no region processes.

For the moment of a switch, the bucket's pipeline entry (its ObjectCreated events to the protected function's LIVE)
is swapped, in one PutBucketNotificationConfiguration, for an entry sending the same events to this queue; the
recovery function then drains the gates of both regions to learn exactly which uploads neither processed. So:

- the queue has the same name in each region (`failover.switch_gate_queue`), and each stack's recovery role may
  consume both (received, deleted, addressed by name, its depth read), by ARNs built from that name;
- only S3 may send to it, and only for this region's bucket (the data bucket in the primary, the replica in the
  standby) of this account (aws:SourceArn, aws:SourceAccount): another bucket's events would be taken for uploads;
- SQS-managed encryption: S3 cannot send to a queue encrypted with the AWS-managed KMS key (aws/sqs), and a key of
  our own would need S3 in its key policy for nothing the SQS-managed one does not give.

No alarm watches it: it is empty outside a switch, and the recovery function drains it itself as part of the switch.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.settings import Settings

# What the recovery function does with either region's gate: address it by name, read its depth, receive and
# delete what a switch recorded. Never send (only S3 records) and never purge (a purge would lose uploads).
GATE_CONSUMPTION = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
# A switch drains the gate within minutes; four days (SQS's default) keep what a switch that crashed half-way
# recorded until it is resumed, from either region.
GATE_RETENTION = Duration.days(4)
S3_SERVICE = "s3.amazonaws.com"


def switch_gate_queue_arn(stack: Stack, settings: Settings, region: str) -> str:
    """The gate's ARN in `region`, built from its name: each stack addresses the other region's without a reference."""
    return f"arn:{stack.partition}:sqs:{region}:{stack.account}:{settings.failover.switch_gate_queue}"


class SwitchGate(Construct):
    """This region's gate, which S3 may fill from `bucket` only, and `recovery_role`'s consumption of both gates."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, bucket: str,
                 recovery_role: iam.IRole) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=settings.failover.switch_gate_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=GATE_RETENTION,
        )
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="S3RecordsTheBucketsUploads",
            principals=[iam.ServicePrincipal(S3_SERVICE)],
            actions=["sqs:SendMessage"],
            resources=[self.queue.queue_arn],
            conditions={
                "ArnEquals": {"aws:SourceArn": f"arn:{stack.partition}:s3:::{bucket}"},
                "StringEquals": {"aws:SourceAccount": stack.account},
            },
        ))
        NagSuppressions.add_resource_suppressions(self.queue, [
            NagPackSuppression(
                id="AwsSolutions-SQS3",
                reason="The recovery function drains the switch gate itself during the switch; a message it could "
                "not take would be an upload no region processed, which a dead-letter queue would hide from it.",
            ),
        ])
        # A managed policy of its own, as the failover's grants: the recovery role's inline policy is near IAM's limit.
        iam.ManagedPolicy(self, "RecoveryDrainsBothGates", roles=[recovery_role], statements=[
            iam.PolicyStatement(
                sid="DrainSwitchGates",
                actions=list(GATE_CONSUMPTION),
                resources=[switch_gate_queue_arn(stack, settings, region)
                           for region in (settings.primary_region, settings.secondary_region)],
            ),
        ])
