"""The post-recovery checks of the protected function in the active region (drcore.restore.validation): it answers
its health check, its LIVE alarms can act and none is in ALARM, and its metrics are within the alarms' thresholds.

The thresholds are the alarms' own, read with them (DescribeAlarms): the stack sets them from cdk.json
(`dr.alarms`) and this check compares what CloudWatch measured with exactly what would roll LIVE back, so no
second copy of the thresholds can drift from the first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from drcore.aws.alarms import ALARM, INSUFFICIENT_DATA, alarm_definitions
from drcore.aws.metrics import window_end
from drcore.core.models import Clock, utc_now
from drcore.restore.validation import FAILED, OK, UNKNOWN, CheckResult
from drcore.rollback.health_probe import HealthProbe

# How far back the metrics are read: "the last minutes" after a recovery. An alarm whose period is longer is read
# over one whole period of its own, so each datapoint is the one the alarm would judge.
METRICS_WINDOW = timedelta(minutes=5)


class HealthAnswerCheck:
    """LIVE answers the runbook's health check (each version it routes to, by number: counted apart)."""

    name = "health_check"

    def __init__(self, probe_in: Callable[[str], HealthProbe]) -> None:
        self._probe_in = probe_in

    def run(self, active_region: str) -> CheckResult:
        probed = self._probe_in(active_region).probe()
        if probed.not_probed is not None:
            return CheckResult(self.name, UNKNOWN, probed.not_probed)
        facts = {"region": active_region, "timeout_seconds": probed.seconds,
                 "versions": {answer.version: answer.failure or "answered" for answer in probed.answers},
                 "latency_ms": round(max(answer.latency_ms for answer in probed.answers), 1)}
        if probed.failure is not None:
            return CheckResult(self.name, FAILED, f"LIVE in {active_region} failed its health check: "
                               f"{probed.failure}; roll back ({{\"action\": \"rollback\", ...}}) or recover the "
                               "function", facts)
        return CheckResult(self.name, OK, f"LIVE in {active_region} answered the health check", facts)


class AlarmsCheck:
    """Every LIVE alarm exists, can act (actions enabled, at least one alarm action) and is not in ALARM."""

    name = "alarms"

    def __init__(self, cloudwatch_in: Callable[[str], Any], alarm_names: tuple[str, ...]) -> None:
        self._cloudwatch_in = cloudwatch_in
        self._names = alarm_names

    def run(self, active_region: str) -> CheckResult:
        if not self._names:
            return CheckResult(self.name, UNKNOWN, "no LIVE alarms are configured for this function "
                               "(DR_HEALTH_ALARM_NAMES, DR_PERFORMANCE_ALARM_NAMES)")
        found = alarm_definitions(self._cloudwatch_in(active_region), self._names)
        missing = [name for name in self._names if name not in found]
        silenced = sorted(name for name, alarm in found.items() if not alarm.actions_enabled)
        actionless = sorted(name for name, alarm in found.items() if alarm.actions_enabled and not alarm.alarm_actions)
        alarming = sorted(name for name, alarm in found.items() if alarm.state == ALARM)
        undecided = sorted(name for name, alarm in found.items() if alarm.state == INSUFFICIENT_DATA)
        facts = {"region": active_region, "states": {name: alarm.state for name, alarm in sorted(found.items())},
                 "missing": missing, "actions_disabled": silenced, "no_actions": actionless, "in_alarm": alarming,
                 "insufficient_data": undecided}
        problems = [text for names, text in (
            (missing, "missing (redeploy the controller stack)"),
            (silenced, "actions disabled (aws cloudwatch enable-alarm-actions)"),
            (actionless, "no alarm action to trigger a rollback"),
            (alarming, "in ALARM")) if names for text in [f"{', '.join(names)}: {text}"]]
        if problems:
            return CheckResult(self.name, FAILED, "; ".join(problems), facts)
        if undecided:
            return CheckResult(self.name, UNKNOWN, f"{', '.join(undecided)}: INSUFFICIENT_DATA (no datapoints yet; "
                               "the health probe alarm has them once the health watcher's tick runs)", facts)
        return CheckResult(self.name, OK, f"{len(found)} alarms OK with their actions enabled", facts)


