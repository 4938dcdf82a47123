"""The restore fan-out: a big bucket restore applied and verified as shards by a Step Functions Distributed Map
(stacks/constructs/shard_fanout.py), and the restore shard worker it invokes for each shard.

The recovery function decides (drcore.restore.restore_shards): an apply touching more keys than
`backup.fanout_threshold_objects` is cut into shards (key ranges of the target) of about
`backup.fanout_shard_objects` keys, written under `restores/s3/<target>/<plan id>/shards/` in the backup bucket with
one JSON line per shard (`{"shard": <n>}`) in `items.jsonl`, and an execution named after the plan starts with
`{"plan_id": "rp-...", "target_bucket": "<target>", "items_key": "<that key>", "resume": {...}}`, `resume` being the
recovery function's request that resumes the plan (a `restore_s3`, or the `comprehensive_rollback` whose data step
the restore is):

- `Shards`: a child execution per shard, `backup.fanout_max_concurrency` at once, invokes the restore shard worker
  with `{"shard": {"plan_id": ..., "target_bucket": ..., "number": <n>}}` until it answers `finished`; the worker
  applies the shard's range of the plan, then reads it back. One failed shard fails the map, and the execution:
  resuming the restore in the recovery function redrives it, and only the failed shards run again.
- `Merge`: with every shard done, the execution sends the recovery function that `resume` request: the apply it
  resumes merges the shards' verifications into the restore's, and the action it belongs to goes on.

Its Map Runs write their results under RESULTS_PREFIX in the snapshot fan-out's results bucket: the prefix, not
the bucket, keeps the two fan-outs' results (and their roles' writes) apart.

The worker is given the restore subset of the recovery function's role, narrowed to what a shard does: the target
buckets' versions listed and read, objects copied back and removed by delete markers (never
s3:DeleteObjectVersion); in the backup bucket, its restore's records read and written (write-once, as every write
there) under `restores/s3/`, the stored content read as the copies' source. Besides, as the backup function's shards
do, it publishes its progress in the controller's metrics namespace. No safety snapshot (the apply that fanned the
restore out took it), no journal, no alerts, no Step Functions, no Lambda.
"""

from __future__ import annotations

import re

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import RecoveryEnvVar
from drcore.state.backup_store import RESTORE_ROOT
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.backups import (
    BACKUP_KEY_USE,
    BACKUP_OBJECT_WRITES,
    CONTENT_TAG_READS,
    STORED_BACKUP_READS,
    backup_environment,
    content_prefix,
)
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.constructs.controller_functions import ControllerFunctions
from stacks.constructs.metric_publishing import metrics_publishing
from stacks.constructs.recovery import (
    RECOVERY_TIMEOUT,
    RESTORE_SHARD_MEMORY_MB,
    TARGET_OBJECT_WRITES,
    restore_target_allow_list,
    restore_target_arns,
    restore_target_objects,
)
from stacks.constructs.shard_fanout import RESUME_PATH, Invoked, ShardFanOut, ShardJob, fanout_name
from stacks.settings import Settings

RESTORE_SHARD_HANDLER = "restore_shard.handler.handler"
RESTORE_KIND = "restore"
# Where in the (shared) results bucket: "restore-results/<map run id>/manifest.json", ...
RESULTS_PREFIX = "restore-results"
# Any fanned-out restore's shard items: restores/s3/<target>/<plan id>/shards/items.jsonl.
RESTORE_SHARD_ITEMS = f"{RESTORE_ROOT}*/shards/items.jsonl"
# A worker's restore records (its shard plan and slice, what it wrote, its runs and its result) and every other
# restore's, whose plan ids are made at run time.
RESTORE_RECORDS = f"{RESTORE_ROOT}*"
# Of a restore target, a shard lists the versions in its key range and whether the bucket keeps versions (a restore
# removes by delete markers only). Narrower than the recovery function's TARGET_BUCKET_READS: a shard lists nothing
# but versions, and the lifecycle is the planner's concern.
SHARD_TARGET_BUCKET_READS = ("s3:ListBucketVersions", "s3:GetBucketVersioning")
# Of a target's objects, a shard reads the versions it compares and copies back, with their tags (a copy brings
# them). Narrower than the recovery function's TARGET_OBJECT_READS: no object attributes.
SHARD_TARGET_OBJECT_READS = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging",
                             "s3:GetObjectVersionTagging")
