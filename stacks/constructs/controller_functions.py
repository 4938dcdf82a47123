"""What every controller function shares, and the one way to add a function.

All functions run from the one asset built from `functions/` (stacks/function_asset.py: our code, the pinned
AWS SDK, bytecode compiled for the runtime) and differ by handler string. Powertools comes from AWS's public
layer, found through AWS's public SSM parameter for the pinned version, so it is never bundled.
"""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from drcore.core.controller_settings import EnvVar
from stacks.constructs.cdk_types import default_resource
from stacks.function_asset import COMPLETE_MARKER, function_asset
from stacks.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The asset's bytecode is compiled for this Python (stacks.function_asset.RUNTIME_PYTHON; a test holds the two
# equal): 3.13 rather than the newest, 3.14, because a CPython of the runtime's version must compile it here.
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
TIMEOUT = Duration.seconds(30)
# Async invocations (alarm actions, EventBridge) are retried this often before they are dead-lettered...
RETRY_ATTEMPTS = 2
# ...and dropped to the dead-letter queue after this long: by then the every-minute tick has re-read alarms
# and aliases and repaired whatever the event was about (the seed's RTO for the function is 15 minutes).
MAX_EVENT_AGE = Duration.minutes(15)


def powertools_version(requirements: Path = PROJECT_ROOT / "requirements.txt") -> str:
    """The Powertools version pinned in requirements.txt: the layer must be what the tests ran against."""
    match = re.search(r"^aws-lambda-powertools(?:\[[^\]]*\])?==(\S+)", requirements.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{requirements} pins no aws-lambda-powertools version")
    return match.group(1)


def service_name(handler: str) -> str:
    """The function's name for Powertools (POWERTOOLS_SERVICE_NAME): the `service` dimension of the metrics
    it publishes through Powertools, e.g. "health_watcher" for "health_watcher.handler.handler"."""
    return handler.split(".", 1)[0]


def powertools_layer_parameter(version: str) -> str:
    """AWS's public SSM parameter holding the Powertools layer ARN for our runtime and architecture."""
    return f"/aws/service/powertools/python/{ARCHITECTURE.name}/{RUNTIME.name}/{version}"


class ControllerFunctions(Construct):
    """The code asset, the Powertools layer, and the queue that keeps the events a function failed on."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, alert_topic: sns.ITopic,
                 state_scope: str | None = None) -> None:
        """`state_scope`: the region a standby's functions keep their controller items apart under, in the shared
        global state table (drcore.state.store); None in the primary."""
        super().__init__(scope, construct_id)
        self._settings = settings
        self._state_scope = {EnvVar.STATE_SCOPE.value: state_scope} if state_scope else {}
        self._code = lambda_.Code.from_asset(str(function_asset()), exclude=[COMPLETE_MARKER])
        layer_arn = ssm.StringParameter.value_for_string_parameter(
            self, powertools_layer_parameter(powertools_version())
        )
        self._powertools = lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", layer_arn)

        self.failed_events = sqs.Queue(
            self,
            "FailedEvents",
            # Dead letters hold only AWS event envelopes. SQS-managed keys let Lambda and EventBridge deliver
            # to the queue without key-policy grants.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        NagSuppressions.add_resource_suppressions(
            self.failed_events,
            [
                NagPackSuppression(
                    id="AwsSolutions-SQS3",
                    reason="This queue is itself the dead-letter queue of the controller's functions and rules.",
                )
            ],
        )
        # A dead-lettered event is one the controller gave up on: people must look at it.
        self.failed_events_alarm = cloudwatch.Alarm(
            self,
            "FailedEventsWaiting",
            alarm_description="The DR controller failed to process an event; see its failed-events queue.",
            metric=self.failed_events.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.failed_events_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alert_topic))

    def add(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        environment: dict[str, str],
        memory_size: int = 256,
        timeout: Duration = TIMEOUT,
        reserved_concurrency: int | None = None,
    ) -> lambda_.Function:
        """A function from the shared asset with its own role (logging only) and log group; the caller grants
        what it does. `reserved_concurrency` keeps that many concurrent executions for it (and caps it there)."""
        service = service_name(handler)
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs the DR controller's {service}",
        )
        log_group = logs.LogGroup(self, f"{construct_id}Logs")
        # CloudWatch Logs takes any of its allowed periods, more than RetentionDays' names express directly.
        default_resource(log_group, logs.CfnLogGroup).retention_in_days = self._settings.log_retention_days
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            code=self._code,
            handler=handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            layers=[self._powertools],
            memory_size=memory_size,
            timeout=timeout,
            reserved_concurrent_executions=reserved_concurrency,
            role=role,
            log_group=log_group,
            environment={
                **environment,
                **self._state_scope,
                "POWERTOOLS_SERVICE_NAME": service,
                "POWERTOOLS_METRICS_NAMESPACE": self._settings.metrics_namespace,
            },
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.failed_events),
        )
        log_group.grant_write(role)
        NagSuppressions.add_resource_suppressions(
            function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason=f"{RUNTIME.name}, not the newest Python: the asset's bytecode must be compiled by a "
                    "CPython of the runtime's version on the building machine (stacks/function_asset.py).",
                )
            ],
        )
        # CDK makes a function depend on its role explicitly although `Role: GetAtt` already does; cfn-lint
        # warns about the redundancy (W3005), which is harmless.
        default_resource(function, lambda_.CfnFunction).add_metadata(
            "cfn-lint", {"config": {"ignore_checks": ["W3005"]}}
        )
        return function
