"""Failback's copy-back (drcore.region.divergence): what the replica wrote during a failover, found by replication
status and version ids, copied back by content after a safety snapshot, verified by reading the primary back.
Both regions are in one moto, with S3's replication filled in (embedded/s3_replication.py, driven through
`versions_behaviour.replication`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine

import drcore.region.divergence as divergence
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.manifest import list_snapshots, read_manifest
from drcore.region.divergence import ReplicaDivergence
from drcore.region.divergence_plan import ConflictsUnresolved, FailbackCopyPlan, PrimaryChanged
from drcore.state.backup_store import BackupStore
from embedded.moto_gaps import VersionBehaviour
from tests.support import CallRecorder

PRIMARY, REPLICA, BACKUP = "apilados-production-data", "apilados-production-data-replica", "apilados-dr-backups"
PLENTY = lambda: 15 * 60 * 1000  # noqa: E731 (the remaining time of a fresh invocation)
START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FAILOVER_AT = START + timedelta(minutes=10)
MUTATING = {"PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "UploadPartCopy", "CreateMultipartUpload"}


class Regions:
    """A primary bucket replicating to a replica in the other region, a backup bucket, and the engine. The clock
    is moved by `at(minutes)`: before FAILOVER_AT the pipeline writes the primary; after it, the secondary."""

    def __init__(self, replication: Any) -> None:
        self.replication = replication
        self.primary = boto3.client("s3", region_name="us-east-1")
        self.secondary = boto3.client("s3", region_name="us-west-2")
        self.primary.create_bucket(Bucket=PRIMARY)
        self.primary.create_bucket(Bucket=BACKUP)
        self.secondary.create_bucket(Bucket=REPLICA, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        for client, bucket in ((self.primary, PRIMARY), (self.secondary, REPLICA)):
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.primary.put_bucket_replication(Bucket=PRIMARY, ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/apilados-s3-replication",
            "Rules": [{"ID": "dr-replica", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": f"arn:aws:s3:::{REPLICA}"}}]})
        self.store = BackupStore(self.primary, BACKUP)
        # The engine's own clients: their recorders see its requests only.
        self.engine_primary = boto3.client("s3", region_name="us-east-1")
        self.engine_secondary = boto3.client("s3", region_name="us-west-2")
        self.calls = CallRecorder().attach(self.engine_primary, self.engine_secondary)
        self.engine = ReplicaDivergence(self.engine_primary, self.engine_secondary, self.store,
                                        snapshots_of=lambda bucket: BucketSnapshotter(self.primary, self.store, bucket))

    def put(self, client: Any, bucket: str, key: str, body: bytes, **extra: Any) -> str:
        return str(client.put_object(Bucket=bucket, Key=key, Body=body, **extra)["VersionId"])

    def body(self, bucket: str, key: str) -> bytes | None:
        client = self.primary if bucket == PRIMARY else self.secondary
        try:
            return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except client.exceptions.NoSuchKey:
            return None

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        client = self.primary if bucket == PRIMARY else self.secondary
        return dict(client.head_object(Bucket=bucket, Key=key))

    def plan(self, **options: Any) -> FailbackCopyPlan:
        return self.engine.plan(PRIMARY, REPLICA, FAILOVER_AT, **options)

    def mutations(self) -> list[str]:
        return [name for name in self.calls.calls if name in MUTATING]


@pytest.fixture
def regions(versions_behaviour: VersionBehaviour) -> Iterator[Regions]:
    with time_machine.travel(START, tick=True):
        world = Regions(versions_behaviour.replication)
        # Before the failover: the pipeline's objects in the primary, replicated
        for key, body in {"data/a.csv": b"a1", "data/b.csv": b"b1", "data/c.csv": b"c1", "data/d.csv": b"d1"}.items():
            world.put(world.primary, PRIMARY, key, body, ContentType="text/csv", Metadata={"source": "pipeline"})
        world.replication.catch_up()
    yield world


def after_failover(minutes: float = 5) -> Any:
    return time_machine.travel(FAILOVER_AT + timedelta(minutes=minutes), tick=True)


def diverge(world: Regions) -> None:
    """The secondary's writes during the failover: one of each kind."""
    world.put(world.secondary, REPLICA, "data/new.csv", b"new", ContentType="text/csv", Metadata={"source": "dr"})
    world.put(world.secondary, REPLICA, "data/a.csv", b"a2-from-secondary", ContentType="text/csv")
    world.secondary.copy_object(Bucket=REPLICA, Key="data/b.csv", CopySource={"Bucket": REPLICA, "Key": "data/b.csv"},
                                MetadataDirective="REPLACE", ContentType="text/plain", Metadata={"source": "fixed"})
    world.secondary.delete_object(Bucket=REPLICA, Key="data/c.csv")


