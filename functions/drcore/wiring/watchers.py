"""The watchers' wiring: the alias controller, the health probe and the version gauges, nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from drcore.aws.clients import client_factory
from drcore.aws.metrics import HealthProbe, VersionGauges
from drcore.core.config import ControllerSettings
from drcore.rollback.controller import AliasController
from drcore.wiring.shared import alias_controller


@dataclass(frozen=True)
class WatcherServices:
    controller: AliasController
    health_probe: HealthProbe
    version_gauges: VersionGauges


@lru_cache(maxsize=4)
def watcher_services(settings: ControllerSettings, endpoint_url: str | None = None) -> WatcherServices:
    client = client_factory()
    controller, aliases, _ = alias_controller(settings, client)
    probe = HealthProbe(aliases, client("cloudwatch"), settings.metrics_namespace, settings.protected_function,
                        settings.live_alias)
    gauges = VersionGauges(client("cloudwatch"), settings.metrics_namespace, settings.protected_function)
    return WatcherServices(controller=controller, health_probe=probe, version_gauges=gauges)
