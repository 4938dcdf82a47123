"""The restore shard worker: one invocation of a fanned-out restore's shard (drcore.restore.restore_shards), and the
progress it publishes (drcore.core.metric_names: the restore shard metrics), which the dashboard plots."""

from __future__ import annotations

from collections.abc import Callable

from drcore.aws.metrics import ComponentMetrics
from drcore.core.metric_names import (
    RESTORE_BYTES_COPIED_METRIC,
    RESTORE_OBJECTS_VERIFIED_METRIC,
    RESTORE_SHARDS_DONE_METRIC,
)
from drcore.restore.bucket_restore import BucketRestorer
from drcore.restore.restore_shards import ShardRun
from drcore.restore.shard_requests import RestoreShard


class ShardWorker:
    def __init__(self, restorer: BucketRestorer, metrics: ComponentMetrics) -> None:
        self._restorer = restorer
        self._metrics = metrics

    def run(self, shard: RestoreShard, remaining_ms: Callable[[], int]) -> ShardRun:
        run = self._restorer.apply_shard(shard.target_bucket, shard.plan_id, shard.number, remaining_ms)
        verified = run.result.verification.objects_expected if run.result is not None else 0
        self._metrics.publish("s3", {RESTORE_BYTES_COPIED_METRIC: (run.bytes_copied, "Bytes"),
                                     RESTORE_OBJECTS_VERIFIED_METRIC: (verified, "Count"),
                                     RESTORE_SHARDS_DONE_METRIC: (int(run.finished), "Count")})
        return run