def test_no_divergence_plans_nothing_and_changes_nothing(regions):
    # Given a failover during which the secondary wrote nothing, and a late replication of a primary write
    with after_failover():
        regions.put(regions.primary, PRIMARY, "data/late.csv", b"late")
        regions.replication.catch_up()
        # When failback plans
        plan = regions.plan()
        progress = regions.engine.apply(plan, PLENTY)
    # Then nothing diverged (a replica of the primary's own write is not the replica's), nothing was copied
    assert (plan.to_copy, plan.to_delete, plan.conflicts, plan.diverged) == (0, 0, 0, False)
    assert progress.finished and progress.verification is not None and progress.verification.ok
    assert (progress.copied, progress.deleted) == (0, 0) and regions.mutations() == []
    assert list_snapshots(regions.store, PRIMARY) == []  # nothing to change: no safety snapshot needed


def test_divergence_is_copied_back_by_kind_and_verified(regions):
    # Given the secondary created, changed, re-labelled (headers only) and deleted objects during the failover
    with after_failover():
        diverge(regions)
        # When failback plans and applies
        plan = regions.plan()
        assert (plan.created, plan.changed, plan.metadata, plan.deleted, plan.conflicts) == (1, 1, 1, 1, 0)
        assert set(plan.copy_keys) == {"data/new.csv", "data/a.csv", "data/b.csv"}
        assert plan.delete_keys == ("data/c.csv",)
        progress = regions.engine.apply(plan, PLENTY)
    # Then exactly those changes reached the primary, each proven by reading it back
    assert progress.finished and (progress.copied, progress.deleted) == (3, 1)
    assert progress.verification is not None and progress.verification.ok
    assert (progress.verification.expected, progress.verification.read_back) == (4, 3)
    assert regions.body(PRIMARY, "data/new.csv") == b"new"
    assert regions.head(PRIMARY, "data/new.csv")["Metadata"] == {"source": "dr"}
    assert regions.body(PRIMARY, "data/a.csv") == b"a2-from-secondary"
    b = regions.head(PRIMARY, "data/b.csv")
    assert (b["ContentType"], b["Metadata"]) == ("text/plain", {"source": "fixed"})
    assert regions.body(PRIMARY, "data/c.csv") is None
    versions = regions.primary.list_object_versions(Bucket=PRIMARY, Prefix="data/c.csv")
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1  # a delete marker, nothing lost
    assert regions.body(PRIMARY, "data/d.csv") == b"d1"  # untouched
    # And a safety snapshot of the primary before any change holds the state before the failback
    snapshot = read_manifest(regions.store, PRIMARY, progress.safety_snapshot_id)
    assert {entry.key for entry in snapshot.objects} == {"data/a.csv", "data/b.csv", "data/c.csv", "data/d.csv"}
    assert [listing.backup_id for listing in list_snapshots(regions.store, PRIMARY)] == [progress.safety_snapshot_id]
    # And planning again (the copies have replicated back meanwhile) finds nothing left
    with after_failover(8):
        regions.replication.catch_up()
        again = regions.plan()
    assert (again.to_copy, again.to_delete, again.conflicts) == (0, 0, 0)


def conflicting(world: Regions) -> None:
    """data/a.csv written in both regions after the failover, and one change without conflict."""
    world.put(world.secondary, REPLICA, "data/a.csv", b"a-secondary")
    world.put(world.secondary, REPLICA, "data/new.csv", b"new")
    world.put(world.primary, PRIMARY, "data/a.csv", b"a-primary")
    world.replication.catch_up()  # the primary's write reaches the replica too, as a replica (newest there)


