"""The controller's single source of truth: controller records, idempotency records and the journal.

A DynamoDB global table: one replica in primary_region (this stack's), one in secondary_region, so that what a
failover needs is readable and writable in the region that is up without the other. Replication between them is
last-writer-wins per item; the controller never lets two regions write the same item (README, "Region
failover": one writer per item, immutable claims), so that rule never has to choose.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from stacks.settings import Settings

# The item attribute DynamoDB's TTL reads: idempotency records expire, the journal does not.
TTL_ATTRIBUTE = "expires_at"
# What a function does with the table: item reads and writes, and queries of one partition (the journal).
STATE_ACCESS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
# What the backup function does with it: append to the journal (a conditional PutItem), nothing else.
JOURNAL_APPEND = ("dynamodb:PutItem",)


class StateTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        # Each replica keeps the protections: point-in-time recovery and deletion protection (the journal is the
        # audit trail of every rollback: neither a stack deletion nor a stray console click may take it away).
        recovery = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)
        # Not "Table", the id of the single-region table this replaced: CloudFormation cannot change a resource's
        # type in place, so the global table is a new resource and the old table leaves the stack, retained
        # (README, "The standby stack": what an existing deployment does with it).
        self.table = dynamodb.TableV2(
            self,
            "GlobalTable",
            table_name=settings.state_table,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=recovery,
            deletion_protection=True,
            replicas=[
                dynamodb.ReplicaTableProps(
                    region=settings.secondary_region,
                    point_in_time_recovery_specification=recovery,
                    deletion_protection=True,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )


def state_table_replica(scope: Construct, construct_id: str, settings: Settings) -> dynamodb.ITableV2:
    """The state table's replica in the region of `scope`'s stack (the standby's), addressed by name: its ARN is
    this region's, and no reference crosses to the stack that owns the global table."""
    return dynamodb.TableV2.from_table_name(scope, construct_id, settings.state_table)
