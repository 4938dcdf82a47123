"""What CloudWatch knows about the protected function's LIVE alias, per executed version.

Lambda publishes alias metrics with the dimensions FunctionName, Resource (`<function>:<alias>`) and
ExecutedVersion, so a canary's share is measured apart from STABLE's.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from typing import Any

from drcore.aws.aliases import AliasGateway
from drcore.core.metric_names import (
    ALIAS_DIMENSION,
    FUNCTION_DIMENSION,
    HEALTH_PROBE_LATENCY_METRIC,
    HEALTH_PROBE_METRIC,
)

HEALTH_PROBE_PAYLOAD = {"test": "health-check"}  # the runbook's health-check event


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


class HealthProbe:
    """Invokes LIVE with the runbook's health-check payload and publishes the outcome as a metric.

    Unlike the runbook's `aws lambda invoke` exit-code test, a function error counts as a failure.
    """

    def __init__(
        self, aliases: AliasGateway, cloudwatch_client: Any, namespace: str, function_name: str, alias: str
    ) -> None:
        self._aliases = aliases
        self._cloudwatch = cloudwatch_client
        self._namespace = namespace
        self._function = function_name
        self._alias = alias

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            response = self._aliases.invoke(self._alias, json.dumps(HEALTH_PROBE_PAYLOAD).encode())
            failure = response["function_error"] or (
                None if response["status_code"] == 200 else f"status {response['status_code']}"
            )
            executed_version = response["executed_version"]
        except Exception as error:  # noqa: BLE001  # any failure to get an answer is a failed probe, not a crashed tick
            failure, executed_version = f"{type(error).__name__}: {error}", None
        latency_ms = (time.perf_counter() - started) * 1000
        dimensions = [
            {"Name": FUNCTION_DIMENSION, "Value": self._function},
            {"Name": ALIAS_DIMENSION, "Value": self._alias},
        ]
        self._cloudwatch.put_metric_data(
            Namespace=self._namespace,
            MetricData=[
                {"MetricName": HEALTH_PROBE_METRIC, "Dimensions": dimensions, "Value": 1 if failure else 0,
                 "Unit": "Count"},
                {"MetricName": HEALTH_PROBE_LATENCY_METRIC, "Dimensions": dimensions, "Value": latency_ms,
                 "Unit": "Milliseconds"},
            ],
        )
        return {"healthy": failure is None, "failure": failure, "executed_version": executed_version,
                "latency_ms": round(latency_ms, 1)}


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
