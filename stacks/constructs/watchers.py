"""Automatic rollback: health_watcher and performance_watcher, what triggers them and what they may do.

Each watcher is triggered three ways (DESIGN.md section 2): directly as its alarms' action, by EventBridge
when those alarms go to ALARM, and by an every-minute tick that reconciles whatever an edge missed. Each tick
it completes is counted (its heartbeat); an alarm per watcher alerts when the ticks stop.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import EnvVar
from drcore.core.controller_settings import WATCHER_TIMEOUT_SECONDS
from drcore.core.metric_names import HEARTBEAT_METRIC, SERVICE_DIMENSION
from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.cdk_types import role_of
from stacks.constructs.controller_functions import MAX_EVENT_AGE, RETRY_ATTEMPTS, ControllerFunctions, service_name
from stacks.constructs.metric_publishing import metrics_publishing
from stacks.constructs.state_table import STATE_ACCESS
from stacks.settings import Settings

HEALTH_WATCHER_HANDLER = "health_watcher.handler.handler"
PERFORMANCE_WATCHER_HANDLER = "performance_watcher.handler.handler"
# The Powertools service names, the `service` dimension of the Rollbacks and Promotions metrics.
WATCHER_SERVICES = tuple(service_name(handler) for handler in (HEALTH_WATCHER_HANDLER, PERFORMANCE_WATCHER_HANDLER))

PROTECTED_FUNCTION_READS = (
    "lambda:GetAlias",
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:ListVersionsByFunction",
    "lambda:ListAliases",
)
METRIC_READS = ("cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics")
# A bucket's notification configuration, read and merged (the pipeline's entry only): the health watcher's fence,
# and a failover's switch (stacks/constructs/failover.py).
NOTIFICATION_CONFIGURATION = ("s3:GetBucketNotification", "s3:PutBucketNotification")
# How often the schedule ticks both watchers...
TICK_INTERVAL = Duration.minutes(1)
# ...and how many ticks in a row may go missing before a watcher's heartbeat alarm alerts: one late or failed
# tick is noise (EventBridge delivers late now and then, Lambda retries), five in a row is a watcher that stopped.
HEARTBEAT_MISSED_TICKS = 5


class Watchers(Construct):
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
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._failed_events = functions.failed_events
        environment = controller_environment(settings, state_table, alerting, alarms)
        target = f"{settings.protected_function}:{settings.live_alias}"

        self.health_watcher = functions.add(
            "HealthWatcher",
            handler=HEALTH_WATCHER_HANDLER,
            description=f"Rolls {target} back on health alarms, probes it every minute, promotes a baked candidate",
            environment=environment,
            timeout=Duration.seconds(WATCHER_TIMEOUT_SECONDS),
            reserved_concurrency=settings.reserved_concurrency.health_watcher,
        )
        self.performance_watcher = functions.add(
            "PerformanceWatcher",
            handler=PERFORMANCE_WATCHER_HANDLER,
            description=f"Rolls {target} back on duration alarms and on regressions against STABLE",
            environment=environment,
            timeout=Duration.seconds(WATCHER_TIMEOUT_SECONDS),
            reserved_concurrency=settings.reserved_concurrency.performance_watcher,
        )

        for watcher in (self.health_watcher, self.performance_watcher):
            grant_alias_control(
                watcher, settings=settings, state_table=state_table, alerting=alerting, alarms=alarms
            )
            # The ticks publish the health probe's results and the versions LIVE and STABLE serve.
            watcher.add_to_role_policy(metrics_publishing("PublishControllerMetrics", settings))
            self._explain_wildcards(watcher)
        # Only the health watcher's tick invokes the protected function, with the seed's health-check payload.
        grant_live_probe(self.health_watcher, settings)
        grant_fence(self.health_watcher, settings)

        self._trigger_on_alarms(self.health_watcher, "HealthAlarmStateChange", alarms.health, alarms.health_names)
        self._trigger_on_alarms(
            self.performance_watcher, "PerformanceAlarmStateChange", alarms.performance, alarms.performance_names
        )
        events.Rule(
            self,
            "Tick",
            description="Every minute: probe LIVE, reconcile aliases with alarm states, promote a baked candidate",
            schedule=events.Schedule.rate(TICK_INTERVAL),
            targets=[self._target(self.health_watcher), self._target(self.performance_watcher)],
        )
        self.heartbeat_alarms = [
            heartbeat_alarm(
                self, construct_id, settings=settings, service=service, alert_topic=alerting.alert_topic,
                stopped=f"automatic rollback and promotion of {target} are not running",
            )
            for construct_id, service in zip(("HealthWatcher", "PerformanceWatcher"), WATCHER_SERVICES, strict=True)
        ]

    def _target(self, watcher: lambda_.IFunction) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            watcher, dead_letter_queue=self._failed_events, retry_attempts=RETRY_ATTEMPTS, max_event_age=MAX_EVENT_AGE
        )

    def _trigger_on_alarms(
        self, watcher: lambda_.IFunction, rule_id: str, watched: list[cloudwatch.Alarm], names: list[str]
    ) -> None:
        for alarm in watched:
            alarm.add_alarm_action(cloudwatch_actions.LambdaAction(watcher))
        events.Rule(
            self,
            rule_id,
            description=f"{', '.join(names)} went to ALARM",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                # Only the transition into ALARM calls for action; recoveries are seen by the tick.
                detail={"alarmName": names, "state": {"value": ["ALARM"]}},
            ),
            targets=[self._target(watcher)],
        )

    def _explain_wildcards(self, watcher: lambda_.Function) -> None:
        NagSuppressions.add_resource_suppressions(
            role_of(watcher),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Read-only Lambda actions on the protected function's published versions, and the "
                    "health probe's invocation of the versions LIVE routes to, which are addressed by number and "
                    "cannot be listed at synth time.",
                    applies_to=[every_version_of(self._settings)],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="cloudwatch:GetMetricData, GetMetricStatistics and PutMetricData support no "
                    "resource-level permissions. The first two only read; PutMetricData is held to the "
                    "controller's metrics namespace by a cloudwatch:namespace condition.",
                    applies_to=["Resource::*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="kms:GenerateDataKey* is what SNS needs from a publisher to a KMS-encrypted topic; "
                    "it is granted on the alert topics' key only.",
                    applies_to=["Action::kms:GenerateDataKey*"],
                ),
            ],
            apply_to_children=True,
        )


def protected_function_arn(scope: Construct, settings: Settings, qualifier: str | None = None) -> str:
    name = settings.protected_function
    return regional_arn(scope, "lambda", "function", name if qualifier is None else f"{name}:{qualifier}")


def regional_arn(scope: Construct, service: str, resource: str, name: str) -> str:
    """An ARN of this stack's region and account, with a colon before the resource name."""
    return Stack.of(scope).format_arn(
        service=service, resource=resource, resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


def every_version_of(settings: Settings) -> RegexAppliesTo:
    """cdk-nag's name for the ARN covering every qualifier (version, alias) of the protected function."""
    return RegexAppliesTo(
        regex=rf"/^Resource::arn:[^:]+:lambda:[^:]+:<AWS::AccountId>:function:{settings.protected_function}:\*$/"
    )


def grant_alias_control(
    function: lambda_.Function,
    *,
    settings: Settings,
    state_table: dynamodb.ITable,
    alerting: Alerting,
    alarms: LiveAliasAlarms,
) -> None:
    """What the alias controller (drcore.rollback.controller.AliasController) does: read the protected function,
    move LIVE and STABLE, read the watched alarms and the function's metrics, journal in the state table, alert
    on both topics. The watchers and the recovery function share it; the caller explains the wildcards to
    cdk-nag, together with its own."""
    state_table.grant(function, *STATE_ACCESS)
    alerting.alert_topic.grant_publish(function)
    alerting.emergency_topic.grant_publish(function)
    statements = [
        iam.PolicyStatement(
            sid="ReadProtectedFunction",
            actions=list(PROTECTED_FUNCTION_READS),
            # Versions are read by number, so every qualifier of the function.
            resources=[protected_function_arn(function, settings), protected_function_arn(function, settings, "*")],
        ),
        iam.PolicyStatement(
            sid="MoveAliases",
            actions=["lambda:UpdateAlias"],
            # Lambda authorizes UpdateAlias against the unqualified function ARN (the alias is a parameter, not
            # part of the resource), so an alias ARN here would match no request.
            resources=[protected_function_arn(function, settings)],
        ),
        iam.PolicyStatement(
            sid="ReadAlarmStates",
            actions=["cloudwatch:DescribeAlarms"],
            # Built from the names: the alarms' own ARN attributes would make each alarm (whose action is
            # a watcher) and the watcher's policy depend on each other.
            resources=[
                regional_arn(function, "cloudwatch", "alarm", name)
                for name in alarms.health_names + alarms.performance_names
            ],
        ),
        # Neither read supports resource-level permissions.
        iam.PolicyStatement(sid="ReadMetrics", actions=list(METRIC_READS), resources=["*"]),
    ]
    for statement in statements:
        function.add_to_role_policy(statement)


def grant_live_probe(function: lambda_.Function, settings: Settings) -> None:
    """Invoke the versions LIVE routes to, by number, as the health probe does (drcore.rollback.health_probe:
    through the alias, its invocations would count as the candidate's traffic). IAM cannot tell a version
    number from an alias name in a resource, so every qualifier of the protected function, and nothing else."""
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="ProbeLiveVersions",
            actions=["lambda:InvokeFunction"],
            resources=[protected_function_arn(function, settings, "*")],
        )
    )


