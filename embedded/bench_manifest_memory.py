"""The benchmark's measure of what a snapshot manifest costs in memory: writing it, and reading it back.

A manifest of `entries` objects, each shaped as a snapshot's copy records it (the body stored by that snapshot, a
CRC64NVME checksum, the content object's ETag, SHA-256, version and lock), is written and read back through
drcore.backup.manifest, against moto's S3 in this process; tracemalloc counts what Python allocates meanwhile.
Per entry: what the manifest read holds when done (its entries), and the most it held on the way (the read's
peak), and the most the write held beyond the entries it was given. From the read's peak, at most how many objects
a function of the backup or recovery function's memory can read a manifest of: every reader of a snapshot (the
fan-out planner, the merge, a restore's plan, retention) reads its manifest whole, so this bounds the bucket
whose snapshots the functions handle (README, "Big snapshots fan out").
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import boto3
from moto import mock_aws

from drcore.backup.manifest import ManifestEntry, SnapshotManifest, read_manifest, write_manifest
from drcore.state.backup_store import BackupStore, content_key, new_backup_id
from stacks.constructs.backups import BACKUP_MEMORY_MB

ENTRIES = 100_000
BACKUP_BUCKET = "bench-manifest-memory"
DATA_BUCKET = "apilados-production-data"


def _entry(number: int) -> ManifestEntry:
    digest = f"{number:032x}"
    return ManifestEntry(
        key=f"uploads/2026/11/26/record-{number:08d}.csv", version_id=f"{number:032x}".upper(), etag=f'"{digest}"',
        size=256 * 1024, last_modified="2026-11-26T12:00:00Z", storage_class="STANDARD",
        checksum={"algorithm": "CRC64NVME", "value": f"{number:011d}=", "type": "FULL_OBJECT"}, content_type=None,
        metadata={}, content_key=content_key("etag", f"{digest}-{256 * 1024}"), content_etag=f'"{digest}"',
        content_sha256=f"{number:043d}=", content_version_id=f"{number:032x}",
        content_locked_until="2026-12-26T12:00:00Z", described_by_content=True)


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


def manifest_memory(entries: int = ENTRIES, function_mb: int = BACKUP_MEMORY_MB) -> dict[str, Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BACKUP_BUCKET)
        s3.put_bucket_versioning(Bucket=BACKUP_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        store = BackupStore(s3, BACKUP_BUCKET)
        backup_id = new_backup_id(datetime.now(UTC))
        written = SnapshotManifest(bucket=DATA_BUCKET, backup_id=backup_id, started_at="", finished_at="", stats={},
                                   objects=tuple(_entry(number) for number in range(entries)))
        _, _, write_peak = _traced(partial(write_manifest, store, written))
        del written  # the read is measured without the written entries about
        read, held, read_peak = _traced(partial(read_manifest, store, DATA_BUCKET, backup_id))
        if len(read.objects) != entries:  # what is measured must be the whole manifest, read back
            raise RuntimeError(f"read {len(read.objects)} of the {entries} entries written")
    return {"entries": entries, "held_per_entry": round(held / entries),
            "read_peak_per_entry": round(read_peak / entries), "write_peak_per_entry": round(write_peak / entries),
            "function_mb": function_mb,
            # An upper bound: the interpreter, the SDK and the rest of the job take their share of the function too.
            "readable_in_function": int(function_mb * 1024**2 / (read_peak / entries))}


def manifest_memory_table(section: dict[str, Any]) -> str:
    return "\n".join([
        f"manifest of {section['entries']:,} objects, measured (tracemalloc), bytes per object",
        f"{'read: held when done':<40} {section['held_per_entry']:>10,}",
        f"{'read: peak':<40} {section['read_peak_per_entry']:>10,}",
        f"{'write: peak beyond its entries':<40} {section['write_peak_per_entry']:>10,}",
        (f"{'objects readable in ' + str(section['function_mb']) + ' MB, at most':<40} "
         f"{section['readable_in_function']:>10,}")])
