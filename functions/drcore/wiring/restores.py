"""Bucket restores as the recovery function, the drill and the restore benchmark build them."""

from __future__ import annotations

from typing import Any

from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.core.config import DEFAULT_FULL_MANIFEST_EVERY
from drcore.restore.bucket_restore import BucketRestorer
from drcore.state.backup_store import BackupStore


def bucket_restorer(s3: Any, store: BackupStore, concurrency: int,
                    full_manifest_every: int = DEFAULT_FULL_MANIFEST_EVERY) -> BucketRestorer:
    """Restores of buckets, each taking its safety snapshot with a snapshotter of the target."""
    return BucketRestorer(s3, store, concurrency=concurrency, snapshots_of=lambda bucket: BucketSnapshotter(
        s3, store, bucket, concurrency=concurrency, full_manifest_every=full_manifest_every))
