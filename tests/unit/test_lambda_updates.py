"""Lambda's asynchronous updates: an update refused while another is in progress is retried, bounded, and a
function is waited for until it settles, with Lambda's reason when it fails.

A scripted stand-in for the Lambda client answers here: what is checked is how LambdaUpdates reacts to
each answer (moto settles every update at once; tests/unit/test_function_restore.py runs the same code
against moto with updates that take time)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from drcore.aws.lambda_updates import (
    MAX_ATTEMPTS,
    SETTLE_TIMEOUT_SECONDS,
    FunctionUpdateFailed,
    LambdaUpdates,
)

FUNCTION = "apilados-pipeline-ingest"


def _refusal(code: str, operation: str = "UpdateFunctionConfiguration") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "refused"}}, operation)


class ScriptedLambda:
    """Answers GetFunctionConfiguration with the configurations given, in order, the last one for ever."""

    def __init__(self, *configurations: dict[str, Any]) -> None:
        self._configurations = list(configurations)
        self.reads = 0

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.reads += 1
        return self._configurations.pop(0) if len(self._configurations) > 1 else self._configurations[0]


class Refusing:
    """An update that is refused with `code` `times` times, then succeeds."""

    def __init__(self, code: str, times: int) -> None:
        self._code = code
        self._left = times
        self.attempts = 0

    def __call__(self, **request: Any) -> dict[str, Any]:
        self.attempts += 1
        if self._left:
            self._left -= 1
            raise _refusal(self._code)
        return {"FunctionName": request["FunctionName"], "LastUpdateStatus": "InProgress"}


def test_an_update_refused_while_another_is_in_progress_is_retried_with_growing_pauses():
    waits: list[float] = []
    update = Refusing("ResourceConflictException", times=3)
    answer = LambdaUpdates(ScriptedLambda({}), wait=waits.append).call(update, FunctionName=FUNCTION)
    assert answer["FunctionName"] == FUNCTION and update.attempts == 4 and waits == [1.0, 2.0, 4.0]


def test_throttling_is_retried_too_but_other_errors_raise_at_once():
    waits: list[float] = []
    updates = LambdaUpdates(ScriptedLambda({}), wait=waits.append)
    assert updates.call(Refusing("TooManyRequestsException", times=1), FunctionName=FUNCTION)
    with pytest.raises(ClientError, match="InvalidParameterValueException"):
        updates.call(Refusing("InvalidParameterValueException", times=1), FunctionName=FUNCTION)
    assert waits == [1.0]


def test_retries_are_bounded():
    waits: list[float] = []
    update = Refusing("ResourceConflictException", times=1000)
    with pytest.raises(ClientError, match="ResourceConflictException"):
        LambdaUpdates(ScriptedLambda({}), wait=waits.append).call(update, FunctionName=FUNCTION)
    assert update.attempts == MAX_ATTEMPTS and len(waits) == MAX_ATTEMPTS - 1 and max(waits) <= 20.0


def test_a_function_is_waited_for_until_its_update_settles():
    # Given a new function that is Pending, then updating, then done
    lam = ScriptedLambda({"State": "Pending"}, {"State": "Active", "LastUpdateStatus": "InProgress"},
                         {"State": "Active", "LastUpdateStatus": "Successful", "RevisionId": "r2"})
    waits: list[float] = []
    # When waited for, Then its settled configuration comes back after polls that grow
    assert LambdaUpdates(lam, wait=waits.append).settled(FUNCTION)["RevisionId"] == "r2"
    assert lam.reads == 3 and waits == [0.5, 1.0]


def test_a_failed_update_raises_with_lambdas_reason():
    lam = ScriptedLambda({"State": "Active", "LastUpdateStatus": "Failed",
                          "LastUpdateStatusReason": "The subnet has no free IP addresses"})
    with pytest.raises(FunctionUpdateFailed, match="LastUpdateStatus Failed: The subnet has no free IP addresses"):
        LambdaUpdates(lam, wait=lambda seconds: None).settled(FUNCTION)


def test_an_update_that_never_settles_stops_waiting_after_the_timeout():
    waits: list[float] = []
    with pytest.raises(FunctionUpdateFailed, match=f"{FUNCTION} is still updating after"):
        LambdaUpdates(ScriptedLambda({"State": "Active", "LastUpdateStatus": "InProgress"}),
                      wait=waits.append).settled(FUNCTION)
    assert SETTLE_TIMEOUT_SECONDS <= sum(waits) < SETTLE_TIMEOUT_SECONDS + 5 and max(waits) == 5.0
