"""restore_shard: applies and verifies one shard of a fanned-out bucket restore (drcore.restore.restore_shards).

Event, from the restore fan-out state machine's map: `{"shard": {"plan_id": "<plan id>", "target_bucket": "<bucket>",
"number": <n>}}`, answered with `finished` (whether the shard is done: the map invokes it again until it is) and what
this invocation copied and removed; each invocation publishes its progress (the restore shard metrics). A request
that is not a valid one is answered `{"ok": false, "finished": false, "error": ...}` and reads or writes nothing, and
one naming a shard its plan does not hold (no shard plan, or no such shard) alike, after reading the plan and
writing nothing; an AWS error raises, for the map's retry.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from drcore.core.config import BackupSettings, RecoverySettings
from drcore.core.errors import InvalidRequest
from drcore.restore.shard_requests import parse_restore_shard_request
from drcore.wiring.restores import restore_shard_worker

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    backup = BackupSettings.from_environ(os.environ)
    recovery = RecoverySettings.from_environ(os.environ)
    try:
        shard = parse_restore_shard_request(event, (backup.data_bucket, *recovery.restore_target_buckets))
        run = restore_shard_worker(backup).run(shard, context.get_remaining_time_in_millis)
    except InvalidRequest as error:  # ill-formed, or a shard its plan does not hold (no shard plan, or no such shard)
        logger.warning("request refused", extra={"reason": str(error)})
        # `finished: false` as well: the map's loop reads both, and fails the shard on `ok: false`
        return {"ok": False, "finished": False, "error": str(error)}
    return {"ok": True, **run.to_dict()}
