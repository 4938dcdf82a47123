"""Bucket snapshots: incremental by content, every listing edge case, a verified manifest, resumable."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from drcore.aws.errors import MAX_ATTEMPTS
from drcore.backup.bucket_snapshots import SAFETY_MARGIN_MS, BucketSnapshotter, SnapshotProgress
from drcore.backup.manifest import (
    ManifestCorrupt,
    ManifestEntry,
    SnapshotManifest,
    SnapshotNotFound,
    list_snapshots,
    read_manifest,
)
from drcore.backup.snapshot_checkpoints import key_ranges
from drcore.state.backup_store import BackupStore, Component, backup_prefix, content_key, manifest_key
from tests.s3_gaps import hook, s3_answers
from tests.support import CallRecorder, SimulatedClock, data_and_backup_buckets, described_object

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"
PLENTY_MS = 15 * 60 * 1000
MiB = 1024**2


@pytest.fixture
def s3() -> Iterator[Any]:
    with data_and_backup_buckets(DATA, BACKUPS) as client:
        yield client


@pytest.fixture
def store(s3: Any) -> BackupStore:
    return BackupStore(s3, BACKUPS)


@pytest.fixture
def snapshot_clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def snapshotter(s3: Any, store: BackupStore, snapshot_clock: SimulatedClock) -> Callable[..., BucketSnapshotter]:
    def build(**options: Any) -> BucketSnapshotter:
        return BucketSnapshotter(s3, store, DATA, clock=snapshot_clock, **options)
    return build


def run_to_end(snapshotter: BucketSnapshotter, clock: SimulatedClock, backup_id: str | None = None) -> SnapshotProgress:
    clock.advance(3600)  # snapshots an hour apart: ids sort by time
    progress = snapshotter.snapshot(backup_id, lambda: PLENTY_MS)
    assert progress.finished
    return progress


def put(s3: Any, key: str, body: bytes, bucket: str = DATA, **extra: Any) -> dict[str, Any]:
    return s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def copies_of(s3: Any) -> list[dict[str, Any]]:
    """The source (Bucket, Key, VersionId) and content key ("To") of every CopyObject the client sends."""
    copies: list[dict[str, Any]] = []
    s3.meta.events.register("provide-client-params.s3.CopyObject",
                            lambda params, **_: copies.append({**params["CopySource"], "To": params["Key"]}))
    return copies


def stored_body(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BACKUPS, Key=key)["Body"].read()


def by_key(manifest: SnapshotManifest) -> dict[str, ManifestEntry]:
    return {entry.key: entry for entry in manifest.objects}


# Incremental snapshots ------------------------------------------------------------------------------


def test_second_snapshot_copies_exactly_the_changed_objects_and_an_unchanged_bucket_copies_nothing(
        s3, store, snapshotter, snapshot_clock):
    # Given a bucket of 2,000 objects and a first, full snapshot of it
    for n in range(2000):
        put(s3, f"uploads/{n:05d}.csv", f"row,{n}\n".encode() * 8)
    calls = CallRecorder().attach(s3)
    copies = copies_of(s3)
    first = run_to_end(snapshotter(), snapshot_clock)
    assert first.stats["objects_copied"] == 2000 and calls.count()["CopyObject"] == 2000
    # When 1% of the objects get new content and a second snapshot is taken
    changed = {f"uploads/{n:05d}.csv" for n in range(0, 2000, 100)}
    for key in changed:
        put(s3, key, b"new content of " + key.encode())
    calls.calls.clear(), copies.clear()
    second = run_to_end(snapshotter(), snapshot_clock)
    # Then exactly those 20 are copied, each once, their headers along; the rest is reused without a HEAD
    assert calls.count()["CopyObject"] == 20
    assert {copy["Key"] for copy in copies} == changed
    assert second.stats["objects_copied"] == 20 and second.stats["objects_reused"] == 1980
    assert second.stats["metadata_reads"] == 0
    manifest = by_key(read_manifest(store, DATA, second.backup_id))
    assert len(manifest) == 2000
    assert stored_body(s3, manifest["uploads/00100.csv"].content_key) == b"new content of uploads/00100.csv"
    # When nothing changes, Then the third snapshot costs its listing and its manifest: no copy, no HEAD
    calls.calls.clear()
    third = run_to_end(snapshotter(), snapshot_clock)
    assert third.stats["objects_copied"] == 0 and third.stats["objects_reused"] == 2000
    assert calls.count()["CopyObject"] == 0 and third.stats["metadata_reads"] == 0
    assert calls.count()["HeadObject"] == 0  # the base is the newest earlier manifest, read back: no HEADs
    assert [listing.backup_id for listing in list_snapshots(store, DATA)] == [first.backup_id, second.backup_id,
                                                                               third.backup_id]


def test_identical_bodies_are_stored_once(s3, store, snapshotter, snapshot_clock):
    # Given three keys with the same body and one with another
    for key in ("a.csv", "b.csv", "c.csv"):
        put(s3, key, b"same body")
    put(s3, "d.csv", b"another body")
    copies = copies_of(s3)
    # When the bucket is snapshotted
    progress = run_to_end(snapshotter(), snapshot_clock)
    # Then the shared body is copied once and the three entries point at it
    manifest = by_key(read_manifest(store, DATA, progress.backup_id))
    assert len(copies) == 2 and progress.stats["objects_copied"] == 2 and progress.stats["objects_reused"] == 2
    assert manifest["a.csv"].content_key == manifest["b.csv"].content_key == manifest["c.csv"].content_key


def test_content_another_writer_stored_meanwhile_counts_as_stored_and_is_not_replaced(
        s3, store, snapshotter, snapshot_clock):
    # Given a body that another snapshot stores between this snapshot's look at the store and its copy: the
    # look finds nothing (S3 answered 404), the copy then meets the stored body. moto ignores IfNoneMatch on
    # CopyObject, so the test answers 412 as S3 does (tests/s3_gaps.py)
    put(s3, "a.csv", b"shared body")
    key = content_key("etag", f"{hashlib.md5(b'shared body').hexdigest()}-11")
    first = s3.put_object(Bucket=BACKUPS, Key=key, Body=b"shared body")
    hook(s3, "HeadObject", s3_answers("404", 404, times=1, when=lambda params: params["Key"] == key))
    # When the bucket is snapshotted
    progress = run_to_end(snapshotter(), snapshot_clock)
    # Then the conditional copy's PreconditionFailed means "already stored": the snapshot completes, copies nothing,
    # and the stored body is the one version the other writer wrote
    entry = by_key(read_manifest(store, DATA, progress.backup_id))["a.csv"]
    assert entry.content_key == key and progress.stats["objects_copied"] == 0
    assert [v["ETag"] for v in s3.list_object_versions(Bucket=BACKUPS, Prefix=key)["Versions"]] == [first["ETag"]]


# Listing edge cases ---------------------------------------------------------------------------------


def test_a_key_whose_latest_version_is_a_delete_marker_is_absent_and_counted(s3, store, snapshotter, snapshot_clock):
    # Given a key overwritten (two versions), a deleted key (delete marker on top) and a plain key
    put(s3, "kept.csv", b"v1")
    latest = put(s3, "kept.csv", b"v2")
    put(s3, "deleted.csv", b"gone")
    s3.delete_object(Bucket=DATA, Key="deleted.csv")
    put(s3, "plain.csv", b"plain")
    # When it is snapshotted
    progress = run_to_end(snapshotter(), snapshot_clock)
    # Then the deleted key is absent, counted as a delete marker, and only latest versions are recorded
    manifest = by_key(read_manifest(store, DATA, progress.backup_id))
    assert set(manifest) == {"kept.csv", "plain.csv"}
    assert progress.stats["delete_markers"] == 1
    assert manifest["kept.csv"].version_id == latest["VersionId"]
    assert stored_body(s3, manifest["kept.csv"].content_key) == b"v2"


def test_null_version_ids_from_before_versioning_are_snapshotted_and_reused(s3, store, snapshotter, snapshot_clock):
    # Given objects written before versioning was enabled (version id "null") and after it
    s3.create_bucket(Bucket="late-versioned-data")
    put(s3, "old.csv", b"from before versioning", bucket="late-versioned-data")
    s3.put_bucket_versioning(Bucket="late-versioned-data", VersioningConfiguration={"Status": "Enabled"})
    put(s3, "new.csv", b"from after", bucket="late-versioned-data")
    build = lambda: BucketSnapshotter(s3, store, "late-versioned-data", clock=snapshot_clock)  # noqa: E731
    # When the bucket is snapshotted twice without changes
    first = run_to_end(build(), snapshot_clock)
    calls = CallRecorder().attach(s3)
    second = run_to_end(build(), snapshot_clock)
    # Then the null version is recorded with its body, and carried over the second time without a copy
    manifest = by_key(read_manifest(store, "late-versioned-data", first.backup_id))
    assert manifest["old.csv"].version_id == "null"
    assert manifest["new.csv"].version_id != "null"
    assert stored_body(s3, manifest["old.csv"].content_key) == b"from before versioning"
    assert second.stats["objects_copied"] == 0 and calls.count()["CopyObject"] == 0


def test_an_unversioned_bucket_overwritten_in_place_is_copied_again(s3, store, snapshot_clock):
    # Given an unversioned bucket (every version id is "null") snapshotted once
    s3.create_bucket(Bucket="unversioned-data")
    put(s3, "report.csv", b"monday", bucket="unversioned-data")
    put(s3, "static.csv", b"never changes", bucket="unversioned-data")
    build = lambda: BucketSnapshotter(s3, store, "unversioned-data", clock=snapshot_clock)  # noqa: E731
    run_to_end(build(), snapshot_clock)
    # When one object is overwritten in place (same key, same "null" version id) and snapshotted again
    put(s3, "report.csv", b"tuesday", bucket="unversioned-data")
    second = run_to_end(build(), snapshot_clock)
    # Then the new content is copied; the "null" id alone did not make it look unchanged
    manifest = by_key(read_manifest(store, "unversioned-data", second.backup_id))
    assert second.stats["objects_copied"] == 1 and second.stats["objects_reused"] == 1
    assert stored_body(s3, manifest["report.csv"].content_key) == b"tuesday"


def test_an_object_overwritten_between_listing_and_reading_is_listed_again(s3, store, snapshot_clock):
    # Given an unversioned bucket whose object is overwritten just after the snapshot listed it, before its copy
    # (which is pinned to the listed ETag: moto's gap filled)
    s3.create_bucket(Bucket="busy-data")
    put(s3, "live.csv", b"as listed", bucket="busy-data")
    writer = boto3.client("s3", region_name="us-east-1")
    overwritten: list[bool] = []

    def overwrite_once(params: dict[str, Any], **_: Any) -> None:
        if not overwritten:
            overwritten.append(True)
            writer.put_object(Bucket="busy-data", Key="live.csv", Body=b"written meanwhile")

    s3.meta.events.register("before-parameter-build.s3.CopyObject", overwrite_once)
    # When it is snapshotted
    progress = run_to_end(BucketSnapshotter(s3, store, "busy-data", clock=snapshot_clock), snapshot_clock)
    # Then the page is listed again and the snapshot records the object as it now is, consistently
    entry = by_key(read_manifest(store, "busy-data", progress.backup_id))["live.csv"]
    assert overwritten and stored_body(s3, entry.content_key) == b"written meanwhile"
    assert entry.etag == f'"{hashlib.md5(b"written meanwhile").hexdigest()}"'


def test_objects_over_the_threshold_are_copied_in_parts(s3, store, snapshotter, snapshot_clock):
    # Given an object larger than the multipart threshold. The threshold (6 MiB) and part size (5 MiB,
    # S3's smallest part) stand in for the real 5 GB and 512 MiB so the test stays small.
    big = bytes(range(256)) * (11 * MiB // 256) + b"tail"
    put(s3, "exports/big.bin", big)
    put(s3, "small.csv", b"small")
    calls = CallRecorder().attach(s3)
    # When it is snapshotted
    progress = run_to_end(snapshotter(multipart_threshold=6 * MiB, part_size=5 * MiB), snapshot_clock)
    # Then the big one is copied with UploadPartCopy in three parts, the small one with CopyObject
    assert calls.count()["UploadPartCopy"] == 3 and calls.count()["CompleteMultipartUpload"] == 1
    assert calls.count()["CopyObject"] == 1
    entry = by_key(read_manifest(store, DATA, progress.backup_id))["exports/big.bin"]
    assert stored_body(s3, entry.content_key) == big
    assert progress.stats["bytes_copied"] == len(big) + len(b"small")


def test_a_part_size_below_s3s_minimum_is_refused(s3, store):
    with pytest.raises(ValueError, match="part_size"):
        BucketSnapshotter(s3, store, DATA, part_size=MiB)


def test_archived_objects_are_recorded_not_copied_and_reported(s3, store, snapshotter, snapshot_clock):
    # Given objects in GLACIER and DEEP_ARCHIVE, one in GLACIER_IR (instant access, not an archive), and an
    # INTELLIGENT_TIERING object in its archive tier. moto does not model Intelligent-Tiering's access
    # tiers, so S3's answer to a copy of such an object (403 InvalidObjectState) is given here.
    put(s3, "cold/glacier.csv", b"g", StorageClass="GLACIER")
    put(s3, "cold/deep.csv", b"d", StorageClass="DEEP_ARCHIVE")
    put(s3, "warm/instant.csv", b"i", StorageClass="GLACIER_IR")
    put(s3, "tiered/archived.csv", b"t", StorageClass="INTELLIGENT_TIERING")
    hook(s3, "CopyObject", s3_answers("InvalidObjectState", 403,
                                      when=lambda params: params["CopySource"]["Key"] == "tiered/archived.csv"))
    copies = copies_of(s3)
    # When the bucket is snapshotted
    progress = run_to_end(snapshotter(), snapshot_clock)
    # Then the archived ones are in the manifest as archived, without content, and reported; GLACIER_IR is copied
    manifest = by_key(read_manifest(store, DATA, progress.backup_id))
    archived = {"cold/glacier.csv", "cold/deep.csv", "tiered/archived.csv"}
    assert {key for key, entry in manifest.items() if entry.archived} == archived
    assert all(manifest[key].content_key is None for key in archived)
    assert manifest["cold/deep.csv"].storage_class == "DEEP_ARCHIVE"
    assert sorted(progress.stats["archived_not_copied"]) == sorted(archived)
    assert progress.stats["objects_archived"] == 3 and progress.stats["objects_copied"] == 1
    # And only the tiered one was tried: a storage class that needs an S3 restore is known from the listing
    assert sorted(copy["Key"] for copy in copies) == ["tiered/archived.csv", "warm/instant.csv"]
    assert manifest["warm/instant.csv"].described_by_content


# The manifest ---------------------------------------------------------------------------------------


def test_manifest_records_every_field_and_content_keys_follow_the_listing(s3, store, snapshotter, snapshot_clock):
    # Given an object with a SHA-256 checksum, content type and user metadata, and one without a SHA-256
    body = b"id,name\n1,ana\n"
    written = put(s3, "typed.csv", body, ChecksumAlgorithm="SHA256", ContentType="text/csv",
                  Metadata={"source": "ingest", "batch": "42"})
    put(s3, "plain.bin", b"\x00\x01")
    # When the bucket is snapshotted
    progress = run_to_end(snapshotter(), snapshot_clock)
    manifest = read_manifest(store, DATA, progress.backup_id)
    typed, plain = by_key(manifest)["typed.csv"], by_key(manifest)["plain.bin"]
    # Then each entry has what a restore needs: the version, and the SHA-256 S3 computed of the copy (the
    # object's own, here); its content type and metadata are the content object's
    assert typed.version_id == written["VersionId"] and typed.etag == written["ETag"] and typed.size == len(body)
    assert typed.storage_class == "STANDARD" and typed.last_modified.endswith("Z") and typed.archived is False
    assert typed.content_sha256 == written["ChecksumSHA256"] and typed.described_by_content
    stored = s3.head_object(Bucket=BACKUPS, Key=typed.content_key)
    assert (stored["ContentType"], stored["Metadata"]) == ("text/csv", {"source": "ingest", "batch": "42"})
    # And content keys are named by the listing alone: the ETag and the size
    assert typed.content_key == content_key("etag", hashlib.md5(body).hexdigest() + f"-{len(body)}")
    assert plain.content_key == content_key("etag", hashlib.md5(b"\x00\x01").hexdigest() + "-2")
    assert stored_body(s3, typed.content_key) == body
    assert manifest.backup_id == progress.backup_id and manifest.bucket == DATA
    assert manifest.stats["objects_listed"] == 2


def test_manifest_records_the_stored_body_and_the_headers_of_a_body_stored_before(s3, store, snapshotter,
                                                                                  snapshot_clock):
    # Given an object with the headers S3 keeps, and one plain
    body = b"id,name\n1,ana\n"
    put(s3, "report.csv", body, ContentType="text/csv", CacheControl="max-age=60", ContentLanguage="es",
        ContentDisposition="attachment", Expires="Tue, 01 Jan 2030 00:00:00 GMT")
    put(s3, "plain.bin", b"\x00\x01")
    # When the bucket is snapshotted
    first = read_manifest(store, DATA, run_to_end(snapshotter(), snapshot_clock).backup_id)
    report, plain = by_key(first)["report.csv"], by_key(first)["plain.bin"]
    # Then the content object as stored: its ETag, and the full-object SHA-256 S3 computed of it
    for entry, stored in ((report, body), (plain, b"\x00\x01")):
        head = s3.head_object(Bucket=BACKUPS, Key=entry.content_key, ChecksumMode="ENABLED")
        assert entry.content_etag == head["ETag"]
        assert entry.content_sha256 == base64.b64encode(hashlib.sha256(stored).digest()).decode()
    # And a later snapshot records the same of a new object whose body is stored already (found by a probe),
    # with the headers it has, which its content object does not carry
    put(s3, "copy-of-plain.bin", b"\x00\x01", ContentType="application/octet-stream", ContentLanguage="de")
    second = read_manifest(store, DATA, run_to_end(snapshotter(), snapshot_clock).backup_id)
    found = by_key(second)["copy-of-plain.bin"]
    assert (found.content_key, found.content_etag, found.content_sha256) == (
        plain.content_key, plain.content_etag, plain.content_sha256)
    assert (found.content_type, found.headers, found.tags) == ("application/octet-stream", {"ContentLanguage": "de"},
                                                               {})
    assert by_key(second)["report.csv"] == report  # carried over from the first, unchanged


def test_manifest_is_gzip_json_lines_with_its_sha256_in_metadata(s3, store, snapshotter, snapshot_clock):
    # Given a snapshot
    put(s3, "a.csv", b"a")
    progress = run_to_end(snapshotter(), snapshot_clock)
    # When its manifest object is read raw
    stored = s3.get_object(Bucket=BACKUPS, Key=manifest_key(Component.S3, DATA, progress.backup_id))
    body = stored["Body"].read()
    # Then it is gzip-compressed JSON lines (a header, then one line per object) with its SHA-256 recorded
    assert stored["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest()
    header, *objects = [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]
    assert header["format"] == "s3-snapshot/2" and header["objects"] == 1 and header["bucket"] == DATA
    assert [entry["key"] for entry in objects] == ["a.csv"]


def test_a_corrupt_manifest_is_detected_and_a_later_snapshot_still_copies_nothing(s3, store, snapshotter,
                                                                                   snapshot_clock):
    # Given a snapshot whose manifest is then altered in place (bypassing the write-once store)
    put(s3, "a.csv", b"a")
    put(s3, "b.csv", b"b")
    progress = run_to_end(snapshotter(), snapshot_clock)
    key = manifest_key(Component.S3, DATA, progress.backup_id)
    original = s3.get_object(Bucket=BACKUPS, Key=key)
    lines = gzip.decompress(original["Body"].read()).decode().replace('"a.csv"', '"x.csv"')
    s3.put_object(Bucket=BACKUPS, Key=key, Body=gzip.compress(lines.encode()), Metadata=original["Metadata"])
    # When it is read, Then the SHA-256 check refuses it
    with pytest.raises(ManifestCorrupt):
        read_manifest(store, DATA, progress.backup_id)
    # And a new snapshot passes over it, finds the content already stored (its conditional copies answer 412), and
    # stores nothing again
    stored_before = s3.list_object_versions(Bucket=BACKUPS, Prefix="content/").get("Versions", [])
    later = run_to_end(snapshotter(), snapshot_clock)
    assert later.stats["objects_copied"] == 0 and later.stats["objects_reused"] == 2
    assert s3.list_object_versions(Bucket=BACKUPS, Prefix="content/").get("Versions", []) == stored_before


def test_an_unknown_snapshot_id_is_reported_as_not_found(store):
    with pytest.raises(SnapshotNotFound):
        read_manifest(store, DATA, "20261126T120000Z-000000")


# Checkpoints, crashes, time limits ------------------------------------------------------------------


def test_a_snapshot_crashed_mid_way_resumes_and_copies_nothing_twice(s3, store, snapshotter, snapshot_clock):
    # Given 500 objects, listed 100 per page, and a crash injected after the 250th copy
    for n in range(500):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    copies = copies_of(s3)

    def crash_after_250(params: dict[str, Any], **_: Any) -> None:
        if len(copies) > 250:
            copies.pop()
            raise RuntimeError("the Lambda function ran out of memory")

    s3.meta.events.register("provide-client-params.s3.CopyObject", crash_after_250)
    snapshot_clock.advance(3600)
    with pytest.raises(RuntimeError):
        snapshotter(page_size=100, concurrency=1).snapshot(None, lambda: PLENTY_MS)
    # Then the unfinished snapshot is not restorable, and its finished pages are checkpointed
    (crashed,) = store.list_backups(Component.S3, DATA)
    assert not crashed.complete and list_snapshots(store, DATA) == []
    checkpoints = [entry["Key"] for entry in store.keys(backup_prefix(Component.S3, DATA, crashed.backup_id))]
    assert [key.rsplit("/", 1)[1] for key in checkpoints] == ["000001.json", "000002.json"]
    # When it is resumed with its id after the fault is gone
    s3.meta.events.unregister("provide-client-params.s3.CopyObject", crash_after_250)
    progress = snapshotter(page_size=100).snapshot(crashed.backup_id, lambda: PLENTY_MS)
    # Then it finishes with every object, and no content was copied twice
    assert progress.finished and progress.backup_id == crashed.backup_id
    assert len(read_manifest(store, DATA, crashed.backup_id).objects) == 500
    assert max(Counter(copy["To"] for copy in copies).values()) == 1 and len(copies) == 500
    assert [listing.backup_id for listing in list_snapshots(store, DATA)] == [crashed.backup_id]


def test_a_crashed_snapshot_restarted_under_a_new_id_reuses_what_was_copied(s3, store, snapshotter, snapshot_clock):
    # Given a snapshot that crashed after copying some content (as if Lambda retried the original event)
    for n in range(300):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    copies = copies_of(s3)

    def crash_after_120(params: dict[str, Any], **_: Any) -> None:
        if len(copies) > 120:
            copies.pop()
            raise RuntimeError("timed out")

    s3.meta.events.register("provide-client-params.s3.CopyObject", crash_after_120)
    snapshot_clock.advance(3600)
    with pytest.raises(RuntimeError):
        snapshotter(page_size=100, concurrency=1).snapshot(None, lambda: PLENTY_MS)
    s3.meta.events.unregister("provide-client-params.s3.CopyObject", crash_after_120)
    # When a new snapshot starts from scratch
    progress = run_to_end(snapshotter(page_size=100), snapshot_clock)
    # Then it copies only what the crashed one had not, and only the new one is restorable
    assert len(copies) == 300 and max(Counter(copy["To"] for copy in copies).values()) == 1
    assert progress.stats["objects_copied"] == 180 and progress.stats["objects_reused"] == 120
    assert [listing.backup_id for listing in list_snapshots(store, DATA)] == [progress.backup_id]


def test_a_snapshot_checkpoints_and_stops_when_time_runs_low_then_continues(s3, store, snapshotter, snapshot_clock):
    # Given 450 objects listed 100 per page, and an invocation with time for two pages only
    for n in range(450):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    budget = iter([PLENTY_MS, PLENTY_MS, SAFETY_MARGIN_MS - 1])
    calls = CallRecorder().attach(s3)
    snapshot_clock.advance(3600)
    # When the snapshot runs out of time
    paused = snapshotter(page_size=100).snapshot(None, lambda: next(budget))
    # Then it stops after two checkpointed pages, unfinished and not restorable
    assert not paused.finished and paused.stats["pages"] == 2 and paused.stats["objects_copied"] == 200
    assert list_snapshots(store, DATA) == []
    assert not store.exists(manifest_key(Component.S3, DATA, paused.backup_id))
    # When it is continued with its id, Then it lists only the remaining pages and finishes
    calls.calls.clear()
    done = snapshotter(page_size=100).snapshot(paused.backup_id, lambda: PLENTY_MS)
    # (three pages of the bucket, and one of the store's content, listed with its versions)
    assert done.finished and calls.count()["ListObjectVersions"] == 3 + 1
    assert done.stats["pages"] == 5 and done.stats["objects_copied"] == 450 and done.stats["objects_listed"] == 450
    assert len(read_manifest(store, DATA, done.backup_id).objects) == 450
    # And continuing a finished snapshot changes nothing
    calls.calls.clear()
    again = snapshotter(page_size=100).snapshot(paused.backup_id, lambda: PLENTY_MS)
    assert again.finished and again.stats == done.stats and calls.mutating() == []


def test_a_snapshot_builds_on_the_newest_complete_one_passing_over_an_unfinished_one(s3, store, snapshotter,
                                                                                     snapshot_clock):
    # Given a complete snapshot, then a newer one that stopped after its first page
    for n in range(250):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    complete = run_to_end(snapshotter(page_size=100), snapshot_clock)
    snapshot_clock.advance(3600)
    budget = iter([PLENTY_MS, SAFETY_MARGIN_MS - 1])
    unfinished = snapshotter(page_size=100, listing_ranges=1).snapshot(None, lambda: next(budget))
    assert not unfinished.finished
    # When a new snapshot starts
    latest = run_to_end(snapshotter(page_size=100), snapshot_clock)
    # Then it builds on the complete one: everything reused, nothing copied
    first_page = json.loads(gzip.decompress(stored_body(s3, backup_prefix(Component.S3, DATA, latest.backup_id)
                                                        + "progress/000001.json")))
    assert first_page["base"] == complete.backup_id
    assert latest.stats["objects_copied"] == 0 and latest.stats["objects_reused"] == 250


def test_an_incremental_snapshot_checkpoints_carried_entries_by_reference_and_resumes_from_them(
        s3, store, snapshotter, snapshot_clock):
    # Given a full snapshot of 450 objects, then one object changed
    for n in range(450):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    base = run_to_end(snapshotter(page_size=100), snapshot_clock)
    put(s3, "k/0150", b"changed")
    # When the next snapshot (one key range: pages in sequence) runs out of time after two pages and is continued
    budget = iter([PLENTY_MS, PLENTY_MS, SAFETY_MARGIN_MS - 1])
    snapshot_clock.advance(3600)
    paused = snapshotter(page_size=100, listing_ranges=1).snapshot(None, lambda: next(budget))
    done = snapshotter(page_size=100, listing_ranges=1).snapshot(paused.backup_id, lambda: PLENTY_MS)
    # Then its checkpoints name the unchanged entries as runs of the base's positions, the new one in full
    # (the second page lists 100 versions: the changed key's old version is one of them)
    second_page = json.loads(gzip.decompress(stored_body(s3, backup_prefix(Component.S3, DATA, paused.backup_id)
                                                         + "progress/000002.json")))
    assert second_page["base"] == base.backup_id
    assert [item if isinstance(item, list) else item["key"] for item in second_page["entries"]] == [
        [100, 50], "k/0150", [151, 48]]
    # And the finished manifest is the base's, but for the changed object
    before = read_manifest(store, DATA, base.backup_id).objects
    after = read_manifest(store, DATA, done.backup_id).objects
    assert done.finished and done.stats["objects_copied"] == 1 and len(after) == 450
    assert [entry.key for entry in after] == [entry.key for entry in before]
    assert [n for n, (old, new) in enumerate(zip(before, after, strict=True)) if old != new] == [150]
    assert stored_body(s3, after[150].content_key) == b"changed"


# Throttling -----------------------------------------------------------------------------------------


def slow_down(times: int) -> Callable[..., Any]:
    """A before-call hook answering the first `times` calls with S3's 503 SlowDown."""
    remaining = [times]

    def hook(**_: Any) -> Any:
        if remaining[0] > 0:
            remaining[0] -= 1
            return (AWSResponse("https://s3.amazonaws.com", 503, {}, None),
                    {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                     "ResponseMetadata": {"HTTPStatusCode": 503}})
        return None

    return hook


