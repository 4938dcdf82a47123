"""The synthesized controller app, shared by the infrastructure tests.

Synthesis takes seconds, so the default app is synthesized once per test session; tests that need other
settings synthesize their own app once per module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from app import build_app


@dataclass(frozen=True)
class Synthesized:
    app: cdk.App
    stack: cdk.Stack
    template: Template

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]


def synthesize(context_overrides: dict[str, Any] | None = None) -> Synthesized:
    app = build_app(context_overrides)
    (stack,) = [child for child in app.node.children if isinstance(child, cdk.Stack)]
    return Synthesized(app=app, stack=stack, template=Template.from_stack(stack))


@pytest.fixture(scope="session")
def synth() -> Synthesized:
    """The app exactly as `cdk synth` builds it from cdk.json."""
    return synthesize()
