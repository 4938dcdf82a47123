"""What CloudWatch knows about the protected function's LIVE alias, per executed version; and the controller's own
metrics of each component it backs up and restores (`ComponentMetrics`).

Lambda publishes alias metrics with the dimensions FunctionName, Resource (`<function>:<alias>`) and
ExecutedVersion, so a canary's share is measured apart from STABLE's. An invocation of a version by its number
is published under Resource `<function>:<version>` instead, without ExecutedVersion: that is how the health
probe's invocations stay out of what is read here (drcore.rollback.health_probe).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from drcore.core.metric_names import COMPONENT_DIMENSION, FUNCTION_DIMENSION


def window_end(now: datetime) -> datetime:
    """The end of a "last minutes" window read at `now`: the next whole minute, so the current minute's datapoints
    count (CloudWatch takes an EndTime in the future) and the window is aligned to 60-second periods, which
    CloudWatch serves fastest."""
    minute = now.replace(second=0, microsecond=0)
    return now if now == minute else minute + timedelta(minutes=1)


class FunctionMetrics:
    def __init__(self, cloudwatch_client: Any, function_name: str, alias: str) -> None:
        self._cloudwatch = cloudwatch_client
        self._function = function_name
        self._alias = alias

    def _statistic(self, metric: str, stat: str, version: str, start: datetime, end: datetime) -> float | None:
        if (end - start).total_seconds() < 1:  # no datapoints yet (and GetMetricData refuses equal times)
            return None
        # One period covering the whole window, so a percentile is computed over all of it.
        period = max(60, math.ceil((end - start).total_seconds() / 60) * 60)
        response = self._cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": metric,
                            "Dimensions": [
                                {"Name": "FunctionName", "Value": self._function},
                                {"Name": "Resource", "Value": f"{self._function}:{self._alias}"},
                                {"Name": "ExecutedVersion", "Value": version},
                            ],
                        },
                        "Period": period,
                        "Stat": stat,
                    },
                }
            ],
            StartTime=start,
            EndTime=end,
        )
        values: list[float] = [value for result in response["MetricDataResults"] for value in result.get("Values", [])]
        if not values:
            return None
        return sum(values) if stat == "Sum" else max(values)

    def invocations(self, version: str, start: datetime, end: datetime) -> int:
        return int(self._statistic("Invocations", "Sum", version, start, end) or 0)

    def p99_duration_ms(self, version: str, start: datetime, end: datetime) -> float | None:
        return self._statistic("Duration", "p99", version, start, end)


class VersionGauges:
    """Publishes which versions LIVE and STABLE serve (the dashboard's versions over time).

    Through PutMetricData rather than EMF so the only dimension is the function: Powertools adds its
    `service` dimension to every EMF metric, and each watcher has its own service name.
    """

    def __init__(self, cloudwatch_client: Any, namespace: str, function_name: str) -> None:
        self._cloudwatch = cloudwatch_client
        self._namespace = namespace
        self._function = function_name

    def publish(self, versions: dict[str, str]) -> None:
        dimensions = [{"Name": FUNCTION_DIMENSION, "Value": self._function}]
        data = [{"MetricName": name, "Dimensions": dimensions, "Value": int(version), "Unit": "None"}
                for name, version in versions.items() if version.isdigit()]  # $LATEST is no number to plot
        if data:
            self._cloudwatch.put_metric_data(Namespace=self._namespace, MetricData=data)


class ComponentMetrics:
    """Publishes the controller's metrics of a component (dimension COMPONENT_DIMENSION) in its `namespace`."""

    def __init__(self, cloudwatch_client: Any, namespace: str) -> None:
        self._cloudwatch = cloudwatch_client
        self._namespace = namespace

    def publish(self, component: str, values: Mapping[str, tuple[float, str]]) -> None:
        """`values`: each metric's name to its (value, unit)."""
        dimensions = [{"Name": COMPONENT_DIMENSION, "Value": component}]
        self._cloudwatch.put_metric_data(Namespace=self._namespace, MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Value": value, "Unit": unit}
            for name, (value, unit) in values.items()])
