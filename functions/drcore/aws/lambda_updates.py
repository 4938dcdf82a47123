"""Lambda's asynchronous updates, handled in one place.

Lambda answers CreateFunction, UpdateFunctionCode and UpdateFunctionConfiguration at once and applies
them afterwards: while it does, the function is `State: Pending` (a new function) or
`LastUpdateStatus: InProgress`, and another update or a PublishVersion is refused with
ResourceConflictException. So an update is retried while Lambda is busy (or throttles), with a backoff
long enough for an update to finish, bounded; and whoever changes a function waits for it to settle
before the next change, bounded too: a VPC function's update can take minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import LAMBDA_BUSY, error_code, retrying
from drcore.core.errors import DrError

logger = Logger(child=True)

MAX_ATTEMPTS = 6
BASE_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 20.0
SETTLE_TIMEOUT_SECONDS = 300.0
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 5.0


class FunctionUpdateFailed(DrError):
    """Lambda reports a failed update, or an update that does not settle."""


def update_backoff(attempt: int) -> float:
    """The pause after refused attempt `attempt`: 1, 2, 4 ... seconds. Not jittered: what it waits for is
    the function's own update, not other callers' load."""
    return min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2.0 ** (attempt - 1))


class LambdaUpdates:
    """Updates of functions through `lambda_client`, each retried while Lambda is busy and waited for."""

    def __init__(self, lambda_client: Any, *, wait: Callable[[float], None] = time.sleep) -> None:
        self._lambda = lambda_client
        self._wait = wait

    def call(self, operation: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        """`operation(**request)` (a method of the Lambda client), retried while Lambda refuses it because
        another update is in progress, or throttles; the last refusal raises."""
        return retrying(lambda: operation(**request), retry_on=LAMBDA_BUSY, sleep=self._wait,
                        max_attempts=MAX_ATTEMPTS, backoff=update_backoff, on_retry=_log_retry)

    def settled(self, function_name: str) -> dict[str, Any]:
        """The function's configuration once State and LastUpdateStatus say no update is in progress.

        Raises FunctionUpdateFailed with Lambda's reason when the update failed, and when it has not
        settled after SETTLE_TIMEOUT_SECONDS."""
        waited, delay = 0.0, FIRST_POLL_SECONDS
        while True:
            configuration: dict[str, Any] = self._lambda.get_function_configuration(FunctionName=function_name)
            state, update = configuration.get("State"), configuration.get("LastUpdateStatus")
            if state == "Failed" or update == "Failed":
                reason = configuration.get("LastUpdateStatusReason") or configuration.get("StateReason") or ""
                raise FunctionUpdateFailed(f"Lambda reports {function_name} State {state}, "
                                           f"LastUpdateStatus {update}: {reason}")
            if state != "Pending" and update != "InProgress":
                return configuration
            if waited >= SETTLE_TIMEOUT_SECONDS:
                raise FunctionUpdateFailed(f"{function_name} is still updating after {waited:.0f} s "
                                           f"(State {state}, LastUpdateStatus {update})")
            self._wait(delay)
            waited += delay
            delay = min(MAX_POLL_SECONDS, delay * 2)


def _log_retry(error: ClientError, attempt: int, pause: float) -> None:
    logger.info("lambda busy, retrying", extra={"operation": error.operation_name, "code": error_code(error),
                                                "attempt": attempt, "delay_seconds": pause})
