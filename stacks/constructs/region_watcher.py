"""Detecting a region outage: the region watcher in the standby stack, its schedule, heartbeat alarm and grants.

Every minute the region watcher (functions/region_watcher) looks at the primary region from the secondary one: the
primary LIVE's health check (its alias read, the versions it routes to invoked by number) and the primary's
watched alarms, all across regions. It keeps its watch in this region's replica of the state table, reads the region
record there, alerts on this region's topics, and asks this region's recovery function for a failover plan (and,
with `failover.automatic`, confirms it): so nothing it needs is in the region it watches.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from drcore.core.config import FailoverEnvVar, RegionEnvVar
from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.cdk_types import role_of
from stacks.constructs.controller_functions import MAX_EVENT_AGE, RETRY_ATTEMPTS, ControllerFunctions, service_name
from stacks.constructs.failover import failover_environment
from stacks.constructs.watchers import TICK_INTERVAL, controller_environment, every_version_of, heartbeat_alarm
from stacks.settings import Settings

REGION_WATCHER_HANDLER = "region_watcher.handler.handler"
REGION_WATCHER_SERVICE = service_name(REGION_WATCHER_HANDLER)
# Long enough for the recovery function to confirm a failover the watcher asks for (synchronously: it waits for
# the answer, drcore.wiring.region_watcher), which the recovery function's own timeout bounds too.
REGION_WATCHER_TIMEOUT = Duration.minutes(5)
# One tick at a time: a tick that waits for a failover's confirm holds back the next rather than racing it.
REGION_WATCHER_CONCURRENCY = 1
# What a tick does in this region's replica of the state table: its watch item read and written, the region record
# read (a query of its partition).
WATCH_ACCESS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query")


class RegionWatcher(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: ControllerFunctions,
        state_table: dynamodb.ITable,
        alerting: Alerting,
        alarms: LiveAliasAlarms,
        recovery_function: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        primary, secondary = settings.primary_region, settings.secondary_region
        environment = {
            # The alarm names are the primary's too: both stacks derive them from the protected function's name.
            **controller_environment(settings, state_table, alerting, alarms),
            **failover_environment(settings),
            FailoverEnvVar.RECOVERY_FUNCTION_NAME.value: recovery_function.function_name,
            RegionEnvVar.SECONDARY_REGION.value: secondary,
        }
        self.function = functions.add(
            "RegionWatcher",
            handler=REGION_WATCHER_HANDLER,
            description=f"Watches {settings.protected_function} in {primary} from {secondary}; alerts with a "
            "ready failover plan when the primary stays unhealthy (and confirms it, if automatic)",
            environment=environment,
            timeout=REGION_WATCHER_TIMEOUT,
            reserved_concurrency=REGION_WATCHER_CONCURRENCY,
        )
        self._grant(settings, state_table, alerting, alarms, recovery_function)
        events.Rule(
            self,
            "Tick",
            description=f"Every minute: probe {settings.protected_function} in {primary}, read its alarms",
            schedule=events.Schedule.rate(TICK_INTERVAL),
            targets=[targets.LambdaFunction(self.function, dead_letter_queue=functions.failed_events,
                                            retry_attempts=RETRY_ATTEMPTS, max_event_age=MAX_EVENT_AGE)],
        )
        self.heartbeat_alarm = heartbeat_alarm(
            self, "RegionWatcher", settings=settings, service=REGION_WATCHER_SERVICE,
            alert_topic=alerting.alert_topic,
            stopped=f"an outage of {settings.protected_function} in {primary} is not being detected",
        )

    def _grant(self, settings: Settings, state_table: dynamodb.ITable, alerting: Alerting, alarms: LiveAliasAlarms,
               recovery_function: lambda_.IFunction) -> None:
        function = self.function
        stack = Stack.of(self)
        primary = settings.primary_region
        in_primary = f"arn:{stack.partition}:lambda:{primary}:{stack.account}:function:{settings.protected_function}"
        state_table.grant(function, *WATCH_ACCESS)
        alerting.alert_topic.grant_publish(function)
        alerting.emergency_topic.grant_publish(function)
        statements = [
            # GetAlias is authorized against the unqualified function (the alias is a parameter).
            iam.PolicyStatement(sid="ReadPrimaryLive", actions=["lambda:GetAlias"], resources=[in_primary]),
            # The health probe invokes the versions LIVE routes to by number (drcore.rollback.health_probe), which
            # IAM cannot tell from alias names: every qualifier of the primary function.
            iam.PolicyStatement(sid="ProbePrimaryLiveVersions", actions=["lambda:InvokeFunction"],
                                resources=[f"{in_primary}:*"]),
            iam.PolicyStatement(sid="ReadPrimaryAlarmStates", actions=["cloudwatch:DescribeAlarms"], resources=[
                f"arn:{stack.partition}:cloudwatch:{primary}:{stack.account}:alarm:{name}"
                for name in alarms.health_names + alarms.performance_names]),
            iam.PolicyStatement(sid="AskRecoveryForFailover", actions=["lambda:InvokeFunction"],
                                resources=[recovery_function.function_arn]),
        ]
        for statement in statements:
            function.add_to_role_policy(statement)
        NagSuppressions.add_resource_suppressions(role_of(function), [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="The health probe invokes the primary function's versions LIVE routes to, addressed by "
                "number and unknown at synth time; the one function, in the primary region.",
                applies_to=[every_version_of(settings)],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="kms:GenerateDataKey* is what SNS needs from a publisher to a KMS-encrypted topic; it is "
                "granted on the alert topics' key only.",
                applies_to=["Action::kms:GenerateDataKey*"],
            ),
        ], apply_to_children=True)
