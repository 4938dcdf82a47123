"""The one batch loop of the bucket restore and the failback's copy-back (drcore.restore.applied_records
`apply_recorded_batch`): every change of a batch made, what each wrote recorded under the plan even when another
failed, and that failure raised only once the records are written."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from drcore.restore.applied_records import Applied, apply_recorded_batch, read_written
from drcore.state.backup_store import BackupStore

TARGET, PLAN = "apilados-production-data", "rp-0123456789"


@pytest.fixture
def store() -> BackupStore:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="apilados-dr-backups")
        yield BackupStore(s3, "apilados-dr-backups")


def change(item: str) -> Applied | None:
    if item == "archived":
        return None  # made nothing: its source is archived
    if item == "removed":
        return Applied(None)  # made, nothing to record
    if item == "throttled":
        raise RuntimeError("SlowDown, retries exhausted")
    return Applied((item, f"v-{item}", f"etag-{item}"))


def test_a_batch_records_what_it_wrote_and_answers_what_it_made(store: BackupStore) -> None:
    # Given a batch of copies, a removal and a change whose source is archived
    with ThreadPoolExecutor(4) as pool:
        done = apply_recorded_batch(["a.csv", "removed", "archived", "b.csv"], change, pool, store, TARGET, PLAN,
                                    lambda: datetime(2026, 11, 20, tzinfo=UTC))
    # Then the changes made are answered (the archived one is not), and only the versions written are recorded
    assert [item for item, _ in done] == ["a.csv", "removed", "b.csv"]
    assert read_written(store, TARGET, PLAN) == {"a.csv": {("v-a.csv", "etag-a.csv")},
                                                 "b.csv": {("v-b.csv", "etag-b.csv")}}


def test_a_failed_change_is_raised_after_the_others_are_recorded(store: BackupStore) -> None:
    # Given a batch in which one change fails
    with ThreadPoolExecutor(4) as pool, pytest.raises(RuntimeError, match="SlowDown"):
        apply_recorded_batch(["a.csv", "throttled", "b.csv"], change, pool, store, TARGET, PLAN,
                             lambda: datetime(2026, 11, 20, tzinfo=UTC))
    # Then what the others wrote is recorded all the same: a resumed apply knows its own writes
    assert set(read_written(store, TARGET, PLAN)) == {"a.csv", "b.csv"}