def test_copies_run_concurrently_up_to_the_configured_concurrency(s3, snapshotter, snapshot_clock):
    # Given 40 objects and copies that each take a while
    for n in range(40):
        put(s3, f"k/{n}", f"body {n}".encode())
    lock, in_flight, most = threading.Lock(), [0], [0]

    def slow_copy(**_: Any) -> None:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1

    s3.meta.events.register("before-call.s3.CopyObject", slow_copy)
    # When it is snapshotted with a concurrency of 8
    progress = run_to_end(snapshotter(concurrency=8), snapshot_clock)
    # Then several copies were in flight at once, never more than 8
    assert progress.stats["objects_copied"] == 40
    assert 1 < most[0] <= 8


def test_throttled_copies_are_retried_with_jittered_exponential_backoff(s3, store, snapshotter, snapshot_clock):
    # Given a bucket and S3 answering the first three copies with SlowDown
    for n in range(5):
        put(s3, f"k/{n}", f"body {n}".encode())
    s3.meta.events.register("before-call.s3.CopyObject", slow_down(3))
    pauses: list[float] = []
    # When it is snapshotted
    progress = run_to_end(snapshotter(concurrency=1, sleep=pauses.append), snapshot_clock)
    # Then every object is stored after three backoffs, each within its doubling cap
    assert progress.stats["objects_copied"] == 5 and progress.stats["throttle_retries"] == 3
    assert len(pauses) == 3 and all(0 <= pause <= 0.2 * 2**n for n, pause in enumerate(pauses))


