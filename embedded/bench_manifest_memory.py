"""The benchmark's measure of what a snapshot manifest costs in memory: read whole, and streamed by the fan-out.

A manifest of `entries` objects, each shaped as a snapshot's copy records it (the body stored by that snapshot, a
CRC64NVME checksum, the content object's ETag, SHA-256, version and lock), is written and read back through
drcore.backup.manifest, against moto's S3 in this process; tracemalloc counts what Python allocates meanwhile.

Read whole (`read_manifest`): per entry, what the read holds when done (its entries) and the most it held on the
way, and from that peak at most how many objects a function of the backup function's memory reads a manifest of:
what bounds a snapshot read whole (a snapshot in one invocation).

Streamed (`open_manifest`), as the fan-out's parent handles a base (README, "Big snapshots fan out"): the planner
cutting the base into shards (`write_shard_plan`), and the merge's write of a snapshot with 1% and with 60% of its
objects changed, its entries coming as a stream beside the base's (`write_manifest` on an opened base); as
`list_backups`' quick check samples a snapshot (drcore.backup.content_check); as retention reads the manifests it
keeps (drcore.backup.retention); and as a restore's plan streams its restore point beside the target's listing.
Writes are answered in this process and their bodies dropped, as a function sends them away (moto would keep copies,
which tracemalloc would count). Each is measured at two sizes, half and all of `entries`, so that what grows with
the objects (the slope: the compressed manifests, the hashes of the distinct bodies) is told from what does not (a
shard's slice, the interpreter's buffers); the objects a function's memory handles follow from both.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto import mock_aws

from drcore.backup.catalog import QUICK_SAMPLE
from drcore.backup.content_check import ContentChecker
from drcore.backup.lock_extension import KeptObjects
from drcore.backup.manifest import ManifestEntry, SnapshotHeading, open_manifest, read_manifest, write_manifest
from drcore.backup.retention import prune
from drcore.backup.snapshot_shards import write_shard_plan
from drcore.core.config import DEFAULT_FANOUT_SHARD_OBJECTS, RetentionPolicy
from drcore.restore.bucket_restore import BucketRestorer
from drcore.state.backup_store import BackupStore, content_key, new_backup_id, read_gzip_json_lines
from stacks.settings import DEFAULT_BACKUP_MEMORY_MB

ENTRIES = 100_000
# What is measured reading a manifest a line at a time
STREAMED = ("plan", "delta", "full", "quick_check", "retention", "restore_plan")
BACKUP_BUCKET = "bench-manifest-memory"
DATA_BUCKET = "apilados-production-data"


def _entry(number: int) -> ManifestEntry:
    """An object's entry as S3 names things: digests and version ids as random as S3's (derived from `number`, so
    that runs compare), which compress as a real manifest's do."""
    digest = hashlib.md5(number.to_bytes(8, "big"), usedforsecurity=False).hexdigest()
    sha256 = hashlib.sha256(number.to_bytes(8, "big")).digest()
    version = base64.b64encode(sha256, altchars=b"._").decode()
    return ManifestEntry(
        key=f"uploads/2026/11/26/record-{number:08d}.csv", version_id=version[:32], etag=f'"{digest}"',
        size=256 * 1024, last_modified="2026-11-26T12:00:00Z", storage_class="STANDARD",
        checksum={"algorithm": "CRC64NVME", "value": base64.b64encode(sha256[:8]).decode(), "type": "FULL_OBJECT"},
        content_type=None, metadata={}, content_key=content_key("etag", f"{digest}-{256 * 1024}"),
        content_etag=f'"{digest}"', content_sha256=base64.b64encode(sha256).decode(),
        content_version_id=version[12:44], content_locked_until="2026-12-26T12:00:00Z", described_by_content=True)


