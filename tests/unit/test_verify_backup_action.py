"""Damaged backup content, as the operator meets it through the recovery function: verify_backup names it,
list_backups marks the snapshot damaged, and a restore from it reports (journal, alert) what differs."""

from __future__ import annotations

from typing import Any

import pytest

import backup.handler as backup
from drcore.backup import manifest as manifest_module
from drcore.backup.manifest import read_manifest
from drcore.state.backup_store import BackupStore
from drcore.state.store import ControllerStateStore
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem
from tests.support import WHO, CallRecorder, act, contents, written_before_versions

DAMAGED = ("uploads/2026/11/batch-00003.csv", "uploads/2026/11/batch-00011.csv")


def snapshot(world: SampleSystem) -> str:
    [outcome] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
    return str(outcome["backup_id"])


def damage_stored_content(world: SampleSystem, snapshot_id: str, keys: tuple[str, ...] = DAMAGED) -> None:
    """A snapshot of the previous format (it names no versions, so it reads what its keys hold now), the stored
    body of each key then replaced by a new version: the same size, other bytes. (A snapshot that names the
    versions it wrote reads them whatever is put on its keys since: tests/unit/test_versioned_reads.py.)"""
    s3 = world.clients["s3"]
    written_before_versions(s3, world.backup_bucket, world.data_bucket, snapshot_id)
    entries = {entry.key: entry for entry in read_manifest(BackupStore(s3, world.backup_bucket), world.data_bucket,
                                                           snapshot_id).objects}
    for key in keys:
        content_key = entries[key].content_key
        stored = s3.get_object(Bucket=world.backup_bucket, Key=content_key)["Body"].read()
        s3.put_object(Bucket=world.backup_bucket, Key=content_key, Body=bytes(reversed(stored)))


def verify(snapshot_id: str, **extra: Any) -> dict[str, Any]:
    return act({"action": "verify_backup", "component": "s3", "backup_id": snapshot_id, **extra})


def test_verify_backup_passes_an_intact_snapshot_and_names_the_damaged_keys_of_a_damaged_one(world, monkeypatch):
    # Given a snapshot of the 20 objects
    snapshot_id = snapshot(world)
    intact = verify(snapshot_id, full=True)
    assert intact["ok"] and intact["result"]["ok"] and intact["result"]["intact"] == 20, intact
    assert (intact["result"]["mode"], intact["result"]["backup_id"]) == ("full", snapshot_id)
    # When two of its stored bodies are replaced and one is deleted
    damage_stored_content(world, snapshot_id)
    store = BackupStore(world.clients["s3"], world.backup_bucket)
    gone = next(entry for entry in read_manifest(store, world.data_bucket, snapshot_id).objects
                if entry.key == "uploads/2026/11/batch-00017.csv")
    world.clients["s3"].delete_object(Bucket=world.backup_bucket, Key=gone.content_key)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    answer = verify(snapshot_id)
    # Then the (default, sampled) check reads them, counts them and names each with its problem (a replaced
    # body's SHA-256 is not the one S3 computed when the snapshot stored it)
    result = answer["result"]
    assert answer["ok"] is True and result["ok"] is False
    assert (result["checked"], result["damaged"], result["intact"]) == (20, 3, 17)
    assert {item["key"]: item["problem"] for item in result["damaged_keys"]} == {
        DAMAGED[0]: "body differs", DAMAGED[1]: "body differs", gone.key: "missing"}
    # And it changed nothing
    assert calls.mutating() == []
    # And a smaller sample checks that many
    assert verify(snapshot_id, sample=5)["result"]["checked"] == 5


