"""Point-in-time restores of the data bucket: plans decided by content, safety snapshots, undo, resume."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine
from botocore.exceptions import ClientError
from moto import mock_aws

import drcore.restore.bucket_desired as bucket_desired
import drcore.restore.bucket_restore as bucket_restore
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.manifest import list_snapshots, read_manifest
from drcore.backup.snapshot_checkpoints import ranges_cut_at
from drcore.core.errors import InvalidRequest
from drcore.restore.bucket_plan import NoRestorePoint, RestorePlan, RestoreRefused, TargetChanged
from drcore.restore.bucket_restore import BucketRestorer
from drcore.state.backup_store import BackupStore, read_gzip_json_lines
from tests.support import CallRecorder, SimulatedClock, described_object, written_in_format_1

DATA = "apilados-production-data"
BACKUP = "apilados-dr-backups"
PLENTY = lambda: 15 * 60 * 1000  # noqa: E731 (the remaining time of a fresh invocation)


class World:
    """A versioned data bucket, a backup bucket, and a restorer whose client tests can hook into."""

    def __init__(self, clock: Any, **restorer_options: Any) -> None:
        self.clock = clock
        self.s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (DATA, BACKUP):
            self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=DATA, VersioningConfiguration={"Status": "Enabled"})
        self.store = BackupStore(self.s3, BACKUP)
        # The restorer's own client: hooks on it see the restore's requests, not the snapshotter's.
        self.restore_client = boto3.client("s3", region_name="us-east-1")
        self.calls = CallRecorder().attach(self.restore_client)
        self.restorer = self.new_restorer(**restorer_options)

    def new_restorer(self, **options: Any) -> BucketRestorer:
        return BucketRestorer(self.restore_client, self.store, snapshots_of=self.snapshotter, clock=self.clock,
                              **options)

    def snapshotter(self, bucket: str) -> BucketSnapshotter:
        return BucketSnapshotter(self.s3, self.store, bucket, clock=self.clock)

    def snapshot(self, bucket: str = DATA) -> str:
        progress = self.snapshotter(bucket).snapshot(None, PLENTY)
        assert progress.finished
        if isinstance(self.clock, SimulatedClock):
            self.clock.advance(60)  # scheduled snapshots are minutes apart: their ids sort by time
        return progress.backup_id

    def put(self, key: str, body: bytes, bucket: str = DATA, **extra: Any) -> str:
        return self.s3.put_object(Bucket=bucket, Key=key, Body=body, **extra).get("VersionId", "null")

    def contents(self, bucket: str = DATA, prefix: str = "") -> dict[str, bytes]:
        keys = [entry["Key"] for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for entry in page.get("Contents", [])]
        return {key: self.s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def restore(self, plan: RestorePlan) -> Any:
        progress = self.restorer.apply(plan, PLENTY)
        assert progress.finished
        return progress

    def copies_into(self, bucket: str) -> int:
        return sum(1 for name, params in self.copy_log if name == "CopyObject" and params["Bucket"] == bucket)

    def log_copies(self) -> None:
        """Record the parameters of every CopyObject and UploadPartCopy the restorer makes."""
        self.copy_log: list[tuple[str, dict[str, Any]]] = []

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            self.copy_log.append((model.name, params))

        self.restore_client.meta.events.register("provide-client-params.s3.CopyObject", record)
        self.restore_client.meta.events.register("provide-client-params.s3.UploadPartCopy", record)


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World(SimulatedClock(datetime.now(UTC)))


def body(n: int, size: int = 64, salt: str = "") -> bytes:
    return (f"row-{n}-{salt}-".encode() * size)[:size]


def fill(world: World, count: int, prefix: str = "uploads/") -> dict[str, bytes]:
    bodies = {f"{prefix}record-{n:03d}.csv": body(n) for n in range(count)}
    for key, content in bodies.items():
        world.put(key, content, ContentType="text/csv", Metadata={"source": "pipeline"})
    return bodies


def latest_entries(world: World, key: str, bucket: str = DATA) -> dict[str, list[dict[str, Any]]]:
    listing = world.s3.list_object_versions(Bucket=bucket, Prefix=key)
    return {"versions": [v for v in listing.get("Versions", []) if v["Key"] == key],
            "markers": [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key]}


# Restoring content ---------------------------------------------------------------------------------

def test_an_object_corrupted_in_place_at_the_same_size_is_restored(world: World) -> None:
    # Given a snapshot of 20 objects, then one of them overwritten with other bytes of the same size
    bodies = fill(world, 20)
    snapshot_id = world.snapshot()
    victim = "uploads/record-007.csv"
    corrupt = bytes(reversed(bodies[victim]))
    assert len(corrupt) == len(bodies[victim]) and corrupt != bodies[victim]
    world.put(victim, corrupt)

    # When the bucket is restored from the snapshot
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    progress = world.restore(plan)

    # Then the plan counted exactly that object, and it holds its snapshot content, type and metadata again
    assert (plan.to_copy, plan.changed, plan.missing, plan.to_remove, plan.unchanged) == (1, 1, 0, 0, 19)
    assert plan.copy_keys == (victim,) and plan.bytes_to_copy == len(corrupt)
    assert world.contents() == bodies
    head = world.s3.head_object(Bucket=DATA, Key=victim)
    assert head["ContentType"] == "text/csv" and head["Metadata"] == {"source": "pipeline"}
    assert progress.copied == 1 and progress.verification.ok
    assert progress.verification.objects_expected == progress.verification.objects_matching == 20


def test_a_first_apply_diffs_against_its_safety_snapshot_and_lists_the_target_only_to_verify(world: World) -> None:
    # Given a snapshot of 20 objects, then one corrupted and one deleted
    bodies = fill(world, 20)
    snapshot_id = world.snapshot()
    world.put("uploads/record-003.csv", bytes(reversed(bodies["uploads/record-003.csv"])))
    world.s3.delete_object(Bucket=DATA, Key="uploads/record-004.csv")
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    # When it is applied (its safety snapshot lists the target with a client of its own)
    calls_before = len(world.calls.calls)
    progress = world.restore(plan)
    # Then the restorer listed the target once, to read back what it wrote: the changes came from the safety
    # snapshot's listing, which is the target as it was
    assert world.calls.calls[calls_before:].count("ListObjectVersions") == 1
    assert progress.copied == 2 and progress.verification.ok and world.contents() == bodies


def test_deleted_objects_come_back_and_new_ones_are_removed_only_as_delete_markers(world: World) -> None:
    # Given a snapshot, then one object deleted and one created after it
    bodies = fill(world, 5)
    snapshot_id = world.snapshot()
    world.s3.delete_object(Bucket=DATA, Key="uploads/record-002.csv")
    newcomer_version = world.put("uploads/late.csv", b"written after the snapshot")

    # When the bucket is restored from the snapshot
    deletes = _delete_params(world)
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    progress = world.restore(plan)

    # Then the deleted object is back, the new one is hidden by a delete marker and its version still exists
    assert (plan.missing, plan.to_remove, plan.remove_keys) == (1, 1, ("uploads/late.csv",))
    assert world.contents() == bodies
    newcomer = latest_entries(world, "uploads/late.csv")
    assert [marker["IsLatest"] for marker in newcomer["markers"]] == [True]
    assert [version["VersionId"] for version in newcomer["versions"]] == [newcomer_version]
    assert progress.removed == 1 and deletes == [{"Bucket": DATA, "Key": "uploads/late.csv"}]

    # And restoring the safety snapshot brings the new object back
    undo = world.restorer.plan(source_bucket=DATA, snapshot_id=progress.safety_snapshot_id)
    world.restore(undo)
    assert world.contents()["uploads/late.csv"] == b"written after the snapshot"


def _delete_params(world: World) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    world.restore_client.meta.events.register("provide-client-params.s3.DeleteObject",
                                              lambda params, **_: seen.append(dict(params)))
    return seen


def test_undo_through_the_safety_snapshot_returns_the_exact_pre_restore_state(world: World) -> None:
    # Given a snapshot, then corruption, deletion and additions
    fill(world, 12)
    snapshot_id = world.snapshot()
    world.put("uploads/record-001.csv", body(1, salt="x"))
    world.put("uploads/record-002.csv", b"shorter")
    world.s3.delete_object(Bucket=DATA, Key="uploads/record-003.csv")
    world.put("uploads/extra.csv", b"extra")
    before_restore = world.contents()

    # When it is restored, and then the restore is undone by restoring its safety snapshot
    progress = world.restore(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id))
    assert world.contents() != before_restore
    undo_plan = world.restorer.plan(source_bucket=DATA, snapshot_id=progress.safety_snapshot_id)
    undone = world.restore(undo_plan)

    # Then every key holds exactly what it held before the restore, and nothing else exists
    assert world.contents() == before_restore
    assert (undo_plan.changed, undo_plan.missing, undo_plan.to_remove) == (2, 1, 1)
    assert undone.verification.ok


def test_an_interrupted_restore_resumes_and_completes_without_redoing_finished_work(world: World) -> None:
    # Given a snapshot, then 10 objects corrupted and 2 created, and a restore that crashes after 3 copies
    bodies = fill(world, 30)
    snapshot_id = world.snapshot()
    for n in range(10):
        world.put(f"uploads/record-{n:03d}.csv", body(n, salt="corrupt"))
    world.put("uploads/new-1.csv", b"1")
    world.put("uploads/new-2.csv", b"2")
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    copies: list[str] = []

    def crash_after_three(params: dict[str, Any], **_: Any) -> None:
        copies.append(params["Key"])
        if len(copies) > 3:
            raise RuntimeError("invocation killed")

    world.restore_client.meta.events.register("provide-client-params.s3.CopyObject", crash_after_three)
    with pytest.raises(RuntimeError, match="invocation killed"):
        world.restorer.apply(plan, PLENTY)
    snapshots_after_crash = list_snapshots(world.store, DATA)
    safety_id = snapshots_after_crash[-1].backup_id
    assert safety_id != snapshot_id and world.contents() != bodies

    # When the restore is applied again with the same plan and its safety snapshot
    world.restore_client.meta.events.unregister("provide-client-params.s3.CopyObject", crash_after_three)
    copies.clear()
    world.restore_client.meta.events.register("provide-client-params.s3.CopyObject",
                                              lambda params, **_: copies.append(params["Key"]))
    progress = world.restorer.apply(plan, PLENTY, safety_snapshot_id=safety_id)

    # Then it completes, copying only the 7 objects the crash left, and takes no second safety snapshot
    assert progress.finished and progress.verification.ok
    assert len(copies) == 7 and progress.copied == 7 and progress.removed == 2
    assert world.contents() == bodies
    assert list_snapshots(world.store, DATA) == snapshots_after_crash
    assert progress.safety_snapshot_id == safety_id

    # And an id that names no snapshot is refused rather than started under a past time
    with pytest.raises(InvalidRequest, match="no safety snapshot 20200101T000000Z-abcdef"):
        world.restorer.apply(plan, PLENTY, safety_snapshot_id="20200101T000000Z-abcdef")
    assert list_snapshots(world.store, DATA) == snapshots_after_crash

    # And a third application finds nothing left to do
    copies.clear()
    again = world.restorer.apply(plan, PLENTY, safety_snapshot_id=safety_id)
    assert (again.copied, again.removed, len(copies)) == (0, 0, 0) and again.verification.ok


def test_a_safety_snapshot_that_needs_more_time_is_continued_by_id(world: World) -> None:
    # Given a plan, and an invocation whose remaining time runs out during the safety snapshot
    bodies = fill(world, 6)
    snapshot_id = world.snapshot()
    world.put("uploads/record-000.csv", body(0, salt="bad"))
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    world.snapshotter = lambda bucket: BucketSnapshotter(world.s3, world.store, bucket, clock=world.clock, page_size=2)
    world.restorer = world.new_restorer()
    budget = iter([PLENTY(), 0])

    # When apply is called with that budget, then again with the snapshot id it returned
    first = world.restorer.apply(plan, lambda: next(budget, 0))
    untouched = world.contents()
    second = world.restorer.apply(plan, PLENTY, safety_snapshot_id=first.safety_snapshot_id)

    # Then nothing changed before the safety snapshot was complete, and the continuation finished the restore
    assert not first.finished and first.verification is None and first.copied == 0
    assert untouched["uploads/record-000.csv"] == body(0, salt="bad")
    assert second.finished and second.safety_snapshot_id == first.safety_snapshot_id and second.copied == 1
    assert world.contents() == bodies


def test_the_plan_decides_by_content_not_by_size_or_time(world: World) -> None:
    # Given a snapshot, then one object rewritten with identical bytes and headers (a new, newer version
    # with the same ETag) and another rewritten with other bytes of the same size
    bodies = fill(world, 4)
    snapshot_id = world.snapshot()
    same_version = world.put("uploads/record-000.csv", bodies["uploads/record-000.csv"], ContentType="text/csv",
                             Metadata={"source": "pipeline"})
    world.put("uploads/record-001.csv", body(1, salt="y"))

    # When the restore is planned and applied
    world.log_copies()
    calls_before = len(world.calls.calls)
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    heads = world.calls.calls[calls_before:].count("HeadObject")
    world.restore(plan)

    # Then the identical rewrite is unchanged (not copied), the same-size change is copied
    assert plan.copy_keys == ("uploads/record-001.csv",) and plan.unchanged == 3
    # And only the two rewritten versions were looked at (a HeadObject each: the identical rewrite's headers
    # might differ, the other's full-object checksum decides); the two untouched versions were not
    assert heads == 2
    assert [params["Key"] for _, params in world.copy_log] == ["uploads/record-001.csv"]
    assert latest_entries(world, "uploads/record-000.csv")["versions"][0]["VersionId"] == same_version
    assert world.contents() == bodies


def corrupt_stored_content(world: World, snapshot_id: str, keys: list[str]) -> None:
    """Replace the stored bodies of `keys` in the backup store: the same size, other bytes."""
    entries = {entry.key: entry for entry in read_manifest(world.store, DATA, snapshot_id).objects}
    for key in keys:
        content_key = entries[key].content_key
        stored = world.s3.get_object(Bucket=BACKUP, Key=content_key)["Body"].read()
        world.s3.put_object(Bucket=BACKUP, Key=content_key, Body=bytes(reversed(stored)))


def test_a_restore_of_damaged_stored_content_fails_its_verification_naming_the_damaged_keys(world: World) -> None:
    # Given a snapshot of 12 objects, then the stored bodies of two of them replaced (same size, other bytes)
    bodies = fill(world, 12)
    snapshot_id = world.snapshot()
    victims = ["uploads/record-003.csv", "uploads/record-008.csv"]
    corrupt_stored_content(world, snapshot_id, victims)
    # and the bucket emptied, so that the restore copies every object back
    for key in bodies:
        world.s3.delete_object(Bucket=DATA, Key=key)

    # When it is restored (each copy pinned to the stored body the snapshot recorded: S3 refuses the two replaced)
    progress = world.restore(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id))

    # Then the verification read back the 10 objects copied and counts only those: the two replaced are missing
    verification = progress.verification
    assert not verification.ok and (verification.objects_expected, verification.objects_matching) == (12, 10)
    assert progress.copied == 10 and verification.read_back == 10
    # And it names the two keys, as ones whose backup content is damaged
    assert verification.mismatched_keys == tuple(victims)
    assert verification.backup_damaged_keys == tuple(victims)
    assert "backup content damaged for uploads/record-003.csv, uploads/record-008.csv" in verification.failure(
        snapshot_id)
    # And verifying again later says the same: nothing the apply wrote counts as matching unread
    assert world.restorer.verify(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)).mismatched == 2


def test_a_copy_from_stored_content_is_pinned_to_it_so_a_replaced_body_never_reaches_the_bucket(world: World) -> None:
    # Given S3's answer to a copy whose CopySourceIfMatch fails (moto ignores the condition: embedded.s3_copy_conditions
    # fills that narrow gap for every test)
    # and a snapshot, then the stored body of one object replaced, and that object and another damaged
    bodies = fill(world, 6)
    snapshot_id = world.snapshot()
    victim, other = "uploads/record-002.csv", "uploads/record-004.csv"
    corrupt_stored_content(world, snapshot_id, [victim])
    world.put(victim, body(2, salt="bad"))
    world.put(other, body(4, salt="bad"))

    # When the bucket is restored
    progress = world.restore(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id))

    # Then the other object is restored, and the victim keeps what it held: the replaced body was not copied
    assert world.contents()[other] == bodies[other]
    assert world.contents()[victim] == body(2, salt="bad")
    assert progress.copied == 1
    # And the verification names the victim as mismatched, its backup content as damaged
    assert (progress.verification.mismatched_keys, progress.verification.backup_damaged_keys) == ((victim,), (victim,))


def test_a_change_of_headers_alone_is_planned_restored_and_verified(world: World) -> None:
    # Given a snapshot of objects with a content type, user metadata and the headers S3 keeps
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    kept = {"CacheControl": "max-age=60", "ContentDisposition": 'attachment; filename="report.csv"',
            "ContentLanguage": "es", "ContentEncoding": "identity"}
    world.put("docs/report.csv", b"a,b\n1,2\n", ContentType="text/csv", Metadata={"source": "pipeline"},
              Expires=expires, **kept)
    world.put("docs/plain.csv", b"c,d\n3,4\n", ContentType="text/csv", Metadata={"source": "pipeline"})
    world.put("docs/untouched.csv", b"e,f\n5,6\n", ContentType="text/csv")
    snapshot_id = world.snapshot()
    # then two rewritten with the same bytes: one with another content type and user metadata, one without
    # the headers it had
    world.put("docs/plain.csv", b"c,d\n3,4\n", ContentType="application/octet-stream", Metadata={"source": "x"})
    world.put("docs/report.csv", b"a,b\n1,2\n", ContentType="text/csv", Metadata={"source": "pipeline"})

    # When a restore is planned
    calls_before = len(world.calls.calls)
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    heads = world.calls.calls[calls_before:].count("HeadObject")

    # Then both are changed, decided with one HeadObject each (the untouched version is not looked at)
    assert (plan.copy_keys, plan.changed, plan.unchanged) == (("docs/plain.csv", "docs/report.csv"), 2, 1)
    assert heads == 2

    # When it is applied, Then both carry their snapshot's headers again, proven by the verification
    progress = world.restore(plan)
    assert progress.verification.ok and progress.verification.read_back == 2
    report = world.s3.head_object(Bucket=DATA, Key="docs/report.csv")
    assert {name: report.get(name) for name in kept} == kept and report["Expires"] == expires
    assert (report["ContentType"], report["Metadata"]) == ("text/csv", {"source": "pipeline"})
    plain = world.s3.head_object(Bucket=DATA, Key="docs/plain.csv")
    assert (plain["ContentType"], plain["Metadata"]) == ("text/csv", {"source": "pipeline"})

    # And a later change of metadata alone fails the verification, naming that key
    world.s3.copy_object(Bucket=DATA, Key="docs/plain.csv", CopySource={"Bucket": DATA, "Key": "docs/plain.csv"},
                         MetadataDirective="REPLACE", ContentType="text/csv", Metadata={"source": "edited"})
    verification = world.restorer.verify(plan)
    assert not verification.ok and verification.mismatched_keys == ("docs/plain.csv",)
    assert verification.backup_damaged_keys == ()


def test_a_restore_brings_back_every_header_and_the_tags_and_its_verification_compares_them(world: World) -> None:
    # Given objects with the headers S3 keeps and tags: one whose copy stored the body (its content object
    # carries them), one with the same body and its own (the manifest records them), and a plain one
    kept = {"CacheControl": "max-age=60", "ContentDisposition": "attachment", "ContentLanguage": "es",
            "ContentEncoding": "identity"}
    world.put("docs/report.csv", b"a,b\n1,2\n", ContentType="text/csv", Metadata={"source": "pipeline"},
              Expires=datetime(2030, 1, 1, tzinfo=UTC), Tagging="team=data&tier=gold%20plus", **kept)
    world.put("docs/twin.csv", b"a,b\n1,2\n", ContentType="text/plain", Metadata={"source": "twin"},
              Tagging="team=ops", ContentLanguage="de")
    world.put("docs/plain.csv", b"c\n")
    keys = ("docs/plain.csv", "docs/report.csv", "docs/twin.csv")
    before = {key: described_object(world.s3, DATA, key) for key in keys}
    snapshot_id = world.snapshot()
    entries = {entry.key: entry for entry in read_manifest(world.store, DATA, snapshot_id).objects}
    assert entries["docs/report.csv"].described_by_content and not entries["docs/twin.csv"].described_by_content
    # When all three are deleted, then restored
    for key in keys:
        world.s3.delete_object(Bucket=DATA, Key=key)
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    progress = world.restore(plan)
    # Then each carries its headers and tags again, proven by the verification
    assert progress.verification.ok and progress.verification.read_back == 3
    assert {key: described_object(world.s3, DATA, key) for key in keys} == before

    # And a change of tags alone (which makes no new version), or tags removed, fails the verification
    world.s3.put_object_tagging(Bucket=DATA, Key="docs/report.csv", Tagging={"TagSet": [
        {"Key": "team", "Value": "other"}, {"Key": "tier", "Value": "gold plus"}]})
    world.s3.delete_object_tagging(Bucket=DATA, Key="docs/twin.csv")
    verification = world.restorer.verify(plan)
    assert not verification.ok and verification.mismatched_keys == ("docs/report.csv", "docs/twin.csv")
    # And so does a change of a header alone on the object whose headers its content object carries
    world.s3.copy_object(Bucket=DATA, Key="docs/plain.csv", CopySource={"Bucket": DATA, "Key": "docs/plain.csv"},
                         MetadataDirective="REPLACE", ContentType="text/csv")
    assert world.restorer.verify(plan).mismatched_keys == ("docs/plain.csv", "docs/report.csv", "docs/twin.csv")


def test_a_snapshot_of_the_previous_manifest_format_still_restores_with_the_headers_it_recorded(
        world: World) -> None:
    # Given a snapshot whose manifest is of format s3-snapshot/1: headers in every entry, no tags
    world.put("docs/report.csv", b"a,b\n1,2\n", ContentType="text/csv", Metadata={"source": "pipeline"},
              CacheControl="max-age=60", Tagging="team=data")
    world.put("docs/plain.csv", b"c\n")
    snapshot_id = world.snapshot()
    written_in_format_1(world.s3, BACKUP, DATA, snapshot_id)
    assert read_manifest(world.store, DATA, snapshot_id).objects[1].headers == {"CacheControl": "max-age=60"}
    # When both are rewritten with other headers, then restored from it
    world.put("docs/report.csv", b"a,b\n1,2\n", ContentType="text/plain")
    world.s3.delete_object(Bucket=DATA, Key="docs/plain.csv")
    progress = world.restore(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id))
    # Then they carry the headers the manifest recorded, proven by the verification; tags it did not record
    assert progress.verification.ok and world.contents() == {"docs/report.csv": b"a,b\n1,2\n", "docs/plain.csv": b"c\n"}
    report = described_object(world.s3, DATA, "docs/report.csv")
    assert (report["ContentType"], report["Metadata"], report["CacheControl"], report["Tags"]) == (
        "text/csv", {"source": "pipeline"}, "max-age=60", {})


# Choosing the restore point ------------------------------------------------------------------------

def test_at_picks_the_newest_complete_snapshot_not_after_it_and_never_an_incomplete_one() -> None:
    with mock_aws():
        clock = SimulatedClock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
        world = World(clock)
        plain = "apilados-plain-data"  # unversioned: only snapshots can be restore points
        world.s3.create_bucket(Bucket=plain)
        # Given snapshots at 12:00 and 13:00, and one started at 13:30 that never finished
        world.put("a.csv", b"state at 12:00", bucket=plain)
        world.put("b.csv", b"a second page for the unfinished snapshot", bucket=plain)
        first = world.snapshot(plain)
        clock.advance(3600)
        world.put("a.csv", b"state at 13:00", bucket=plain)
        second = world.snapshot(plain)
        clock.advance(1800)
        world.put("a.csv", b"state at 13:30", bucket=plain)
        budget = iter([PLENTY(), 0])
        unfinished = BucketSnapshotter(world.s3, world.store, plain, clock=clock, page_size=1).snapshot(
            None, lambda: next(budget, 0))
        assert not unfinished.finished
        world.put("a.csv", b"state now", bucket=plain)

        # When restores are planned for 13:45 and for 12:59
        at_1345 = world.restorer.plan(source_bucket=plain, at=datetime(2026, 11, 20, 13, 45, tzinfo=UTC))
        at_1259 = world.restorer.plan(source_bucket=plain, at=datetime(2026, 11, 20, 12, 59, tzinfo=UTC))

        # Then 13:45 restores the 13:00 snapshot (not the unfinished one) and 12:59 the 12:00 one
        assert (at_1345.snapshot_id, at_1345.source) == (second, "snapshot")
        assert at_1259.snapshot_id == first
        assert any("versioning" in note for note in at_1345.notes)
        world.restore(at_1345)
        assert world.contents(plain)["a.csv"] == b"state at 13:00"
        assert world.restorer.verify(at_1345).ok


def test_at_before_every_snapshot_is_a_clear_error_naming_the_oldest(world: World) -> None:
    # Given one snapshot
    fill(world, 2)
    snapshot_id = world.snapshot()

    # When a restore is planned for a day before it, Then the error names the oldest snapshot
    with pytest.raises(NoRestorePoint, match=f"the oldest is {snapshot_id}"):
        world.restorer.plan(source_bucket=DATA, at=world.clock() - timedelta(days=1))
    with pytest.raises(NoRestorePoint, match="no complete snapshot"):
        world.restorer.plan(source_bucket="apilados-other-data", at=world.clock())


def test_exactly_one_of_snapshot_id_and_at_is_required(world: World) -> None:
    snapshot_id = world.snapshot()
    with pytest.raises(InvalidRequest, match="exactly one of snapshot_id or at"):
        world.restorer.plan(source_bucket=DATA)
    with pytest.raises(InvalidRequest, match="exactly one of snapshot_id or at"):
        world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id, at=world.clock())


def test_versions_reach_a_moment_between_two_snapshots() -> None:
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with mock_aws(), time_machine.travel(start, tick=False) as traveller:
        # moto stamps versions with the process clock; the snapshots' ids come from the same clock
        world = World(lambda: datetime.now(UTC))
        # Given a snapshot at 09:01 of a=v1, b=v1
        world.put("a.csv", b"a v1")
        world.put("b.csv", b"b v1")
        traveller.shift(60)
        first = world.snapshot()
        # then at 09:02 a=v2 and b deleted; 09:03 is the moment wanted
        traveller.shift(60)
        world.put("a.csv", b"a v2")
        world.s3.delete_object(Bucket=DATA, Key="b.csv")
        traveller.shift(60)
        wanted = datetime.now(UTC)
        # then at 09:04 a=v3, c created, b back, and a second snapshot at 09:05
        traveller.shift(60)
        world.put("a.csv", b"a v3")
        world.put("b.csv", b"b v3")
        world.put("c.csv", b"c v3")
        traveller.shift(60)
        world.snapshot()
        traveller.shift(60)

        # When the bucket is restored to 09:03
        plan = world.restorer.plan(source_bucket=DATA, at=wanted)
        progress = world.restore(plan)

        # Then the versions current at 09:03 are back, on top of the 09:01 snapshot
        assert (plan.source, plan.snapshot_id, plan.from_versions) == ("versions", first, 2)
        assert (plan.changed, plan.to_remove, sorted(plan.remove_keys)) == (1, 2, ["b.csv", "c.csv"])
        assert world.contents() == {"a.csv": b"a v2"}
        assert progress.verification.ok


def test_versions_are_not_used_when_a_lifecycle_rule_may_have_expired_them() -> None:
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    with mock_aws(), time_machine.travel(start, tick=False) as traveller:
        world = World(lambda: datetime.now(UTC))
        # Given a snapshot, a change after it, and a rule expiring noncurrent versions after 1 day
        world.put("a.csv", b"a v1")
        traveller.shift(60)
        first = world.snapshot()
        traveller.shift(60)
        world.put("a.csv", b"a v2")
        wanted = datetime.now(UTC)
        world.s3.put_bucket_lifecycle_configuration(Bucket=DATA, LifecycleConfiguration={"Rules": [
            {"ID": "expire-old", "Status": "Enabled", "Filter": {"Prefix": ""},
             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
        traveller.shift(3 * 86400)

        # When a restore to the moment after the change is planned three days later
        plan = world.restorer.plan(source_bucket=DATA, at=wanted)

        # Then the snapshot is the restore point, and the plan says why versions were not used
        assert (plan.source, plan.snapshot_id, plan.changed) == ("snapshot", first, 1)
        assert any("expire-old" in note for note in plan.notes)


# Scope and safety ----------------------------------------------------------------------------------

def test_a_prefix_restricts_both_copies_and_removals(world: World) -> None:
    # Given damage inside and outside the prefix
    fill(world, 3, prefix="in/")
    fill(world, 3, prefix="out/")
    snapshot_id = world.snapshot()
    for prefix in ("in/", "out/"):
        world.put(f"{prefix}record-000.csv", body(0, salt="bad"))
        world.put(f"{prefix}added.csv", b"added")

    # When only the prefix in/ is restored
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id, prefix="in/")
    world.restore(plan)

    # Then in/ is back to the snapshot and out/ keeps its damage
    assert (plan.copy_keys, plan.remove_keys, plan.unchanged) == (("in/record-000.csv",), ("in/added.csv",), 2)
    assert set(world.contents(prefix="in/")) == {f"in/record-{n:03d}.csv" for n in range(3)}
    assert world.contents(prefix="out/")["out/record-000.csv"] == body(0, salt="bad")
    assert "out/added.csv" in world.contents(prefix="out/")


def test_a_target_bucket_restores_beside_the_source(world: World) -> None:
    # Given a snapshot and a damaged source, and an empty versioned bucket beside it
    bodies = fill(world, 5)
    snapshot_id = world.snapshot()
    world.put("uploads/record-000.csv", body(0, salt="bad"))
    damaged = world.contents()
    beside = "apilados-production-data-restored"
    world.s3.create_bucket(Bucket=beside)
    world.s3.put_bucket_versioning(Bucket=beside, VersioningConfiguration={"Status": "Enabled"})

    # When the snapshot is restored into that bucket
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id, target_bucket=beside)
    progress = world.restore(plan)

    # Then it holds the snapshot, the source is untouched, and the safety snapshot is of the target
    assert (plan.target_bucket, plan.missing) == (beside, 5)
    assert world.contents(beside) == bodies and world.contents() == damaged
    assert progress.safety_snapshot_id in [listing.backup_id for listing in list_snapshots(world.store, beside)]


def test_an_unversioned_target_is_refused_when_the_restore_would_remove_anything(world: World) -> None:
    # Given an unversioned target holding a key the snapshot does not have
    fill(world, 2)
    snapshot_id = world.snapshot()
    plain = "apilados-plain-target"
    world.s3.create_bucket(Bucket=plain)
    world.put("stray.csv", b"only here", bucket=plain)

    # When a restore into it is planned, Then it is refused before anything changes
    with pytest.raises(RestoreRefused, match=r"versioning is Disabled.*only as delete markers"):
        world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id, target_bucket=plain)
    assert world.calls.mutating() == []
    assert world.contents(plain) == {"stray.csv": b"only here"}

    # And a restore that removes nothing is allowed
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id, target_bucket=plain, prefix="uploads/")
    world.restore(plan)
    assert len(world.contents(plain, prefix="uploads/")) == 2


def test_the_fingerprint_changes_when_the_target_changes_and_apply_then_refuses(world: World) -> None:
    # Given a plan
    fill(world, 3)
    snapshot_id = world.snapshot()
    world.put("uploads/record-000.csv", body(0, salt="bad"))
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    assert world.restorer.fingerprint(plan) == plan.fingerprint

    # When the target changes after the plan
    world.put("uploads/record-001.csv", body(1, salt="also bad"))

    # Then its fingerprint differs, and apply refuses without copying or removing anything
    assert world.restorer.fingerprint(plan) != plan.fingerprint
    world.log_copies()
    with pytest.raises(TargetChanged, match="changed since plan"):
        world.restorer.apply(plan, PLENTY)
    assert world.copies_into(DATA) == 0 and "DeleteObject" not in world.calls.calls


def test_verification_reports_mismatched_and_unexpected_keys(world: World) -> None:
    # Given a finished restore
    fill(world, 4)
    snapshot_id = world.snapshot()
    world.put("uploads/record-002.csv", body(2, salt="bad"))
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    assert world.restore(plan).verification.ok

    # When an object is corrupted at the same size and another is added afterwards
    world.put("uploads/record-003.csv", body(3, salt="bad"))
    world.put("uploads/afterwards.csv", b"late")
    verification = world.restorer.verify(plan)

    # Then the verification names both
    assert not verification.ok
    assert (verification.objects_expected, verification.objects_matching) == (4, 3)
    assert verification.mismatched_keys == ("uploads/record-003.csv",)
    assert verification.unexpected_keys == ("uploads/afterwards.csv",)


def test_archived_objects_are_reported_not_copied(world: World) -> None:
    # Given a snapshot of an object in GLACIER (recorded, its body not stored), then that object replaced
    fill(world, 2)
    world.put("uploads/cold.csv", b"cold data", StorageClass="GLACIER")
    snapshot_id = world.snapshot()
    world.put("uploads/cold.csv", b"warm over cold")

    # When the restore is planned and applied
    world.log_copies()
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    progress = world.restore(plan)

    # Then the plan lists it as needing an S3 restore first, no copy is tried, and verify reports it
    assert (plan.archived, plan.archived_keys, plan.to_copy) == (1, ("uploads/cold.csv",), 0)
    assert world.copy_log == []
    assert progress.verification.mismatched_keys == ("uploads/cold.csv",)


# Mechanics -----------------------------------------------------------------------------------------

def test_objects_over_the_threshold_are_copied_in_parts_and_recognised_on_resume(world: World) -> None:
    # Given a snapshot of an 11 MB object, then that object corrupted at the same size
    world.restorer = world.new_restorer(multipart_threshold=1024**2, part_size=5 * 1024**2)
    big = bytes(range(256)) * (11 * 4096)
    world.put("uploads/big.csv", big)
    snapshot_id = world.snapshot()
    world.put("uploads/big.csv", big[::-1])

    # When it is restored with a 1 MB multipart threshold
    world.log_copies()
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    progress = world.restore(plan)

    # Then three UploadPartCopy requests rebuilt it, and verification proves the version it wrote by
    # reading it back: a multipart copy has another ETag than the original, and no full-object checksum
    assert [name for name, _ in world.copy_log] == ["UploadPartCopy"] * 3
    assert world.s3.get_object(Bucket=DATA, Key="uploads/big.csv")["Body"].read() == big
    assert progress.verification.ok
    assert (progress.verification.read_back, progress.verification.streamed) == (1, 1)
    assert world.restorer.apply(plan, PLENTY, safety_snapshot_id=progress.safety_snapshot_id).copied == 0


def test_throttled_copies_are_retried_with_backoff(world: World) -> None:
    # Given a restore whose first two CopyObject requests are throttled with SlowDown
    bodies = fill(world, 3)
    snapshot_id = world.snapshot()
    world.put("uploads/record-001.csv", body(1, salt="bad"))
    sleeps: list[float] = []
    world.restorer = world.new_restorer(sleep=sleeps.append)
    throttled = iter(range(2))

    def slow_down(**_: Any) -> None:
        if next(throttled, None) is not None:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                              "CopyObject")

    world.restore_client.meta.events.register("before-call.s3.CopyObject", slow_down)

    # When it is applied, Then it completes after two backoffs
    progress = world.restore(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id))
    assert len(sleeps) == 2 and progress.copied == 1
    assert world.contents() == bodies


def test_a_plan_round_trips_through_json_and_names_a_changes_object_when_large(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given plans listing at most 2 keys of each kind inline
    monkeypatch.setattr(bucket_restore, "LISTED_KEYS", 2)
    fill(world, 6)
    snapshot_id = world.snapshot()
    for n in range(5):
        world.s3.delete_object(Bucket=DATA, Key=f"uploads/record-{n:03d}.csv")

    # When a restore of five deleted objects is planned and stored as JSON
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    stored = json.loads(json.dumps(plan.to_dict()))

    # Then it comes back equal, lists two keys, and its changes object lists all five
    assert RestorePlan.from_dict(stored) == plan
    assert plan.to_copy == 5 and len(plan.copy_keys) == 2 and len(plan.plan_id) <= 16
    header, *lines = read_gzip_json_lines(world.store.get_bytes(plan.changes_key))
    assert header == {"format": "s3-restore-changes/2", "plan_id": plan.plan_id, "copy": 5, "remove": 0,
                      "archived": 0}
    assert lines == [{"copy": f"uploads/record-{n:03d}.csv"} for n in range(5)]
    with pytest.raises(InvalidRequest, match="not a"):
        RestorePlan.from_dict({**stored, "format": "something-else"})
    # And a plan an earlier version of the controller made (its digests hashed otherwise) is refused: plan again
    with pytest.raises(InvalidRequest, match="plan the restore again"):
        RestorePlan.from_dict({**stored, "format": "s3-restore-plan/1"})


def test_copies_and_removals_are_spread_over_the_targets_prefixes(world: World) -> None:
    # Given objects under three folders, all deleted since their snapshot, and three added under one folder
    bodies = {**fill(world, 3, "exports/"), **fill(world, 3, "uploads/"), **fill(world, 2, "reports/")}
    snapshot_id = world.snapshot()
    for key in bodies:
        world.s3.delete_object(Bucket=DATA, Key=key)
    for n in range(3):
        world.put(f"incoming/new-{n}.csv", b"new")
    world.restorer = world.new_restorer(concurrency=1)  # one request at a time: the order is the order sent
    world.log_copies()
    removals: list[str] = []
    world.restore_client.meta.events.register(
        "provide-client-params.s3.DeleteObject", lambda params, **_: removals.append(params["Key"]))
    # When it is restored
    world.restore(world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id))
    # Then the copies went round-robin over the prefixes, not a folder at a time
    folders = [params["Key"].split("/")[0] for _, params in world.copy_log]
    assert folders == ["exports", "reports", "uploads"] * 2 + ["exports", "uploads"]
    # and the removals (one prefix each: incoming/n) went in their own order, after every copy
    assert removals == [f"incoming/new-{n}.csv" for n in range(3)]
    assert world.contents() == bodies


def test_a_plan_estimates_the_requests_and_bytes_its_apply_makes(world: World) -> None:
    # Given 30 objects snapshotted, then 3 corrupted at the same size, 3 deleted and 3 added (distinct bodies)
    fill(world, 30)
    snapshot_id = world.snapshot()
    for n in range(3):
        world.put(f"uploads/record-{n:03d}.csv", body(n, salt="bad"))
        world.s3.delete_object(Bucket=DATA, Key=f"uploads/record-{n + 10:03d}.csv")
        world.put(f"uploads/extra-{n}.csv", f"extra {n}".encode())
    # When it is planned, Then the plan says what applying it costs before anything changes
    plan = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    estimate = plan.estimate
    assert estimate["bytes_copied"] == plan.bytes_to_copy + 3 * 64 + sum(len(f"extra {n}") for n in range(3))
    assert estimate["cost_usd"] > 0 and estimate["seconds"] > 0 and estimate["invocations"] == 1
    assert estimate["assumptions"]["concurrency"] == 16
    # When it is applied, with every request of the restore and its safety snapshot counted
    counted = CallRecorder().attach(world.s3, world.restore_client)
    world.restore(plan)
    made = {name: counted.calls.count(name) for name in set(counted.calls)}
    # Then the copies (6 restored, 6 bodies the safety snapshot stored) and delete markers are as estimated
    assert estimate["requests"]["copies"] == made["CopyObject"] == 12
    assert estimate["requests"]["deletes"] == made["DeleteObject"] == 3
    # and every request together within a quarter of the estimate
    priced = sum(count for name, count in made.items() if name not in ("GetBucketVersioning",
                                                                       "GetObjectLockConfiguration"))
    assert abs(estimate["requests"]["total"] - priced) <= priced / 4, (estimate["requests"], made)


# Listing in key ranges at once ---------------------------------------------------------------------------------------


def test_a_big_restore_point_is_planned_listing_the_target_in_key_ranges_at_once_with_the_same_result(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a restore point of 120 objects, then 10 rewritten, 10 deleted and 10 added; and plans that count a listing
    # page as 10 keys (so the restore point holds 12 pages: 8 ranges), listed 4 keys a page
    fill(world, 120)
    snapshot_id = world.snapshot()
    for n in range(0, 120, 12):
        world.put(f"uploads/record-{n:03d}.csv", b"bad")
        world.s3.delete_object(Bucket=DATA, Key=f"uploads/record-{n + 1:03d}.csv")
        world.put(f"uploads/record-{n:03d}-extra.csv", b"added")
    whole = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    assert whole.listing_ranges == ((None, None),)
    monkeypatch.setattr(bucket_restore, "KEYS_PER_LIST_PAGE", 10)
    monkeypatch.setattr(bucket_desired, "PAGE_KEYS", 4)
    markers: list[str | None] = []
    world.restore_client.meta.events.register("provide-client-params.s3.ListObjectVersions",
                                              lambda params, **_: markers.append(params.get("KeyMarker")))
    # When it is planned again, and planned to now (from the bucket's own history since the snapshot)
    ranged = world.restorer.plan(source_bucket=DATA, snapshot_id=snapshot_id)
    now = world.restorer.plan(source_bucket=DATA, at=world.clock())
    # Then each is listed in 8 ranges, each from its start (KeyMarker alone) to its end
    assert len(ranged.listing_ranges) == 8 and now.listing_ranges == ranged.listing_ranges
    assert {bounds[0] for bounds in ranged.listing_ranges} <= set(markers)
    # And plans the same restore as one listing of the whole bucket: figures, keys and fingerprint
    same = ("to_copy", "missing", "changed", "to_remove", "unchanged", "copy_keys", "remove_keys", "fingerprint",
            "desired_digest", "bytes_to_copy")
    assert {name: getattr(ranged, name) for name in same} == {name: getattr(whole, name) for name in same}
    assert (ranged.to_copy, ranged.to_remove) == (20, 10)
    # And the state now, read from the history listed in those ranges (which is the target's listing too), is the
    # bucket as it holds: nothing to do
    assert (now.source, now.to_copy, now.to_remove, now.fingerprint) == ("versions", 0, 0, whole.fingerprint)
    # And its fingerprint, taken again when it is confirmed, is listed in its ranges and matches
    assert world.restorer.fingerprint(ranged) == ranged.fingerprint
    # And it applies and verifies as any plan
    done = world.restore(ranged)
    assert done.verification.ok and world.contents() == {f"uploads/record-{n:03d}.csv": body(n) for n in range(120)}


def test_a_listing_in_ranges_hands_over_a_listers_failure_and_stops_the_others_when_the_reader_stops(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 40 objects listed 3 keys a page in 4 ranges
    fill(world, 40)
    monkeypatch.setattr(bucket_desired, "PAGE_KEYS", 3)
    states = bucket_desired.DesiredStates(world.restore_client, world.store, world.clock)
    ranges = ranges_cut_at(["uploads/record-009.csv", "uploads/record-019.csv", "uploads/record-029.csv"])
    # When read through, Then it is the whole listing in key order
    assert list(states.versions_in_ranges(DATA, "", ranges)) == list(states.versions(DATA, ""))
    # And a reader that stops after two objects stops every lister (none of the threads it started is left running)
    running_before = set(threading.enumerate())
    first_two = states.versions_in_ranges(DATA, "", ranges)
    assert [next(first_two).key, next(first_two).key] == ["uploads/record-000.csv", "uploads/record-001.csv"]
    assert set(threading.enumerate()) - running_before  # its listers, running
    first_two.close()
    assert set(threading.enumerate()) - running_before == set()
    # And a lister's failure (the third range's second page) reaches the reader as S3's error, after what came first
    pages = 0

    def throttled(params: dict[str, Any], **_: Any) -> None:
        nonlocal pages
        if params.get("KeyMarker", "") >= "uploads/record-019.csv":
            pages += 1
            if pages == 2:
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "ListObjectVersions")

    world.restore_client.meta.events.register("provide-client-params.s3.ListObjectVersions", throttled)
    read: list[str] = []
    with pytest.raises(ClientError, match="SlowDown"):
        read.extend(item.key for item in states.versions_in_ranges(DATA, "", ranges))
    assert read[:20] == [f"uploads/record-{n:03d}.csv" for n in range(20)]
