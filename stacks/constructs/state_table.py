"""The controller's single source of truth: controller records, idempotency records and the journal."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

# The item attribute DynamoDB's TTL reads: idempotency records expire, the journal does not.
TTL_ATTRIBUTE = "expires_at"
# What a function does with the table: item reads and writes, and queries of one partition (the journal).
STATE_ACCESS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
# What the backup function does with it: append to the journal (a conditional PutItem), nothing else.
JOURNAL_APPEND = ("dynamodb:PutItem",)


class StateTable(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            # The journal is the audit trail of every rollback: neither a stack deletion nor a stray
            # console click may take it away.
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
