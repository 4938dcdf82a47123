"""Fixtures: fake credentials, moto with its gaps filled, the sample system, a controller on a clock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase
from moto import mock_aws

from drcore.aws.alarms import AlarmBoard
from drcore.aws.alerts import AlertPublisher
from drcore.core.config import ControllerSettings
from drcore.rollback.controller import AliasController
from drcore.aws.metrics import FunctionMetrics, HealthProbe
from drcore.aws.aliases import AliasGateway
from drcore.state.store import ControllerStateStore
from drcore.wiring.watchers import watcher_services
from embedded.moto_gaps import VersionBehaviour, moto_gaps_filled
from embedded.sample_system import SampleSystem, build_sample_system
from tests.support import CallRecorder, SimulatedClock

# Property-based tests: `ci` (the default, what `make test` runs) keeps each property to a few dozen
# examples; HYPOTHESIS_PROFILE=thorough searches far longer. Either way a failing example is saved under
# .hypothesis/ and replayed first on the next run, until it passes.
_EXAMPLES = DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[1] / ".hypothesis" / "examples")
# Each example calls real handlers against moto: slow next to a pure function, and slower on a busy machine.
_SLOW_EXAMPLES = [HealthCheck.too_slow]
hypothesis_settings.register_profile("ci", max_examples=50, deadline=None, database=_EXAMPLES,
                                     suppress_health_check=_SLOW_EXAMPLES)
hypothesis_settings.register_profile("thorough", max_examples=1000, deadline=None, database=_EXAMPLES,
                                     suppress_health_check=_SLOW_EXAMPLES)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def versions_behaviour() -> Iterator[VersionBehaviour]:
    with mock_aws(), moto_gaps_filled() as behaviour:
        yield behaviour
    watcher_services.cache_clear()


@pytest.fixture
def system(versions_behaviour: VersionBehaviour) -> SampleSystem:
    return build_sample_system(boto3.session.Session(region_name="us-east-1"))


@pytest.fixture
def settings(system: SampleSystem) -> ControllerSettings:
    return ControllerSettings.from_environ(system.environment())


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def calls() -> CallRecorder:
    return CallRecorder()


def build_controller(settings: ControllerSettings, clock: SimulatedClock, calls: CallRecorder) -> AliasController:
    session = boto3.session.Session(region_name="us-east-1")
    lam, cloudwatch, dynamodb, sns = (session.client(name) for name in ("lambda", "cloudwatch", "dynamodb", "sns"))
    calls.attach(lam, cloudwatch, dynamodb, sns)
    return AliasController(
        settings=settings,
        store=ControllerStateStore(dynamodb, settings.state_table),
        aliases=AliasGateway(lam, settings.protected_function),
        alarm_board=AlarmBoard(cloudwatch),
        alerts=AlertPublisher(sns, settings.alert_topic_arn, settings.emergency_topic_arn),
        function_metrics=FunctionMetrics(cloudwatch, settings.protected_function, settings.live_alias),
        clock=clock,
    )


@pytest.fixture
def controller(settings: ControllerSettings, clock: SimulatedClock, calls: CallRecorder) -> AliasController:
    return build_controller(settings, clock, calls)


@pytest.fixture
def health_probe(settings: ControllerSettings) -> HealthProbe:
    session = boto3.session.Session(region_name="us-east-1")
    return HealthProbe(AliasGateway(session.client("lambda"), settings.protected_function), session.client("cloudwatch"),
                       settings.metrics_namespace, settings.protected_function, settings.live_alias)


@pytest.fixture
def invoke_watcher(system: SampleSystem, monkeypatch: pytest.MonkeyPatch):
    """Call a watcher's real handler with the environment the stack gives it."""
    from embedded.aws_events import LambdaContextStub

    def invoke(module: object, event: object, **environment: str) -> dict:
        for name, value in system.environment(**environment).items():
            monkeypatch.setenv(name, value)
        return module.handler(event, LambdaContextStub("apilados-dr-watcher"))  # type: ignore[attr-defined]

    return invoke
