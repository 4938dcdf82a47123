"""The drill report: steps measured against the recovery objectives, in JSON and Markdown.

`ok` is derived from the steps, never set by hand (DESIGN.md §4).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DrillStep:
    name: str
    ok: bool
    seconds: float
    objective_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def within_objective(self) -> bool:
        return self.objective_seconds is None or self.seconds <= self.objective_seconds


@dataclass
class DrillReport:
    environment: str  # a drcore.core.config.DrillEnvironment: "aws" or "embedded"
    started_at: str
    finished_at: str = ""
    steps: list[DrillStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok and step.within_objective for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "started_at": self.started_at, "finished_at": self.finished_at,
                "ok": self.ok, "steps": [asdict(step) for step in self.steps]}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> DrillReport:
        """A report from `to_dict` (its `ok` is derived again, not read)."""
        return cls(environment=document["environment"], started_at=document["started_at"],
                   finished_at=document["finished_at"], steps=[DrillStep(**step) for step in document["steps"]])

    def summary(self) -> dict[str, Any]:
        """What the journal and `status` keep of a drill: its result and each step's."""
        return {"environment": self.environment, "started_at": self.started_at, "finished_at": self.finished_at,
                "ok": self.ok, "steps": {step.name: step.ok and step.within_objective for step in self.steps}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_markdown(self) -> str:
        lines = [
            f"# DR drill report ({self.environment})",
            "",
            f"- Started: {self.started_at}",
            f"- Finished: {self.finished_at}",
            f"- Result: **{'PASSED' if self.ok else 'FAILED'}**",
            "",
            "| Step | Result | Seconds | Objective (s) | Details |",
            "|---|---|---|---|---|",
        ]
        for step in self.steps:
            result = "ok" if step.ok and step.within_objective else ("over objective" if step.ok else "FAILED")
            details = "; ".join(f"{key}: {value}" for key, value in step.details.items())
            objective = "" if step.objective_seconds is None else f"{step.objective_seconds:g}"
            lines.append(f"| {step.name} | {result} | {step.seconds:.3f} | {objective} | {details} |")
        return "\n".join(lines) + "\n"
