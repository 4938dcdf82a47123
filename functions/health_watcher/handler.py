"""health_watcher: rolls LIVE back to STABLE when a health alarm (errors, throttles, health probe) fires.

Its scheduled tick first fences this region when the region record names another one active (drcore.rollback
.region_fence), then probes what LIVE serves with the runbook's health-check event (within the time the
invocation can spare), reconciles the aliases and the alarm states with the controller record, and promotes a
candidate that has baked.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.core.controller_settings import ControllerSettings
from drcore.rollback.outcome import Outcome
from drcore.rollback.watcher import publish_watcher_metrics, run_watcher
from drcore.wiring.watchers import watcher_services

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ControllerSettings.from_environ(os.environ)
    metrics.namespace = settings.metrics_namespace
    services = watcher_services(settings, os.environ.get("AWS_ENDPOINT_URL"))

    def tick() -> list[Outcome]:
        # The fence first: a region that is not the active one stops processing before anything else.
        fenced = [services.fence.check()] if services.fence else []
        probed = services.health_probe.run(remaining_ms=context.get_remaining_time_in_millis())
        return [*fenced, probed, *services.controller.reconcile()]

    result = run_watcher(event, services.controller, settings.health_alarms, tick)
    publish_watcher_metrics(metrics, result, services.version_gauges)
    return result
