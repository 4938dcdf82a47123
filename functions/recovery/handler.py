"""recovery: the operator's console for incidents, invoked with `{"action": "<name>", ...}`.

Actions: status, list_backups, preflight (read-only checks of what the controller needs), validate (the read-only
post-recovery validation, which also ends every applied recovery), rollback, promote,
release, freeze, unfreeze, recover_version, and the two-step restore_s3, recover_from_backup, recover_stack,
comprehensive_rollback, configure_replication, failover and failback (see the README's runbook).
A refused request answers `{"ok": false, "error": ...}` and has changed nothing.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.core.config import (
    BackupSettings,
    ControllerSettings,
    FailoverSettings,
    RecoverySettings,
    RegionSettings,
)
from drcore.core.errors import DrError
from drcore.restore.manual_actions import parse_manual_action
from drcore.restore.preflight import PreflightSettings
from drcore.restore.validation_controls import ValidationSettings
from drcore.wiring.recovery import recovery_service

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_manual_action(event)
        service = recovery_service(ControllerSettings.from_environ(os.environ), BackupSettings.from_environ(os.environ),
                                   RecoverySettings.from_environ(os.environ), context.function_name,
                                   os.environ.get("AWS_ENDPOINT_URL"), PreflightSettings.from_environ(os.environ),
                                   RegionSettings.from_environ(os.environ), FailoverSettings.from_environ(os.environ),
                                   ValidationSettings.from_environ(os.environ))
        result = service.perform(request, context.get_remaining_time_in_millis)
    except DrError as error:  # a refused request, or a domain failure with its explanation
        # an AWS error is not caught: it raises, so an asynchronous continuation is retried
        logger.warning("request refused", extra={"reason": str(error)})
        return {"ok": False, "error": str(error)}
    logger.info("action performed", extra={"action": request.action, "result": result})
    return {"ok": True, "action": request.action, "result": result}