def test_conflicts_are_refused_without_a_resolution_and_nothing_changes(regions):
    with after_failover():
        conflicting(regions)
        plan = regions.plan()
        # Then the plan names the conflict and is blocked
        assert (plan.conflicts, plan.conflict_keys) == (1, ("data/a.csv",))
        assert plan.blocked and "prefer" in plan.blocked
        # When it is applied anyway, it is refused before any change
        with pytest.raises(ConflictsUnresolved):
            regions.engine.apply(plan, PLENTY)
    assert regions.mutations() == []
    assert list_snapshots(regions.store, PRIMARY) == []
    assert regions.body(PRIMARY, "data/a.csv") == b"a-primary" and regions.body(PRIMARY, "data/new.csv") is None


@pytest.mark.parametrize(("prefer", "expected"), [("secondary", b"a-secondary"), ("primary", b"a-primary")])
def test_conflicts_resolved_either_way(regions, prefer, expected):
    with after_failover():
        conflicting(regions)
        plan = regions.plan(prefer=prefer)
        assert plan.blocked is None and plan.conflicts == 1
        assert plan.kept_primary == (1 if prefer == "primary" else 0)
        progress = regions.engine.apply(plan, PLENTY)
    assert progress.finished and progress.verification is not None and progress.verification.ok
    assert regions.body(PRIMARY, "data/a.csv") == expected
    assert regions.body(PRIMARY, "data/new.csv") == b"new"  # the change without conflict either way


def test_a_primary_change_after_the_plan_refuses_the_apply(regions):
    with after_failover():
        regions.put(regions.secondary, REPLICA, "data/a.csv", b"a-secondary")
        plan = regions.plan()
        regions.put(regions.primary, PRIMARY, "data/a.csv", b"a-primary-meanwhile")
        with pytest.raises(PrimaryChanged):
            regions.engine.apply(plan, PLENTY)
    assert regions.body(PRIMARY, "data/a.csv") == b"a-primary-meanwhile"


def damage_copies(client: Any, how: str) -> None:
    """Copies that land something other than their source: another body (an older version of the key), or
    other metadata."""
    def damage(params: dict[str, Any], **_: Any) -> None:
        if how == "bytes":
            older = client.list_object_versions(Bucket=REPLICA, Prefix=params["Key"])["Versions"][-1]
            params["CopySource"] = {**params["CopySource"], "VersionId": older["VersionId"]}
            params.pop("CopySourceIfMatch", None)
        else:
            params.update(MetadataDirective="REPLACE", Metadata={"source": "damaged"}, ContentType="text/csv")
    client.meta.events.register("provide-client-params.s3.CopyObject", damage)


@pytest.mark.parametrize("how", ["bytes", "metadata"])
def test_a_copy_that_lands_other_bytes_or_metadata_fails_verification(regions, how):
    # Given copies that land other bytes (an older version) or other metadata than the replica's version
    with after_failover():
        regions.put(regions.secondary, REPLICA, "data/a.csv", b"a2-from-secondary", ContentType="text/csv",
                    Metadata={"source": "pipeline"})
        damage_copies(regions.engine_primary, how)
        plan = regions.plan()
        progress = regions.engine.apply(plan, PLENTY)
    # Then the apply's own verification reads the primary back and refuses it
    assert progress.finished and progress.verification is not None
    assert not progress.verification.ok and progress.verification.mismatched_keys == ("data/a.csv",)
    assert regions.engine.verify(plan).mismatched_keys == ("data/a.csv",)


def test_a_primary_changed_after_the_copy_fails_verification(regions):
    with after_failover():
        diverge(regions)
        plan = regions.plan()
        assert regions.engine.apply(plan, PLENTY).verification.ok  # type: ignore[union-attr]
        regions.primary.copy_object(Bucket=PRIMARY, Key="data/new.csv", CopySource={"Bucket": PRIMARY,
                                    "Key": "data/new.csv"}, MetadataDirective="REPLACE", Metadata={"source": "dr2"},
                                    ContentType="text/csv")
        regions.put(regions.primary, PRIMARY, "data/c.csv", b"back again")
        verification = regions.engine.verify(plan)
    assert verification.mismatched_keys == ("data/c.csv", "data/new.csv")