# In the backup bucket, a worker lists its restore's records (a missing one is then answered 404, not 403).
RESTORE_RECORDS_LISTING = ("s3:ListBucket",)


def restore_fanout_name(settings: Settings) -> str:
    return fanout_name(settings, RESTORE_KIND)


def restore_shard_environment(settings: Settings, state_table: dynamodb.ITable,
                              backup_bucket: BackupBucket) -> dict[str, str]:
    """What the worker reads: the backup function's variables (drcore.core.config.BackupSettings: the buckets, the
    copy concurrency, the namespace; the state table is only named), and the restore targets it may write besides
    the data bucket, so that it refuses a shard of any other bucket."""
    return {**backup_environment(settings, state_table, backup_bucket),
            RecoveryEnvVar.RESTORE_TARGET_BUCKETS.value: restore_target_allow_list(settings)}


def restore_job(settings: Settings, worker: lambda_.IFunction, recovery_function: lambda_.IFunction) -> ShardJob:
    """Each shard by the worker, the merge by the recovery function, which planned the restore and said how to resume
    it."""
    name = restore_fanout_name(settings)
    return ShardJob(
        kind=RESTORE_KIND,
        run="restore plan",
        worker=Invoked(worker, "RestoreShardWorker"),
        worker_payload=sfn.TaskInput.from_object({
            "shard": {
                "plan_id": sfn.JsonPath.string_at("$.plan_id"),
                "target_bucket": sfn.JsonPath.string_at("$.target_bucket"),
                "number": sfn.JsonPath.number_at("$.shard"),
            }
        }),
        item_fields=("plan_id", "target_bucket"),
        merge=Invoked(recovery_function, "RecoveryFunction"),
        merge_payload=sfn.TaskInput.from_json_path_at(RESUME_PATH),
        items=RESTORE_SHARD_ITEMS,
        results_prefix=RESULTS_PREFIX,
        role_description=f"Runs the fan-out of big restores into {settings.data_bucket} or an allow-listed bucket",
        comment="Restores a bucket in shards, then merges their verifications (a big bucket restore)",
        alarm_name=f"{name}-unfinished",
        alarm_description=(
            f"A fanned-out bucket restore failed, timed out or was aborted (state machine {name}): the target "
            "bucket is partly restored, and the restore is not verified. Redrive it: send the recovery function the "
            "request the execution's input holds under resume "
            '({"action": "restore_s3" or "comprehensive_rollback", "resume": "<plan id>", ...}); Step Functions '
            "runs again only the shards that failed, then the merge. "
            "The execution (named after the restore plan) and its Map Run name the failed shards and their errors; "
            "the restore shard worker's logs say why. The plan's safety snapshot undoes what the shards did."
        ),
    )


