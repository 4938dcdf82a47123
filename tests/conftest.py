"""Fixtures: fake credentials, fresh builders, moto with its gaps filled, the sample system, a controller on a
clock built by the watchers' own wiring."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase
from moto import mock_aws

from drcore.aws.clients import ClientFactory, client_factory
from drcore.core.config import ControllerSettings
from drcore.rollback.controller import AliasController
from drcore.rollback.health_probe import HealthProbe
from drcore.wiring.backup import backup_runner
from drcore.wiring.drill import drill_runner
from drcore.wiring.recovery import recovery_service
from drcore.wiring.restores import restore_shard_worker
from drcore.wiring.shared import alias_controller
from drcore.wiring.watchers import watcher_services
from embedded.aws_events import LambdaContextStub
from embedded.moto_gaps import VersionBehaviour, moto_gaps_filled
from embedded.s3_copy_conditions import s3_copy_conditions_as_aws
from embedded.s3_version_listing import version_listing_after_key_marker
from embedded.s3_version_pages import version_listing_by_page
from embedded.sample_system import SampleSystem, build_sample_system
from tests.support import CallRecorder, SimulatedClock

# Every function's builder, cached per warm execution environment (drcore.wiring).
CACHED_BUILDERS = (watcher_services, backup_runner, recovery_service, drill_runner, restore_shard_worker)

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


@pytest.fixture(autouse=True)
def s3_as_aws() -> Iterator[None]:
    """Every test's S3 copies and lists versions as AWS's does where moto does not: a 412 for a copy whose source
    ETag or target condition does not hold (embedded.s3_copy_conditions), the keys after a KeyMarker given alone
    (embedded.s3_version_listing), and each listing page costing a page, not the bucket (embedded.s3_version_pages)."""
    with s3_copy_conditions_as_aws(), version_listing_by_page(), version_listing_after_key_marker():
        yield


@pytest.fixture(autouse=True)
def fresh_builders() -> None:
    """Each test builds its functions anew: a builder cached by an earlier test would hold clients (and
    settings) of a world that is gone."""
    for builder in CACHED_BUILDERS:
        builder.cache_clear()


@pytest.fixture
def versions_behaviour() -> Iterator[VersionBehaviour]:
    with mock_aws(), moto_gaps_filled() as behaviour:
        yield behaviour


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


def recorded_clients(calls: CallRecorder) -> ClientFactory:
    """The functions' own client factory, each client's calls recorded."""
    client = client_factory()

    def recorded(service: str) -> Any:
        built = client(service)
        calls.attach(built)
        return built

    return recorded


@pytest.fixture
def controller(settings: ControllerSettings, clock: SimulatedClock, calls: CallRecorder) -> AliasController:
    """The watchers' controller, built as their wiring builds it, on the test's clock."""
    controller, _, _ = alias_controller(settings, recorded_clients(calls), clock=clock)
    return controller


@pytest.fixture
def health_probe(settings: ControllerSettings) -> HealthProbe:
    return watcher_services(settings).health_probe


@pytest.fixture
def invoke_watcher(system: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """Call a watcher's real handler with the environment the stack gives it."""

    def invoke(module: object, event: object, **environment: str) -> dict[str, Any]:
        for name, value in system.environment(**environment).items():
            monkeypatch.setenv(name, value)
        return module.handler(event, LambdaContextStub("apilados-dr-watcher"))  # type: ignore[attr-defined]

    return invoke
