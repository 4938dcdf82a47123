"""Fencing a returning primary (drcore.rollback.region_fence): a failover that could not reach the primary leaves its
pipeline notification in place; the primary's own controller removes it on its first tick once it reads the region
record naming the secondary active, so a returning primary never processes beside the secondary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import health_watcher.handler as health_watcher
from drcore.core.controller_settings import EnvVar
from embedded.aws_events import scheduled_event
from embedded.sample_system import SampleSystem
from tests.failover_world import (
    FAILOVER,
    PRIMARY_LIVE,
    SECONDARY_LIVE,
    build_regions,
    notifications,
    processing,
    unreachable_primary,
)
from tests.support import CallRecorder, act

FENCE_ENVIRONMENT = {EnvVar.PRIMARY_REGION.value: "us-east-1", EnvVar.FENCED_BUCKET.value: "apilados-production-data"}


@pytest.fixture
def regions(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    return build_regions(world, monkeypatch)


def tick(invoke_watcher, **environment: str) -> dict:
    return dict(invoke_watcher(health_watcher, scheduled_event(datetime.now(UTC)), **environment))


def test_a_primary_returning_mid_failover_stops_processing_on_its_first_tick(regions, monkeypatch, invoke_watcher):
    # Given a failover applied while the primary was unreachable: both buckets now invoke their LIVE
    unreachable_primary(monkeypatch)
    planned = act({**FAILOVER, "force": True})["result"]
    result = act({**FAILOVER, "force": True, "confirm": planned["plan_id"]})["result"]["result"]
    assert result["primary_notification"].startswith("unreachable")
    assert processing(regions.clients["s3"], regions.data_bucket, PRIMARY_LIVE)
    assert processing(regions.clients["s3_secondary"], regions.replica_bucket, SECONDARY_LIVE)
    regions.drain_alerts()
    # When the primary comes back and its health watcher ticks
    answer = tick(invoke_watcher, **FENCE_ENVIRONMENT)
    # Then on that first tick the primary bucket stops invoking the primary LIVE, and only the replica processes
    fenced = [outcome for outcome in answer["outcomes"] if outcome["action"] == "fenced"]
    assert len(fenced) == 1 and fenced[0]["facts"]["active_region"] == "us-west-2"
    assert not processing(regions.clients["s3"], regions.data_bucket, PRIMARY_LIVE)
    assert processing(regions.clients["s3_secondary"], regions.replica_bucket, SECONDARY_LIVE)
    # And the other owner's entry on the data bucket is kept
    assert [entry["Id"] for entry in notifications(regions.clients["s3"], regions.data_bucket)[
        "QueueConfigurations"]] == ["audit"]
    # And it is journaled and alerted at severity 1
    [entry] = [entry for entry in act({"action": "status"})["result"]["recent_actions"] if entry["action"] == "fence"]
    assert entry["result"] == "removed"
    assert [alert["severity"] for alert in regions.drain_alerts() if "fenced" in alert["subject"]] == [1]
    # And the next tick changes nothing
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    again = tick(invoke_watcher, **FENCE_ENVIRONMENT)
    assert not [outcome for outcome in again["outcomes"] if outcome["action"] == "fenced"]
    assert "PutBucketNotificationConfiguration" not in calls.calls


def test_the_active_primary_is_never_fenced(regions, monkeypatch, invoke_watcher):
    # Given no failover: the region record names the primary active
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the primary's watcher ticks, Then its bucket keeps processing and its notification is not even read
    answer = tick(invoke_watcher, **FENCE_ENVIRONMENT)
    assert not [outcome for outcome in answer["outcomes"] if outcome["action"] == "fenced"]
    assert "GetBucketNotificationConfiguration" not in calls.calls and "Query" in calls.calls
    assert processing(regions.clients["s3"], regions.data_bucket, PRIMARY_LIVE)
