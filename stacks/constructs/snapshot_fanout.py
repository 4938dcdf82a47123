"""The snapshot fan-out: a big bucket snapshot run as shards by a Step Functions Distributed Map
(stacks/constructs/shard_fanout.py).

The backup function decides (drcore.backup.snapshot_shards): a snapshot whose base holds more than
`backup.fanout_threshold_objects` objects is cut into shards (key ranges) of about `backup.fanout_shard_objects`
keys, one JSON line per shard (`{"shard": <n>}`) is written to `shards/items.jsonl` under the snapshot's prefix,
and an execution named after the snapshot starts with `{"backup_id": "<snapshot id>", "items_key": "<that key>"}`:

- `Shards` reads the items and runs a child execution per shard, `backup.fanout_max_concurrency` at once. A child
  invokes the backup function with `{"component": "s3", "shard": {"backup_id": ..., "number": <n>}}` until it
  answers `finished`: a shard that outlasts one invocation goes on from its checkpoint in the next. One failed
  shard fails the map, and the execution: redriving it (the backup function does when the snapshot is resumed,
  `{"component": "s3", "resume": "<snapshot id>"}`) runs again only the shards that failed.
- `Merge`: with every shard done, the backup function writes the snapshot's manifest from the shards'
  checkpoints (`{"component": "s3", "resume": "<snapshot id>"}`).
- `Resume requested`: a restore's safety snapshot of the data bucket is fanned out by the recovery function, which
  starts the execution with `resume` besides, its request that resumes the restore (drcore.backup.snapshot_shards:
  the plan's `then`). `Resume` sends it that request once the snapshot is merged; the restore then goes on. A
  scheduled snapshot's execution has none, and ends.

It makes the fan-outs' results bucket; its Map Runs write under RESULTS_PREFIX there.
"""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from drcore.backup.snapshot_shards import items_key
from drcore.core.config import BackupEnvVar
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.shard_fanout import Invoked, ShardFanOut, ShardJob, fanout_name
from stacks.settings import Settings

SNAPSHOT_KIND = "snapshot"
# Where in the results bucket: "results/<map run id>/manifest.json", "SUCCEEDED_<n>.json", "FAILED_<n>.json".
RESULTS_PREFIX = "results"


def snapshot_fanout_name(settings: Settings) -> str:
    return fanout_name(settings, SNAPSHOT_KIND)


def snapshot_job(settings: Settings, backup_function: lambda_.IFunction,
                 recovery_function: lambda_.IFunction) -> ShardJob:
    """Each shard and the merge by the backup function, which planned the snapshot (or the recovery function, a
    restore's safety snapshot, resumed when it is merged)."""
    backup = Invoked(backup_function, "BackupFunction")
    return ShardJob(
        kind=SNAPSHOT_KIND,
        run="snapshot",
        worker=backup,
        worker_payload=sfn.TaskInput.from_object({
            "component": "s3",
            "shard": {"backup_id": sfn.JsonPath.string_at("$.backup_id"), "number": sfn.JsonPath.number_at("$.shard")},
            "reason": "snapshot fan-out shard",
        }),
        item_fields=("backup_id",),
        merge=backup,
        merge_payload=sfn.TaskInput.from_object({"component": "s3", "resume": sfn.JsonPath.string_at("$.backup_id"),
                                                 "reason": "snapshot fan-out merge"}),
        items=items_key(settings.data_bucket, "*"),
        results_prefix=RESULTS_PREFIX,
        then=Invoked(recovery_function, "RecoveryFunction"),
        role_description=f"Runs the snapshot fan-out of {settings.data_bucket}",
        comment=f"Snapshots {settings.data_bucket} in shards, then merges them (a big bucket snapshot)",
        alarm_name=f"{settings.protected_function}-backup-s3-fanout-unfinished",
        alarm_description=(
            f"A fanned-out snapshot of {settings.data_bucket} failed, timed out or was aborted (state machine "
            f"{snapshot_fanout_name(settings)}): its manifest is not written, so it is no backup. Redrive it: send "
            'the backup function {"component": "s3", "resume": "<snapshot id>"}, the snapshot id being the '
            "execution's name; Step Functions runs again only the shards that failed, then the merge. The "
            "execution's Map Run names the failed shards and their errors; the backup function's logs say why. "
            "Scheduled snapshots go on meanwhile, each a new one. An execution whose input holds resume is a "
            "restore's safety snapshot: the restore waits for it. If the snapshot merged but Resume failed, send the "
            "recovery function that resume request yourself (the recovery function's logs say why it failed)."
        ),
    )


class SnapshotFanOut(ShardFanOut):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        backup_function: lambda_.Function,
        recovery_function: lambda_.Function,
        backup_bucket: BackupBucket,
        alert_topic: sns.ITopic,
    ) -> None:
        """Runs the big snapshots of `backup_function` (which backs up the data bucket into `backup_bucket`, where
        the map reads each snapshot's shards) and the big safety snapshots of `recovery_function`'s restores (which
        it resumes), makes the fan-outs' results bucket, and alerts `alert_topic` when an execution ends without
        finishing its snapshot."""
        super().__init__(scope, construct_id, settings=settings,
                         job=snapshot_job(settings, backup_function, recovery_function),
                         backup_bucket=backup_bucket, alert_topic=alert_topic)
        self.let_start(backup_function, BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE.value,
                       policy_id="BackupFunctionRunsFanOut")
        # A restore into the data bucket takes its safety snapshot as a snapshot of it: past the threshold, in shards.
        self.let_start(recovery_function, BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE.value,
                       policy_id="RecoveryFunctionRunsSnapshotFanOut")
