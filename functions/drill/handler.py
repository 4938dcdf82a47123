"""drill: a DR drill in AWS, on its schedule or on `{"action": "drill", "requested_by": ..., "reason": ...}`.

Restores the newest backups into scratch resources (the `<function>-drill` function, the drill's scratch
bucket), validates the stack backup, times each step against its RTO, and writes the report to the backup
bucket, the journal and the DrillPassed metric (drcore.drill.runner). `{"resume": "<drill id>"}` continues a drill.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.core.config import BackupSettings, ControllerSettings, DrillSettings, RecoverySettings
from drcore.core.errors import DrError
from drcore.core.models import utc_now
from drcore.drill.requests import ResumeDrill, parse_drill_request
from drcore.wiring.drill import drill_runner

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_drill_request(event)
        runner = drill_runner(ControllerSettings.from_environ(os.environ), BackupSettings.from_environ(os.environ),
                              RecoverySettings.from_environ(os.environ), DrillSettings.from_environ(os.environ),
                              context.function_name, os.environ.get("AWS_ENDPOINT_URL"))
        if isinstance(request, ResumeDrill):
            result = runner.resume(request.resume, context.get_remaining_time_in_millis)
        else:
            result = runner.start(request.drill_id(utc_now()), request.requested_by, request.reason,
                                  context.get_remaining_time_in_millis)
    except DrError as error:  # a refused request; an AWS error raises so that Lambda retries the invocation
        logger.warning("request refused", extra={"reason": str(error)})
        return {"ok": False, "error": str(error)}
    logger.info("drill answered", extra={"status": result["status"], "drill_id": result["drill_id"]})
    return {"ok": True, **result}
