"""Recording every AWS call the controller's handlers make, keyed by the function whose role makes it.

A handler is identified by its handler string (`backup.handler.handler`), exactly as the synthesized
template's AWS::Lambda::Function names it, and by the region it runs in (AWS_REGION, as Lambda sets it, or
AWS_DEFAULT_REGION, when the handler is entered): the controller stack and the standby stack deploy the same
handlers in two regions, each with its own role. So a recorded call finds its role without a table of names.
While `record_calls` is active, each handler module's `handler` is wrapped to mark which function is
running, and botocore's `BaseClient._make_api_call` (through which every operation passes, paginated and
managed-transfer calls included) records each call made meanwhile, from any thread: the scenarios run one
handler at a time, and a handler's worker threads (concurrent copies) act under its role.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from botocore.client import BaseClient
from botocore.exceptions import ClientError

# Parameters whose values are payloads, not addresses: kept out of the record (a code archive can be MBs).
_PAYLOADS = frozenset({"Body", "ZipFile", "Payload", "TemplateBody", "Content"})


@dataclass(frozen=True)
class RecordedCall:
    """One AWS operation a handler called, as botocore received it."""

    handler: str  # the function's handler string, e.g. "recovery.handler.handler"
    invoked_as: str  # the function name the scenario gave the handler's context
    service: str  # botocore's service name, e.g. "s3", "lambda", "cloudwatch"
    operation: str  # e.g. "CopyObject"
    params: Mapping[str, Any]
    region: str  # the client's region: where the call went, which a cross-region call makes another
    error_code: str | None = None  # the service's error code when the call failed
    answer: Mapping[str, str] = field(default_factory=dict)  # the response's top-level text fields, e.g. an Id
    function_region: str = ""  # where the calling function runs, so whose stack's role it has ("" if unknown)

    def describe(self) -> str:
        shown = {key: value for key, value in self.params.items() if not isinstance(value, (bytes, dict, list))}
        return f"{self.service}:{self.operation} {shown}"


@dataclass
class CallRecording:
    """What one `record_calls` block saw: the calls in order, and how each function was first invoked."""

    calls: list[RecordedCall] = field(default_factory=list)
    invoked_as: dict[str, str] = field(default_factory=dict)  # handler string -> context.function_name
    environments: dict[str, dict[str, str]] = field(default_factory=dict)  # handler string -> its os.environ
    # The same, for each region a handler ran in: region -> handler string -> ...
    regional_invoked_as: dict[str, dict[str, str]] = field(default_factory=dict)
    regional_environments: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def for_handler(self, handler: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.handler == handler]


class _ActiveHandler:
    """Which function is running now; shared by its worker threads, so not a thread-local."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.handler: str | None = None
        self.invoked_as = ""
        self.region = ""

    def enter(self, handler: str, invoked_as: str, region: str) -> None:
        with self._lock:
            if self.handler is not None:
                raise RuntimeError(f"{handler} started while {self.handler} runs: the recorder keys calls by the "
                                   "one running handler, so scenarios must run handlers one at a time")
            self.handler, self.invoked_as, self.region = handler, invoked_as, region

    def leave(self) -> None:
        with self._lock:
            self.handler, self.invoked_as, self.region = None, "", ""


def function_region(environment: Mapping[str, str]) -> str:
    """The region a handler runs in: Lambda's AWS_REGION, or the SDK's AWS_DEFAULT_REGION a scenario sets."""
    return environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or ""


def _module_of(handler: str) -> tuple[ModuleType, str]:
    module_name, _, attribute = handler.rpartition(".")
    return importlib.import_module(module_name), attribute


def _recorded_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: ("<payload>" if key in _PAYLOADS else value) for key, value in params.items()}


@contextmanager
def record_calls(handlers: Iterable[str]) -> Iterator[CallRecording]:
    """Record the AWS calls of each of `handlers` (handler strings) while the block runs.

    Calls made outside any handler (a scenario arranging its world) are not recorded: no role makes them.
    """
    recording = CallRecording()
    active = _ActiveHandler()
    # getattr and setattr: botocore's stubs do not declare the private method every operation passes through,
    # and mypy would not let a method be replaced; replacing it is the point.
    original_call: Callable[..., Any] = getattr(BaseClient, "_make_api_call")  # noqa: B009
    wrapped: list[tuple[ModuleType, str, Callable[..., Any]]] = []

    def recording_call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        handler, invoked_as, region = active.handler, active.invoked_as, active.region
        if handler is None:
            return original_call(client, operation_name, api_params)
        error_code: str | None = None
        answer: dict[str, str] = {}
        try:
            response = original_call(client, operation_name, api_params)
            answer = {key: value for key, value in response.items() if isinstance(value, str)}
            return response
        except ClientError as error:
            error_code = str(error.response.get("Error", {}).get("Code", ""))
            raise
        finally:
            recording.calls.append(RecordedCall(
                handler=handler, invoked_as=invoked_as, service=client.meta.service_model.service_name,
                operation=operation_name, params=_recorded_params(api_params), region=client.meta.region_name,
                error_code=error_code, answer=answer, function_region=region))

    def marking(handler: str, entry: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(entry)
        def run(event: Any, context: Any) -> Any:
            invoked_as = str(getattr(context, "function_name", ""))
            environment = dict(os.environ)
            region = function_region(environment)
            recording.invoked_as.setdefault(handler, invoked_as)
            recording.environments.setdefault(handler, environment)
            recording.regional_invoked_as.setdefault(region, {}).setdefault(handler, invoked_as)
            recording.regional_environments.setdefault(region, {}).setdefault(handler, environment)
            active.enter(handler, invoked_as, region)
            try:
                return entry(event, context)
            finally:
                active.leave()

        return run

    try:
        for handler in handlers:
            module, attribute = _module_of(handler)
            entry = getattr(module, attribute)
            wrapped.append((module, attribute, entry))
            setattr(module, attribute, marking(handler, entry))
        setattr(BaseClient, "_make_api_call", recording_call)  # noqa: B010
        yield recording
    finally:
        setattr(BaseClient, "_make_api_call", original_call)  # noqa: B010
        for module, attribute, entry in reversed(wrapped):
            setattr(module, attribute, entry)
