"""The controller's CloudWatch dashboard: what LIVE and STABLE point at, what the controller did, the state of
every alarm, how old each component's last good backup is against its RPO, how a big snapshot's and a big restore's
fan-outs are going, and the last drill's result.

Metrics it reads, and who publishes them (all in the configured metrics namespace):
- `LiveVersion`, `StableVersion` (dimension FunctionName): the watchers, on every tick and change;
- `Rollbacks`, `Promotions`, `Freezes` (dimension service = the watcher's Powertools service name): the
  watchers, through Powertools' embedded metric format;
- `BackupSucceeded`, `BackupCompletedAt` (dimension Component): the backup function;
- `SnapshotShardsDone`, `SnapshotObjectsListed`, `SnapshotBytesCopied` (dimension Component = "s3"): the backup
  function's shard workers of a fanned-out snapshot;
- `RestoreShardsDone`, `RestoreObjectsVerified`, `RestoreBytesCopied` (dimension Component = "s3"): the restore shard
  worker, for a fanned-out restore;
- `DrillPassed` (dimension Environment = "aws"): the drill function;
- `Invocations`, `Errors` of the recovery function: Lambda itself (AWS/Lambda);
- `ExecutionsStarted`, `ExecutionsSucceeded`, `ExecutionsFailed` of the snapshot and the restore fan-outs: Step
  Functions itself (AWS/States).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from drcore.core.config import DrillEnvironment
from drcore.core.metric_names import (
    BACKUP_COMPLETED_AT_METRIC,
    COMPONENT_DIMENSION,
    DRILL_PASSED_METRIC,
    ENVIRONMENT_DIMENSION,
    FREEZES_METRIC,
    FUNCTION_DIMENSION,
    LIVE_VERSION_METRIC,
    PROMOTIONS_METRIC,
    RESTORE_BYTES_COPIED_METRIC,
    RESTORE_OBJECTS_VERIFIED_METRIC,
    RESTORE_SHARDS_DONE_METRIC,
    ROLLBACKS_METRIC,
    SNAPSHOT_BYTES_COPIED_METRIC,
    SNAPSHOT_OBJECTS_LISTED_METRIC,
    SNAPSHOT_SHARDS_DONE_METRIC,
    STABLE_VERSION_METRIC,
)
from drcore.state.backup_store import Component
from stacks.constructs.backups import backup_completed_at_metric, backup_succeeded_metric, rpo_window_minutes
from stacks.settings import Settings

ACTION_METRICS = (ROLLBACKS_METRIC, PROMOTIONS_METRIC, FREEZES_METRIC)
# The drill function runs in AWS; the local drill (`make drill`) reports "embedded", to its embedded endpoint only.
DRILL_ENVIRONMENT = DrillEnvironment.AWS

DEFAULT_RANGE = Duration.days(3)
FINE_PERIOD = Duration.minutes(5)
# Drills are rare: the last result is looked for over the last month.
DRILL_LOOKBACK = "-P30D"


@dataclass(frozen=True)
class ShardProgress:
    """The metrics a fan-out's shard workers publish (dimension Component = "s3"): shards done, the objects they went
    through (`objects`, plotted as `objects_label`), and the bytes they copied."""

    shards_done: str
    objects: str
    objects_label: str
    bytes_copied: str


SNAPSHOT_SHARD_PROGRESS = ShardProgress(SNAPSHOT_SHARDS_DONE_METRIC, SNAPSHOT_OBJECTS_LISTED_METRIC, "objects listed",
                                        SNAPSHOT_BYTES_COPIED_METRIC)
RESTORE_SHARD_PROGRESS = ShardProgress(RESTORE_SHARDS_DONE_METRIC, RESTORE_OBJECTS_VERIFIED_METRIC, "objects verified",
                                       RESTORE_BYTES_COPIED_METRIC)


def dashboard_name(settings: Settings) -> str:
    return f"{settings.protected_function}-dr"


def dashboard_url(settings: Settings) -> str:
    region = settings.primary_region
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards:name={dashboard_name(settings)}"
    )


class ControllerDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        watcher_services: Sequence[str],
        live_alarms: Sequence[cloudwatch.IAlarm],
        rpo_alarms: Mapping[Component, cloudwatch.IAlarm],
        controller_alarms: Sequence[cloudwatch.IAlarm],
        recovery_function: lambda_.IFunction,
        snapshot_fanout_state_machine: sfn.IStateMachine,
        restore_fanout_state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.dashboard_name = dashboard_name(settings)
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=self.dashboard_name, default_interval=DEFAULT_RANGE
        )
        function = settings.protected_function
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    f"# DR controller of {function}\n"
                    f"LIVE alias `{settings.live_alias}`, STABLE alias `{settings.stable_alias}`, "
                    f"data bucket `{settings.data_bucket}`, pipeline stack `{settings.pipeline_stack}`. "
                    "A red RPO alarm means a component's last good backup is older than its objective."
                ),
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(*self._versions())
        self.dashboard.add_widgets(
            self._actions(watcher_services),
            cloudwatch.AlarmStatusWidget(
                title="LIVE alias alarms (each one rolls LIVE back)", alarms=list(live_alarms), width=12, height=6
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Backup RPO and controller alarms",
                alarms=[*rpo_alarms.values(), *controller_alarms],
                width=12,
                height=6,
            ),
            self._last_drill(),
        )
        self.dashboard.add_widgets(*(self._backup_age(component) for component in Component))
        self.dashboard.add_widgets(
            *self._fan_out("Snapshot fan-out", snapshot_fanout_state_machine, SNAPSHOT_SHARD_PROGRESS, width=8)
        )
        # A big restore's executions and shards beside the recovery function that starts them and merges their shards.
        self.dashboard.add_widgets(
            *self._fan_out("Restore fan-out", restore_fanout_state_machine, RESTORE_SHARD_PROGRESS, width=6),
            self._recovery_console(recovery_function),
        )

    def _metric(
        self, name: str, dimensions: dict[str, str], statistic: str, period: Duration, label: str
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self._settings.metrics_namespace,
            metric_name=name,
            dimensions_map=dimensions,
            statistic=statistic,
            period=period,
            label=label,
        )

    def _versions(self) -> list[cloudwatch.IWidget]:
        settings = self._settings
        function = {FUNCTION_DIMENSION: settings.protected_function}

        def versions(period: Duration) -> list[cloudwatch.IMetric]:
            return [
                self._metric(LIVE_VERSION_METRIC, function, "Maximum", period, f"{settings.live_alias} version"),
                self._metric(STABLE_VERSION_METRIC, function, "Maximum", period, f"{settings.stable_alias} version"),
            ]

        return [
            cloudwatch.GraphWidget(
                title=f"{settings.live_alias} and {settings.stable_alias} versions",
                left=versions(FINE_PERIOD),
                left_y_axis=cloudwatch.YAxisProps(label="version", show_units=False),
                width=16,
                height=6,
            ),
            cloudwatch.SingleValueWidget(
                title="Versions now",
                metrics=versions(Duration.minutes(1)),
                width=8,
                height=6,
            ),
        ]

    def _actions(self, watcher_services: Sequence[str]) -> cloudwatch.IWidget:
        # Both watchers reconcile on their tick, so either may roll back or promote.
        return cloudwatch.GraphWidget(
            title="Rollbacks, promotions and freezes per hour",
            left=[
                self._metric(name, {"service": service}, "Sum", Duration.hours(1), f"{name} ({service})")
                for name in ACTION_METRICS
                for service in watcher_services
            ],
            view=cloudwatch.GraphWidgetView.BAR,
            stacked=True,
            width=12,
            height=6,
        )

    def _last_drill(self) -> cloudwatch.IWidget:
        return cloudwatch.SingleValueWidget(
            title="Last DR drill in AWS: 1 passed, 0 failed",
            metrics=[
                self._metric(
                    DRILL_PASSED_METRIC,
                    {ENVIRONMENT_DIMENSION: DRILL_ENVIRONMENT.value},
                    "Minimum",
                    Duration.days(1),
                    DRILL_PASSED_METRIC,
                )
            ],
            start=DRILL_LOOKBACK,
            sparkline=True,
            width=12,
            height=6,
        )

    def _backup_age(self, component: Component) -> cloudwatch.IWidget:
        settings = self._settings
        window = rpo_window_minutes(settings, component)
        completed = backup_completed_at_metric(settings, component, FINE_PERIOD)
        # Between backups the last completion time is carried forward (REPEAT), so the age, taken at the end
        # of each period, grows until the next good backup resets it: a sawtooth under the RPO line.
        age = cloudwatch.MathExpression(
            expression="(EPOCH(FILL(completed, REPEAT)) + PERIOD(completed) - FILL(completed, REPEAT)) / 60",
            using_metrics={"completed": completed},
            label=f"minutes since the last good {component.value} backup ({BACKUP_COMPLETED_AT_METRIC})",
            period=FINE_PERIOD,
        )
        return cloudwatch.GraphWidget(
            title=f"{component.value} backup age (RPO window {window} min)",
            left=[age],
            left_y_axis=cloudwatch.YAxisProps(label="minutes", min=0, show_units=False),
            left_annotations=[cloudwatch.HorizontalAnnotation(value=window, label="RPO", color=cloudwatch.Color.RED)],
            right=[
                backup_succeeded_metric(settings, component, Duration.hours(1)).with_(label="good backups per hour")
            ],
            right_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
            width=6,
            height=6,
        )

    def _fan_out(
        self, fan_out: str, state_machine: sfn.IStateMachine, progress: ShardProgress, width: int
    ) -> list[cloudwatch.IWidget]:
        # A fan-out's executions, and its shard workers' progress while one runs.
        bucket = {COMPONENT_DIMENSION: Component.S3.value}
        return [
            self._fan_out_executions(fan_out, state_machine, width=width),
            cloudwatch.GraphWidget(
                title=f"{fan_out}: shards done",
                left=[self._metric(progress.shards_done, bucket, "Sum", FINE_PERIOD, "shards done")],
                left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
                width=width,
                height=6,
            ),
            cloudwatch.GraphWidget(
                title=f"{fan_out}: {progress.objects_label} and bytes copied by its shards",
                left=[self._metric(progress.objects, bucket, "Sum", FINE_PERIOD, progress.objects_label)],
                right=[self._metric(progress.bytes_copied, bucket, "Sum", FINE_PERIOD, "bytes copied")],
                left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
                right_y_axis=cloudwatch.YAxisProps(min=0),
                width=width,
                height=6,
            ),
        ]

    def _fan_out_executions(self, fan_out: str, state_machine: sfn.IStateMachine, width: int) -> cloudwatch.IWidget:
        hourly = Duration.hours(1)
        return cloudwatch.GraphWidget(
            title=f"{fan_out}: executions per hour",
            left=[
                state_machine.metric_started(period=hourly, statistic="Sum", label="started"),
                state_machine.metric_succeeded(period=hourly, statistic="Sum", label="succeeded"),
                state_machine.metric_failed(period=hourly, statistic="Sum", label="failed"),
            ],
            left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
            view=cloudwatch.GraphWidgetView.BAR,
            width=width,
            height=6,
        )

    def _recovery_console(self, function: lambda_.IFunction) -> cloudwatch.IWidget:
        # Every manual action is one synchronous invocation (long restores add their own continuations);
        # an error is an action that failed, not a request refused as invalid (that answers ok: false).
        return cloudwatch.GraphWidget(
            title="Recovery function: invocations and errors per hour",
            left=[
                function.metric_invocations(period=Duration.hours(1), statistic="Sum", label="invocations"),
                function.metric_errors(period=Duration.hours(1), statistic="Sum", label="errors"),
            ],
            left_y_axis=cloudwatch.YAxisProps(min=0, show_units=False),
            view=cloudwatch.GraphWidgetView.BAR,
            width=6,
            height=6,
        )