@pytest.mark.parametrize("event, problem", [
    ({"action": "verify_backup", "component": "lambda", "backup_id": "20261126T100000Z-abcdef"}, "component"),
    ({"action": "verify_backup", "component": "s3"}, "backup_id: Field required"),
    ({"action": "verify_backup", "component": "s3", "backup_id": "yesterday"}, "backup_id"),
    ({"action": "verify_backup", "component": "s3", "backup_id": "20261126T100000Z-abcdef", "sample": 0}, "sample"),
    ({"action": "verify_backup", "component": "s3", "backup_id": "20261126T100000Z-abcdef"}, "no complete snapshot"),
])
def test_bad_verify_backup_requests_are_refused(world, monkeypatch, event, problem):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    result = act(event)
    assert result["ok"] is False and problem in result["error"], result
    assert calls.mutating() == []


def test_list_backups_marks_a_snapshot_with_damaged_content(world):
    # Given two snapshots, the older one's stored content then damaged (the newer shares no damaged body:
    # its two objects were rewritten first)
    older = snapshot(world)
    s3 = world.clients["s3"]
    for key in DAMAGED:
        s3.put_object(Bucket=world.data_bucket, Key=key, Body=b"id,amount\n0,0\n", ContentType="text/csv")
    newer = snapshot(world)
    damage_stored_content(world, older)
    # When the operator lists the bucket's backups
    listed = {entry["backup_id"]: entry for entry in act({"action": "list_backups", "component": "s3"})["result"]
              ["backups"]}
    # Then the older one is damaged, naming its keys, and the newer one complete
    assert listed[older]["status"] == "damaged"
    assert sorted(listed[older]["content_check"]["damaged_keys"]) == list(DAMAGED)
    assert listed[newer]["status"] == "complete" and listed[newer]["content_check"]["ok"] is True


def test_a_restore_from_damaged_content_is_journaled_as_failing_verification_and_alerted(world):
    # Given a snapshot whose stored content is then damaged, and a bucket then lost
    snapshot_id = snapshot(world)
    before = contents(world)
    damage_stored_content(world, snapshot_id)
    for key in before:
        world.clients["s3"].delete_object(Bucket=world.data_bucket, Key=key)
    world.drain_alerts()
    # When the operator restores it
    request = {"action": "restore_s3", "snapshot_id": snapshot_id, **WHO}
    planned = act(request)
    applied = act({**request, "confirm": planned["result"]["plan_id"]})
    # Then the answer says the verification failed, and names the damaged keys
    verification = applied["result"]["result"]["verification"]
    assert verification["ok"] is False and verification["objects_matching"] == 18
    assert tuple(verification["mismatched_keys"]) == DAMAGED == tuple(verification["backup_damaged_keys"])
    # And the journal says so
    journal = ControllerStateStore(world.clients["dynamodb"], world.table).journal(world.function_name)
    entry = next(item for item in journal if item["action"] == "restore_s3")
    assert entry["result"] == "applied, verification failed"
    # And operators are alerted, with the keys (beside the post-recovery validation's own alert)
    [alert] = [alert for alert in world.drain_alerts() if "Validation after" not in alert["subject"]]
    assert alert["severity"] == 2 and "Bucket restore not verified: 2 objects differ" in alert["subject"]
    assert all(key in alert["message"] for key in DAMAGED) and "verify_backup" in alert["message"]


def test_list_backups_and_verify_backup_never_read_a_manifest_whole(world, monkeypatch):
    # Given a snapshot whose stored content is damaged
    snapshot_id = snapshot(world)
    damage_stored_content(world, snapshot_id)

    def whole(*_: Any, **__: Any) -> None:
        raise AssertionError("a manifest was read whole: the checks go through it a line at a time")

    # When every way of reading a manifest whole fails, and the operator lists the backups and verifies this one
    monkeypatch.setattr(manifest_module, "read_manifest", whole)
    monkeypatch.setattr(manifest_module.ManifestStream, "read", whole)
    listed = act({"action": "list_backups", "component": "s3"})["result"]["backups"]
    verified = verify(snapshot_id, full=True)["result"]
    # Then both find the damage, naming its keys
    assert [entry["status"] for entry in listed if entry["backup_id"] == snapshot_id] == ["damaged"]
    assert verified["damaged"] == 2 and sorted(item["key"] for item in verified["damaged_keys"]) == list(DAMAGED)
