"""recovery: the operator's console for incidents, invoked with `{"action": "<name>", ...}`.

Actions: status, rollback, promote, release, freeze, unfreeze, recover_version (see the README's
runbook). A refused request answers `{"ok": false, "error": ...}` and has changed nothing.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.config import ControllerSettings
from drcore.errors import InvalidRequest
from drcore.manual_actions import parse_manual_action
from drcore.wiring import recovery_service

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_manual_action(event)
        settings = ControllerSettings.from_environ(os.environ)
        result = recovery_service(settings, os.environ.get("AWS_ENDPOINT_URL")).perform(request)
    except InvalidRequest as error:
        logger.warning("request refused", extra={"reason": str(error)})
        return {"ok": False, "error": str(error)}
    logger.info("action performed", extra={"action": request.action, "result": result})
    return {"ok": True, "action": request.action, "result": result}
