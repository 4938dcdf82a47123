"""What the two watcher functions share: dispatching their events to the controller, and their metrics.

A watcher is invoked three ways: as a CloudWatch alarm action, by an EventBridge "CloudWatch Alarm
State Change" event, and by a scheduled EventBridge tick (recognised in drcore.rollback.watcher_events).
Anything else is logged and answered without raising, so a malformed event never turns into a retry storm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from drcore.aws.metrics import VersionGauges
from drcore.core.metric_names import (
    DRIFT_REVERTS_METRIC,
    FREEZES_METRIC,
    HEARTBEAT_METRIC,
    LIVE_VERSION_METRIC,
    PROMOTIONS_METRIC,
    ROLLBACKS_METRIC,
    STABLE_VERSION_METRIC,
)
from drcore.rollback.controller import AliasController
from drcore.rollback.outcome import Outcome
from drcore.rollback.watcher_events import Tick, UnrecognisedEvent, recognise

# A child of the handler's Powertools logger: the same structured JSON, the same service.
logger = Logger(child=True)


def run_watcher(
    event: Any,
    controller: AliasController,
    own_alarms: tuple[str, ...],
    on_tick: Callable[[], list[Outcome]],
) -> dict[str, Any]:
    """Dispatch one event. AWS errors propagate (Lambda retries, the tick repairs); bad events do not."""
    try:
        recognised = recognise(event)
    except UnrecognisedEvent as error:
        logger.warning("ignoring event", extra={"reason": str(error)})
        return {"status": "ignored", "reason": str(error)}
    if isinstance(recognised, Tick):
        outcomes = on_tick()
        record = controller.record()
        return {"status": "ticked", "outcomes": [outcome.to_dict() for outcome in outcomes],
                "versions": {LIVE_VERSION_METRIC: record.live_version, STABLE_VERSION_METRIC: record.stable_version}}
    if recognised.alarm_name not in own_alarms:
        reason = f"alarm {recognised.alarm_name!r} is not watched by this function (watched: {', '.join(own_alarms)})"
        logger.warning("ignoring alarm", extra={"alarm": recognised.alarm_name, "reason": reason})
        return {"status": "ignored", "reason": reason}
    outcome = controller.on_alarm(recognised)
    logger.info("alarm handled", extra={"alarm": recognised.incident_id, "outcome": outcome.to_dict()})
    result = {"status": "handled", "alarm": recognised.incident_id, "outcome": outcome.to_dict()}
    if outcome.action == "rolled_back" and outcome.to_version:
        result["versions"] = {LIVE_VERSION_METRIC: outcome.to_version}
    return result


def outcome_metrics(result: dict[str, Any]) -> list[str]:
    """Names of the count metrics an event earns: one for the event itself (Ticks, the heartbeat, for a tick that
    completed; AlarmEvents, IgnoredEvents) and one per change it made (Rollbacks, Promotions, Freezes,
    DriftReverts)."""
    per_status = {"ticked": HEARTBEAT_METRIC, "handled": "AlarmEvents", "ignored": "IgnoredEvents"}
    per_action = {"rolled_back": ROLLBACKS_METRIC, "rollback_completed": ROLLBACKS_METRIC,
                  "promoted": PROMOTIONS_METRIC, "frozen": FREEZES_METRIC, "reverted": DRIFT_REVERTS_METRIC}
    outcomes = result.get("outcomes") or ([result["outcome"]] if "outcome" in result else [])
    changes = [per_action[outcome["action"]] for outcome in outcomes if outcome.get("action") in per_action]
    return [per_status[result["status"]], *changes]


def publish_watcher_metrics(metrics: Metrics, result: dict[str, Any], gauges: VersionGauges) -> None:
    """Count the event and its changes (EMF, flushed by the handler's decorator), and after a tick publish
    the versions LIVE and STABLE serve. A rollback's new LIVE version is not published here: the watchers'
    controller published it beside the rollback's bookkeeping, as soon as LIVE flipped (drcore.wiring.watchers)."""
    for name in outcome_metrics(result):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if result["status"] == "ticked":
        gauges.publish(result["versions"])
