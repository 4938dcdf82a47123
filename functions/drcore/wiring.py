"""Builds the controller's collaborators from settings: the one place that creates boto3 clients.

Clients are built on a function's first invocation and reused while the execution environment is
warm; nothing is created at import time. botocore picks up AWS_ENDPOINT_URL, which is how the
embedded drill points the same code at a local moto server.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp

from drcore.alarms import AlarmBoard
from drcore.alerts import AlertPublisher
from drcore.backup_requests import BackupRequest
from drcore.backup_runner import BackupMetrics, BackupRunner, component_runners
from drcore.backup_store import BackupStore
from drcore.bucket_restore import BucketRestorer
from drcore.bucket_snapshots import BucketSnapshotter
from drcore.backup_catalog import BackupCatalog
from drcore.config import BackupSettings, ControllerSettings, DrillSettings, RecoverySettings
from drcore.drill import RUN_TTL_SECONDS, DrillRecorder, DrillRunner
from drcore.function_backup import FunctionBackup
from drcore.logs_backup import LogsBackup
from drcore.models import to_iso, utc_now
from drcore.plans import PlanBook, TwoStepFlow
from drcore.function_restore import FunctionRestorer
from drcore.manual_actions import ComprehensiveRollback, RecoverFromBackup, RecoverStack, RestoreS3
from drcore.restore_action import (
    ComprehensiveRollbackAction,
    FunctionRestoreAction,
    S3RestoreAction,
    StackRecoveryAction,
)
from drcore.stack_recovery import StackRecovery
from drcore.retention import prune
from drcore.stack_backup import StackBackup
from drcore.controller import AliasController
from drcore.function_metrics import FunctionMetrics, HealthProbe, VersionGauges
from drcore.lambda_aliases import AliasGateway
from drcore.recovery import RecoveryService
from drcore.state_store import ControllerStateStore

# Standard retries back off on throttling; a short connect timeout keeps a rollback from hanging on
# one bad connection while Lambda's own retry and the tick remain as the safety net.
AWS_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


@dataclass(frozen=True)
class WatcherServices:
    controller: AliasController
    health_probe: HealthProbe
    version_gauges: VersionGauges


def _client_factory() -> Any:
    session = boto3.session.Session()
    return lambda service: session.client(service, config=AWS_CLIENT_CONFIG)


def _alerts(settings: ControllerSettings, client: Any) -> AlertPublisher:
    return AlertPublisher(client("sns"), settings.alert_topic_arn, settings.emergency_topic_arn)


def _controller(settings: ControllerSettings, client: Any) -> tuple[AliasController, AliasGateway, AlarmBoard]:
    lambda_client, cloudwatch = client("lambda"), client("cloudwatch")
    aliases = AliasGateway(lambda_client, settings.protected_function)
    alarm_board = AlarmBoard(cloudwatch)
    controller = AliasController(
        settings=settings,
        store=ControllerStateStore(client("dynamodb"), settings.state_table),
        aliases=aliases,
        alarm_board=alarm_board,
        alerts=_alerts(settings, client),
        function_metrics=FunctionMetrics(cloudwatch, settings.protected_function, settings.live_alias),
    )
    return controller, aliases, alarm_board


@lru_cache(maxsize=4)
def watcher_services(settings: ControllerSettings, endpoint_url: str | None = None) -> WatcherServices:
    """The watcher's dependencies; `endpoint_url` is part of the cache key so a changed endpoint rebuilds."""
    client = _client_factory()
    controller, aliases, _ = _controller(settings, client)
    probe = HealthProbe(aliases, client("cloudwatch"), settings.metrics_namespace, settings.protected_function,
                        settings.live_alias)
    gauges = VersionGauges(client("cloudwatch"), settings.metrics_namespace, settings.protected_function)
    return WatcherServices(controller=controller, health_probe=probe, version_gauges=gauges)


@lru_cache(maxsize=4)
def recovery_service(settings: ControllerSettings, backup: BackupSettings, recovery: RecoverySettings,
                     function_name: str, endpoint_url: str | None = None) -> RecoveryService:
    """The recovery function's service; `function_name` is its own, to continue long actions."""
    client = _client_factory()
    controller, _, alarm_board = _controller(settings, client)
    s3 = s3_client(backup.copy_concurrency)
    store = BackupStore(s3, backup.backup_bucket)
    state = ControllerStateStore(client("dynamodb"), settings.state_table)
    lambda_client = client("lambda")

    def journal(kind: str, plan_id: str, request: Any, result: dict[str, Any]) -> None:
        at = to_iso(utc_now())
        verified = result.get("ok", (result.get("verification") or {}).get("ok", True))
        state.append_journal(settings.protected_function, entry_id=plan_id, at=at, action=kind, cause=request.cause(),
                             result="applied" if verified else "applied, verification failed",
                             details={"plan_id": plan_id, **_figures(result)})

    flow = TwoStepFlow(PlanBook(state, settings.protected_function, recovery.plan_ttl_seconds), journal,
                       _self_invoker(lambda_client, function_name))
    restorer = bucket_restorer(s3, store, backup.copy_concurrency)
    catalog = BackupCatalog(store, backup, recovery)
    data = S3RestoreAction(restorer, backup.data_bucket, recovery.restore_target_buckets)
    function = FunctionRestoreAction(FunctionRestorer(lambda_client, store, settings.protected_function),
                                     controller, settings.protected_function)
    stack = StackRecoveryAction(StackRecovery(client("cloudformation"), store, backup.pipeline_stack))
    destructive = {RestoreS3: data, RecoverFromBackup: function, RecoverStack: stack,
                   ComprehensiveRollback: ComprehensiveRollbackAction(catalog, function, data, stack)}
    return RecoveryService(settings, controller, alarm_board, catalog, flow, destructive)