def test_throttling_that_never_ends_fails_after_a_bounded_number_of_attempts(s3, store, snapshotter, snapshot_clock):
    # Given S3 answering every copy with SlowDown
    put(s3, "k", b"body")
    s3.meta.events.register("before-call.s3.CopyObject", slow_down(10**6))
    pauses: list[float] = []
    # When it is snapshotted, Then it gives up after MAX_ATTEMPTS with S3's error, and writes no manifest
    with pytest.raises(ClientError, match="SlowDown"):
        snapshotter(concurrency=1, sleep=pauses.append).snapshot(None, lambda: PLENTY_MS)
    assert len(pauses) == MAX_ATTEMPTS - 1 and max(pauses) <= 10.0
    assert list_snapshots(store, DATA) == []


# Object metadata travels with the content ------------------------------------------------------------

KEPT = {"CacheControl": "max-age=60", "ContentDisposition": 'attachment; filename="report.csv"',
        "ContentEncoding": "identity", "ContentLanguage": "es"}
EXPIRES = "Tue, 01 Jan 2030 00:00:00 GMT"


def reads_of(s3: Any, bucket: str) -> Counter[str]:
    """How many HeadObject and GetObjectTagging requests the client sends to `bucket`."""
    reads: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        if params.get("Bucket") == bucket:
            reads[model.name] += 1

    for operation in ("HeadObject", "GetObjectTagging"):
        s3.meta.events.register(f"provide-client-params.s3.{operation}", count)
    return reads


