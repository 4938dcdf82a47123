"""Test helpers shared by the unit and end-to-end tests."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

MUTATING_PREFIXES = ("Update", "Put", "Create", "Delete", "Publish", "Invoke", "Set", "Transact", "Batch",
                     "Execute", "Copy", "Upload", "Complete", "Tag", "Untag", "Add", "Remove", "Restore")


class SimulatedClock:
    """A clock the test moves by hand; the controller reads it through its injected `clock`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class CallRecorder:
    """Records every AWS call made through the clients it is attached to, in order (botocore hooks)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def attach(self, *clients: Any) -> CallRecorder:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._record)
        return self

    def spy_on_every_client(self, monkeypatch: Any) -> CallRecorder:
        """Record calls of every boto3 client, including those a handler builds for itself."""
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        recorder = self

        def recording(client: Any, operation_name: str, params: Any) -> Any:
            recorder.calls.append(operation_name)
            return original(client, operation_name, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recording)
        return self

    def _record(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)

    def mutating(self) -> list[str]:
        return [name for name in self.calls if name.startswith(MUTATING_PREFIXES)]

    def count(self) -> Counter[str]:
        return Counter(self.calls)


def put_alias_metrics(cloudwatch: Any, function_name: str, version: str, at: datetime, *, invocations: int = 0,
                      durations_ms: list[float] | None = None) -> None:
    """Record what Lambda would publish for traffic LIVE served with `version` (moto runs no code)."""
    dimensions = [{"Name": "FunctionName", "Value": function_name}, {"Name": "Resource", "Value": f"{function_name}:LIVE"},
                  {"Name": "ExecutedVersion", "Value": version}]
    data = [{"MetricName": "Invocations", "Dimensions": dimensions, "Value": 1.0, "Timestamp": at, "Unit": "Count"}
            for _ in range(invocations)]
    data += [{"MetricName": "Duration", "Dimensions": dimensions, "Value": value, "Timestamp": at, "Unit": "Milliseconds"}
             for value in durations_ms or []]
    for start in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data[start:start + 500])