def _iso_timestamp(value: Any) -> datetime:
    """botocore's default timestamp parser goes through dateutil: about 37 µs a timestamp, a third of the
    time a listing page of 1,000 versions takes to parse, on a snapshot's critical path. S3's ISO 8601
    timestamps parse with the standard library in well under a microsecond; anything else goes to
    botocore's own parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


def bucket_restorer(s3: Any, store: BackupStore, concurrency: int) -> BucketRestorer:
    """Restores of buckets, each taking its safety snapshot with a snapshotter of the target."""
    return BucketRestorer(s3, store, concurrency=concurrency,
                          snapshots_of=lambda bucket: BucketSnapshotter(s3, store, bucket, concurrency=concurrency))


def s3_client(concurrency: int) -> Any:
    """The S3 client of snapshots and restores: a connection per concurrent copy (or copies would queue for
    the pool), and listings parsed without dateutil."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_iso_timestamp)
    return boto3.session.Session(botocore_session=session).client("s3", config=AWS_CLIENT_CONFIG.merge(
        Config(max_pool_connections=concurrency + 4)))


def _self_invoker(lambda_client: Any, function_name: str) -> Any:
    """Invokes this function again, asynchronously, to continue work that outlasts an invocation."""
    def invoke(event: dict[str, Any]) -> None:
        lambda_client.invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode())
    return invoke


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps a result's figures and ids, not its key lists."""
    return {key: value for key, value in result.items() if not isinstance(value, (list, tuple)) and len(str(value)) < 2000}


@lru_cache(maxsize=4)
def backup_runner(settings: BackupSettings, function_name: str, endpoint_url: str | None = None) -> BackupRunner:
    """The backup function's runner; `function_name` is the backup function's own, for continuations."""
    client = _client_factory()
    s3 = s3_client(settings.copy_concurrency)
    store = BackupStore(s3, settings.backup_bucket)
    lambda_client = client("lambda")
    invoke_self = _self_invoker(lambda_client, function_name)

    def continue_snapshot(request: BackupRequest) -> None:
        invoke_self(request.model_dump(mode="json", exclude_none=True))

    runners = component_runners(
        function_backup=FunctionBackup(lambda_client, store, settings.protected_function),
        stack_backup=StackBackup(client("cloudformation"), store, settings.pipeline_stack),
        logs_backup=LogsBackup(client("logs"), store, settings.function_log_group),
        snapshotter=BucketSnapshotter(s3, store, settings.data_bucket, concurrency=settings.copy_concurrency),
        after_snapshot=lambda: asdict(prune(store, settings.data_bucket, settings.retention, utc_now())),
        publish_version=settings.publish_backup_version,
    )
    return BackupRunner(settings, run_component=runners,
                        journal=ControllerStateStore(client("dynamodb"), settings.state_table),
                        metrics=BackupMetrics(client("cloudwatch"), settings.metrics_namespace),
                        continue_snapshot=continue_snapshot)


@lru_cache(maxsize=4)
def drill_runner(settings: ControllerSettings, backup: BackupSettings, recovery: RecoverySettings, drill: DrillSettings,
                 function_name: str, endpoint_url: str | None = None) -> DrillRunner:
    """The drill function's runner; `function_name` is its own, to continue a drill in a new invocation."""
    client = _client_factory()
    s3 = s3_client(backup.copy_concurrency)
    store = BackupStore(s3, backup.backup_bucket)
    state = ControllerStateStore(client("dynamodb"), settings.state_table)
    lambda_client = client("lambda")
    recorder = DrillRecorder(store, state, settings.protected_function, client("cloudwatch"), settings.metrics_namespace,
                             _alerts(settings, client))
    return DrillRunner(
        function_name=settings.protected_function, data_bucket=backup.data_bucket,
        scratch_bucket=drill.scratch_bucket, scratch_function=drill.scratch_function, environment=drill.environment,
        rto_seconds=dict(drill.rto_seconds), catalog=BackupCatalog(store, backup, recovery),
        alarm_board=AlarmBoard(client("cloudwatch")), watched_alarms=settings.watched_alarms, state=state,
        function_restorer=FunctionRestorer(lambda_client, store, settings.protected_function),
        bucket_restorer=bucket_restorer(s3, store, backup.copy_concurrency),
        stack_recovery=StackRecovery(client("cloudformation"), store, backup.pipeline_stack), s3_client=s3,
        lambda_client=lambda_client, runs=PlanBook(state, settings.protected_function, RUN_TTL_SECONDS), recorder=recorder,
        continue_later=_self_invoker(lambda_client, function_name))