def test_a_first_snapshot_reads_no_headers_the_copy_carries_them_and_the_tags(s3, store, snapshotter, snapshot_clock):
    # Given objects with a content type, user metadata, the headers S3 keeps and tags, and a plain one
    body = b"id,name\n1,ana\n"
    put(s3, "docs/report.csv", body, ContentType="text/csv", Metadata={"source": "ingest"}, Expires=EXPIRES,
        Tagging="team=data&tier=gold", **KEPT)
    put(s3, "docs/plain.bin", b"\x00\x01")
    reads = reads_of(s3, DATA)
    # When the bucket is snapshotted for the first time
    progress = run_to_end(snapshotter(), snapshot_clock)
    # Then no object of the bucket was described by a request of its own: the listing and one copy each
    assert reads == Counter() and progress.stats["metadata_reads"] == 0
    manifest = by_key(read_manifest(store, DATA, progress.backup_id))
    report = manifest["docs/report.csv"]
    # And the content object carries the object's headers and tags, which the entry points to
    assert report.described_by_content and manifest["docs/plain.bin"].described_by_content
    assert described_object(s3, BACKUPS, report.content_key, report.content_version_id) == described_object(
        s3, DATA, "docs/report.csv")
    # And the entry records the SHA-256 S3 computed of the copy, and no headers of its own
    assert report.content_sha256 == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert (report.content_type, report.metadata, report.headers, report.tags) == (None, {}, None, None)
    assert report.content_key == content_key("etag", hashlib.md5(body).hexdigest() + f"-{len(body)}")


