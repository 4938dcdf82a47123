"""The alias controller and its alert publisher, as the watchers, the recovery function and the drill build them."""

from __future__ import annotations

from drcore.aws.alarms import AlarmBoard
from drcore.aws.alerts import AlertPublisher
from drcore.aws.aliases import AliasGateway
from drcore.aws.clients import ClientFactory
from drcore.aws.metrics import FunctionMetrics
from drcore.core.controller_settings import ControllerSettings
from drcore.core.models import Clock, utc_now
from drcore.rollback.controller import AliasController
from drcore.rollback.operations import AfterFlip
from drcore.state.store import ControllerStateStore


def alert_publisher(settings: ControllerSettings, client: ClientFactory) -> AlertPublisher:
    return AlertPublisher(client("sns"), settings.alert_topic_arn, settings.emergency_topic_arn)


def alias_controller(settings: ControllerSettings, client: ClientFactory, clock: Clock = utc_now,
                     after_flip: AfterFlip | None = None) -> tuple[AliasController, AliasGateway, AlarmBoard]:
    lambda_client, cloudwatch = client("lambda"), client("cloudwatch")
    aliases = AliasGateway(lambda_client, settings.protected_function)
    alarm_board = AlarmBoard(cloudwatch)
    controller = AliasController(
        settings=settings,
        store=ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope),
        aliases=aliases,
        alarm_board=alarm_board,
        alerts=alert_publisher(settings, client),
        function_metrics=FunctionMetrics(cloudwatch, settings.protected_function, settings.live_alias),
        clock=clock,
        after_flip=after_flip,
    )
    return controller, aliases, alarm_board