class MetricsCheck:
    """Each alarm's metric over the last minutes against that alarm's threshold, and the error rate."""

    name = "metrics"

    def __init__(self, cloudwatch_in: Callable[[str], Any], alarm_names: tuple[str, ...], function_name: str,
                 alias: str, clock: Clock = utc_now) -> None:
        self._cloudwatch_in = cloudwatch_in
        self._names = alarm_names
        self._function = function_name
        self._alias = alias
        self._clock = clock

    def run(self, active_region: str) -> CheckResult:
        cloudwatch = self._cloudwatch_in(active_region)
        alarms = [alarm for alarm in alarm_definitions(cloudwatch, self._names).values() if alarm.metric_name]
        if not alarms:
            return CheckResult(self.name, UNKNOWN, "no LIVE alarm to take the thresholds from (see the alarms check)")
        end = window_end(self._clock())
        queries = [_query(f"a{index}", alarm.namespace, alarm.metric_name, alarm.dimensions, alarm.statistic,
                          alarm.period_seconds) for index, alarm in enumerate(alarms)]
        lambda_dimensions = (("FunctionName", self._function), ("Resource", f"{self._function}:{self._alias}"))
        queries += [_query(name, "AWS/Lambda", metric, lambda_dimensions, "Sum", 60)
                    for name, metric in (("invocations", "Invocations"), ("errors", "Errors"))]
        longest = max([METRICS_WINDOW, *(timedelta(seconds=alarm.period_seconds) for alarm in alarms)])
        values = _metric_values(cloudwatch, queries, end - longest, end)
        readings: dict[str, Any] = {}
        breaches = []
        for index, alarm in enumerate(alarms):
            points = values.get(f"a{index}", [])
            # The datapoint nearest to (or furthest past) the threshold, on the side the alarm fires.
            worst = (min if alarm.comparison.startswith("LessThan") else max)(points, default=None)
            readings[alarm.name] = {"metric": alarm.metric_name, "statistic": alarm.statistic, "worst": worst,
                                    "threshold": alarm.threshold, "comparison": alarm.comparison,
                                    "datapoints": len(points)}
            if any(alarm.breaches(point) for point in points):
                breaches.append(f"{alarm.metric_name} {alarm.statistic} {worst:g} vs threshold {alarm.threshold:g} "
                                f"({alarm.name})")
        invocations, errors = sum(values.get("invocations", [])), sum(values.get("errors", []))
        facts = {"region": active_region, "window_minutes": round(longest.total_seconds() / 60),
                 "invocations": invocations, "errors": errors,
                 "error_rate": round(errors / invocations, 4) if invocations else None, "readings": readings}
        if breaches:
            return CheckResult(self.name, FAILED, f"over the last {facts['window_minutes']} minutes: "
                               f"{'; '.join(breaches)}", facts)
        return CheckResult(self.name, OK, f"within the alarms' thresholds over the last {facts['window_minutes']} "
                           f"minutes ({invocations:g} invocations, {errors:g} errors)", facts)


def _query(query_id: str, namespace: str, metric: str, dimensions: tuple[tuple[str, str], ...], statistic: str,
           period: int) -> dict[str, Any]:
    return {"Id": query_id, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": namespace, "MetricName": metric,
                   "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions]},
        "Period": period, "Stat": statistic}}


def _metric_values(cloudwatch: Any, queries: list[dict[str, Any]], start: Any, end: Any) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for page in cloudwatch.get_paginator("get_metric_data").paginate(MetricDataQueries=queries, StartTime=start,
                                                                      EndTime=end):
        for result in page["MetricDataResults"]:
            values.setdefault(result["Id"], []).extend(float(value) for value in result.get("Values", []))
    return values