class RestoreFanOut(ShardFanOut):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: ControllerFunctions,
        state_table: dynamodb.ITable,
        recovery_function: lambda_.Function,
        backup_bucket: BackupBucket,
        results_bucket: s3.Bucket,
        alert_topic: sns.ITopic,
    ) -> None:
        """Runs the big restores of `recovery_function` (which restores from `backup_bucket`, where the map reads
        each restore's shards) with a shard worker of its own, writes the map's results to `results_bucket` (the
        snapshot fan-out's), and alerts `alert_topic` when an execution ends without finishing its restore."""
        worker = functions.add(
            "RestoreShard",
            handler=RESTORE_SHARD_HANDLER,
            description=(
                f"Applies and verifies one shard of a fanned-out restore of {settings.data_bucket} or an "
                f"allow-listed bucket, for the state machine {restore_fanout_name(settings)}"
            ),
            environment=restore_shard_environment(settings, state_table, backup_bucket),
            # A shard copies as the recovery function does, and works until shortly before Lambda's maximum; the
            # map invokes it again until it is finished. No reserved concurrency: the map's MaxConcurrency bounds it.
            memory_size=RESTORE_SHARD_MEMORY_MB,
            timeout=RECOVERY_TIMEOUT,
        )
        super().__init__(scope, construct_id, settings=settings,
                         job=restore_job(settings, worker, recovery_function), backup_bucket=backup_bucket,
                         alert_topic=alert_topic, results_bucket=results_bucket)
        self.worker = worker
        self._grant_worker(backup_bucket)
        # Its `status` reports every running restore's shards.
        self.let_start(recovery_function, RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE.value,
                       policy_id="RecoveryFunctionRunsFanOut", list_running=True)

    def _grant_worker(self, backup_bucket: BackupBucket) -> None:
        settings = self._settings
        targets = restore_target_arns(self, settings)
        target_objects = [f"{arn}/*" for arn in targets]
        backups = backup_bucket.bucket
        content = backups.arn_for_objects(f"{content_prefix()}*")
        records = backups.arn_for_objects(RESTORE_RECORDS)
        statements = [
            iam.PolicyStatement(sid="ListRestoreTargets", actions=list(SHARD_TARGET_BUCKET_READS), resources=targets),
            iam.PolicyStatement(sid="ReadRestoreTargetObjects", actions=list(SHARD_TARGET_OBJECT_READS),
                                resources=target_objects),
            iam.PolicyStatement(sid="RestoreObjectsByVersionsAndDeleteMarkers", actions=list(TARGET_OBJECT_WRITES),
                                resources=target_objects),
            iam.PolicyStatement(sid="ListRestoreRecords", actions=list(RESTORE_RECORDS_LISTING),
                                resources=[backups.bucket_arn]),
            # The copies' source, and the worker's own records.
            iam.PolicyStatement(sid="ReadStoredContentAndRestoreRecords", actions=list(STORED_BACKUP_READS),
                                resources=[content, records]),
            # A copy brings its source's tags.
            iam.PolicyStatement(sid="ReadTagsOfStoredContent", actions=list(CONTENT_TAG_READS), resources=[content]),
            iam.PolicyStatement(sid="WriteRestoreRecords", actions=list(BACKUP_OBJECT_WRITES), resources=[records]),
            iam.PolicyStatement(sid="UseBackupKey", actions=list(BACKUP_KEY_USE),
                                resources=[backup_bucket.key.key_arn]),
            # Each invocation's progress: the restore shard metrics.
            metrics_publishing("PublishRestoreShardMetrics", settings),
        ]
        for statement in statements:
            self.worker.add_to_role_policy(statement)
        bucket_id = Stack.of(self).get_logical_id(default_resource(backups, s3.CfnBucket))
        stored = "|".join(re.escape(prefix).replace("/", r"\/") for prefix in (content_prefix(), RESTORE_ROOT))
        NagSuppressions.add_resource_suppressions(
            role_of(self.worker),
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="A restore shard reads and rewrites any object of its key range of the data bucket (or of "
                    "an allow-listed target bucket), whose keys are the pipeline's uploads and cannot be listed at "
                    "synth time. It removes only by delete markers: s3:DeleteObjectVersion is not granted.",
                    applies_to=[restore_target_objects(settings)],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Stored content is keyed by digests, restore records by plan ids made at run time: the "
                    "worker reads content/ (the copies' source), and reads and writes (create-only, by the backup "
                    "bucket's policy) restores/s3/ only; Object Lock protects every object.",
                    applies_to=[RegexAppliesTo(regex=rf"/^Resource::<{bucket_id}\.Arn>\/({stored})\*$/")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="kms:GenerateDataKey* is what S3 needs from a writer of SSE-KMS objects (the worker's "
                    "records in the backup bucket); it is granted on the backup key only.",
                    applies_to=["Action::kms:GenerateDataKey*"],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="cloudwatch:PutMetricData supports no resource-level permissions; it is held to the "
                    "controller's metrics namespace by a cloudwatch:namespace condition.",
                    applies_to=["Resource::*"],
                ),
            ],
            apply_to_children=True,
        )
