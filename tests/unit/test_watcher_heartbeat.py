"""Dead-watcher detection (issue 11, item 6): each scheduled tick a watcher completes publishes its heartbeat,
through the Powertools metrics it already flushes (no extra AWS call); nothing else counts as a tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

import health_watcher.handler as health_watcher
import performance_watcher.handler as performance_watcher
from drcore.core.metric_names import HEARTBEAT_METRIC, SERVICE_DIMENSION
from embedded.aws_events import alarm_action_event, scheduled_event

WATCHERS = [health_watcher, performance_watcher]


def emitted_metrics(printed: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric name, dimensions) of each metric in the embedded-metric-format records printed, which
    CloudWatch Logs turns into metrics in AWS."""
    metrics = []
    for line in printed.splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            dimensions = {name: record[name] for names in directive["Dimensions"] for name in names}
            metrics += [(directive["Namespace"], metric["Name"], dimensions) for metric in directive["Metrics"]]
    return metrics


def heartbeats(printed: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [metric for metric in emitted_metrics(printed) if metric[1] == HEARTBEAT_METRIC]


@pytest.mark.parametrize("watcher", WATCHERS)
def test_a_scheduled_tick_publishes_the_watchers_heartbeat(system, invoke_watcher, capsys, monkeypatch, watcher):
    # Given a watcher, with the Powertools service name the stack gives it (read from POWERTOOLS_SERVICE_NAME when
    # Lambda first imports the handler; this process imported it before any such variable was set)
    service = watcher.__name__.split(".")[0]
    monkeypatch.setattr(watcher.metrics, "service", service)
    # When its scheduled tick runs
    capsys.readouterr()
    result = invoke_watcher(watcher, scheduled_event(datetime.now(UTC)))
    # Then it completed, and counted one heartbeat in the controller's namespace, under its own service name
    assert result["status"] == "ticked", result
    assert heartbeats(capsys.readouterr().out) == [("ApiladosDR", HEARTBEAT_METRIC, {SERVICE_DIMENSION: service})]


@pytest.mark.parametrize("watcher", WATCHERS)
@pytest.mark.parametrize("event", [
    {"detail-type": "Scheduled Event"},  # no EventBridge envelope
    {**scheduled_event(datetime.now(UTC)), "time": "yesterday"},  # a time that is not one
    "tick",  # not even an object
])
def test_an_event_that_is_not_a_tick_is_no_heartbeat(system, invoke_watcher, capsys, watcher, event):
    # Given an event shaped almost like the schedule's / When the watcher receives it
    capsys.readouterr()
    result = invoke_watcher(watcher, event)
    # Then it is ignored, and counted as ignored, not as a tick: a stopped schedule cannot hide behind it
    assert result["status"] == "ignored", result
    printed = capsys.readouterr().out
    assert heartbeats(printed) == []
    assert [name for _, name, _ in emitted_metrics(printed)] == ["IgnoredEvents"]


def test_an_alarm_event_is_no_heartbeat(system, invoke_watcher, capsys):
    # Given one of the health watcher's alarms going back to OK / When it receives the alarm action
    capsys.readouterr()
    event = alarm_action_event(system.alarms["errors"], "OK", datetime.now(UTC), system.function_name)
    result = invoke_watcher(health_watcher, event)
    # Then it is handled, and no tick is counted for it
    assert result["status"] == "handled", result
    assert heartbeats(capsys.readouterr().out) == []
