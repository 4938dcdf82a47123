"""Manifests written and read a line at a time: a full or delta manifest written in one pass beside its base, read
back through its chain as a stream (open_manifest) or whole (read_manifest), and damage found where it is."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drcore.backup.manifest import (
    ManifestCorrupt,
    ManifestEntry,
    SnapshotHeading,
    open_manifest,
    read_manifest,
    write_manifest,
)
from drcore.backup.snapshot_shards import read_base_slice, read_shard_plan, write_shard_plan
from drcore.state.backup_store import BackupStore, Component, content_key, gzip_json_lines, manifest_key
from tests.support import data_and_backup_buckets

DATA = "apilados-production-data"
BACKUPS = "apilados-dr-backups"


@pytest.fixture(scope="module")
def store() -> Iterator[BackupStore]:
    with data_and_backup_buckets(DATA, BACKUPS) as s3:
        yield BackupStore(s3, BACKUPS)


class Ids:
    """Backup ids in time order, unique across a module's examples (the store outlives each of them)."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self) -> str:
        self.next += 1
        return f"20261129T{self.next // 3600 % 24:02d}{self.next // 60 % 60:02d}{self.next % 60:02d}Z-000000"


new_id = Ids()


def entry(key: str, generation: int = 0) -> ManifestEntry:
    etag = f'"{hashlib.md5(f"{key}/{generation}".encode()).hexdigest()}"'
    return ManifestEntry(key=key, version_id=f"v{generation}", etag=etag, size=len(key) + generation,
                         last_modified="2026-11-29T12:00:00Z", storage_class="STANDARD", checksum=None,
                         content_type=None, metadata={}, content_key=content_key("etag", f"{etag.strip(chr(34))}-1"),
                         content_etag=etag, described_by_content=True)


def write(store: BackupStore, entries: list[ManifestEntry], base: Any = None) -> str:
    backup_id = new_id()
    write_manifest(store, SnapshotHeading(DATA, backup_id, "2026-11-29T12:00:00Z", "2026-11-29T12:01:00Z", {}),
                   entries, base)
    return backup_id


def write_raw(store: BackupStore, header: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    """A manifest written as given, its SHA-256 recorded as for any: damage that only a read of its lines can find."""
    backup_id = new_id()
    body = gzip_json_lines([{"format": "s3-snapshot/2", "bucket": DATA, "backup_id": backup_id, "started_at": "",
                             "finished_at": "", "stats": {}, **header}, *lines])
    version = store.put_once(manifest_key(Component.S3, DATA, backup_id), body, "application/gzip")
    store.record_manifest(Component.S3, DATA, backup_id, version, body)
    return backup_id


def header_of(store: BackupStore, backup_id: str) -> dict[str, Any]:
    return open_manifest(store, DATA, backup_id).fetched[0].header


KEYS = st.sets(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6),
               max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base_keys=KEYS, kept=st.data())
def test_a_chain_of_deltas_streams_back_as_every_object_in_key_order(store: BackupStore, base_keys: set[str],
                                                                      kept: st.DataObject) -> None:
    # Given a full manifest, then two snapshots each removing, changing and adding some keys, written on their base
    objects = {key: entry(key) for key in base_keys}
    ids = [write(store, sorted(objects.values(), key=lambda e: e.key))]
    for generation in (1, 2):
        removed = kept.draw(st.sets(st.sampled_from(sorted(objects)))) if objects else set()
        changed = kept.draw(st.sets(st.sampled_from(sorted(objects)))) if objects else set()
        added = kept.draw(KEYS)
        for key in removed:
            objects.pop(key)
        objects |= {key: entry(key, generation) for key in (changed - removed) | added}
        ids.append(write(store, sorted(objects.values(), key=lambda e: e.key), open_manifest(store, DATA, ids[-1])))
    # When the newest is read as a stream and whole
    streamed = open_manifest(store, DATA, ids[-1])
    # Then both are the bucket as it was, in key order, whatever each manifest's kind
    expected = [objects[key] for key in sorted(objects)]
    assert list(streamed.entries()) == expected == list(read_manifest(store, DATA, ids[-1]).objects)
    assert streamed.objects == len(expected) and streamed.read().objects == tuple(expected)
    # And a delta's chain is what it was written on
    kinds = [header_of(store, backup_id).get("kind") for backup_id in ids]
    assert streamed.depth == len(streamed.fetched) - 1 == (0 if kinds[-1] == "full" else
                                                           (1 if kinds[-2] == "full" else 2))


def test_a_delta_holds_only_what_changed_beside_a_streamed_base(store: BackupStore) -> None:
    # Given a base of 100 objects
    base = [entry(f"k/{n:03d}") for n in range(100)]
    first = write(store, base)
    # When a snapshot with one changed, one removed and one added is written beside the base as a stream
    now = [*(replace(e, size=7) if e.key == "k/010" else e for e in base if e.key != "k/050"), entry("k/999")]
    second = write(store, now, open_manifest(store, DATA, first))
    # Then it is a delta of three lines on the first, and reads back as the whole
    header = header_of(store, second)
    assert (header["kind"], header["base"], header["depth"], header["lines"], header["objects"]) == (
        "delta", first, 1, 3, 100)
    assert list(open_manifest(store, DATA, second).entries()) == now


