"""Object Lock extended for what kept snapshots need (drcore.backup.lock_extension): only what is about to be
released costs a request, a lock is only ever extended, a pass is idempotent and resumes where it stopped, and a
snapshot older than the bucket's default retention is still locked, and restores, after retention runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.lock_extension import LOCK_HORIZON, KeptObjects, LockExtender, LockPolicy, NeededObject
from drcore.backup.manifest import read_manifest
from drcore.backup.retention import prune
from drcore.core.config import RetentionPolicy
from drcore.core.models import parse_time
from drcore.restore.bucket_restore import BucketRestorer
from drcore.state.backup_store import LOCKS_PREFIX, BackupStore, Component, manifest_key
from tests.s3_gaps import copies_into_a_locked_bucket
from tests.support import CallRecorder, data_and_backup_buckets

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"
PLENTY_MS = 15 * 60 * 1000
POLICY = LockPolicy("GOVERNANCE", days=30)


@pytest.fixture
def s3() -> Iterator[Any]:
    with data_and_backup_buckets(DATA, BACKUPS, object_lock=True) as client:
        yield client


@pytest.fixture
def store(s3: Any) -> BackupStore:
    return BackupStore(s3, BACKUPS)


def locked(s3: Any, key: str, version_id: str) -> tuple[str | None, datetime | None]:
    head = s3.head_object(Bucket=BACKUPS, Key=key, VersionId=version_id)
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")


def put_locked(s3: Any, key: str, mode: str | None = None, until: datetime | None = None) -> str:
    version = s3.put_object(Bucket=BACKUPS, Key=key, Body=key.encode())["VersionId"]
    if mode and until:
        s3.put_object_retention(Bucket=BACKUPS, Key=key, VersionId=version,
                                Retention={"Mode": mode, "RetainUntilDate": until})
    return str(version)


def retention_calls(calls: CallRecorder) -> dict[str, int]:
    counts = calls.count()
    return {name: counts[name] for name in ("HeadObject", "PutObjectRetention") if counts[name]}


def test_a_pass_touches_only_what_is_about_to_be_released_and_never_shortens_a_lock(s3, store):
    # Given objects kept snapshots need, as S3 locks them and as their manifests recorded them
    now = datetime.now(UTC).replace(microsecond=0)
    far = put_locked(s3, "content/far", "GOVERNANCE", now + timedelta(days=25))  # recorded: no request needed
    soon = put_locked(s3, "content/soon", "GOVERNANCE", now + timedelta(days=3))  # recorded: released in 3 days
    unlocked = put_locked(s3, "content/unlocked")  # found, not stored, by its snapshot: nothing recorded
    compliance = put_locked(s3, "content/compliance", "COMPLIANCE", now + timedelta(days=2))
    stale = put_locked(s3, "content/stale", "GOVERNANCE", now + timedelta(days=45))  # recorded long ago
    needed = [NeededObject("content/far", far, locked_until=now + timedelta(days=25)),
              NeededObject("content/soon", soon, locked_until=now + timedelta(days=3)),
              NeededObject("content/unlocked", unlocked),
              NeededObject("content/compliance", compliance, locked_until=now + timedelta(days=2)),
              NeededObject("content/stale", stale, locked_until=now + timedelta(days=1)),
              NeededObject("content/gone", "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY")]
    before = {need.key: locked(s3, need.key, need.version_id) for need in needed if need.key != "content/gone"}
    calls = CallRecorder().attach(s3)
    # When a pass runs
    result = LockExtender(store, POLICY).extend(needed, now, lambda: PLENTY_MS)
    # Then what its record keeps locked past the horizon costs nothing; the rest is looked at once each, and only
    # what S3 releases before the horizon is extended, to 30 days from the run
    assert retention_calls(calls) == {"HeadObject": 5, "PutObjectRetention": 3}
    assert (result.needed, result.locked_ahead, result.looked_at, result.extended) == (6, 1, 5, 3)
    assert result.missing == ["content/gone"]
    after = {key: locked(s3, key, version) for key, version in
             (("content/far", far), ("content/soon", soon), ("content/unlocked", unlocked),
              ("content/compliance", compliance), ("content/stale", stale))}
    target = now + timedelta(days=30)
    assert after == {"content/far": before["content/far"], "content/soon": ("GOVERNANCE", target),
                     "content/unlocked": ("GOVERNANCE", target), "content/compliance": ("COMPLIANCE", target),
                     "content/stale": before["content/stale"]}
    # And no lock ended earlier than before: S3's own date wins over a stale record, COMPLIANCE stays COMPLIANCE
    assert all(after[key][1] >= until for key, (_, until) in before.items() if until is not None)


def test_a_second_pass_costs_nothing_and_a_pass_out_of_time_resumes_where_it_stopped(s3, store):
    # Given 600 unlocked objects a kept snapshot needs
    now = datetime.now(UTC).replace(microsecond=0)
    needed = [NeededObject(f"content/{n:04d}", put_locked(s3, f"content/{n:04d}")) for n in range(600)]
    calls = CallRecorder().attach(s3)
    # When a pass has time for one batch only
    budget = iter([PLENTY_MS, 0])
    first = LockExtender(store, POLICY).extend(needed, now, lambda: next(budget))
    # Then it extends that batch, records it in its index, and leaves the rest to the next pass
    assert (first.extended, first.unfinished) == (256, 344) and first.index is not None
    # When the next pass runs
    calls.calls.clear()
    second = LockExtender(store, POLICY).extend(needed, now + timedelta(hours=1), lambda: PLENTY_MS)
    # Then it does only what is left, and replaces the index
    assert (second.extended, second.locked_ahead, second.unfinished) == (344, 256, 0)
    assert retention_calls(calls) == {"HeadObject": 344, "PutObjectRetention": 344} and second.indexes_hidden == 1
    assert [entry["Key"] for entry in store.keys(LOCKS_PREFIX)] == [second.index]
    # And a pass after it makes no request to any object, and writes nothing
    calls.calls.clear()
    third = LockExtender(store, POLICY).extend(needed, now + timedelta(hours=2), lambda: PLENTY_MS)
    assert (third.locked_ahead, third.looked_at, third.index) == (600, 0, None) and retention_calls(calls) == {}
    # And one a week on still costs nothing: the index knows every lock lasts past its horizon
    week_on = LockExtender(store, POLICY).extend(needed, now + LOCK_HORIZON + timedelta(days=1), lambda: PLENTY_MS)
    assert (week_on.looked_at, week_on.extended, week_on.locked_ahead) == (0, 0, 600)
    # But one whose horizon reaches past the locks extends each once more, to 30 days from that run
    later = now + timedelta(days=25)
    month_on = LockExtender(store, POLICY).extend(needed, later, lambda: PLENTY_MS)
    assert (month_on.looked_at, month_on.extended) == (600, 600)
    assert locked(s3, needed[0].key, str(needed[0].version_id))[1] == later + timedelta(days=30)


def test_a_snapshot_older_than_the_default_retention_is_still_locked_and_restores_after_retention_runs(s3, store):
    # Given the backup bucket as the stack builds it: every new object locked 30 days (GOVERNANCE) by default
    s3.put_object_lock_configuration(Bucket=BACKUPS, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})
    copies_into_a_locked_bucket(s3)
    # And a first snapshot, then a change and a snapshot 35 days later; the policy keeps the newest of each day
    stored_at = datetime.now(UTC)
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"first")
    s3.put_object(Bucket=DATA, Key="b.csv", Body=b"unchanged")
    old = BucketSnapshotter(s3, store, DATA, clock=lambda: stored_at).snapshot(None, lambda: PLENTY_MS).backup_id
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"second")
    BucketSnapshotter(s3, store, DATA, clock=lambda: stored_at + timedelta(days=35)).snapshot(None, lambda: PLENTY_MS)
    first_body = next(entry for entry in read_manifest(store, DATA, old).objects if entry.key == "a.csv")
    # (whose manifest recorded when each stored body's lock ends, as S3 set it: its creation plus the default)
    assert first_body.content_locked_until is not None and parse_time(first_body.content_locked_until) == locked(
        s3, first_body.content_key, str(first_body.content_version_id))[1]
    policy = RetentionPolicy(keep_last=1, hourly=0, daily=2, weekly=0, monthly=0)
    # When retention runs 40 days after the first: past the default retention of everything it stored
    now = stored_at + timedelta(days=40)
    kept = KeptObjects()
    pruned = prune(store, DATA, policy, now, kept)
    locks = LockExtender(store, POLICY).extend(kept.objects.values(), now, lambda: PLENTY_MS)
    # Then the old snapshot is kept, and its body, its manifest and the record of it are locked past the horizon
    assert old in pruned.kept and pruned.removed == () and locks.missing == []
    record = store.recorded_manifest(Component.S3, DATA, old)
    assert record is not None
    for key, version in ((first_body.content_key, first_body.content_version_id),
                         (manifest_key(Component.S3, DATA, old), record.version_id)):
        mode, until = locked(s3, str(key), str(version))
        assert mode == "GOVERNANCE" and until is not None and until >= now + LOCK_HORIZON
    # And the body is present, not hidden, and the old snapshot restores into an empty bucket, read back
    assert s3.head_object(Bucket=BACKUPS, Key=first_body.content_key)["VersionId"] == first_body.content_version_id
    s3.create_bucket(Bucket="restore-target")
    s3.put_bucket_versioning(Bucket="restore-target", VersioningConfiguration={"Status": "Enabled"})
    restorer = BucketRestorer(s3, store, snapshots_of=lambda bucket: BucketSnapshotter(s3, store, bucket))
    plan = restorer.plan(source_bucket=DATA, snapshot_id=old, target_bucket="restore-target")
    done = restorer.apply(plan, lambda: PLENTY_MS)
    assert done.verification is not None and done.verification.ok
    assert s3.get_object(Bucket="restore-target", Key="a.csv")["Body"].read() == b"first"