def test_a_new_version_whose_content_is_stored_records_its_own_headers_and_tags(s3, store, snapshotter,
                                                                                snapshot_clock):
    # Given two objects with the same body but their own headers and tags
    body = b"same body"
    put(s3, "a.csv", body, ContentType="text/csv", Metadata={"owner": "a"}, Tagging="k=a")
    put(s3, "b.csv", body, ContentType="text/plain", Metadata={"owner": "b"}, Tagging="k=b", CacheControl="no-cache")
    reads = reads_of(s3, DATA)
    # When the bucket is snapshotted
    first = run_to_end(snapshotter(), snapshot_clock)
    manifest = by_key(read_manifest(store, DATA, first.backup_id))
    # Then the body is stored once, by the copy of one of them, whose headers travel with it
    copier, other = sorted(manifest.values(), key=lambda entry: not entry.described_by_content)
    assert copier.described_by_content and not other.described_by_content
    assert copier.content_key == other.content_key and first.stats["objects_copied"] == 1
    # And the other records its own headers and tags: one HeadObject and one GetObjectTagging of that version
    assert reads == Counter({"HeadObject": 1, "GetObjectTagging": 1}) and first.stats["metadata_reads"] == 1
    expected = described_object(s3, DATA, other.key)
    assert (other.content_type, other.metadata, other.tags) == (
        expected["ContentType"], expected["Metadata"], expected["Tags"])
    assert other.headers == ({"CacheControl": "no-cache"} if other.key == "b.csv" else {})
    # When only the metadata of one is changed (a copy onto itself: a new version, the same body)
    s3.copy_object(Bucket=DATA, Key="a.csv", CopySource={"Bucket": DATA, "Key": "a.csv"}, MetadataDirective="REPLACE",
                   ContentType="text/csv", Metadata={"owner": "edited"})
    reads.clear()
    second = run_to_end(snapshotter(), snapshot_clock)
    edited = by_key(read_manifest(store, DATA, second.backup_id))["a.csv"]
    # Then nothing is copied, and the new version's metadata is in its entry
    assert second.stats["objects_copied"] == 0 and reads["HeadObject"] == 1
    assert not edited.described_by_content and edited.metadata == {"owner": "edited"} and edited.tags == {"k": "a"}


