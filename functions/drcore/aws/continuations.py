"""Work that outlasts one invocation continues in the next: the function invokes itself again."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def self_invoker(lambda_client: Any, function_name: str) -> Callable[[dict[str, Any]], None]:
    """Invokes `function_name` (the caller's own) asynchronously with an event, to continue its work."""
    def invoke(event: dict[str, Any]) -> None:
        lambda_client.invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode())
    return invoke
