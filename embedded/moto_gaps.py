"""Narrow fills for what moto does not emulate, applied to moto's own backends.

Filling the gaps in the emulator (rather than in the code under test) keeps the controller's code
path identical to AWS's. Each fill is exactly one missing behaviour:

- RevisionId on UpdateAlias: moto neither checks it nor changes it on update. Here a stale
  RevisionId is refused with PreconditionFailedException, and every update issues a new one.
- Percentile statistics (p50, p99, ...) in GetMetricData: moto fails on them. Here they are computed
  from the raw datapoints with the nearest-rank method.
- Invoke: moto cannot run function code without Docker, and it drops the Qualifier of the request.
  Here an invocation of an alias or version answers as that version of the sample pipeline would:
  healthy versions return a payload, failing ones a function error.
"""

from __future__ import annotations

import json
import math
import uuid
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator
from unittest import mock

from moto.awslambda.exceptions import PreconditionFailedException
from moto.awslambda.models import LambdaBackend
from moto.awslambda.responses import LambdaResponse
from moto.cloudwatch.models import Statistics


class VersionBehaviour:
    """How each published version of the sample pipeline answers an invocation."""

    def __init__(self) -> None:
        self.failing: set[tuple[str, str]] = set()

    def set_failing(self, function_name: str, version: str, failing: bool = True) -> None:
        (self.failing.add if failing else self.failing.discard)((function_name, version))


def _percentile(values: list[float], stat: str) -> float | None:
    if not values:
        return None
    rank = float(stat[1:])
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


@contextmanager
def moto_gaps_filled(behaviour: VersionBehaviour | None = None) -> Iterator[VersionBehaviour]:
    behaviour = behaviour or VersionBehaviour()
    original_update_alias = LambdaResponse.update_alias
    original_statistic = Statistics.get_statistics_for_type
    original_invoke = LambdaResponse.invoke

    def update_alias(self: LambdaResponse) -> Any:
        function_name = self.path.rsplit("/")[-3]
        alias_name = self.path.rsplit("/", 2)[-1]
        expected = json.loads(self.body or "{}").get("RevisionId")
        alias = self.backend.get_alias(alias_name, function_name)
        if expected and expected != alias.revision_id:
            raise PreconditionFailedException(
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetAlias API to retrieve the latest Revision Id"
            )
        response = original_update_alias(self)
        alias.revision_id = str(uuid.uuid4())
        body = json.loads(response[2])
        body["RevisionId"] = alias.revision_id
        return response[0], response[1], json.dumps(body)

    def statistic(self: Statistics, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            return _percentile(self.metric_single_values_list, stat)
        return original_statistic(self, stat)

    def invoke_with_qualifier(self: LambdaResponse) -> Any:
        qualifier = self.querystring.get("Qualifier")
        if qualifier:
            self.querystring["qualifier"] = qualifier
        return original_invoke(self)

    def invoke(self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: Any) -> bytes:
        name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
        version = qualifier or "$LATEST"
        if qualifier and not qualifier.isdigit() and qualifier != "$LATEST":
            version = self.get_alias(qualifier, name).function_version
        response_headers["x-amz-executed-version"] = version
        if (name, version) in behaviour.failing:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorMessage": f"version {version} is failing", "errorType": "RuntimeError"}).encode()
        return json.dumps({"statusCode": 200, "version": version, "healthy": True}).encode()

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(LambdaResponse, "update_alias", update_alias))
        patches.enter_context(mock.patch.object(Statistics, "get_statistics_for_type", statistic))
        patches.enter_context(mock.patch.object(LambdaResponse, "invoke", invoke_with_qualifier))
        patches.enter_context(mock.patch.object(LambdaBackend, "invoke", invoke))
        yield behaviour