def _traced(work: Callable[[], Any]) -> tuple[Any, int, int]:
    """What `work` returns, what it left allocated and the most it had allocated at once, in bytes."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = work()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, after - before, peak - before


def _heading(backup_id: str) -> SnapshotHeading:
    return SnapshotHeading(bucket=DATA_BUCKET, backup_id=backup_id, started_at="", finished_at="", stats={})


@contextmanager
def _writes_sent_nowhere(s3: Any, headers: dict[str, Any]) -> Iterator[None]:
    """Every PutObject answered here, its body dropped, the header of each manifest kept in `headers`: in a function
    a body goes out on the network, while moto would keep copies of it in this process, which tracemalloc counts."""
    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        if params["url_path"].endswith("manifest.json.gz"):
            body = params["body"]  # bytes, or botocore's BytesIO over them
            headers[params["url_path"]] = next(read_gzip_json_lines(getattr(body, "getvalue", lambda: body)()))
        answered = {"VersionId": "sent-nowhere", "ETag": '"sent-nowhere"'}
        return AWSResponse(params["url"], 200, HTTPHeaders(), None), answered

    s3.meta.events.register("before-call.s3.PutObject", answer)
    try:
        yield
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", answer)


def _streamed(store: BackupStore, entries: int) -> dict[str, int]:
    """The peaks of the planner, and of the merge's write as a delta and in full, streaming a base of `entries`."""
    base_id = new_backup_id(datetime.now(UTC))
    write_manifest(store, _heading(base_id), (_entry(number) for number in range(entries)))
    headers: dict[str, Any] = {}
    with _writes_sent_nowhere(store.s3, headers):
        plan, _, plan_peak = _traced(lambda: write_shard_plan(store, DATA_BUCKET, new_backup_id(datetime.now(UTC)),
                                                              open_manifest(store, DATA_BUCKET, base_id),
                                                              DEFAULT_FANOUT_SHARD_OBJECTS))
        if plan.base_objects != entries:
            raise RuntimeError(f"planned {plan.base_objects} of the {entries} entries written")
        peaks = {"plan": plan_peak}
        # list_backups' quick check: 32 bodies sampled as the manifest goes by. The bench stores no bodies: each
        # sampled one is missing, which also costs the second pass that names a damaged body's keys.
        checker = ContentChecker(store, chooser=random.Random(7))
        logging.disable(logging.WARNING)  # the "damaged" warning the missing bodies raise
        try:
            report, _, peaks["quick_check"] = _traced(lambda: checker.check_snapshot(
                open_manifest(store, DATA_BUCKET, base_id), sample=QUICK_SAMPLE, read=False))
        finally:
            logging.disable(logging.NOTSET)
        if (report.objects, report.content_objects, report.checked) != (entries, entries, QUICK_SAMPLE):
            raise RuntimeError(f"the quick check counted {report.objects} objects and {report.content_objects} "
                               f"bodies, checked {report.checked}, of {entries}")
        # A restore of the base into an empty bucket: every object to copy, every key in its changes object.
        target = f"bench-restore-target-{entries}"
        store.s3.create_bucket(Bucket=target)
        store.s3.put_bucket_versioning(Bucket=target, VersioningConfiguration={"Status": "Enabled"})
        restorer = BucketRestorer(store.s3, store, snapshots_of=lambda _: None)  # type: ignore[arg-type,return-value]
        restore, _, peaks["restore_plan"] = _traced(lambda: restorer.plan(
            source_bucket=DATA_BUCKET, snapshot_id=base_id, target_bucket=target))
        if (restore.to_copy, restore.changes_key is None) != (entries, False):
            raise RuntimeError(f"the restore planned {restore.to_copy} copies of {entries}")
        # One object in a hundred changed since the base: written as a delta. Three in five: in full, beside the
        # base (the merge's worst case: its base, its full lines and the body they are joined into).
        for kind, changed_of_100 in (("delta", 1), ("full", 60)):
            changed = ((replace(_entry(number), size=1) if number % 100 < changed_of_100 else _entry(number))
                       for number in range(entries))
            merged_id = new_backup_id(datetime.now(UTC))
            _, _, peaks[kind] = _traced(lambda: write_manifest(store, _heading(merged_id), changed,  # noqa: B023
                                                               open_manifest(store, DATA_BUCKET, base_id)))
            (header,) = (header for path, header in headers.items() if merged_id in path)
            if (header["kind"], header["objects"]) != (kind, entries):
                raise RuntimeError(f"the merge measured as {kind} wrote {header['kind']} of {header['objects']}")
    peaks["retention"] = _retention_peak(store.s3, entries)
    return peaks


RETAINED_DELTAS = 3  # kept snapshots written as deltas on the full one, each with 1% of the objects changed