# Storage grows with change: delta manifests -----------------------------------------------------------------


def raw_header(s3: Any, backup_id: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=BACKUPS, Key=manifest_key(Component.S3, DATA, backup_id))["Body"].read()
    return json.loads(gzip.decompress(body).decode().splitlines()[0])


def bucket_state(s3: Any) -> dict[str, tuple[str, str]]:
    versions = s3.list_object_versions(Bucket=DATA)["Versions"]
    return {version["Key"]: (version["VersionId"], version["ETag"]) for version in versions if version["IsLatest"]}


def test_a_snapshot_stores_its_changes_as_a_delta_on_its_base_and_reads_back_whole(s3, store, snapshotter,
                                                                                   snapshot_clock):
    # Given a full snapshot of 200 objects
    for n in range(200):
        put(s3, f"uploads/{n:03d}.csv", f"row,{n}\n".encode())
    first = run_to_end(snapshotter(), snapshot_clock)
    # When two change, one is deleted, one is added, and the bucket is snapshotted again
    put(s3, "uploads/010.csv", b"changed ten")
    put(s3, "uploads/020.csv", b"changed twenty")
    s3.delete_object(Bucket=DATA, Key="uploads/030.csv")
    put(s3, "uploads/999.csv", b"added")
    second = run_to_end(snapshotter(), snapshot_clock)
    # Then its manifest holds those four changes only, as a delta on the first
    header = raw_header(s3, second.backup_id)
    assert (header["kind"], header["base"], header["depth"], header["lines"]) == ("delta", first.backup_id, 1, 4)
    assert raw_header(s3, first.backup_id)["kind"] == "full"
    # And read back it is the whole bucket as it was, in key order: read through its chain, one manifest each
    reads = reads_of_manifests(s3)
    manifest = read_manifest(store, DATA, second.backup_id)
    assert reads["n"] == 2 and manifest.depth == 1 and manifest.needs() == (first.backup_id,)
    assert {entry.key: (entry.version_id, entry.etag) for entry in manifest.objects} == bucket_state(s3)
    assert [entry.key for entry in manifest.objects] == sorted(bucket_state(s3))
    assert stored_body(s3, by_key(manifest)["uploads/010.csv"].content_key) == b"changed ten"


