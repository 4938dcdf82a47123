"""The `replication` section of the recovery function's `status`, against moto with S3's replication filled in
(embedded/s3_replication.py, driven through `versions_behaviour.replication`): a lagging replica, failures, copies
missing from the replica, objects from before the rule, and a secondary region that cannot be reached."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine
from botocore.client import BaseClient
from botocore.exceptions import EndpointConnectionError

from drcore.region.replication_s3 import ReplicationGateway
from embedded.moto_gaps import VersionBehaviour
from embedded.sample_system import SampleSystem, add_replica
from tests.support import WHO, act

NEW_KEYS = [f"uploads/2026/11/late-{n}.csv" for n in range(3)]


@pytest.fixture
def configured(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    """The world with the replica, replication configured through the recovery function, and the sample in
    `status` set to the three newest versions."""
    add_replica(world, boto3.session.Session(region_name="us-east-1"))
    for name, value in world.region_environment(DR_REPLICATION_SAMPLE_SIZE="3").items():
        monkeypatch.setenv(name, value)
    planned = act({"action": "configure_replication", **WHO})["result"]
    assert act({"action": "configure_replication", **WHO, "confirm": planned["plan_id"]})["result"]["result"]["ok"]
    return world


def upload(world: SampleSystem, keys: list[str]) -> dict[str, str]:
    """New uploads to the data bucket: key -> version id."""
    return {key: world.clients["s3"].put_object(Bucket=world.data_bucket, Key=key, Body=f"id\n{key}\n".encode())[
        "VersionId"] for key in keys}


def replication_status() -> dict[str, Any]:
    return dict(act({"action": "status"})["result"]["replication"])


def test_a_lagging_replica_names_its_pending_objects_and_their_age(configured, versions_behaviour: VersionBehaviour):
    # Given a replica 20 minutes behind: three uploads not replicated yet
    versions_behaviour.replication.lag = timedelta(hours=1)
    versions = upload(configured, NEW_KEYS)
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=20)):
        # When the operator asks for the status
        report = replication_status()
    # Then the rule is configured, but the three are pending, each named with its age, past the latency threshold
    assert report["configured"] is True and report["rule"]["problems"] == []
    sample = report["sample"]
    assert (sample["checked"], sample["pending"], sample["late"], sample["completed"]) == (3, 3, 3, 0)
    named = {entry["key"]: entry for entry in sample["named"]["pending"]}
    assert set(named) == set(NEW_KEYS)
    assert all(named[key]["version_id"] == versions[key] and named[key]["age_seconds"] >= 1200 for key in NEW_KEYS)
    # And S3's metrics say the same: three operations pending, twenty minutes of latency
    metrics = report["metrics"]
    assert metrics["operations_pending"] == 3 and metrics["latency_seconds"] >= 1200
    assert metrics["bytes_pending"] == sum(len(f"id\n{key}\n") for key in NEW_KEYS)
    assert report["healthy"] is False


def test_once_replicated_every_sampled_object_is_found_on_the_replica(configured, versions_behaviour):
    # Given three uploads, pending at first
    versions_behaviour.replication.lag = timedelta(hours=1)
    versions = upload(configured, NEW_KEYS)
    assert replication_status()["sample"]["pending"] == 3
    # When the replica catches up
    versions_behaviour.replication.lag = timedelta(0)
    report = replication_status()
    # Then each is COMPLETED and read back from the replica: the same version, the same size
    assert (report["sample"]["completed"], report["sample"]["pending"]) == (3, 0)
    assert report["metrics"]["operations_pending"] == 0 and report["healthy"] is True
    replica = configured.clients["s3_secondary"]
    for key, version_id in versions.items():
        assert replica.head_object(Bucket=configured.replica_bucket, Key=key, VersionId=version_id)[
            "ReplicationStatus"] == "REPLICA"


def test_a_completed_object_missing_from_the_replica_is_named(configured):
    # Given three uploads replicated, then one replica version removed for good
    versions = upload(configured, NEW_KEYS)
    assert replication_status()["sample"]["completed"] == 3
    configured.clients["s3_secondary"].delete_object(Bucket=configured.replica_bucket, Key=NEW_KEYS[0],
                                                     VersionId=versions[NEW_KEYS[0]])
    # When the status is read / Then S3's COMPLETED is not taken on trust: the missing copy is named
    report = replication_status()
    assert report["sample"]["missing_on_replica"] == 1 and report["healthy"] is False
    assert [entry["key"] for entry in report["sample"]["named"]["missing_on_replica"]] == [NEW_KEYS[0]]


def test_failed_replications_are_named_and_counted(configured, versions_behaviour):
    versions_behaviour.replication.fail_keys(NEW_KEYS[1])
    upload(configured, NEW_KEYS)
    report = replication_status()
    assert report["sample"]["failed"] == 1 and report["metrics"]["operations_failed"] == 1
    assert [entry["key"] for entry in report["sample"]["named"]["failed"]] == [NEW_KEYS[1]]
    assert report["healthy"] is False


def test_objects_from_before_the_rule_are_named_as_never_replicated(configured, monkeypatch):
    # Given the sample's 20 uploads, all made before the rule existed (S3 replicates only what is written after)
    monkeypatch.setenv("DR_REPLICATION_SAMPLE_SIZE", "20")
    # When the status is read / Then none of them is on the replica, and it says so
    report = replication_status()
    assert report["sample"]["not_replicated"] == 20 and report["sample"]["completed"] == 0
    assert report["healthy"] is False


def test_a_rule_altered_by_hand_is_reported(configured):
    # Given the controller's rule disabled by hand
    s3 = configured.clients["s3"]
    current = s3.get_bucket_replication(Bucket=configured.data_bucket)["ReplicationConfiguration"]
    current["Rules"][0]["Status"] = "Disabled"
    s3.put_bucket_replication(Bucket=configured.data_bucket, ReplicationConfiguration=current)
    # Then the status says the rule is not as configured
    report = replication_status()
    assert report["configured"] is False and report["rule"]["problems"] == ["rule 'apilados-dr-replica' is not Enabled"]


def test_the_status_answers_when_the_secondary_region_cannot_be_reached(configured, monkeypatch):
    # Given every call to the secondary region failing to connect (the region is down)
    original: Callable[..., Any] = BaseClient._make_api_call

    def unreachable_secondary(client: Any, operation: str, params: Any) -> Any:
        if client.meta.region_name == "us-west-2":
            raise EndpointConnectionError(endpoint_url="https://s3.us-west-2.amazonaws.com")
        return original(client, operation, params)

    upload(configured, NEW_KEYS)
    monkeypatch.setattr(BaseClient, "_make_api_call", unreachable_secondary)
    # When the status is read
    answer = act({"action": "status"})
    # Then it answers: the rule and the metrics from the primary, and the sample says why it has no answer
    assert answer["ok"] is True
    report = answer["result"]["replication"]
    assert report["rule"]["problems"] == [] and report["metrics"]["operations_pending"] == 0
    assert report["sample"]["error"].startswith("EndpointConnectionError") and report["healthy"] is False


def test_without_a_replica_configured_status_says_so_and_reads_nothing(world, monkeypatch):
    from tests.support import CallRecorder

    act({"action": "status"})
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    report = act({"action": "status"})["result"]["replication"]
    assert report["configured"] is False and "no replica bucket" in report["detail"]
    assert not {"GetBucketReplication", "HeadObject", "ListObjectVersions"} & set(calls.calls)


def test_the_sample_holds_current_versions_only():
    # Given objects written before the rule, then copied onto themselves after it (as S3 Batch Replication would),
    # within the same second: S3 keeps last-modified to the second, so the older versions tie with the copies
    second = datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC)
    keys = [f"uploads/tie-{n}.csv" for n in range(3)]
    versions = ({"Key": key, "VersionId": f"{kind}-{key}", "IsLatest": kind == "copy", "LastModified": second,
                 "Size": 3, "ETag": '"e"'} for key in keys for kind in ("copy", "older"))
    page = {"Versions": sorted(versions, key=lambda version: version["VersionId"], reverse=True), "IsTruncated": False}
    stubbed = ReplicationGateway(Listing(page))
    # When the three newest are sampled / Then they are the current versions, never an older one
    recent = stubbed.recent_versions("apilados-production-data", 3, 1000)
    assert sorted(version.version_id for version in recent.versions) == sorted(f"copy-{key}" for key in keys)
    assert recent.listed == 6 and recent.complete


class Listing:
    """An S3 client whose ListObjectVersions answers one page."""

    def __init__(self, page: dict[str, Any]) -> None:
        self._page = page

    def list_object_versions(self, **_: Any) -> dict[str, Any]:
        return self._page
