"""The `failover` action as the recovery function builds it, in whichever region it runs.

The primary region is reached through clients bounded to PRIMARY_CALL_SECONDS (one attempt each), so a primary
that is down costs a failover seconds, not minutes; the secondary through the standard clients of its region; the
region record and the plans through the state table of the function's own region (a global table).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from drcore.aws.clients import ClientFactory, bounded_client_factory, client_factory
from drcore.aws.lambda_updates import LambdaUpdates
from drcore.core.config import BackupSettings, ControllerSettings, FailoverSettings, RegionSettings
from drcore.core.errors import InvalidRequest
from drcore.region.failover_action import (
    Checkpoint,
    FailoverAction,
    FailoverNames,
    SecondaryParts,
    SwitchGates,
)
from drcore.region.failover_notices import FailoverNotices
from drcore.region.failover_plan import SwitchValidation
from drcore.region.failover_survey import PrimaryView, SecondaryReadiness
from drcore.region.function_environment import FunctionEnvironment
from drcore.region.replication_health import ReplicationHealth
from drcore.region.replication_s3 import ReplicationGateway
from drcore.region.replication_wait import ReplicationWait
from drcore.region.switch_gate import SwitchGate
from drcore.state.backup_store import BackupStore
from drcore.state.region_record import RegionRecord
from drcore.wiring.shared import alert_publisher

# Each call to the primary region gives up after this long: its failure is part of the plan.
PRIMARY_CALL_SECONDS = 5


class FailoverNotConfigured(InvalidRequest):
    """The regions or the replica bucket are not set: nothing to fail over to."""


class UnconfiguredFailover:
    """Stands for the action where the regions are not configured: every request is refused, naming what is missing."""

    kind = "failover"

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        raise FailoverNotConfigured("failover is not configured: the primary region (DR_PRIMARY_REGION), the "
                                    "secondary region and the replica bucket must be set (cdk.json dr) and deployed")

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self.make_plan(None)[0]

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return self.make_plan(None)[0]

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        self.make_plan(None)
        raise AssertionError("unreachable: make_plan refuses")


def failover_action(settings: ControllerSettings, backup: BackupSettings, region: RegionSettings,
                    failover: FailoverSettings, client: ClientFactory, store: BackupStore, checkpoint: Checkpoint,
                    validation: SwitchValidation, primary: ClientFactory | None = None,
                    secondary: ClientFactory | None = None,
                    local_region: str | None = None) -> FailoverAction | UnconfiguredFailover:
    """`primary`, `secondary` and `local_region` default to the deployed ones (tests give their own)."""
    if not (failover.primary_region and region.secondary_region and region.replica_bucket):
        return UnconfiguredFailover()
    primary = primary or bounded_client_factory(failover.primary_region, PRIMARY_CALL_SECONDS)
    secondary = secondary or client_factory(region.secondary_region)
    names = FailoverNames(function_name=settings.protected_function, live_alias=settings.live_alias,
                          stable_alias=settings.stable_alias, data_bucket=backup.data_bucket,
                          replica_bucket=region.replica_bucket, primary_region=failover.primary_region,
                          secondary_region=region.secondary_region,
                          local_region=local_region or str(boto3.session.Session().region_name),
                          max_data_at_risk=failover.max_data_at_risk)
    secondary_lambda: Any = secondary("lambda")
    parts = SecondaryParts(
        lambda_client=secondary_lambda, s3=secondary("s3"),
        environment=FunctionEnvironment(LambdaUpdates(secondary_lambda), secondary_lambda),
        readiness=SecondaryReadiness(secondary_lambda, store, names.function_name, names.live_alias,
                                     names.stable_alias, names.replica_bucket))
    view = PrimaryView(primary("cloudwatch"), primary("lambda"), primary("s3"), names.function_name,
                       names.live_alias, settings.watched_alarms)
    replication = ReplicationHealth(ReplicationGateway(primary("s3")), ReplicationGateway(secondary("s3")),
                                    primary("cloudwatch"), backup.data_bucket, region)
    record = RegionRecord(client("dynamodb"), settings.state_table, names.function_name, names.primary_region)
    notices = FailoverNotices(alert_publisher(settings, client), client("sns"), failover.stakeholder_topic_arn)
    gates = None if not failover.switch_gate_queue else SwitchGates(
        primary=SwitchGate(primary("sqs"), failover.switch_gate_queue, failover.switch_gate_settle_seconds),
        replica=SwitchGate(secondary("sqs"), failover.switch_gate_queue, failover.switch_gate_settle_seconds))
    replication_wait = ReplicationWait(ReplicationGateway(primary("s3")), backup.data_bucket,
                                       region.replication_max_latency_seconds, failover.replication_wait_seconds)
    return FailoverAction(names, record, view, primary("s3"), replication, parts, notices, checkpoint, validation,
                          gates, replication_wait)
