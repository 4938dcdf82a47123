"""What a controller operation did, or why it did nothing: the watchers' and the recovery function's answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """What a controller operation did (or why it did nothing), for the handler's result and metrics."""

    action: str
    detail: str
    from_version: str | None = None
    to_version: str | None = None
    severity: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, {})}
