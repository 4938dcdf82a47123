"""retention: prunes the data bucket's snapshots and the function, stack and logs backups by the retention policy,
and keeps what the backups that stay need under Object Lock, on its schedule or on
`{"action": "retention", "requested_by": ..., "reason": ...}`.

The only function of the stack whose role may hide a stored backup (a delete marker; never a version
deleted): it removes expired backups and the content no remaining snapshot references
(drcore.backup.retention_run). A request that is not a valid one is answered `{"ok": false, "error": ...}`
and changes nothing.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.backup.retention_run import parse_retention_request
from drcore.core.config import BackupSettings, RetentionSettings
from drcore.core.errors import InvalidRequest
from drcore.wiring.retention import retention_run

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = parse_retention_request(event)
    except InvalidRequest as error:
        logger.warning("request refused", extra={"reason": str(error)})
        return {"ok": False, "error": str(error)}
    run = retention_run(BackupSettings.from_environ(os.environ), RetentionSettings.from_environ(os.environ),
                        os.environ.get("AWS_ENDPOINT_URL"))
    return {"ok": True, **run.run(request, context.get_remaining_time_in_millis)}
