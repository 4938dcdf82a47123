"""backup: backs up the protected pipeline on schedules and on its configuration changes.

Events: `{"component": "lambda" | "s3" | "stack" | "logs" | "all"}` from EventBridge schedules, its own
`{"component": "s3", "resume": "<snapshot id>"}` continuations of long snapshots, the snapshot fan-out state
machine's `{"component": "s3", "shard": {"backup_id": "<snapshot id>", "number": <n>}}` (answered with
`finished`: whether the shard is done) and merge (a resume), and CloudTrail configuration-change events of
the protected function (a function backup within seconds).
A CloudTrail event it has nothing to do for is answered `{"status": "ignored", "reason": ...}`; a request
that is not a valid one `{"ok": false, "error": ...}`; neither reads or writes anything. A shard its snapshot's
plan does not hold (no plan, or no such shard) is answered `{"ok": false, "finished": false, "error": ...}`, and
writes nothing.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.backup.requests import Ignored, parse_backup_request
from drcore.core.config import BackupSettings
from drcore.core.errors import InvalidRequest
from drcore.wiring.backup import backup_runner

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = BackupSettings.from_environ(os.environ)
    try:
        request = parse_backup_request(event, settings.protected_function)
    except InvalidRequest as error:
        return _refused(error)
    if isinstance(request, Ignored):
        logger.info("event ignored", extra={"reason": request.reason})
        return {"ok": True, "ignored": True, "status": "ignored", "reason": request.reason}
    runner = backup_runner(settings, context.function_name, os.environ.get("AWS_ENDPOINT_URL"))
    try:
        outcomes = runner.run(request, context.get_remaining_time_in_millis)
    except InvalidRequest as error:  # only a shard's request is refused here: its snapshot's plan does not hold it
        # `finished: false` as well: the map's loop reads both, and fails the shard on `ok: false`
        return _refused(error) | {"finished": False}
    answer = {"ok": True, "request": request.model_dump(exclude_none=True),
              "components": [outcome.__dict__ for outcome in outcomes]}
    if request.shard is not None:  # what the state machine's loop over the shard asks
        answer["finished"] = outcomes[0].status == "shard_done"
    return answer


def _refused(error: InvalidRequest) -> dict[str, Any]:
    logger.warning("request refused", extra={"reason": str(error)})
    return {"ok": False, "error": str(error)}
