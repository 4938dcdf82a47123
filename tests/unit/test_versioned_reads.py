"""Every read of a stored backup names the version written (DESIGN.md section 4): what is put on a backup's keys
afterwards, a new version or a delete marker, changes nothing a restore reads. No role of the stack can do either
(tests/infra/test_iam_conformance.py); these tests do it with their own rights, as a bug, a stolen credential with
an administrator's rights, or a bucket policy changed could. A backup of the previous format (no versions
recorded) still restores, reading what its keys hold now."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

import backup.handler as backup
from drcore.backup.function_backup import FunctionBackup
from drcore.backup.manifest import read_manifest
from drcore.restore.function_backup_reader import FunctionBackupReader
from drcore.restore.stack_requests import template_url
from drcore.state.backup_files import CorruptBackup
from drcore.state.backup_store import BackupStore, Component, backup_prefix, manifest_key, manifest_record_key
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem
from tests.support import WHO, SimulatedClock, act, contents, written_before_versions


def snapshot() -> str:
    [outcome] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
    return str(outcome["backup_id"])


def restore(snapshot_id: str) -> dict[str, Any]:
    request = {"action": "restore_s3", "snapshot_id": snapshot_id, **WHO}
    planned = act(request)
    assert planned["ok"], planned
    applied = act({**request, "confirm": planned["result"]["plan_id"]})
    assert applied["ok"], applied
    return dict(applied["result"]["result"])


def tamper_with_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    """Over every other key, a new version with other bytes; on the rest, a delete marker."""
    for n, key in enumerate(keys):
        if n % 2:
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=b"not what was backed up")


def test_a_snapshot_names_the_version_of_each_body_and_of_its_manifest(world: SampleSystem):
    # When the data bucket is snapshotted into the (versioned) backup bucket
    snapshot_id = snapshot()
    s3, store = world.clients["s3"], BackupStore(world.clients["s3"], world.backup_bucket)
    manifest = read_manifest(store, world.data_bucket, snapshot_id)
    # Then each entry names the version its stored body was written as
    for entry in manifest.objects:
        assert entry.content_key and entry.content_version_id == s3.head_object(
            Bucket=world.backup_bucket, Key=entry.content_key)["VersionId"]
    # And the manifest's own version and digest are recorded beside it
    record = store.recorded_manifest(Component.S3, world.data_bucket, snapshot_id)
    assert record is not None and record.key == manifest_key(Component.S3, world.data_bucket, snapshot_id)
    assert record.version_id == s3.head_object(Bucket=world.backup_bucket, Key=record.key)["VersionId"]


def test_a_restore_reads_the_versions_its_snapshot_recorded_whatever_is_put_on_their_keys_since(world: SampleSystem):
    # Given a snapshot, and then every one of its stored bodies given a new version or hidden, and its manifest too
    snapshot_id = snapshot()
    before = contents(world)
    s3, store = world.clients["s3"], BackupStore(world.clients["s3"], world.backup_bucket)
    content = sorted(read_manifest(store, world.data_bucket, snapshot_id).content_keys())
    tamper_with_keys(s3, world.backup_bucket, content)
    s3.delete_object(Bucket=world.backup_bucket, Key=manifest_key(Component.S3, world.data_bucket, snapshot_id))
    # And the data bucket lost
    for key in before:
        s3.delete_object(Bucket=world.data_bucket, Key=key)
    # When the snapshot is checked in full and restored
    verified = act({"action": "verify_backup", "component": "s3", "backup_id": snapshot_id, "full": True})
    result = restore(snapshot_id)
    # Then every body is intact as recorded, and the bucket is back as it was, proven by reading it back
    assert verified["result"]["ok"] and verified["result"]["intact"] == len(content), verified
    assert result["verification"]["ok"] and contents(world) == before


def test_a_snapshot_whose_recorded_version_is_gone_names_the_keys_it_cannot_restore(world: SampleSystem):
    # Given a snapshot, and one of its stored bodies deleted for good (its version, as the bucket's policy lets no
    # one do), with a new version put on its key
    snapshot_id = snapshot()
    s3, store = world.clients["s3"], BackupStore(world.clients["s3"], world.backup_bucket)
    entry = read_manifest(store, world.data_bucket, snapshot_id).objects[0]
    s3.delete_object(Bucket=world.backup_bucket, Key=entry.content_key, VersionId=entry.content_version_id)
    s3.put_object(Bucket=world.backup_bucket, Key=entry.content_key, Body=b"not what was backed up")
    # When it is checked / Then that body is missing: the new version does not pass for it
    verified = act({"action": "verify_backup", "component": "s3", "backup_id": snapshot_id, "full": True})
    assert [(item["key"], item["problem"]) for item in verified["result"]["damaged_keys"]] == [(entry.key, "missing")]


def test_a_snapshot_of_the_previous_format_still_restores_from_what_its_keys_hold(world: SampleSystem):
    # Given a snapshot as an earlier release wrote it: no versions recorded
    snapshot_id = snapshot()
    before = contents(world)
    s3, store = world.clients["s3"], BackupStore(world.clients["s3"], world.backup_bucket)
    written_before_versions(s3, world.backup_bucket, world.data_bucket, snapshot_id)
    assert store.recorded_manifest(Component.S3, world.data_bucket, snapshot_id) is None
    assert {entry.content_version_id for entry in read_manifest(store, world.data_bucket, snapshot_id).objects} == {
        None}
    for key in before:
        s3.delete_object(Bucket=world.data_bucket, Key=key)
    # When it is restored / Then the bucket is back, read from what the content keys hold now (pinned by ETag)
    result = restore(snapshot_id)
    assert result["verification"]["ok"] and contents(world) == before


@pytest.fixture
def versioned_store(system: SampleSystem) -> BackupStore:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="apilados-dr-backups", ObjectLockEnabledForBucket=True)
    return BackupStore(s3, "apilados-dr-backups")


def test_a_function_backup_is_read_as_its_manifest_recorded_it(system: SampleSystem, versioned_store: BackupStore):
    # Given a function backup, then its files given new versions or hidden, and its manifest hidden
    store = versioned_store
    result = FunctionBackup(system.clients["lambda"], store, system.function_name, clock=SimulatedClock()).run()
    reader = FunctionBackupReader(store, system.function_name)
    original = reader.read(result.backup_id)
    prefix = backup_prefix(Component.LAMBDA, system.function_name, result.backup_id)
    tamper_with_keys(store.s3, store.bucket, [prefix + path for path in result.files])
    store.s3.delete_object(Bucket=store.bucket, Key=result.manifest_key)
    # When it is read for a restore / Then it is what was written, file for file
    again = reader.read(result.backup_id)
    assert (again.archive, again.document, again.stored.manifest) == (
        original.archive, original.document, original.stored.manifest)


def test_a_function_backup_of_the_previous_format_is_read_by_key(system: SampleSystem,
                                                                  versioned_store: BackupStore):
    # Given a backup written before versions were recorded: no manifest record, no file versions
    store = versioned_store
    result = FunctionBackup(system.clients["lambda"], store, system.function_name, clock=SimulatedClock()).run()
    manifest = store.get_json(result.manifest_key)
    for entry in manifest["files"]:
        del entry["version_id"]
    store.s3.put_object(Bucket=store.bucket, Key=result.manifest_key, Body=json.dumps(manifest).encode())
    store.s3.delete_object(Bucket=store.bucket, Key=manifest_record_key(Component.LAMBDA, system.function_name,
                                                                        result.backup_id))
    # When it is read / Then it is read as its keys hold it, each file checked against the manifest's digest
    read = FunctionBackupReader(store, system.function_name).read(result.backup_id)
    assert read.code_sha256 == result.code_sha256 and read.archive is not None


def test_a_manifest_that_is_not_the_one_recorded_is_refused(system: SampleSystem):
    # Given a backup bucket without versions (reads go by key) and a function backup whose manifest is then rewritten
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="unversioned-backups")
    store = BackupStore(s3, "unversioned-backups")
    result = FunctionBackup(system.clients["lambda"], store, system.function_name, clock=SimulatedClock()).run()
    s3.put_object(Bucket=store.bucket, Key=result.manifest_key, Body=b'{"files": []}')
    # When it is read / Then the digest recorded when it was written refuses it
    with pytest.raises(CorruptBackup, match="does not match the SHA-256 recorded when it was written"):
        FunctionBackupReader(store, system.function_name).read(result.backup_id)


def test_cloudformation_reads_a_large_template_as_the_version_written():
    url = template_url("apilados-dr-backups", "us-east-1", "backups/stack/S/20261126T090000Z-3f9a1c/template.json",
                       "v1+/=")
    assert url == ("https://apilados-dr-backups.s3.us-east-1.amazonaws.com/backups/stack/S/20261126T090000Z-3f9a1c/"
                   "template.json?versionId=v1%2B/%3D")