def grant_fence(function: lambda_.Function, settings: Settings) -> None:
    """The fence (drcore.rollback.region_fence): the data bucket's notification configuration, read and merged when the
    region record names another region active; the record itself is in the state table the watchers already read."""
    partition = Stack.of(function).partition
    function.add_to_role_policy(iam.PolicyStatement(
        sid="FenceDataBucketNotification", actions=list(NOTIFICATION_CONFIGURATION),
        resources=[f"arn:{partition}:s3:::{settings.data_bucket}"]))


def heartbeat_alarm(scope: Construct, construct_id: str, *, settings: Settings, service: str,
                    alert_topic: sns.ITopic, stopped: str) -> cloudwatch.Alarm:
    """Alerts when `service` completed no tick for HEARTBEAT_MISSED_TICKS tick intervals in a row (`stopped`: what
    is then not running, for the alarm's description). The rollback watchers' and the region watcher's.

    To the alert topic (severity 2 to 4), not the emergency one: a watcher that stopped leaves the pipeline
    serving as it was, without what the watcher does, as a backup past its RPO leaves it without a fresh backup
    (their alarms alert the same topic). Severity 1 stays for STABLE failing and the primary region down."""
    silent_minutes = int(TICK_INTERVAL.to_minutes()) * HEARTBEAT_MISSED_TICKS
    alarm = cloudwatch.Alarm(
        scope,
        f"{construct_id}Heartbeat",
        alarm_name=heartbeat_alarm_name(settings, service),
        alarm_description=(
            f"{service} completed no scheduled tick in {silent_minutes} minutes: {stopped} "
            "(the tick's schedule disabled, a broken deployment, or every tick failing: see its logs)."
        ),
        # What the watcher's Powertools metrics count for each tick it completes (drcore.rollback.watcher).
        metric=cloudwatch.Metric(
            namespace=settings.metrics_namespace,
            metric_name=HEARTBEAT_METRIC,
            dimensions_map={SERVICE_DIMENSION: service},
            statistic="Sum",
            period=TICK_INTERVAL,
        ),
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluation_periods=HEARTBEAT_MISSED_TICKS,
        datapoints_to_alarm=HEARTBEAT_MISSED_TICKS,
        # A watcher that stopped publishes nothing at all: silence is what this alarm is for.
        treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
    )
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(alert_topic))
    return alarm