def test_a_crash_mid_copy_is_resumed_and_a_paused_apply_continues(regions, monkeypatch):
    with after_failover():
        for n in range(6):
            regions.put(regions.secondary, REPLICA, f"data/n{n}.csv", f"n{n}".encode())
        plan = regions.plan()
        # Given an apply that dies on its third copy
        copies = [0]

        def crash(**_: Any) -> None:
            copies[0] += 1
            if copies[0] == 3:
                raise RuntimeError("the invocation died")
        regions.engine_primary.meta.events.register("before-call.s3.CopyObject", crash)
        monkeypatch.setattr(divergence, "BATCH_SIZE", 2)
        monkeypatch.setattr(divergence.ThreadPoolExecutor, "__init__", _one_worker(divergence.ThreadPoolExecutor))
        with pytest.raises(RuntimeError):
            regions.engine.apply(plan, PLENTY)
        first_snapshot = list_snapshots(regions.store, PRIMARY)
        copied_before = sum(regions.body(PRIMARY, f"data/n{n}.csv") is not None for n in range(6))
        assert copied_before == 3  # the batch of the failed copy finished its other copy
        # When it is applied again, with time for one batch only (the counter counts CopyObject requests)
        paused = regions.engine.apply(plan, lambda: PLENTY() if copies[0] < 6 else 0)
        assert not paused.finished and paused.copied == 2
        done = regions.engine.apply(plan, PLENTY)
    # Then it continued the same safety snapshot, copied only what was missing, and verified everything
    assert done.finished and done.copied == 1 and done.verification is not None and done.verification.ok
    assert list_snapshots(regions.store, PRIMARY) == first_snapshot
    assert paused.safety_snapshot_id == done.safety_snapshot_id == first_snapshot[0].backup_id
    assert all(regions.body(PRIMARY, f"data/n{n}.csv") == f"n{n}".encode() for n in range(6))


def _one_worker(pool_type: Any) -> Any:
    """Pools of one worker: batches run in order, so a crash leaves a known prefix done."""
    original = pool_type.__init__

    def init(self: Any, max_workers: Any = None, *args: Any, **kwargs: Any) -> None:
        original(self, 1, *args, **kwargs)
    return init


def test_a_plan_up_to_a_moment_leaves_later_writes_for_a_later_plan(regions):
    # Given writes of the secondary before and after a moment (the replica's notification removed)
    with after_failover():
        regions.put(regions.secondary, REPLICA, "data/early.csv", b"early")
    with after_failover(6):
        regions.put(regions.secondary, REPLICA, "data/late.csv", b"late")
        # When one plan copies up to the moment, and a catch-up sharing its records copies the rest
        early = regions.plan(until=FAILOVER_AT + timedelta(minutes=5, seconds=30))
        assert early.copy_keys == ("data/early.csv",)
        assert regions.engine.apply(early, PLENTY).verification.ok  # type: ignore[union-attr]
        late = regions.plan(records_id=early.records_id)
        progress = regions.engine.apply(late, PLENTY)
    # Then the catch-up copies only the later write, under the first plan's safety snapshot
    assert late.copy_keys == ("data/late.csv",) and progress.copied == 1
    assert len(list_snapshots(regions.store, PRIMARY)) == 1


def test_a_primary_write_the_replica_held_before_writing_over_it_is_no_conflict(regions):
    # Given primary writes after the failover time: one replicated before the secondary wrote the key, one still
    # in flight (the replica never saw it) when the secondary wrote its key
    with after_failover(1):
        regions.put(regions.primary, PRIMARY, "data/a.csv", b"a-primary-seen")
        regions.replication.catch_up()
        regions.replication.lag = timedelta(hours=1)
        regions.put(regions.primary, PRIMARY, "data/b.csv", b"b-primary-unseen")
    with after_failover(2):
        regions.put(regions.secondary, REPLICA, "data/a.csv", b"a-secondary")
        regions.put(regions.secondary, REPLICA, "data/b.csv", b"b-secondary")
        plan = regions.plan()
    # Then only the unseen one conflicts
    assert plan.conflict_keys == ("data/b.csv",) and set(plan.copy_keys) == {"data/a.csv", "data/b.csv"}
