"""The alarms on the protected function's LIVE alias that trigger a rollback.

Their names are derived from the function and alias names, so the watchers' environment can list them at
synth time and their IAM policies can name exactly these alarms.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from drcore.core.config import alarm_name
from drcore.core.metric_names import ALIAS_DIMENSION, FUNCTION_DIMENSION, HEALTH_PROBE_METRIC
from stacks.constructs.cdk_types import default_resource
from stacks.settings import AlarmWindow, CountAlarm, DurationAlarm, Settings


class LiveAliasAlarms(Construct):
    """Health alarms (errors, throttles, health probe) and performance alarms (average and p99 duration)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self._function = settings.protected_function
        self._live = settings.live_alias
        thresholds = settings.alarms
        self.health: list[cloudwatch.Alarm] = [
            self._count_alarm("errors", "Errors", thresholds.errors),
            self._count_alarm("throttles", "Throttles", thresholds.throttles),
            self._health_probe_alarm(settings.metrics_namespace, thresholds.health_probe),
        ]
        self.performance: list[cloudwatch.Alarm] = [
            self._duration_alarm("avg-duration", "Average", thresholds.average_duration),
            self._duration_alarm("p99-duration", "p99", thresholds.p99_duration),
        ]

    @property
    def health_names(self) -> list[str]:
        return [_literal_name(alarm) for alarm in self.health]

    @property
    def performance_names(self) -> list[str]:
        return [_literal_name(alarm) for alarm in self.performance]

    def _name(self, kind: str) -> str:
        return alarm_name(self._function, self._live, kind)

    def _lambda_metric(self, metric_name: str, statistic: str, window: AlarmWindow) -> cloudwatch.Metric:
        # Lambda publishes per-alias metrics under the Resource dimension "<function>:<alias>".
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=metric_name,
            dimensions_map={"FunctionName": self._function, "Resource": f"{self._function}:{self._live}"},
            statistic=statistic,
            period=Duration.minutes(window.period_minutes),
        )

    def _count_alarm(self, suffix: str, metric_name: str, rule: CountAlarm) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            metric_name,
            alarm_name=self._name(suffix),
            alarm_description=f"{metric_name} of {self._function}:{self._live}; health_watcher rolls LIVE back.",
            metric=self._lambda_metric(metric_name, "Sum", rule),
            threshold=rule.threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=rule.evaluation_periods,
            datapoints_to_alarm=rule.datapoints_to_alarm,
            # The pipeline runs on uploads: a quiet minute has no datapoint and is healthy. Were it
            # "missing", the alarm would sit in INSUFFICIENT_DATA and no version could ever be promoted.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _duration_alarm(self, suffix: str, statistic: str, rule: DurationAlarm) -> cloudwatch.Alarm:
        construct_id = f"{statistic.capitalize()}Duration"
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=self._name(suffix),
            alarm_description=(
                f"{statistic} Duration of {self._function}:{self._live} above {rule.threshold_ms} ms; "
                "performance_watcher rolls LIVE back."
            ),
            metric=self._lambda_metric("Duration", statistic, rule),
            threshold=rule.threshold_ms,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=rule.evaluation_periods,
            datapoints_to_alarm=rule.datapoints_to_alarm,
            # No invocation, no duration to judge (see the count alarms).
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _health_probe_alarm(self, namespace: str, rule: AlarmWindow) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            "HealthProbe",
            alarm_name=self._name("health-probe"),
            alarm_description=(
                f"The scheduled health-check invocation of {self._function}:{self._live} failed; "
                "health_watcher rolls LIVE back."
            ),
            # What health_watcher's tick publishes after invoking LIVE with the seed's health-check payload:
            # 1 when the probe failed, 0 when it passed.
            metric=cloudwatch.Metric(
                namespace=namespace,
                metric_name=HEALTH_PROBE_METRIC,
                dimensions_map={FUNCTION_DIMENSION: self._function, ALIAS_DIMENSION: self._live},
                statistic="Maximum",
                period=Duration.minutes(rule.period_minutes),
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=rule.evaluation_periods,
            datapoints_to_alarm=rule.datapoints_to_alarm,
            # The tick publishes a datapoint every minute, so silence means the probe itself did not run: that
            # must neither roll back a healthy version nor count as healthy. "missing" leaves the alarm in
            # INSUFFICIENT_DATA, which blocks promotion and triggers nothing.
            treat_missing_data=cloudwatch.TreatMissingData.MISSING,
        )


def _literal_name(alarm: cloudwatch.Alarm) -> str:
    # `Alarm.alarm_name` is a token; the watchers' environment needs the plain names given above.
    name = default_resource(alarm, cloudwatch.CfnAlarm).alarm_name
    if name is None:
        raise TypeError(f"{alarm.node.path} was created without a name")
    return name
