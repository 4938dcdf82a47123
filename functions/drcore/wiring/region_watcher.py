"""The region watcher's wiring: the primary seen through bounded clients of its region, the watch and the region
record in the local replica of the state table, the alert topics of this region, and this region's recovery
function as the way to a failover plan."""

from __future__ import annotations

from drcore.aws.aliases import AliasGateway
from drcore.aws.clients import client_factory, single_attempt_clients
from drcore.core.config import FailoverSettings, RegionSettings
from drcore.core.controller_settings import ControllerSettings
from drcore.core.errors import InvalidRequest
from drcore.core.models import utc_now
from drcore.region.primary_observer import PrimaryObserver
from drcore.region.recovery_planner import RecoveryFunctionPlanner
from drcore.region.region_watch import RegionWatcher, RegionWatchTexts, WatchPolicy
from drcore.state.region_record import RegionRecord
from drcore.state.region_watch import RegionWatchStore
from drcore.wiring.shared import alert_publisher

# What a tick keeps for itself around the synchronous call to the recovery function (its own reads and writes).
TICK_RESERVE_SECONDS = 10


def region_watcher(settings: ControllerSettings, failover: FailoverSettings, region: RegionSettings,
                   remaining_seconds: int) -> RegionWatcher:
    primary, recovery_function = failover.primary_region, failover.recovery_function
    if primary is None or recovery_function is None or region.secondary_region is None:
        raise InvalidRequest("the region watcher needs DR_PRIMARY_REGION, DR_SECONDARY_REGION and "
                             "DR_RECOVERY_FUNCTION_NAME")
    client = client_factory()
    own_region = client("dynamodb").meta.region_name
    probe_lambda = single_attempt_clients("lambda", primary)

    def invoker(seconds: int) -> AliasGateway:
        return AliasGateway(probe_lambda(seconds), settings.protected_function)

    observer = PrimaryObserver(invoker, single_attempt_clients("cloudwatch", primary), settings.live_alias,
                               settings.watched_alarms, settings.health_probe_timeout_seconds)
    # The recovery function answers a plan in seconds and a confirm in as long as a failover takes: one attempt
    # (a repeated confirm is refused as already confirmed), waiting as long as this invocation can.
    recovery_lambda = single_attempt_clients("lambda")(max(1, remaining_seconds - TICK_RESERVE_SECONDS))
    record = RegionRecord(client("dynamodb"), settings.state_table, settings.protected_function, primary)
    return RegionWatcher(
        observer=observer,
        store=RegionWatchStore(client("dynamodb"), settings.state_table, settings.protected_function, own_region),
        planner=RecoveryFunctionPlanner(recovery_lambda, recovery_function),
        alerts=alert_publisher(settings, client),
        texts=RegionWatchTexts(settings.protected_function, primary, region.secondary_region, recovery_function),
        policy=WatchPolicy(failover.detect_minutes, failover.automatic, failover.auto_after_minutes),
        active_region=record.active_region,
        own_region=own_region,
        clock=utc_now,
    )
