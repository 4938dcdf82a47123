"""What a bucket restore's apply wrote: the (version id, ETag) of every copy, recorded after each batch; and
which safety snapshot it took first. `apply_recorded_batch` is the one batch loop that makes the changes and records
them, for the bucket restore and the failback's copy-back alike.

A copied object's ETag is not always the original's (SSE-KMS, a multipart copy), so the records are
what lets a resumed apply and the verification recognise the restore's own copies. They live under
`restores/s3/<target>/<plan id>/applied/`, one write-once object per batch. The safety snapshot's id is
recorded once, in `restores/s3/<target>/<plan id>/safety-snapshot.json`, before that snapshot begins.
"""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from drcore.core.models import Clock, to_iso
from drcore.restore.bucket_diff import Written
from drcore.state.backup_store import (
    AlreadyWritten,
    BackupStore,
    new_backup_id,
    restore_records_prefix,
    restore_safety_key,
)


def record_written(store: BackupStore, target_bucket: str, plan_id: str, rows: list[list[str]],
                   moment: datetime) -> None:
    """Record `rows` of [key, version id, ETag] written by one batch of the plan's apply."""
    name = f"{to_iso(moment)}-{secrets.token_hex(4)}.json.gz"
    # A random name: only a retried request that did succeed finds it written.
    store.put_same_once(restore_records_prefix(target_bucket, plan_id) + name,
                        gzip.compress(json.dumps(rows).encode(), mtime=0), ContentEncoding="gzip")


Change = TypeVar("Change")


@dataclass(frozen=True)
class Applied:
    """A change that was made. `written`: the [key, version id, ETag] it wrote, to be recorded; None when it wrote
    nothing a later apply or verification must recognise (a restore's delete marker)."""

    written: tuple[str, str, str] | None


def apply_recorded_batch(batch: Sequence[Change], change: Callable[[Change], Applied | None], pool: ThreadPoolExecutor,
                         store: BackupStore, target_bucket: str, plan_id: str,
                         clock: Clock) -> list[tuple[Change, Applied]]:
    """Make one batch of changes concurrently, then record under the plan what they wrote, even when some change
    failed (its first failure is raised once the others are recorded: a resumed apply must know every write that
    was made). A change answering None made nothing (its source archived, or not the body expected): it is left
    for the verification to report, and is not among the changes answered."""
    futures: list[Future[Applied | None]] = [pool.submit(change, item) for item in batch]
    wait(futures)
    done: list[tuple[Change, Applied]] = []
    failure: BaseException | None = None
    for item, future in zip(batch, futures, strict=True):
        if future.exception() is not None:
            failure = failure or future.exception()
            continue
        applied = future.result()
        if applied is not None:
            done.append((item, applied))
    records = [list(applied.written) for _, applied in done if applied.written is not None]
    if records:
        record_written(store, target_bucket, plan_id, records, clock())
    if failure is not None:
        raise failure
    return done


def read_written(store: BackupStore, target_bucket: str, plan_id: str) -> Written:
    written: Written = {}
    for entry in store.keys(restore_records_prefix(target_bucket, plan_id)):
        for key, version_id, etag in json.loads(gzip.decompress(store.get_bytes(entry["Key"]))):
            written.setdefault(key, set()).add((version_id, etag))
    return written


def safety_snapshot_of(store: BackupStore, target_bucket: str, plan_id: str, moment: datetime) -> str:
    """The id of the plan's safety snapshot: chosen by its first apply and recorded before the snapshot begins.
    An apply that dies before its caller has kept the id is resumed without it; it must continue that snapshot,
    not take a new one of a bucket the dead apply may already have changed (which would not be the state
    before the restore, and would refuse the resumption as a change since the plan)."""
    key = restore_safety_key(target_bucket, plan_id)
    if next(iter(store.keys(key)), None) is None:  # a listing, as every read of a key that may be absent
        try:
            chosen = new_backup_id(moment)
            store.put_json_once(key, {"safety_snapshot_id": chosen})
            return chosen
        except AlreadyWritten:  # another apply of the plan chose first
            pass
    return str(store.get_json(key)["safety_snapshot_id"])
