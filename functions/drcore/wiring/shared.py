"""Pieces more than one function's wiring builds the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from drcore.aws.alarms import AlarmBoard
from drcore.aws.aliases import AliasGateway
from drcore.aws.alerts import AlertPublisher
from drcore.aws.clients import ClientFactory
from drcore.aws.metrics import FunctionMetrics
from drcore.core.config import ControllerSettings
from drcore.core.models import Clock, utc_now
from drcore.rollback.controller import AliasController
from drcore.state.store import ControllerStateStore


def alert_publisher(settings: ControllerSettings, client: ClientFactory) -> AlertPublisher:
    return AlertPublisher(client("sns"), settings.alert_topic_arn, settings.emergency_topic_arn)


def alias_controller(settings: ControllerSettings, client: ClientFactory,
                     clock: Clock = utc_now) -> tuple[AliasController, AliasGateway, AlarmBoard]:
    lambda_client, cloudwatch = client("lambda"), client("cloudwatch")
    aliases = AliasGateway(lambda_client, settings.protected_function)
    alarm_board = AlarmBoard(cloudwatch)
    controller = AliasController(
        settings=settings,
        store=ControllerStateStore(client("dynamodb"), settings.state_table),
        aliases=aliases,
        alarm_board=alarm_board,
        alerts=alert_publisher(settings, client),
        function_metrics=FunctionMetrics(cloudwatch, settings.protected_function, settings.live_alias),
        clock=clock,
    )
    return controller, aliases, alarm_board


def self_invoker(lambda_client: Any, function_name: str) -> Callable[[dict[str, Any]], None]:
    """Invokes this function again, asynchronously, to continue work that outlasts an invocation."""
    def invoke(event: dict[str, Any]) -> None:
        lambda_client.invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode())
    return invoke
