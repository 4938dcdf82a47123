"""The DR controller in the primary region: state, alerting, the LIVE alias's alarms and the watchers."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.controller_functions import ControllerFunctions
from stacks.constructs.state_table import StateTable
from stacks.constructs.watchers import Watchers
from stacks.settings import Settings


class ControllerStack(Stack):
    def __init__(self, scope: Construct, settings: Settings) -> None:
        super().__init__(
            scope,
            settings.controller_stack,
            description=f"Disaster-recovery controller of {settings.protected_function}: automatic rollback",
            # The alarms, the alias ARNs and the Powertools layer parameter are all regional.
            env=Environment(region=settings.primary_region),
        )
        state = StateTable(self, "State")
        alerting = Alerting(self, "Alerting", emails=settings.alert_emails)
        functions = ControllerFunctions(self, "Functions", settings=settings, alert_topic=alerting.alert_topic)
        alarms = LiveAliasAlarms(self, "LiveAliasAlarms", settings=settings)
        watchers = Watchers(
            self,
            "Watchers",
            settings=settings,
            functions=functions,
            state_table=state.table,
            alerting=alerting,
            alarms=alarms,
        )

        outputs = {
            "HealthWatcherName": (watchers.health_watcher.function_name, "Invoked by health alarms and the tick"),
            "PerformanceWatcherName": (
                watchers.performance_watcher.function_name,
                "Invoked by duration alarms and the tick",
            ),
            "StateTableName": (state.table.table_name, "Controller records, idempotency records and the journal"),
            "AlertTopicArn": (alerting.alert_topic.topic_arn, "Severity 2 to 4 alerts"),
            "EmergencyTopicArn": (alerting.emergency_topic.topic_arn, "Severity 1 alerts"),
            "FailedEventsQueueUrl": (functions.failed_events.queue_url, "Events the controller gave up on"),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
