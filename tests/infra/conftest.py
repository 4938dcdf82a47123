"""The synthesized controller app, shared by the infrastructure tests.

Synthesis takes seconds, so the default app and the TUNED one are synthesized once per test session; tests
that need other settings synthesize their own app once per module (tests.infra.support.synthesize).
"""

from __future__ import annotations

import pytest

from tests.infra.support import TUNED, Synthesized, synthesize


@pytest.fixture(scope="session")
def synth() -> Synthesized:
    """The app exactly as `cdk synth` builds it from cdk.json."""
    return synthesize()


@pytest.fixture(scope="session")
def tuned() -> Synthesized:
    """The app for the TUNED settings: schedules, alarms, bucket and permissions must follow them."""
    return synthesize(TUNED)
