"""The retention function through its real handler: a scheduled run prunes and journals; anything else is
refused and changes nothing. Backups themselves no longer prune (the backup function's role cannot)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

import backup.handler as backup
import retention.handler as retention
from drcore.backup.manifest import list_snapshots
from drcore.core.config import BackupEnvVar, RetentionEnvVar
from drcore.state.backup_store import BackupStore
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem, add_buckets
from tests.support import CallRecorder

KEEP_NEWEST_ONLY = {RetentionEnvVar.RETENTION_KEEP_LAST: "1", RetentionEnvVar.RETENTION_HOURLY: "0",
                    RetentionEnvVar.RETENTION_DAILY: "0", RetentionEnvVar.RETENTION_WEEKLY: "0",
                    RetentionEnvVar.RETENTION_MONTHLY: "0",
                    # Full manifests: a kept delta would keep the snapshot it is read through (test_retention.py)
                    BackupEnvVar.FULL_MANIFEST_EVERY: "1"}


@pytest.fixture
def buckets(system: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    add_buckets(system, boto3.session.Session(region_name="us-east-1"), objects=5)
    for name, value in {**system.backup_environment(), **KEEP_NEWEST_ONLY}.items():
        monkeypatch.setenv(str(name), value)
    return system


def snapshot() -> str:
    [outcome] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
    assert outcome["status"] == "complete"
    return str(outcome["backup_id"])


def run_retention(event: Any) -> dict[str, Any]:
    return retention.handler(event, LambdaContextStub("apilados-dr-retention"))


def journal_actions(system: SampleSystem) -> list[str]:
    journal = system.clients["dynamodb"].query(
        TableName=system.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :j)",
        ExpressionAttributeValues={":pk": {"S": f"FUNCTION#{system.function_name}"}, ":j": {"S": "JOURNAL#"}})
    return [item["action"]["S"] for item in journal["Items"]]


def test_a_scheduled_run_prunes_what_the_policy_no_longer_keeps_and_journals_it(buckets):
    # Given two snapshots under a policy that keeps the newest only: the backup function prunes nothing itself
    store = BackupStore(buckets.clients["s3"], buckets.backup_bucket)
    older, newer = snapshot(), snapshot()
    assert [listing.backup_id for listing in list_snapshots(store, buckets.data_bucket)] == [older, newer]
    # When the schedule runs retention
    answer = run_retention({"action": "retention"})
    # Then the older snapshot is removed, the newer kept, what it needs locked (the sample's backup bucket has no
    # default retention: its manifest, the record of it and its five bodies, none locked yet), and the run journaled
    assert answer["ok"] is True and answer["pruned"]["removed"] == (older,) and answer["pruned"]["kept"] == (newer,)
    assert (answer["locks"]["needed"], answer["locks"]["extended"], answer["locks"]["missing"]) == (7, 7, [])
    assert [listing.backup_id for listing in list_snapshots(store, buckets.data_bucket)] == [newer]
    assert journal_actions(buckets).count("retention") == 1


@pytest.mark.parametrize(("event", "problem"), [
    ([], "expected a JSON object, got list"),
    ("retention", "expected a JSON object, got str"),
    ({}, "action: Field required"),
    ({"action": "prune"}, "action: Input should be 'retention'"),
    ({"action": "retention", "keep_last": 0}, "keep_last: Extra inputs are not permitted"),
    ({"action": "retention", "requested_by": ""}, "requested_by: String should have at least 1 character"),
])
def test_an_event_that_is_not_a_retention_run_is_refused_and_changes_nothing(buckets, monkeypatch, event, problem):
    snapshot()
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    answer = run_retention(event)
    assert answer["ok"] is False and problem in answer["error"], answer
    assert calls.calls == []  # nothing read, nothing changed
