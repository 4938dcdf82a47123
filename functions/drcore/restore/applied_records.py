"""What a bucket restore's apply wrote: the (version id, ETag) of every copy, recorded after each batch.

A copied object's ETag is not always the original's (SSE-KMS, a multipart copy), so the records are
what lets a resumed apply and the verification recognise the restore's own copies. They live under
`restores/s3/<target>/<plan id>/applied/`, one write-once object per batch.
"""

from __future__ import annotations

import gzip
import json
import secrets
from datetime import datetime

from drcore.core.models import to_iso
from drcore.restore.bucket_diff import Written
from drcore.state.backup_store import AlreadyWritten, BackupStore, restore_records_prefix


def record_written(store: BackupStore, target_bucket: str, plan_id: str, rows: list[list[str]],
                   moment: datetime) -> None:
    """Record `rows` of [key, version id, ETag] written by one batch of the plan's apply."""
    name = f"{to_iso(moment)}-{secrets.token_hex(4)}.json.gz"
    try:
        store.put_once(restore_records_prefix(target_bucket, plan_id) + name,
                       gzip.compress(json.dumps(rows).encode(), mtime=0), "application/json", ContentEncoding="gzip")
    except AlreadyWritten:  # a random name: only a retried request that did succeed gets here
        pass


def read_written(store: BackupStore, target_bucket: str, plan_id: str) -> Written:
    written: Written = {}
    for entry in store.keys(restore_records_prefix(target_bucket, plan_id)):
        for key, version_id, etag in json.loads(gzip.decompress(store.get_bytes(entry["Key"]))):
            written.setdefault(key, set()).add((version_id, etag))
    return written
