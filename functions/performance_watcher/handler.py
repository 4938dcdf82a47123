"""performance_watcher: rolls LIVE back to STABLE when a duration alarm fires (the runbook's average
Duration above 300,000 ms over 10 minutes, or p99 above its threshold).

Its scheduled tick compares the baking candidate's p99 Duration with the baseline recorded for STABLE
when it was promoted, and rolls back a regression (p99 above the regression factor times STABLE's).
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.core.controller_settings import ControllerSettings
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
    controller = services.controller
    result = run_watcher(event, controller, settings.performance_alarms, lambda: [controller.regression_check()])
    publish_watcher_metrics(metrics, result, services.version_gauges)
    return result