def _retention_peak(s3: Any, entries: int) -> int:
    """The peak of a retention run that keeps a full snapshot of `entries` objects and RETAINED_DELTAS deltas on it,
    in a store of their own: what it reads (each manifest once, a line at a time) and what it gathers for the lock
    extension (an object per stored body the kept snapshots need)."""
    store = BackupStore(s3, f"{BACKUP_BUCKET}-retention-{entries}")
    s3.create_bucket(Bucket=store.bucket)
    s3.put_bucket_versioning(Bucket=store.bucket, VersioningConfiguration={"Status": "Enabled"})
    ids = [new_backup_id(datetime(2026, 11, 26, hour, tzinfo=UTC)) for hour in range(RETAINED_DELTAS + 1)]
    write_manifest(store, _heading(ids[0]), (_entry(number) for number in range(entries)))
    for made, backup_id in enumerate(ids[1:], 1):
        changed = ((replace(_entry(number), content_key=f"{_entry(number).content_key}-{made}")
                    if number % 100 == made else _entry(number)) for number in range(entries))
        write_manifest(store, _heading(backup_id), changed, open_manifest(store, DATA_BUCKET, ids[made - 1]))
    kept = KeptObjects()
    everything = RetentionPolicy(keep_last=len(ids), hourly=0, daily=0, weekly=0, monthly=0)
    result, _, peak = _traced(lambda: prune(store, DATA_BUCKET, everything, datetime(2026, 11, 27, tzinfo=UTC),
                                            kept))
    # Each kept snapshot's manifest and record, and every body: the base's and each delta's changed ones
    needed = 2 * len(ids) + entries + RETAINED_DELTAS * (entries // 100)
    if result.kept != tuple(ids) or len(kept.objects) != needed:
        raise RuntimeError(f"retention kept {len(result.kept)} snapshots and {len(kept.objects)} objects, not "
                           f"{len(ids)} and {needed}")
    return peak


def _slope(small: int, large: int, entries: int) -> tuple[int, int]:
    """Bytes per object and bytes besides, from peaks at `entries // 2` and `entries` objects."""
    per_object = max(large - small, 0) / (entries - entries // 2)
    return round(per_object), max(round(large - per_object * entries), 0)


def _handled_in(function_mb: int, per_object: int, fixed: int) -> int:
    # An upper bound: the interpreter, the SDK and the rest of the job take their share of the function too.
    return int((function_mb * 1024**2 - fixed) / max(per_object, 1))


def manifest_memory(entries: int = ENTRIES, function_mb: int = DEFAULT_BACKUP_MEMORY_MB) -> dict[str, Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BACKUP_BUCKET)
        s3.put_bucket_versioning(Bucket=BACKUP_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        store = BackupStore(s3, BACKUP_BUCKET)
        backup_id = new_backup_id(datetime.now(UTC))
        written = tuple(_entry(number) for number in range(entries))
        _, _, write_peak = _traced(partial(write_manifest, store, _heading(backup_id), written))
        del written  # the read is measured without the written entries about
        read, held, read_peak = _traced(partial(read_manifest, store, DATA_BUCKET, backup_id))
        if len(read.objects) != entries:  # what is measured must be the whole manifest, read back
            raise RuntimeError(f"read {len(read.objects)} of the {entries} entries written")
        del read
        small, large = _streamed(store, entries // 2), _streamed(store, entries)
    figures: dict[str, Any] = {"entries": entries, "held_per_entry": round(held / entries),
                               "read_peak_per_entry": round(read_peak / entries),
                               "write_peak_per_entry": round(write_peak / entries), "function_mb": function_mb,
                               "readable_in_function": int(function_mb * 1024**2 / (read_peak / entries)),
                               "shard_objects": DEFAULT_FANOUT_SHARD_OBJECTS}
    for name in STREAMED:
        per_object, besides = _slope(small[name], large[name], entries)
        figures[name] = {"peak_per_entry": per_object, "peak_besides": besides,
                         "handled_in_function": _handled_in(function_mb, per_object, besides)}
    return figures


def manifest_memory_table(section: dict[str, Any]) -> str:
    mb = str(section["function_mb"])
    streamed = {"plan": "plan (open the base, write its slices)", "delta": "merge, 1% changed (a delta)",
                "full": "merge, 60% changed (in full)", "quick_check": "list_backups' quick check (32 bodies)",
                "retention": f"retention, a full and {RETAINED_DELTAS} deltas kept",
                "restore_plan": "restore plan, into an empty bucket"}
    return "\n".join([
        f"manifest of {section['entries']:,} objects, measured (tracemalloc), bytes per object",
        f"{'read whole: held when done':<44} {section['held_per_entry']:>12,}",
        f"{'read whole: peak':<44} {section['read_peak_per_entry']:>12,}",
        f"{'write: peak beyond its entries':<44} {section['write_peak_per_entry']:>12,}",
        f"{'objects read whole in ' + mb + ' MB, at most':<44} {section['readable_in_function']:>12,}",
        (f"streamed by the fan-out (shards of {section['shard_objects']:,}): peak bytes per object + besides, "
        f"and the objects {mb} MB handles at most"),
        *(f"{label:<44} {section[name]['peak_per_entry']:>12,} + {section[name]['peak_besides']:>11,} "
          f"{section[name]['handled_in_function']:>12,}" for name, label in streamed.items())])
