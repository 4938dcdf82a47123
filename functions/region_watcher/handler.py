"""region_watcher: in the secondary region, watches the primary region on a schedule (its LIVE's health check and
its watched alarms, read across regions). When the primary has been unhealthy for `failover.detect_minutes` it
raises a severity-1 alert carrying a ready failover plan (one confirm away); with `failover.automatic` it confirms
that plan itself after `failover.auto_after_minutes`, if the failover's safety rules pass.

Only EventBridge's scheduled events are acted on; anything else is answered `ignored` and changes nothing.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.core.config import FailoverSettings, RegionSettings
from drcore.core.controller_settings import ControllerSettings
from drcore.core.errors import DrError
from drcore.core.metric_names import HEARTBEAT_METRIC
from drcore.rollback.watcher_events import UnrecognisedEvent, tick_from_schedule
from drcore.wiring.region_watcher import region_watcher

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        if not isinstance(event, dict):
            raise UnrecognisedEvent(f"expected a JSON object, got {type(event).__name__}")
        tick_from_schedule(event)
    except UnrecognisedEvent as error:
        logger.warning("event ignored", extra={"reason": str(error)})
        return {"status": "ignored", "reason": str(error)}
    try:
        settings = ControllerSettings.from_environ(os.environ)
        metrics.namespace = settings.metrics_namespace
        watcher = region_watcher(settings, FailoverSettings.from_environ(os.environ),
                                 RegionSettings.from_environ(os.environ),
                                 context.get_remaining_time_in_millis() // 1000)
    except DrError as error:  # not configured (or badly): say what is wrong, every tick, rather than crash
        logger.error("region watcher not configured", extra={"reason": str(error)})
        return {"status": "error", "error": str(error)}
    outcome = watcher.tick()
    # Each completed tick counts: the heartbeat alarm alerts when they stop (as the rollback watchers' do).
    metrics.add_metric(name=HEARTBEAT_METRIC, unit=MetricUnit.Count, value=1)
    logger.info("region watch", extra=outcome.to_dict())
    return {"status": "ticked", "outcome": outcome.to_dict()}
