"""Bucket restores as the recovery function, the drill and the restore benchmark build them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from drcore.aws.clients import client_factory, s3_client
from drcore.aws.metrics import ComponentMetrics
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.core.config import DEFAULT_FULL_MANIFEST_EVERY, BackupSettings
from drcore.restore.bucket_restore import BucketRestorer
from drcore.restore.shard_worker import ShardWorker
from drcore.state.backup_store import BackupStore
from drcore.wiring.fan_outs import FanOut


def bucket_restorer(s3: Any, store: BackupStore, concurrency: int,
                    full_manifest_every: int = DEFAULT_FULL_MANIFEST_EVERY,
                    fan_out: FanOut | None = None,
                    snapshot_fan_out: tuple[str, FanOut] | None = None) -> BucketRestorer:
    """Restores of buckets, each taking its safety snapshot with a snapshotter of the target; with `fan_out`, big
    ones run as shards by its state machine. With `snapshot_fan_out` (a bucket, and the fan-out of its snapshots),
    a safety snapshot of that bucket past the threshold runs as shards too, as its scheduled snapshots do."""

    def snapshots_of(bucket: str) -> BucketSnapshotter:
        shards = snapshot_fan_out[1] if snapshot_fan_out is not None and snapshot_fan_out[0] == bucket else None
        return BucketSnapshotter(s3, store, bucket, concurrency=concurrency, full_manifest_every=full_manifest_every,
                                 fan_out=shards)

    return BucketRestorer(s3, store, concurrency=concurrency, fan_out=fan_out, snapshots_of=snapshots_of)


@lru_cache(maxsize=4)
def restore_shard_worker(backup: BackupSettings) -> ShardWorker:
    """The restore shard worker: it applies shards, and takes no safety snapshot (the apply that fanned the restore
    out took it)."""
    s3 = s3_client(backup.copy_concurrency)
    restorer = bucket_restorer(s3, BackupStore(s3, backup.backup_bucket), backup.copy_concurrency,
                               backup.full_manifest_every)
    return ShardWorker(restorer, ComponentMetrics(client_factory()("cloudwatch"), backup.metrics_namespace))