def reads_of_manifests(s3: Any) -> Counter[str]:
    """How many GetObject requests of manifests the client sends from now on (a Counter: reads["n"])."""
    reads: Counter[str] = Counter()

    def count(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key", "").endswith("manifest.json.gz"):
            reads["n"] += 1

    s3.meta.events.register("provide-client-params.s3.GetObject", count)
    return reads


def test_a_full_manifest_is_written_every_n_snapshots_and_whenever_most_objects_changed(s3, store, snapshotter,
                                                                                      snapshot_clock):
    # Given ten objects, snapshotted with a full manifest every three snapshots, one object changing each time
    for n in range(10):
        put(s3, f"{n}.csv", b"x" * n)
    kinds = []
    for n in range(4):
        put(s3, "0.csv", f"change {n}".encode())
        kinds.append(raw_header(s3, run_to_end(snapshotter(full_manifest_every=3), snapshot_clock).backup_id)["kind"])
    # Then the chain restarts with a full one every third
    assert kinds == ["full", "delta", "delta", "full"]
    # And a snapshot where more than half the objects changed is written in full, though the chain is short
    for n in range(6):
        put(s3, f"{n}.csv", b"rewritten")
    assert raw_header(s3, run_to_end(snapshotter(full_manifest_every=3), snapshot_clock).backup_id)["kind"] == "full"


def test_a_delta_whose_base_is_damaged_or_gone_is_reported_not_read_as_a_snapshot(s3, store, snapshotter,
                                                                                  snapshot_clock):
    # Given a delta on a full snapshot
    for n in range(6):
        put(s3, f"{n}.csv", f"{n}".encode())
    first = run_to_end(snapshotter(), snapshot_clock)
    put(s3, "0.csv", b"new")
    second = run_to_end(snapshotter(), snapshot_clock)
    assert read_manifest(store, DATA, second.backup_id).depth == 1
    # When the base's manifest is overwritten (a new version of its key), Then the delta still reads the recorded one
    base_key = manifest_key(Component.S3, DATA, first.backup_id)
    original = s3.get_object(Bucket=BACKUPS, Key=base_key)["Body"].read()
    s3.put_object(Bucket=BACKUPS, Key=base_key, Body=gzip.compress(b'{"format": "s3-snapshot/2"}\n'))
    # (the test bucket keeps no versions: the recorded version is the key's object, now damaged)
    with pytest.raises(ManifestCorrupt, match="SHA-256"):
        read_manifest(store, DATA, second.backup_id)
    # When the base is gone altogether, Then the delta is corrupt, naming its missing base
    s3.put_object(Bucket=BACKUPS, Key=base_key, Body=original)
    assert len(read_manifest(store, DATA, second.backup_id).objects) == 6
    for key in [entry["Key"] for entry in store.keys(backup_prefix(Component.S3, DATA, first.backup_id))]:
        s3.delete_object(Bucket=BACKUPS, Key=key)
    with pytest.raises(ManifestCorrupt, match=f"delta on {first.backup_id}, which is gone"):
        read_manifest(store, DATA, second.backup_id)


# Key ranges listed at once --------------------------------------------------------------------------------


def listings_in_flight(s3: Any) -> list[int]:
    """Records, at each ListObjectVersions, how many were in flight (each held a moment, so overlaps show)."""
    lock, current, seen = threading.Lock(), [0], []

    def before(**_: Any) -> None:
        with lock:
            current[0] += 1
            seen.append(current[0])
        time.sleep(0.02)

    def after(**_: Any) -> None:
        with lock:
            current[0] -= 1

    s3.meta.events.register("before-call.s3.ListObjectVersions", before)
    s3.meta.events.register("after-call.s3.ListObjectVersions", after)
    return seen


def test_an_incremental_snapshot_lists_key_ranges_at_once_and_holds_every_key_once(s3, store, snapshotter,
                                                                                  snapshot_clock):
    # Given a base of 400 objects, listed 20 per page: 8 ranges of 50 keys, cut at the base's keys
    for n in range(400):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    base = run_to_end(snapshotter(page_size=20), snapshot_clock)
    ranges = key_ranges(read_manifest(store, DATA, base.backup_id), 20, 8)
    assert [bounds.last for bounds in ranges] == [*(f"k/{n:04d}" for n in range(49, 350, 50)), None]
    # And then, at every range's edge, its last key changed and a key added right after it; the first key of one
    # range deleted; keys added before the first and after the last
    for bounds in ranges[:-1]:
        put(s3, str(bounds.last), b"changed")
        put(s3, f"{bounds.last}-added", b"added")
    s3.delete_object(Bucket=DATA, Key="k/0050")
    put(s3, "a-first", b"first")
    put(s3, "z-last", b"last")
    in_flight = listings_in_flight(s3)
    # When the next snapshot runs
    second = run_to_end(snapshotter(page_size=20), snapshot_clock)
    # Then its ranges were listed at once
    assert max(in_flight) > 1
    # And its manifest is the bucket: every key once, in key order, the changes copied
    manifest = read_manifest(store, DATA, second.backup_id)
    keys = [entry.key for entry in manifest.objects]
    assert keys == sorted(set(keys)) and len(keys) == 400 - 1 + 7 + 2
    assert {entry.key: (entry.version_id, entry.etag) for entry in manifest.objects} == bucket_state(s3)
    assert second.stats["objects_copied"] == 4 and second.stats["objects_listed"] == len(keys)
    assert stored_body(s3, by_key(manifest)["k/0049"].content_key) == b"changed"


def test_a_ranged_snapshot_out_of_time_continues_each_range_where_it_stopped(s3, store, snapshotter, snapshot_clock):
    # Given a base of 400 objects in 8 ranges, then one key changed in each range
    for n in range(400):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    run_to_end(snapshotter(page_size=20), snapshot_clock)
    for n in range(25, 400, 50):
        put(s3, f"k/{n:04d}", f"changed {n}".encode())
    # When the next snapshot has time for a dozen of its 21 pages (ranges run at once, so which ones is theirs to
    # say) and is continued
    asked, lock = [0], threading.Lock()

    def budget() -> int:
        with lock:
            asked[0] += 1
            return PLENTY_MS if asked[0] <= 12 else SAFETY_MARGIN_MS - 1

    snapshot_clock.advance(3600)
    paused = snapshotter(page_size=20).snapshot(None, budget)
    assert not paused.finished and 0 < paused.stats["pages"] < 21
    checkpointed = [entry["Key"] for entry in store.keys(backup_prefix(Component.S3, DATA, paused.backup_id))]
    assert any("/progress/r" in key for key in checkpointed)
    done = snapshotter(page_size=20).snapshot(paused.backup_id, lambda: PLENTY_MS)
    # Then it finishes every range once: each page listed and checkpointed once, the bucket recorded as it is
    manifest = read_manifest(store, DATA, done.backup_id)
    assert done.finished and done.stats["pages"] == sum(1 for _ in store.keys(
        backup_prefix(Component.S3, DATA, done.backup_id) + "progress/"))
    assert {entry.key: (entry.version_id, entry.etag) for entry in manifest.objects} == bucket_state(s3)
    assert done.stats["objects_copied"] == 8 and done.stats["objects_listed"] == 400, (paused.stats, done.stats)


def test_a_range_that_fails_stops_the_others_and_the_snapshot_raises(s3, store, snapshotter, snapshot_clock):
    # Given a base of 400 objects in 8 ranges, and S3 refusing the listing of one range
    for n in range(400):
        put(s3, f"k/{n:04d}", f"body {n}".encode())
    run_to_end(snapshotter(page_size=20), snapshot_clock)
    hook(s3, "ListObjectVersions", s3_answers("AccessDenied", 403,
                                              when=lambda params: params.get("KeyMarker") == "k/0199"))
    # When the next snapshot runs, Then it fails with S3's error, unfinished
    with pytest.raises(ClientError, match="AccessDenied"):
        run_to_end(snapshotter(page_size=20), snapshot_clock)
    assert len(list_snapshots(store, DATA)) == 1
