"""Builds the controller's collaborators from settings: the one place that creates boto3 clients.

Clients are built on a function's first invocation and reused while the execution environment is
warm; nothing is created at import time. botocore picks up AWS_ENDPOINT_URL, which is how the
embedded drill points the same code at a local moto server.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from drcore.alarms import AlarmBoard
from drcore.alerts import AlertPublisher
from drcore.config import ControllerSettings
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


def _controller(settings: ControllerSettings, client: Any) -> tuple[AliasController, AliasGateway, AlarmBoard]:
    lambda_client, cloudwatch = client("lambda"), client("cloudwatch")
    aliases = AliasGateway(lambda_client, settings.protected_function)
    alarm_board = AlarmBoard(cloudwatch)
    controller = AliasController(
        settings=settings,
        store=ControllerStateStore(client("dynamodb"), settings.state_table),
        aliases=aliases,
        alarm_board=alarm_board,
        alerts=AlertPublisher(client("sns"), settings.alert_topic_arn, settings.emergency_topic_arn),
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
def recovery_service(settings: ControllerSettings, endpoint_url: str | None = None) -> RecoveryService:
    controller, _, alarm_board = _controller(settings, _client_factory())
    return RecoveryService(settings, controller, alarm_board)
