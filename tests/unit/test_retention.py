"""Snapshot retention: which snapshots are kept, and that pruning never removes referenced or locked content."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drcore.backup.bucket_snapshots import SAFETY_MARGIN_MS, BucketSnapshotter
from drcore.backup.manifest import ManifestCorrupt, list_snapshots, read_manifest
from drcore.backup.retention import backups_to_keep, prune
from drcore.core.config import RetentionPolicy
from drcore.state.backup_store import BackupListing, BackupStore, Component, backup_prefix, manifest_key
from tests.support import data_and_backup_buckets, written_before_versions

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"
PLENTY_MS = 15 * 60 * 1000
KEEP_TWO = RetentionPolicy(keep_last=2, hourly=0, daily=0, weekly=0, monthly=0)


def listing(moment: datetime) -> BackupListing:
    return BackupListing(Component.S3, DATA, f"{moment:%Y%m%dT%H%M%SZ}-000000", moment, True)


def at(*parts: int) -> str:
    return listing(datetime(*parts, tzinfo=UTC)).backup_id


# Which snapshots are kept -------------------------------------------------------------------------


def test_grandfather_father_son_keeps_the_newest_of_each_recent_period():
    # Given a snapshot every hour for 70 days up to Thursday 2026-11-26 12:00 UTC
    end = datetime(2026, 11, 26, 12, tzinfo=UTC)
    snapshots = [listing(end - timedelta(hours=n)) for n in range(70 * 24)]
    policy = RetentionPolicy(keep_last=2, hourly=3, daily=3, weekly=2, monthly=2)
    # When the policy picks what to keep
    kept = backups_to_keep(snapshots, policy)
    # Then: the last two, the last three hours, the newest of the last three days, of this and last ISO week,
    # and of this and last month
    assert kept == {
        at(2026, 11, 26, 12), at(2026, 11, 26, 11), at(2026, 11, 26, 10),  # keep_last and hourly
        at(2026, 11, 25, 23), at(2026, 11, 24, 23),  # daily
        at(2026, 11, 22, 23),  # weekly: Sunday closes ISO week 47
        at(2026, 10, 31, 23),  # monthly
    }


def test_a_pause_in_backups_does_not_expire_the_last_good_snapshots():
    # Given daily snapshots that stopped ten days ago
    last = datetime(2026, 11, 16, 3, tzinfo=UTC)
    snapshots = [listing(last - timedelta(days=n)) for n in range(30)]
    # When a policy keeps three dailies, Then the three newest days that have a snapshot are kept
    kept = backups_to_keep(snapshots, RetentionPolicy(keep_last=1, hourly=0, daily=3, weekly=0, monthly=0))
    assert kept == {at(2026, 11, 16, 3), at(2026, 11, 15, 3), at(2026, 11, 14, 3)}


# Pruning the store --------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    # The backup bucket as the stack builds it: Object Lock enabled (and so versioned)
    with data_and_backup_buckets(DATA, BACKUPS, object_lock=True) as client:
        yield client


@pytest.fixture
def store(s3: Any) -> BackupStore:
    return BackupStore(s3, BACKUPS)


# Content written now is two days old for the prune, past the grace for content no checkpoint names yet.
PRUNE_AT = datetime.now(UTC) + timedelta(days=2)


def snapshot_at(s3: Any, store: BackupStore, moment: datetime, bucket: str = DATA, *, full_every: int = 1) -> str:
    """A snapshot taken at `moment`: with a full manifest unless `full_every` allows deltas (the chains a kept
    delta needs are tested on their own)."""
    snapshotter = BucketSnapshotter(s3, store, bucket, clock=lambda: moment, full_manifest_every=full_every)
    progress = snapshotter.snapshot(None, lambda: PLENTY_MS)
    assert progress.finished
    return progress.backup_id


def unfinished_snapshot_at(s3: Any, store: BackupStore, moment: datetime) -> str:
    """A snapshot stopped after its first page (one object), as a running or abandoned one would be."""
    budget = iter([PLENTY_MS, SAFETY_MARGIN_MS - 1])
    snapshotter = BucketSnapshotter(s3, store, DATA, clock=lambda: moment, page_size=1, listing_ranges=1)
    progress = snapshotter.snapshot(None, lambda: next(budget))
    assert not progress.finished
    return progress.backup_id


def content_of(store: BackupStore, backup_id: str, key: str, bucket: str = DATA) -> str:
    return next(entry.content_key for entry in read_manifest(store, bucket, backup_id).objects if entry.key == key)


def stored_content(store: BackupStore) -> set[str]:
    return {entry["Key"] for entry in store.keys("content/")}


def lock(s3: Any, key: str, *, legal_hold: bool = False) -> None:
    if legal_hold:
        s3.put_object_legal_hold(Bucket=BACKUPS, Key=key, LegalHold={"Status": "ON"})
    else:
        s3.put_object_retention(Bucket=BACKUPS, Key=key, Retention={
            "Mode": "COMPLIANCE", "RetainUntilDate": PRUNE_AT + timedelta(days=30)})


def test_prune_removes_expired_snapshots_and_unreferenced_content_but_never_referenced_or_locked_content(s3, store):
    # Given four daily snapshots: "a.csv" changes every day, "b.csv" is deleted on day three, "shared.csv" never changes
    day = PRUNE_AT - timedelta(days=10)
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"a1")
    s3.put_object(Bucket=DATA, Key="b.csv", Body=b"b1")
    s3.put_object(Bucket=DATA, Key="shared.csv", Body=b"shared")
    abandoned = unfinished_snapshot_at(s3, store, day - timedelta(days=1))
    first = snapshot_at(s3, store, day)
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"a2")
    second = snapshot_at(s3, store, day + timedelta(days=1))
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"a3")
    s3.delete_object(Bucket=DATA, Key="b.csv")
    third = snapshot_at(s3, store, day + timedelta(days=2))
    fourth = snapshot_at(s3, store, day + timedelta(days=3))
    # And a snapshot still running, whose first checkpoint names content no manifest references yet
    s3.put_object(Bucket=DATA, Key="0-new.csv", Body=b"new")
    running = unfinished_snapshot_at(s3, store, PRUNE_AT - timedelta(hours=1))
    a1, a2 = content_of(store, first, "a.csv"), content_of(store, second, "a.csv")
    b1 = content_of(store, first, "b.csv")
    a3, shared = content_of(store, third, "a.csv"), content_of(store, third, "shared.csv")
    new = next(key for key in stored_content(store) if key not in {a1, a2, a3, b1, shared})
    # And two bodies that only the expiring snapshots reference are under Object Lock
    lock(s3, a1)
    lock(s3, a2, legal_hold=True)
    # When the store is pruned to the last two snapshots
    result = prune(store, DATA, KEEP_TWO, PRUNE_AT)
    # Then the two oldest snapshots are gone, manifest and checkpoints, and only the newest two are restorable
    assert result.removed == (first, second) and result.kept == (third, fourth)
    assert [listing.backup_id for listing in list_snapshots(store, DATA)] == [third, fourth]
    for gone in (first, second, abandoned):
        assert list(store.keys(backup_prefix(Component.S3, DATA, gone))) == []
    # And the abandoned snapshot is removed while the running one is left alone
    assert result.abandoned == (abandoned,) and result.in_progress == (running,)
    assert list(store.keys(backup_prefix(Component.S3, DATA, running)))
    # And unreferenced content is removed, except what Object Lock protects, which is reported
    assert stored_content(store) == {a1, a2, a3, shared, new}
    assert result.content_removed == 1 and result.bytes_removed == len(b"b1")
    assert set(result.content_refused) == {a1, a2}
    assert all(reason.startswith("ObjectLocked") for reason in result.content_refused.values())
    # And nothing was deleted for good: a removed body is hidden behind a delete marker, its version kept
    hidden = s3.list_object_versions(Bucket=BACKUPS, Prefix=b1)
    assert hidden["DeleteMarkers"] and [version["Size"] for version in hidden["Versions"]] == [len(b"b1")]
    # And what the kept snapshots reference is intact
    assert s3.get_object(Bucket=BACKUPS, Key=a3)["Body"].read() == b"a3"
    assert len(read_manifest(store, DATA, third).objects) == 2


def test_an_expired_snapshot_whose_manifest_is_locked_stays_complete_with_its_content(s3, store):
    # Given three snapshots, the oldest of which has its manifest under Object Lock
    day = PRUNE_AT - timedelta(days=10)
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"old")
    oldest = snapshot_at(s3, store, day)
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"new")
    newer = [snapshot_at(s3, store, day + timedelta(days=n)) for n in (1, 2)]
    lock(s3, manifest_key(Component.S3, DATA, oldest))
    old_body = content_of(store, oldest, "a.csv")
    # When the store is pruned to the last two
    result = prune(store, DATA, KEEP_TWO, PRUNE_AT)
    # Then S3's refusal keeps the oldest restorable (with the record of its manifest's version, which readers name),
    # and the content it references is kept too
    assert result.locked == (oldest,) and result.removed == ()
    assert [listing.backup_id for listing in list_snapshots(store, DATA)] == [oldest, *newer]
    assert store.recorded_manifest(Component.S3, DATA, oldest) is not None
    assert old_body in stored_content(store) and result.content_refused == {}
    assert s3.get_object(Bucket=BACKUPS, Key=old_body)["Body"].read() == b"old"


def test_the_base_of_a_running_snapshot_is_kept_until_it_finishes(s3, store):
    # Given a complete snapshot, a snapshot that builds on it and is still running, and a newer complete one
    day = PRUNE_AT - timedelta(hours=6)
    for n in range(3):
        s3.put_object(Bucket=DATA, Key=f"k{n}", Body=f"v{n}".encode())
    base = snapshot_at(s3, store, day)
    running = unfinished_snapshot_at(s3, store, day + timedelta(hours=1))
    s3.put_object(Bucket=DATA, Key="k0", Body=b"changed")
    newest = snapshot_at(s3, store, day + timedelta(hours=2))
    # When the store is pruned to the newest snapshot only
    result = prune(store, DATA, RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0), PRUNE_AT)
    # Then the running snapshot's base is kept, and the running snapshot can still finish from it
    assert result.kept == (base, newest) and result.in_progress == (running,) and result.removed == ()
    finished = BucketSnapshotter(s3, store, DATA, page_size=1).snapshot(running, lambda: PLENTY_MS)
    assert finished.finished and len(read_manifest(store, DATA, running).objects) == 3


def test_content_another_buckets_snapshots_reference_is_kept(s3, store):
    # Given two data buckets sharing one body, each snapshotted into the same store
    s3.create_bucket(Bucket="apilados-staging-data")
    day = PRUNE_AT - timedelta(days=10)
    for bucket in (DATA, "apilados-staging-data"):
        s3.put_object(Bucket=bucket, Key="same.csv", Body=b"same body")
    s3.put_object(Bucket=DATA, Key="own.csv", Body=b"only in production")
    expiring = snapshot_at(s3, store, day)
    snapshot_at(s3, store, day, bucket="apilados-staging-data")
    shared, own = content_of(store, expiring, "same.csv"), content_of(store, expiring, "own.csv")
    # When the production bucket's objects are deleted and its old snapshot expires
    s3.delete_object(Bucket=DATA, Key="same.csv")
    s3.delete_object(Bucket=DATA, Key="own.csv")
    snapshot_at(s3, store, day + timedelta(days=1))
    result = prune(store, DATA, RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0), PRUNE_AT)
    # Then the body the staging snapshot still references stays; the production-only one goes
    assert result.removed == (expiring,)
    assert shared in stored_content(store) and own not in stored_content(store)


def test_content_younger_than_a_day_is_not_removed(s3, store):
    # Given an expired snapshot whose content was written moments ago
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"a1")
    now = datetime.now(UTC)
    first = snapshot_at(s3, store, now - timedelta(hours=3))
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"a2")
    snapshot_at(s3, store, now - timedelta(hours=2))
    # When it is pruned now, Then the snapshot goes but its content, too young to judge, stays
    result = prune(store, DATA, RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0), now)
    assert result.removed == (first,) and result.content_removed == 0
    assert len(stored_content(store)) == 2


def test_a_corrupt_manifest_stops_the_prune_before_anything_is_removed(s3, store):
    # Given three snapshots, and the manifest of one that is to be kept altered in place (one of the previous format,
    # which reads what its key holds now; a recorded one reads the version it was written as)
    day = PRUNE_AT - timedelta(days=10)
    ids = []
    for n in range(3):
        s3.put_object(Bucket=DATA, Key="a.csv", Body=f"v{n}".encode())
        ids.append(snapshot_at(s3, store, day + timedelta(days=n)))
    key = manifest_key(Component.S3, DATA, ids[-1])
    written_before_versions(s3, BACKUPS, DATA, ids[-1])
    original = s3.get_object(Bucket=BACKUPS, Key=key)
    s3.put_object(Bucket=BACKUPS, Key=key, Body=gzip.compress(b"{}"), Metadata=original["Metadata"])
    before = stored_content(store)
    # When it is pruned, Then it fails on the unreadable manifest and removes nothing
    with pytest.raises(ManifestCorrupt):
        prune(store, DATA, KEEP_TWO, PRUNE_AT)
    assert stored_content(store) == before
    assert [listing.backup_id for listing in list_snapshots(store, DATA)] == ids


def hourly_chain(s3: Any, store: BackupStore, count: int) -> list[str]:
    """`count` hourly snapshots three days before the prune, a full manifest every three, "a.csv" changing each
    time beside "steady.csv"."""
    hour = PRUNE_AT - timedelta(days=3)
    s3.put_object(Bucket=DATA, Key="steady.csv", Body=b"steady")
    ids = []
    for n in range(count):
        s3.put_object(Bucket=DATA, Key="a.csv", Body=f"a{n}".encode())
        ids.append(snapshot_at(s3, store, hour + timedelta(hours=n), full_every=3))
    return ids


def test_a_kept_snapshot_keeps_the_snapshots_its_delta_manifest_is_read_through(s3, store):
    # Given a chain of hourly snapshots written as deltas (a full manifest every three), one object changing each time
    ids = hourly_chain(s3, store, 5)
    depths = [read_manifest(store, DATA, backup_id).depth for backup_id in ids]
    assert depths == [0, 1, 2, 0, 1]
    # When the store is pruned to the newest snapshot
    result = prune(store, DATA, RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0), PRUNE_AT)
    # Then the full manifest the newest is a delta on is kept with it, and the older chain, which nothing needs, goes
    assert result.kept == (ids[3], ids[4]) and result.removed == (ids[0], ids[1], ids[2])
    newest = read_manifest(store, DATA, ids[4])
    assert {entry.key: s3.get_object(Bucket=BACKUPS, Key=entry.content_key)["Body"].read()
            for entry in newest.objects} == {"a.csv": b"a4", "steady.csv": b"steady"}
    # And the next prune, once a newer full manifest stands alone, lets that chain go too
    s3.put_object(Bucket=DATA, Key="a.csv", Body=b"a5")
    hour = PRUNE_AT - timedelta(days=3)
    for n in range(5, 8):
        s3.put_object(Bucket=DATA, Key="a.csv", Body=f"a{n}".encode())
        ids.append(snapshot_at(s3, store, hour + timedelta(hours=n), full_every=3))
    assert read_manifest(store, DATA, ids[7]).depth == 1
    later = prune(store, DATA, RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0), PRUNE_AT)
    assert later.kept == (ids[6], ids[7]) and set(later.removed) == {ids[3], ids[4], ids[5]}


def test_an_expired_delta_whose_manifest_is_locked_keeps_the_expired_snapshots_it_is_read_through(s3, store):
    # Given a chain of three hourly snapshots (a full manifest, then two deltas), then a full one that stands alone
    ids = hourly_chain(s3, store, 4)
    assert [read_manifest(store, DATA, backup_id).depth for backup_id in ids] == [0, 1, 2, 0]
    # And the newest delta's manifest still under Object Lock, while its chain's locks have ended
    lock(s3, manifest_key(Component.S3, DATA, ids[2]))
    # When the store is pruned to the newest snapshot
    result = prune(store, DATA, RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0), PRUNE_AT)
    # Then the locked delta stays, and so do the two it is read through: nothing is removed
    assert result.kept == (ids[3],) and result.locked == (ids[0], ids[1], ids[2]) and result.removed == ()
    # And the locked snapshot still reads back whole, every body it names stored
    locked = read_manifest(store, DATA, ids[2])
    assert {entry.key: s3.get_object(Bucket=BACKUPS, Key=entry.content_key)["Body"].read()
            for entry in locked.objects} == {"a.csv": b"a2", "steady.csv": b"steady"}


def test_retention_reads_each_manifest_once_as_stored_never_a_snapshot_through_its_chain(s3, store, monkeypatch):
    # Given two buckets, each with a chain of snapshots written as deltas on one full manifest, all of them kept
    from drcore.backup import manifest as manifest_module

    s3.create_bucket(Bucket="apilados-staging-data")
    hour = PRUNE_AT - timedelta(days=3)
    ids: dict[str, list[str]] = {DATA: [], "apilados-staging-data": []}
    for bucket in ids:
        for n in range(20):
            s3.put_object(Bucket=bucket, Key=f"k{n:02d}", Body=f"{bucket} {n}".encode())
        for n in range(4):
            s3.put_object(Bucket=bucket, Key="k00", Body=f"{bucket} changed {n}".encode())
            ids[bucket].append(snapshot_at(s3, store, hour + timedelta(hours=n), bucket, full_every=10))
    # And a store of every body they reference, and one no snapshot references
    referenced = stored_content(store)
    s3.put_object(Bucket=BACKUPS, Key="content/etag/unreferenced-1", Body=b"x")
    # When retention runs with every way of reading a snapshot through its chain made to fail
    def through_chain(*_: Any, **__: Any) -> Any:
        raise AssertionError("a manifest read through its chain")

    monkeypatch.setattr(manifest_module, "read_manifest", through_chain)
    monkeypatch.setattr(manifest_module.ManifestStream, "entries", through_chain)
    gets: list[str] = []
    s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: gets.append(params["Key"]))
    from drcore.backup.lock_extension import KeptObjects

    kept = KeptObjects()
    result = prune(store, DATA, RetentionPolicy(keep_last=4, hourly=0, daily=0, weekly=0, monthly=0), PRUNE_AT,
                   kept)
    # Then every snapshot is kept, each manifest was read exactly once, and only the unreferenced body went
    assert result.kept == tuple(ids[DATA]) and result.removed == ()
    manifests = sorted(key for key in gets if key.endswith("manifest.json.gz"))
    assert manifests == sorted(manifest_key(Component.S3, bucket, backup_id)
                               for bucket, chain in ids.items() for backup_id in chain)
    assert stored_content(store) == referenced and result.content_removed == 1
    # And what the kept snapshots need locked is every body they reference (the changed ones of every delta too)
    assert referenced <= {key for key, _ in kept.objects}
