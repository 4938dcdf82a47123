"""The watchers' wiring: the alias controller, the health probe and the version gauges, nothing more."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from drcore.aws.aliases import AliasGateway
from drcore.aws.clients import client_factory, single_attempt_clients
from drcore.aws.metrics import VersionGauges
from drcore.aws.pipeline_notification import BucketNotifications
from drcore.core.controller_settings import ControllerSettings
from drcore.core.metric_names import LIVE_VERSION_METRIC
from drcore.rollback.controller import AliasController
from drcore.rollback.health_probe import HealthProbe
from drcore.rollback.region_fence import RegionFence
from drcore.state.region_record import RegionRecord
from drcore.state.store import ControllerStateStore
from drcore.wiring.shared import alert_publisher, alias_controller


@dataclass(frozen=True)
class WatcherServices:
    controller: AliasController
    health_probe: HealthProbe
    version_gauges: VersionGauges
    fence: RegionFence | None  # None: no bucket to fence is configured (DR_FENCED_BUCKET)


@lru_cache(maxsize=4)
def watcher_services(settings: ControllerSettings, endpoint_url: str | None = None) -> WatcherServices:
    client = client_factory()
    gauges = VersionGauges(client("cloudwatch"), settings.metrics_namespace, settings.protected_function)
    # The gauge of the version LIVE serves after a rollback depends on nothing but the flip: it is published
    # while the rollback writes its journal, alert and record (one at a time, in the order a crash needs).
    beside_rollbacks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beside-rollback")

    def publish_live_version(version: str) -> Future[None]:
        return beside_rollbacks.submit(gauges.publish, {LIVE_VERSION_METRIC: version})

    controller, aliases, _ = alias_controller(settings, client, after_flip=publish_live_version)
    # The probe's invocations go through clients of their own, which give up rather than retry (health_probe).
    probe_clients = single_attempt_clients("lambda")

    def bounded_invoker(seconds: int) -> AliasGateway:
        return AliasGateway(probe_clients(seconds), settings.protected_function)

    probe = HealthProbe(aliases, bounded_invoker, client("cloudwatch"), settings.metrics_namespace,
                        settings.protected_function, settings.live_alias, settings.health_probe_timeout_seconds)
    fence = None
    if settings.fenced_bucket and settings.primary_region:
        lambda_client = client("lambda")
        record = RegionRecord(client("dynamodb"), settings.state_table, settings.protected_function,
                              settings.primary_region)
        fence = RegionFence(record, BucketNotifications(client("s3")), lambda_client,
                            ControllerStateStore(client("dynamodb"), settings.state_table),
                            alert_publisher(settings, client), settings.protected_function, settings.live_alias,
                            settings.fenced_bucket, str(lambda_client.meta.region_name))
    return WatcherServices(controller=controller, health_probe=probe, version_gauges=gauges, fence=fence)
