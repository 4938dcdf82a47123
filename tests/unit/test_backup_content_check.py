"""Whether a snapshot's stored content still matches its manifest: each check over damaged content."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config

from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.content_check import (
    BODY_DIFFERS,
    CHECKSUM_DIFFERS,
    MISSING,
    REPLACED,
    ContentChecker,
)
from drcore.backup.manifest import ManifestEntry, SnapshotManifest, checksum_of, open_manifest, read_manifest
from drcore.state.backup_store import BackupStore
from tests.support import SimulatedClock, data_and_backup_buckets

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"


@pytest.fixture
def s3() -> Iterator[Any]:
    with data_and_backup_buckets(DATA, BACKUPS) as client:
        yield client


@pytest.fixture
def store(s3: Any) -> BackupStore:
    return BackupStore(s3, BACKUPS)


@pytest.fixture
def manifest(s3: Any, store: BackupStore) -> SnapshotManifest:
    """A snapshot of six objects, each with a body of its own."""
    for n in range(6):
        s3.put_object(Bucket=DATA, Key=f"uploads/record-{n}.csv", Body=f"id,amount\n{n},{n * 10}\n".encode() * 4,
                      ContentType="text/csv")
    progress = BucketSnapshotter(s3, store, DATA, clock=SimulatedClock()).snapshot(None, lambda: 900_000)
    return read_manifest(store, DATA, progress.backup_id)


def entry_of(manifest: SnapshotManifest, key: str) -> ManifestEntry:
    return next(entry for entry in manifest.objects if entry.key == key)


def replace_stored_body(s3: Any, manifest: SnapshotManifest, key: str) -> str:
    """A new version over the content object: the same size, other bytes. Returns its content key."""
    content_key = entry_of(manifest, key).content_key
    assert content_key is not None
    stored = s3.get_object(Bucket=BACKUPS, Key=content_key)["Body"].read()
    s3.put_object(Bucket=BACKUPS, Key=content_key, Body=bytes(reversed(stored)))
    return content_key


def own_checksum(s3: Any, key: str) -> dict[str, str] | None:
    """The checksum S3 holds for a data object, as a manifest of the first format recorded it."""
    return checksum_of(s3.head_object(Bucket=DATA, Key=key, ChecksumMode="ENABLED"))


def check(store: BackupStore, manifest: SnapshotManifest, *, read: bool, sample: int | None = None) -> dict[str, Any]:
    return ContentChecker(store, chooser=random.Random(7)).check_snapshot(manifest, sample=sample, read=read).to_dict()


@pytest.mark.parametrize("read", [False, True], ids=["quick", "reading"])
def test_intact_content_passes(store, manifest, read):
    report = check(store, manifest, read=read)
    assert report["ok"] and (report["checked"], report["intact"], report["damaged"]) == (6, 6, 0)
    assert report["mode"] == ("full" if read else "quick")


@pytest.mark.parametrize("read", [False, True], ids=["quick", "reading"])
def test_a_body_replaced_at_the_same_size_is_damaged(s3, store, manifest, read):
    # Given the stored body of one object replaced: the same size, other bytes
    replace_stored_body(s3, manifest, "uploads/record-2.csv")
    # When the content is checked, Then that object is named: quickly, by the ETag the stored object had (the
    # writer's checksum is a CRC32, the manifest's the SHA-256 of the copy); by reading, by that SHA-256
    report = check(store, manifest, read=read)
    assert not report["ok"] and (report["damaged"], report["intact"], report["objects_affected"]) == (1, 5, 1)
    assert [(item["key"], item["problem"]) for item in report["damaged_keys"]] == [
        ("uploads/record-2.csv", BODY_DIFFERS if read else REPLACED)]
    # And where the manifest records the object's own checksum (of the same algorithm), S3's checksum decides
    own = replace(manifest, objects=tuple(replace(entry, checksum=own_checksum(s3, entry.key))
                                          for entry in manifest.objects))
    assert [(item["key"], item["problem"]) for item in check(store, own, read=read)["damaged_keys"]] == [
        ("uploads/record-2.csv", CHECKSUM_DIFFERS)]


@pytest.mark.parametrize("read", [False, True], ids=["quick", "reading"])
def test_deleted_content_is_damaged(s3, store, manifest, read):
    content_key = entry_of(manifest, "uploads/record-4.csv").content_key
    s3.delete_object(Bucket=BACKUPS, Key=content_key)
    report = check(store, manifest, read=read)
    assert [(item["key"], item["problem"]) for item in report["damaged_keys"]] == [("uploads/record-4.csv", MISSING)]


def test_a_body_without_a_checksum_is_read_and_hashed(s3, store, manifest):
    # Given the stored body of one object replaced by a writer that sends no checksum (S3 then holds none),
    # so that neither a checksum nor the ETag can decide from a HeadObject
    plain = boto3.client("s3", region_name="us-east-1", config=Config(request_checksum_calculation="when_required"))
    content_key = entry_of(manifest, "uploads/record-1.csv").content_key
    stored = s3.get_object(Bucket=BACKUPS, Key=content_key)["Body"].read()
    plain.put_object(Bucket=BACKUPS, Key=content_key, Body=bytes(reversed(stored)))
    assert "ChecksumCRC32" not in s3.head_object(Bucket=BACKUPS, Key=content_key, ChecksumMode="ENABLED")
    # When checked quickly, Then it is not the object the snapshot stored (another ETag)
    quick = check(store, manifest, read=False)
    assert [(item["key"], item["problem"]) for item in quick["damaged_keys"]] == [("uploads/record-1.csv", REPLACED)]
    # When checked by reading, Then its SHA-256 is not the one S3 computed when the body was stored
    reading = check(store, manifest, read=True)
    assert [(item["key"], item["problem"]) for item in reading["damaged_keys"]] == [
        ("uploads/record-1.csv", BODY_DIFFERS)]


def test_a_manifest_without_a_record_of_the_stored_bodies_is_checked_as_far_as_it_can_be(s3, store, manifest):
    # Given a manifest written before stored bodies were recorded (each object's own CRC32 is in it), and
    # one body rewritten without a checksum
    older = replace(manifest, objects=tuple(replace(entry, content_etag=None, content_sha256=None,
                                                    checksum=own_checksum(s3, entry.key))
                                            for entry in manifest.objects))
    plain = boto3.client("s3", region_name="us-east-1", config=Config(request_checksum_calculation="when_required"))
    content_key = entry_of(manifest, "uploads/record-3.csv").content_key
    stored = s3.get_object(Bucket=BACKUPS, Key=content_key)["Body"].read()
    plain.put_object(Bucket=BACKUPS, Key=content_key, Body=bytes(reversed(stored)))
    # When checked quickly, Then the others are proven, and this one cannot be proven either way
    quick = check(store, older, read=False)
    assert (quick["intact"], quick["unverified"], quick["damaged"]) == (5, 1, 0)
    # When checked by reading, Then the CRC32 of its body is not the object's
    reading = check(store, older, read=True)
    assert [(item["key"], item["problem"]) for item in reading["damaged_keys"]] == [
        ("uploads/record-3.csv", BODY_DIFFERS)]
    # And with no checksum recorded at all, the body's MD5 is not the ETag; but an ETag need not be an MD5
    # (SSE-KMS): it is reported unverified, not damaged
    oldest = replace(older, objects=tuple(replace(entry, checksum=None) for entry in older.objects))
    assert (check(store, oldest, read=True)["unverified"], check(store, oldest, read=True)["damaged"]) == (1, 0)


def test_a_rewrite_of_a_content_objects_metadata_alone_is_not_damage(s3, store, manifest):
    # Given a content object rewritten with the same body and other metadata (its object's headers are in
    # the manifest: a restore writes those, never the content object's own)
    content_key = entry_of(manifest, "uploads/record-0.csv").content_key
    s3.copy_object(Bucket=BACKUPS, Key=content_key, CopySource={"Bucket": BACKUPS, "Key": content_key},
                   MetadataDirective="REPLACE", ContentType="application/x-tampered", Metadata={"who": "someone"})
    # When checked, Then its body is proven the one stored
    for read in (False, True):
        assert check(store, manifest, read=read)["intact"] == 6


def test_a_sample_checks_that_many_content_objects(s3, store, manifest):
    replace_stored_body(s3, manifest, "uploads/record-5.csv")
    report = check(store, manifest, read=True, sample=2)
    assert (report["mode"], report["checked"], report["content_objects"]) == ("sample", 2, 6)
    assert report["intact"] + report["damaged"] == 2


def test_a_snapshot_read_as_a_stream_is_checked_as_when_read_whole(s3, store, manifest):
    # Given a snapshot where two objects share a body, and one stored body damaged
    s3.put_object(Bucket=DATA, Key="uploads/copy-of-1.csv", Body=b"id,amount\n1,10\n" * 4, ContentType="text/csv")
    later = SimulatedClock(datetime(2026, 11, 26, 13, tzinfo=UTC))
    progress = BucketSnapshotter(s3, store, DATA, clock=later).snapshot(None, lambda: 900_000)
    whole = read_manifest(store, DATA, progress.backup_id)
    replace_stored_body(s3, whole, "uploads/record-1.csv")
    # When it is checked going through its manifest a line at a time, and read whole, in every mode
    for read, sample in ((False, 32), (True, None), (True, 3), (False, 0)):
        streamed = check(store, open_manifest(store, DATA, progress.backup_id), read=read, sample=sample)
        # Then the reports are the same: the same sample (the chooser's), counts and damage
        assert streamed == check(store, whole, read=read, sample=sample)
    full = check(store, open_manifest(store, DATA, progress.backup_id), read=True)
    # and the shared body is one content object, damaged, with both its keys named
    assert (full["objects"], full["content_objects"], full["damaged"], full["objects_affected"]) == (7, 6, 1, 2)
    assert [item["key"] for item in full["damaged_keys"]] == ["uploads/copy-of-1.csv", "uploads/record-1.csv"]