def heartbeat_alarm_name(settings: Settings, service: str) -> str:
    return f"{settings.protected_function}-{service}-heartbeat"


def controller_environment(
    settings: Settings, state_table: dynamodb.ITable, alerting: Alerting, alarms: LiveAliasAlarms
) -> dict[str, str]:
    """What `drcore.core.config.ControllerSettings.from_environ` reads, under the names it defines: the watchers'
    environment, which the recovery function gets too."""
    environment = {
        EnvVar.PROTECTED_FUNCTION_NAME: settings.protected_function,
        EnvVar.LIVE_ALIAS: settings.live_alias,
        EnvVar.STABLE_ALIAS: settings.stable_alias,
        EnvVar.STATE_TABLE_NAME: state_table.table_name,
        EnvVar.ALERT_TOPIC_ARN: alerting.alert_topic.topic_arn,
        EnvVar.EMERGENCY_TOPIC_ARN: alerting.emergency_topic.topic_arn,
        EnvVar.HEALTH_ALARM_NAMES: ",".join(alarms.health_names),
        EnvVar.PERFORMANCE_ALARM_NAMES: ",".join(alarms.performance_names),
        EnvVar.BAKE_SECONDS: str(settings.bake_minutes * 60),
        EnvVar.MIN_BAKE_INVOCATIONS: str(settings.min_bake_invocations),
        EnvVar.SETTLE_SECONDS: str(settings.settle_seconds),
        EnvVar.PENDING_REPAIR_SECONDS: str(settings.pending_repair_seconds),
        EnvVar.REGRESSION_FACTOR: str(settings.regression_factor),
        EnvVar.REGRESSION_MIN_INVOCATIONS: str(settings.regression_min_invocations),
        EnvVar.METRICS_NAMESPACE: settings.metrics_namespace,
        EnvVar.HEALTH_PROBE_TIMEOUT_SECONDS: str(settings.health_probe_timeout_seconds),
        EnvVar.PRIMARY_REGION: settings.primary_region,
        # This stack's region processes uploads to the data bucket; its fence stops that when another is active.
        EnvVar.FENCED_BUCKET: settings.data_bucket,
    }
    # Plain strings for jsii.
    return {name.value: value for name, value in environment.items()}