def test_entries_out_of_key_order_are_refused_before_anything_is_written(store: BackupStore) -> None:
    backup_id = new_id()
    heading = SnapshotHeading(DATA, backup_id, "", "", {})
    with pytest.raises(ValueError, match="key order"):
        write_manifest(store, heading, [entry("b"), entry("a")])
    assert not store.exists(manifest_key(Component.S3, DATA, backup_id))


def full_lines(keys: list[str]) -> list[dict[str, Any]]:
    return [entry(key).to_json() for key in keys]


@pytest.mark.parametrize("header, lines, problem", [
    ({"objects": 2, "lines": 2}, full_lines(["b", "a"]), "not in key order"),
    ({"objects": 2, "lines": 2}, full_lines(["a", "a"]), "not in key order"),
    ({"objects": 3, "lines": 3}, full_lines(["a", "b"]), "has 2 lines, not the 3"),
    ({"objects": 3, "lines": 2}, full_lines(["a", "b"]), "holds 2 objects, and its header says 3"),
    ({"objects": 2, "lines": 2}, [{"key": "a"}, {"key": "b"}], "cannot be read"),
])
def test_a_full_manifest_that_does_not_read_as_written_raises_where_the_damage_is(
        store: BackupStore, header: dict[str, Any], lines: list[dict[str, Any]], problem: str) -> None:
    backup_id = write_raw(store, header, lines)
    opened = open_manifest(store, DATA, backup_id)  # its SHA-256 matches: the damage is in what it says
    with pytest.raises(ManifestCorrupt, match=problem):
        list(opened.entries())
    with pytest.raises(ManifestCorrupt, match=problem):
        read_manifest(store, DATA, backup_id)


@pytest.mark.parametrize("changes, problem", [
    ([{"removed": "zz"}], "removes 1 keys its base does not hold"),
    ([entry("c", 1).to_json(), entry("b", 1).to_json()], "not in key order"),
    ([{"removed": "a"}, {"removed": "a"}], "has 2 lines"),  # read as one removal, written as two: counted as lines
])
def test_a_delta_that_does_not_apply_to_its_base_raises(store: BackupStore, changes: list[dict[str, Any]],
                                                        problem: str) -> None:
    base = write(store, [entry("a"), entry("b"), entry("c")])
    objects = 3 - sum("removed" in line for line in changes)
    backup_id = write_raw(store, {"kind": "delta", "base": base, "depth": 1, "objects": objects,
                                  "lines": len(changes) if problem != "has 2 lines" else 3}, changes)
    with pytest.raises(ManifestCorrupt, match=problem):
        list(open_manifest(store, DATA, backup_id).entries())


def test_a_damaged_manifest_in_a_chain_is_found_when_opened_before_any_entry_is_read(store: BackupStore) -> None:
    first = write(store, [entry(f"{n}") for n in range(10)])
    second = write(store, [entry(f"{n}", 1 if n == 3 else 0) for n in range(10)], open_manifest(store, DATA, first))
    key = manifest_key(Component.S3, DATA, first)
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=gzip_json_lines([{"format": "s3-snapshot/2"}]))
    with pytest.raises(ManifestCorrupt, match="SHA-256"):
        open_manifest(store, DATA, second)


def test_the_planner_writes_each_slice_before_reading_past_it(store: BackupStore) -> None:
    # Given a base of 95 objects, read through a stream that counts the entries taken from it
    base_id = write(store, [entry(f"k/{n:03d}") for n in range(95)])
    opened = open_manifest(store, DATA, base_id)
    taken: list[int] = []
    read_when_written: list[int] = []

    class Counted:
        backup_id, objects = opened.backup_id, opened.objects

        def entries(self) -> Iterator[ManifestEntry]:
            for number, item in enumerate(opened.entries()):
                taken[:] = [number + 1]
                yield item

    def slice_written(params: dict[str, Any], **_: Any) -> None:
        if "/shards/base-" in params["Key"]:
            read_when_written.append(taken[0])

    store.s3.meta.events.register("provide-client-params.s3.PutObject", slice_written)
    try:
        # When it is cut into shards of 20
        backup_id = new_id()
        plan = write_shard_plan(store, DATA, backup_id, Counted(), 20)  # type: ignore[arg-type]
    finally:
        store.s3.meta.events.unregister("provide-client-params.s3.PutObject", slice_written)
    # Then each slice was written once its last entry was read, never later: one slice held at a time
    assert read_when_written == [20, 40, 60, 80, 95]
    # And the shards are cut at each slice's last key, each slice the base's entries in its range
    assert plan.offsets == (0, 20, 40, 60, 80) and plan.base_objects == 95
    assert [bounds.last for bounds in plan.ranges] == ["k/019", "k/039", "k/059", "k/079", None]
    assert read_shard_plan(store, DATA, backup_id) == plan
    slices = [read_base_slice(store, DATA, plan, number) for number in range(5)]
    assert [e for piece in slices if piece for e in piece.objects] == list(opened.entries())
