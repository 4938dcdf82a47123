"""Point-in-time restore of a bucket from its snapshots (and its own object versions), planned, undoable.

A restore is two steps. `plan` compares the desired state with the target bucket's current state and
says what would change; `apply` makes exactly those changes, and `verify` checks the result.

**Desired state** (drcore.restore.bucket_desired). The entries of a complete snapshot's manifest under
`prefix` (`source: snapshot`). With `at` instead of a snapshot id, the newest complete snapshot not
after `at` is the base; on a bucket whose versioning is Enabled, the versions and delete markers listed
by ListObjectVersions then say which version of each key was current at `at` (`source: versions`),
reaching moments between snapshots, when the history since the snapshot is complete.

**By content and headers, never by size and time** (drcore.restore.bucket_diff). A target object
matches its desired entry when it is the same version of the same bucket; any other version of the same
size that may hold the same body is compared by one HeadObject: body (a full-object checksum, or the
ETag), headers (content type, user metadata, Cache-Control, ...) and tags must all be the restore point's.

**Plan** (drcore.restore.bucket_plan). Counts (to copy, of which missing and changed; to remove;
unchanged; archived; bytes), the first `LISTED_KEYS` keys of each kind, the target's fingerprint (a
SHA-256 over key, version id and ETag of every current version under the prefix, in key order) and a digest
of the desired state. A plan streams: the restore point's manifest is read a key at a time beside the
target's listing (listed in key ranges at once, cut from the restore point's keys: `listing_ranges`), each
key decided as they go (drcore.restore.bucket_diff.decide), so that a restore point of millions of objects
is never held. The plan is JSON (`to_dict`/`from_dict`) small enough for a DynamoDB item; when a kind has
more keys than `LISTED_KEYS`, every changed key is written once to `restores/s3/<target>/<plan id>/
changes.json.gz` in the backup store (`changes_key`: gzip JSON lines, a header then a line per key, in key
order). Apply does not need them: it recomputes the changes from the same two states.

**Apply.** First a safety snapshot of the whole target bucket (continued by id over invocations; the
first apply records its id with the plan's records, so an apply that died before its caller kept the id
continues it). A target whose snapshotter fans out (the data bucket, past the fan-out threshold) takes it in
shards, by the snapshot fan-out's execution, which resumes the apply once the snapshot is merged (with the
`resume_request` the apply gave it: RestoreProgress.safety_fan_out meanwhile). Its manifest is the target's
state before the restore, so apply refuses (`TargetChanged`) when the fingerprint of that state differs from the
plan's: the world changed since the plan. Then it lists
the target, recomputes what still differs and changes only that: copies (drcore.aws.s3_copy: CopyObject,
or UploadPartCopy over `multipart_threshold`) from the backup store's content, or from the data
bucket's own version, concurrently and spread over the target's prefixes, retrying throttling with backoff
paced per prefix (drcore.aws.prefix_pacing); removals as DeleteObject without
a version id (delete markers, in a bucket whose versioning is Enabled; never a version deleted). A copy
from the backup store is pinned to the content object's ETag as the snapshot recorded it, and writes
the headers and tags its object had: the content object's own, which its snapshot's copy brought
(s3-snapshot/2), or the manifest's, replacing them. A stored body replaced since is not copied (the key
is left for the verification to report), and S3 computes a full-object checksum of what it writes. After
each batch it records the versions it wrote in `restores/s3/<target>/<plan id>/applied/` (write-once).
Called again with the same plan and safety snapshot id, an interrupted apply does only what is still
missing. Undo: plan a restore of the target from the safety snapshot id.

**Verify** (drcore.restore.bucket_verification). What the apply wrote is read back, never counted as
done: each desired key's object must be proven to hold the restore point's body, headers and tags.

**Fan-out** (drcore.restore.restore_shards). An apply touching more keys than the fan-out threshold, once its
safety snapshot is taken and the target found unchanged, writes its desired state as key-range shards (read a key
at a time beside the safety snapshot's manifest, each slice written as its range is cut) and starts
a Step Functions execution named after the plan, which runs `apply_shard` for each (the same diff, batches,
records and verification, for one key range) and then resumes the apply: it merges the shards' verifications.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import error_code
from drcore.aws.job_estimates import KEYS_PER_LIST_PAGE
from drcore.aws.object_identity import recorded_checksum
from drcore.aws.prefix_pacing import spread_over_prefixes
from drcore.aws.s3_copy import (
    DEFAULT_PART_SIZE,
    MAX_SINGLE_COPY,
    CopySource,
    CopySourceArchived,
    CopySourceChanged,
    ReplacedMetadata,
    S3Copier,
)
from drcore.aws.state_machines import REDRIVABLE, RUNNING, MapExecutions
from drcore.backup.snapshot_checkpoints import (
    LISTING_RANGES,
    WHOLE_BUCKET,
    KeyRange,
    range_count,
    ranges_spread_over,
)
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.restore.applied_records import Applied, apply_recorded_batch, read_written, safety_snapshot_of
from drcore.restore.bucket_desired import DesiredStates, snapshot_state
from drcore.restore.bucket_diff import (
    ContentDiff,
    DesiredObject,
    HistoryCount,
    KeyOrderDigest,
    ListedVersion,
    Pair,
    SameObjects,
    Written,
    content_diff,
    current_among,
    current_in_snapshot,
    current_of,
    currents,
    decide,
    fingerprint_row,
    keyed_pairs,
    states_at,
)
from drcore.restore.bucket_plan import (
    PlanTally,
    RestorePlan,
    RestoreProgress,
    RestoreRefused,
    RestoreSourceMissing,
    TargetChanged,
    Verification,
)
from drcore.restore.bucket_verification import RestoreVerifier
from drcore.restore.restore_shards import (
    RestoreShardPlan,
    ShardResult,
    ShardRun,
    merged_verification,
    read_desired_slice,
    read_result,
    read_results,
    read_shard_plan,
    record_run,
    records_id,
    run_totals,
    shards_progress,
    write_result,
    write_shard_plan,
)
from drcore.restore.restore_shards import items_key as shard_items_key
from drcore.state.backup_store import (
    BackupStore,
    Component,
    backup_prefix,
    backup_time,
    restore_changes_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from drcore.backup.bucket_snapshots import BucketSnapshotter
    from drcore.backup.manifest import ManifestStream
    from drcore.backup.snapshot_shards import FanOutSettings

logger = Logger(child=True)

LISTED_KEYS = 50  # keys of each kind named in the plan itself (a DynamoDB item stays small); all in its changes object
BATCH_SIZE = 512  # changes between two restore records and two looks at the remaining time
SHOWN_FAN_OUTS = 10  # running restore fan-outs `status` shows
# Stop starting batches with less than this left: a batch of copies and its record must fit.
SAFETY_MARGIN_MS = 30_000

Change = tuple[Literal["copy"], DesiredObject] | tuple[Literal["remove"], str]


@dataclass
class AppliedChanges:
    """What one invocation's batches changed; `finished`: every change made, with time left to verify."""

    finished: bool = False
    copied: int = 0
    removed: int = 0
    bytes_copied: int = 0

    def add(self, item: DesiredObject | str) -> None:
        if isinstance(item, DesiredObject):
            self.copied += 1
            self.bytes_copied += item.size
        else:
            self.removed += 1

    def counts(self) -> dict[str, int]:
        return {"copied": self.copied, "removed": self.removed, "bytes_copied": self.bytes_copied}


def _digested(pairs: Iterable[Pair], fingerprint: KeyOrderDigest, desired: KeyOrderDigest) -> Iterator[Pair]:
    """`pairs`, hashed as they go: the target's state into `fingerprint`, the desired state into `desired`."""
    for want, have in pairs:
        if have is not None:
            fingerprint.add(fingerprint_row(have))
        if want is not None:
            desired.add(want.identity())
        yield want, have


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class BucketRestorer:
    """Plans, applies and verifies restores of buckets from their snapshots in `store`.

    `s3_client` lists and writes the target, reads the data bucket's versions and the backup store's
    content (copies are requests to the target made with it); give it `max_pool_connections` of at
    least `concurrency`. `snapshots_of(bucket)` builds the snapshotter that takes safety snapshots. With
    `fan_out` (the settings and the state machine's executions), an apply touching more than its threshold of keys
    runs as shards (drcore.restore.restore_shards), each applied by `apply_shard`.
    """

    def __init__(
        self,
        s3_client: S3Client,
        store: BackupStore,
        *,
        snapshots_of: Callable[[str], BucketSnapshotter],
        concurrency: int = 16,
        clock: Clock = utc_now,
        multipart_threshold: int = MAX_SINGLE_COPY,
        part_size: int = DEFAULT_PART_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        fan_out: tuple[FanOutSettings, MapExecutions] | None = None,
    ) -> None:
        self._s3 = s3_client
        self._fan_out = fan_out
        self._store = store
        self._snapshots_of = snapshots_of
        self._concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._copier = S3Copier(s3_client, concurrency=concurrency, multipart_threshold=multipart_threshold,
                                part_size=part_size, sleep=sleep)
        self._states = DesiredStates(s3_client, store, clock)
        self._verifier = RestoreVerifier(s3_client, store, concurrency=concurrency, sleep=sleep)

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, *, source_bucket: str, snapshot_id: str | None = None, at: datetime | None = None,
             prefix: str = "", target_bucket: str | None = None) -> RestorePlan:
        if (snapshot_id is None) == (at is None):
            raise InvalidRequest("give exactly one of snapshot_id or at")
        target = target_bucket or source_bucket
        now = self._clock()
        plan_id = f"rp-{secrets.token_hex(5)}"
        notes: list[str] = []
        moment: datetime | None = None
        history_needed = False
        if snapshot_id is not None:
            manifest = self._states.manifest(source_bucket, snapshot_id)
        else:
            assert at is not None  # exactly one of the two was given
            moment = _aware(at)
            if moment > now:
                notes.append(f"at {to_iso(moment)} is in the future: restoring to the plan's time")
                moment = now
            manifest = self._states.manifest(source_bucket, self._states.snapshot_at(source_bucket, moment))
            history_needed, note = self._states.history_needed(source_bucket, manifest, moment, now)
            notes += [note] if note else []
        versioning = self._versioning(target)
        tally = PlanTally(LISTED_KEYS, self._multipart_threshold, self._part_size)
        fingerprint, desired_digest, history = KeyOrderDigest(), KeyOrderDigest(), HistoryCount()
        ranges = self._listing_ranges(manifest, prefix)
        with ThreadPoolExecutor(self._concurrency) as pool:
            pairs = self._planned_pairs(manifest, target, prefix, ranges, moment if history_needed else None, history)
            for item in decide(_digested(pairs, fingerprint, desired_digest), target, {},
                               self._same_objects(target, pool)):
                tally.add(item)
        if tally.removals and versioning != "Enabled":
            raise RestoreRefused(
                f"restoring s3://{target}/{prefix} would remove {tally.removals} objects (such as "
                f"{', '.join(tally.keys['remove'][:3])}) but the bucket's versioning is {versioning}: a restore "
                "removes objects only as delete markers. Enable versioning on the bucket, or restore into another "
                "bucket.")
        changes, changes_key = tally.changes(plan_id), None
        if changes is not None:
            changes_key = restore_changes_key(target, plan_id)
            self._store.put_once(changes_key, changes, "application/gzip")
        source = "versions" if history.changed else "snapshot"
        plan = RestorePlan(
            plan_id=plan_id, created_at=to_iso(now), source_bucket=source_bucket, target_bucket=target, prefix=prefix,
            source=source, snapshot_id=manifest.backup_id, at=to_iso(moment) if moment else None,
            target_versioning=versioning, objects_desired=tally.desired, to_copy=tally.copies.objects,
            missing=tally.counts.missing, changed=tally.counts.changed, to_remove=tally.removals,
            unchanged=tally.counts.unchanged,
            archived=tally.archived, bytes_to_copy=tally.copies.bytes, from_versions=history.changed,
            copy_keys=tuple(tally.keys["copy"]), remove_keys=tuple(tally.keys["remove"]),
            archived_keys=tuple(tally.keys["archived"]), changes_key=changes_key, fingerprint=fingerprint.hexdigest(),
            desired_digest=desired_digest.hexdigest(), notes=tuple(notes),
            estimate=tally.estimate(manifest.depth + 1, batch_size=BATCH_SIZE, concurrency=self._concurrency).to_dict(),
            listing_ranges=tuple((bounds.start_after, bounds.last) for bounds in ranges),
        )
        logger.info("restore planned", extra={"plan_id": plan_id, "source": source, "snapshot_id": plan.snapshot_id,
                                              "target": target, "prefix": prefix, "to_copy": plan.to_copy,
                                              "to_remove": plan.to_remove, "unchanged": plan.unchanged,
                                              "archived": plan.archived, "bytes_to_copy": plan.bytes_to_copy})
        return plan

    def _listing_ranges(self, manifest: ManifestStream, prefix: str) -> tuple[KeyRange, ...]:
        """The key ranges a plan lists at once: cut from the restore point's keys under `prefix` (one pass over its
        manifest) when it holds more than a listing page per range, else the whole bucket."""
        if range_count(manifest.objects, KEYS_PER_LIST_PAGE, LISTING_RANGES) < 2:
            return WHOLE_BUCKET
        keys = (entry.key for entry in manifest.entries() if entry.key.startswith(prefix))
        return ranges_spread_over(keys, KEYS_PER_LIST_PAGE, LISTING_RANGES)

    def _planned_pairs(self, manifest: ManifestStream, target: str, prefix: str, ranges: Sequence[KeyRange],
                       moment: datetime | None, history: HistoryCount) -> Iterator[Pair]:
        """The desired and the current state of `target`, key by key in key order: the snapshot's objects, or with a
        `moment` the state then, from the snapshot and its bucket's history since (which, restoring a bucket into
        itself, is the target's listing too: listed once), beside the target's listing (in `ranges` at once)."""
        snapshot = snapshot_state(manifest, prefix)
        if moment is None:
            return keyed_pairs(snapshot, currents(self._states.versions_in_ranges(target, prefix, ranges)))
        source_history = self._states.versions_in_ranges(manifest.bucket, prefix, ranges)
        keyed = states_at(manifest.bucket, snapshot, source_history, moment, history)
        if target == manifest.bucket:
            return ((state, have) for _, state, versions in keyed
                    if (have := current_among(versions)) is not None or state is not None)
        return keyed_pairs((state for _, state, _ in keyed if state is not None),
                           currents(self._states.versions_in_ranges(target, prefix, ranges)))

    def fingerprint(self, plan: RestorePlan) -> str:
        """The target's current fingerprint under the plan's prefix (listed in the plan's ranges at once); differs
        from `plan.fingerprint` when the world changed since the plan."""
        fingerprint = KeyOrderDigest()
        for have in currents(self._target_listing(plan)):
            fingerprint.add(fingerprint_row(have))
        return fingerprint.hexdigest()

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: RestorePlan, remaining_ms: Callable[[], int], *, safety_snapshot_id: str | None = None,
              resume_request: dict[str, Any] | None = None) -> RestoreProgress:
        """Apply `plan` (its safety snapshot first), or as much of it as `remaining_ms` allows. With fan-out and a
        `resume_request` (the recovery function's request that resumes this apply, which the execution sends when
        its shards are done), an apply touching more keys than the threshold starts the shards instead."""
        shards = read_shard_plan(self._store, plan.target_bucket, plan.plan_id)
        if shards is not None:  # fanned out by an earlier apply: its shards apply it
            return self._continue_fan_out(shards)
        # A restore this big fans out once its safety snapshot is taken: its desired state is then read as it is
        # written into the shards' slices, never held. Any other is held, and checked as planned before anything.
        fan_out = (self._fan_out is not None and resume_request is not None
                   and plan.objects_desired + plan.to_remove > self._fan_out[0].threshold_objects)
        desired = None if fan_out else self._desired_held(plan)
        if plan.to_remove:
            self._require_versioning(plan)  # before a safety snapshot that could only be wasted
        if safety_snapshot_id is not None:
            self._require_snapshot_started(plan.target_bucket, safety_snapshot_id)
        else:  # the one a first apply chose, even if it died before anyone kept the id
            safety_snapshot_id = safety_snapshot_of(self._store, plan.target_bucket, plan.plan_id, self._clock())
        safety = self._snapshots_of(plan.target_bucket).snapshot(safety_snapshot_id, remaining_ms,
                                                                 then=resume_request)
        if safety.fanned_out:  # in shards, by the snapshot fan-out, whose last step sends `resume_request`
            logger.info("restore waits for its safety snapshot's shards", extra={
                "plan_id": plan.plan_id, "safety_snapshot_id": safety.backup_id, **safety.stats})
            return RestoreProgress(plan.plan_id, False, safety.backup_id, 0, 0, 0, None, safety_fan_out=safety.stats)
        if not safety.finished:
            # A snapshot that wrote no checkpoint yet cannot be continued by id: the next call starts one.
            safety_prefix = backup_prefix(Component.S3, plan.target_bucket, safety.backup_id)
            started = next(iter(self._store.keys(safety_prefix)), None)
            logger.info("restore waits for its safety snapshot", extra={"plan_id": plan.plan_id,
                                                                        "safety_snapshot_id": safety.backup_id})
            return RestoreProgress(plan.plan_id, False, safety.backup_id if started else None, 0, 0, 0, None)
        before = self._require_unchanged_since_plan(plan, safety.backup_id)
        written = read_written(self._store, plan.target_bucket, plan.plan_id)
        if fan_out and not written:
            assert self._fan_out is not None and resume_request is not None
            # The keys the restore touches: the desired state's and the target's (its safety snapshot's), which it
            # removes where they are not desired (`plan.to_remove`: the target is as planned).
            target_entries = (entry for entry in before.entries() if entry.key.startswith(plan.prefix))
            return self._start_fan_out(write_shard_plan(self._store, plan, safety.backup_id, self._states.desired(plan),
                                                        target_entries, self._fan_out[0].shard_objects, resume_request))
        if desired is None:  # planned to fan out, but an earlier apply of it wrote changes itself
            desired = self._desired_held(plan)
        # A first apply has changed nothing yet: the target is as its safety snapshot just listed it, which saves
        # listing it again. An apply that continues one lists what the earlier ones changed.
        current = current_in_snapshot(before.entries(), plan.prefix) if not written else current_of(
            self._target_listing(plan))
        with ThreadPoolExecutor(self._concurrency) as pool:
            diff = content_diff(desired, current, plan.target_bucket, written, self._same_objects(plan.target_bucket,
                                                                                                   pool))
            logger.info("restore applying", extra={"plan_id": plan.plan_id, "safety_snapshot_id": safety.backup_id,
                                                   "to_copy": len(diff.copy), "to_remove": len(diff.remove),
                                                   "already_done": diff.unchanged})
            applied = self._apply_changes(plan, diff, written, pool, remaining_ms, plan.plan_id)
            if not applied.finished:
                logger.info("restore paused", extra={"plan_id": plan.plan_id, "copied": applied.copied,
                                                     "removed": applied.removed})
                return RestoreProgress(plan.plan_id, False, safety.backup_id, applied.copied, applied.removed,
                                       applied.bytes_copied, None)
            verification = self._verifier.verify(plan, desired, self._target_listing(plan), pool)
        logger.info("restore applied", extra={"plan_id": plan.plan_id, "safety_snapshot_id": safety.backup_id,
                                              "copied": applied.copied, "removed": applied.removed,
                                              "bytes_copied": applied.bytes_copied,
                                              "objects_expected": verification.objects_expected,
                                              "objects_matching": verification.objects_matching,
                                              "unexpected": verification.unexpected})
        return RestoreProgress(plan.plan_id, True, safety.backup_id, applied.copied, applied.removed,
                               applied.bytes_copied, verification)

    def apply_shard(self, target: str, plan_id: str, number: int, remaining_ms: Callable[[], int]) -> ShardRun:
        """Apply shard `number` of the fanned-out restore `plan_id` of `target`, then read its range back: what the
        apply does for the whole prefix, for the shard's key range. Called again, it does what is still missing."""
        shards = read_shard_plan(self._store, target, plan_id)
        if shards is None:
            raise InvalidRequest(f"restore plan {plan_id} of s3://{target} is not fanned out: it has no shard plan")
        bounds = shards.shard(number)
        finished = read_result(self._store, shards, number)
        if finished is not None:
            return ShardRun(number, True, 0, 0, 0, finished)
        plan, records = shards.plan, records_id(plan_id, number)
        desired = read_desired_slice(self._store, shards, number)
        written = read_written(self._store, target, records)
        with ThreadPoolExecutor(self._concurrency) as pool:
            current = current_of(self._states.list_versions(target, plan.prefix, bounds))
            diff = content_diff(desired, current, target, written, self._same_objects(target, pool))
            applied = self._apply_changes(plan, diff, written, pool, remaining_ms, records)
            record_run(self._store, shards, number, applied.counts(), self._clock())
            if not applied.finished:
                return ShardRun(number, False, applied.copied, applied.removed, applied.bytes_copied, None)
            verification = self._verifier.verify(plan, desired, self._states.list_versions(target, plan.prefix,
                                                                                          bounds), pool)
        result = ShardResult(number, verification=verification, **run_totals(self._store, shards, number))
        write_result(self._store, shards, result)
        logger.info("restore shard done", extra={"plan_id": plan_id, "shard": number, **result.to_dict()})
        return ShardRun(number, True, applied.copied, applied.removed, applied.bytes_copied, result)

    def verify(self, plan: RestorePlan) -> Verification:
        """Every desired key read back from the target; extra keys under the prefix reported."""
        with ThreadPoolExecutor(self._concurrency) as pool:
            desired = self._desired_held(plan)
            return self._verifier.verify(plan, desired, self._target_listing(plan), pool)

    # Target state ------------------------------------------------------------------------------

    def _versioning(self, bucket: str) -> str:
        try:
            return self._s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        except ClientError as error:
            if error_code(error) == "NoSuchBucket":
                raise InvalidRequest(f"bucket {bucket} does not exist; create a restore target first") from error
            raise

    def _require_versioning(self, plan: RestorePlan) -> None:
        versioning = self._versioning(plan.target_bucket)
        if versioning != "Enabled":
            raise RestoreRefused(f"plan {plan.plan_id} removes objects from s3://{plan.target_bucket} but its "
                                 f"versioning is now {versioning}: a restore removes objects only as delete markers")

    def _require_snapshot_started(self, bucket: str, snapshot_id: str) -> None:
        """A snapshot is continued by id only if it exists: an unknown id would start a new snapshot of the
        present state under that id's (past) time, which `at` could later take for the past."""
        backup_time(snapshot_id)  # a malformed id fails here
        if next(iter(self._store.keys(backup_prefix(Component.S3, bucket, snapshot_id))), None) is None:
            raise InvalidRequest(f"no safety snapshot {snapshot_id} of bucket {bucket}: continue an apply with the "
                                 "safety_snapshot_id it returned, or start it without one")

    def _require_unchanged_since_plan(self, plan: RestorePlan, safety_snapshot_id: str) -> ManifestStream:
        """The safety snapshot is the target's state before this restore changed anything: it must be the
        state the plan was made against (its manifest, opened and streamed). (A resumed apply checks the same
        immutable manifest again.)"""
        before = self._states.manifest(plan.target_bucket, safety_snapshot_id)
        state = KeyOrderDigest()
        for entry in before.entries():
            if entry.key.startswith(plan.prefix):
                state.add(fingerprint_row(entry))
        if state.hexdigest() != plan.fingerprint:
            raise TargetChanged(f"s3://{plan.target_bucket}/{plan.prefix} changed since plan {plan.plan_id} was made "
                                f"(safety snapshot {safety_snapshot_id} differs from the planned state); plan again")
        return before

    def _target_listing(self, plan: RestorePlan) -> Iterator[ListedVersion]:
        """The target's versions under the plan's prefix, in key order, listed in the plan's ranges at once."""
        return self._states.versions_in_ranges(plan.target_bucket, plan.prefix, plan.ranges())

    def _desired_held(self, plan: RestorePlan) -> dict[str, DesiredObject]:
        return {want.key: want for want in self._states.desired(plan)}

    def _same_objects(self, target: str, pool: ThreadPoolExecutor) -> SameObjects:
        def same_objects(pairs: list[tuple[DesiredObject, ListedVersion]]) -> Iterable[bool]:
            return self._verifier.same_objects(target, pairs, pool)

        return same_objects

    # Fan-out -------------------------------------------------------------------------------------

    def _executions(self, plan_id: str) -> MapExecutions:
        if self._fan_out is None:
            raise InvalidRequest(f"restore plan {plan_id} is fanned out, but this function knows no state machine to "
                                 "run its shards: set the restore fan-out's state machine")
        return self._fan_out[1]

    def _start_fan_out(self, shards: RestoreShardPlan) -> RestoreProgress:
        plan = shards.plan
        execution = self._executions(plan.plan_id).start(plan.plan_id, {
            "plan_id": plan.plan_id, "target_bucket": plan.target_bucket,
            "items_key": shard_items_key(plan.target_bucket, plan.plan_id), "resume": shards.resume_request})
        logger.info("restore fanned out", extra={"plan_id": plan.plan_id, "shards": len(shards.ranges),
                                                 "execution": execution})
        return RestoreProgress(plan.plan_id, False, shards.safety_snapshot_id, 0, 0, 0, None, fan_out={
            **shards_progress(shards, {}), "execution": execution, "status": RUNNING})

    def _continue_fan_out(self, shards: RestoreShardPlan) -> RestoreProgress:
        """Merge the shards' verifications when every shard is done; else start the execution if it never started
        (the apply that planned the shards died first), or redrive it if it failed, and answer how far it is."""
        plan = shards.plan
        with ThreadPoolExecutor(self._concurrency) as pool:
            results = read_results(self._store, shards, pool)
        progress = shards_progress(shards, results)
        if len(results) == len(shards.ranges):
            verification = merged_verification(list(results.values()))
            logger.info("restore applied", extra={"fanned_out": True, **progress,
                                                  "objects_expected": verification.objects_expected,
                                                  "objects_matching": verification.objects_matching,
                                                  "unexpected": verification.unexpected})
            return RestoreProgress(plan.plan_id, True, shards.safety_snapshot_id, progress["copied"],
                                   progress["removed"], progress["bytes_copied"], verification, fan_out=progress)
        executions = self._executions(plan.plan_id)
        state = executions.state(plan.plan_id)
        if state is None:
            return self._start_fan_out(shards)
        if state.status in REDRIVABLE:
            logger.warning("restore fan-out redriven", extra={"plan_id": plan.plan_id, "status": state.status})
            state = executions.redrive(plan.plan_id)
        elif state.status != RUNNING:
            missing = [number for number in range(len(shards.ranges)) if number not in results][:10]
            raise RestoreRefused(f"the fan-out of restore plan {plan.plan_id} ended {state.status} without the "
                                 f"results of shards {', '.join(map(str, missing))}: see its execution {state.arn}")
        return RestoreProgress(plan.plan_id, False, shards.safety_snapshot_id, 0, 0, 0, None,
                               fan_out={**progress, **state.to_dict()})

    def fan_outs_running(self, most: int = SHOWN_FAN_OUTS) -> list[dict[str, Any]]:
        """How far each running restore fan-out is (up to `most`), from its shards' results: for `status`. Reads
        only; empty without fan-out."""
        if self._fan_out is None:
            return []
        shown = []
        with ThreadPoolExecutor(self._concurrency) as pool:
            for plan_id, execution_input in self._fan_out[1].running(most):
                shards = read_shard_plan(self._store, str(execution_input.get("target_bucket", "")), plan_id)
                if shards is None:
                    continue
                shown.append(shards_progress(shards, read_results(self._store, shards, pool)))
        return shown

    # Changes -------------------------------------------------------------------------------------

    def _apply_changes(self, plan: RestorePlan, diff: ContentDiff, written: Written, pool: ThreadPoolExecutor,
                       remaining_ms: Callable[[], int], records: str) -> AppliedChanges:
        """Make `diff`'s changes in batches while time remains, recorded under `records`: every copy before the
        first removal (data comes back before anything goes), each kind spread over the target's prefixes (a pool's
        concurrent writes then go to several at once)."""
        copies: list[Change] = [("copy", entry) for entry in spread_over_prefixes(diff.copy, lambda want: want.key)]
        removals: list[Change] = [("remove", key) for key in spread_over_prefixes(diff.remove, str)]
        batches = [changes[start:start + BATCH_SIZE] for changes in (copies, removals)
                   for start in range(0, len(changes), BATCH_SIZE)]
        applied = AppliedChanges()
        versioning_checked = False
        for batch in batches:
            if remaining_ms() < SAFETY_MARGIN_MS:
                return applied
            if not versioning_checked and batch[0][0] == "remove":
                self._require_versioning(plan)  # checked again just before the first delete marker
                versioning_checked = True
            for _, item in self._apply_batch(plan, batch, written, pool, records):
                applied.add(item)
        applied.finished = remaining_ms() >= SAFETY_MARGIN_MS  # the verification must fit too
        return applied

    def _apply_batch(self, plan: RestorePlan, batch: list[Change], written: Written,
                     pool: ThreadPoolExecutor, records: str) -> list[Change]:
        """Run one batch concurrently; the versions copied recorded under `records` (and known to `written`) even
        when some change failed."""
        target = plan.target_bucket

        def change(item: Change) -> Applied | None:
            if item[0] == "copy":
                copied = self._copy(target, item[1])
                # None: archived or damaged at the source, left for the verification to report
                return None if copied is None else Applied((item[1].key, *copied))
            self._remove(target, item[1])
            return Applied(None)

        done = apply_recorded_batch(batch, change, pool, self._store, target, records, self._clock)
        for _, applied in done:
            if applied.written is not None:
                key, version_id, etag = applied.written
                written.setdefault(key, set()).add((version_id, etag))
        return [item for item, _ in done]

    def _copy(self, target: str, want: DesiredObject) -> tuple[str, str] | None:
        """Copy `want`'s content to its key in `target`; the (version id, ETag) written, or None when the
        source turns out to be archived, or (stored content) no longer the body the snapshot stored."""
        metadata: ReplacedMetadata | None = None
        if want.from_store:
            assert want.content_key is not None  # an entry without stored content is archived, never copied
            # Pinned to the content object the snapshot stored: its version and its ETag, where its manifest
            # recorded them.
            source = CopySource(self._store.bucket, want.content_key, want.content_version_id, want.content_etag)
            # The content object's own headers and tags where its copy brought this version's, else the
            # manifest's (a stored body is shared by every key with that content).
            if not want.described_by_content:
                metadata = ReplacedMetadata(want.metadata, want.content_type, want.headers or {}, want.tags or {})
            # The original's full-object checksum algorithm, else SHA-256: either way S3 computes one of what
            # it writes, and the verification compares it with the one recorded.
            algorithm: str | None = next(iter(recorded_checksum(want.checksum)), "SHA256")
        else:
            # A version id pins the source (a `null` one too, with its ETag); its own metadata comes along.
            source = CopySource(want.home_bucket, want.key, want.version_id, want.etag)
            algorithm = want.checksum_algorithm
        try:
            copied = self._copier.copy(source, target, want.key, want.size, metadata=metadata,
                                       checksum_algorithm=algorithm)
        except CopySourceArchived:
            logger.warning("restore source is archived; not copied", extra={"key": want.key})
            return None
        except CopySourceChanged as error:
            if want.from_store:
                logger.warning("stored content is gone or not the body the snapshot stored; not copied",
                               extra={"key": want.key, "content_key": want.content_key})
                return None
            raise RestoreSourceMissing(f"the content of {want.key} ({source}) is no longer there") from error
        return copied.version_id, copied.etag

    def _remove(self, target: str, key: str) -> None:
        # No VersionId: in a bucket with versioning Enabled this only adds a delete marker; every
        # version stays, and the safety snapshot can bring the object back.
        response = self._copier.pacer.call(key, lambda: self._s3.delete_object(Bucket=target, Key=key),
                                           sleep=self._sleep)
        if not response.get("DeleteMarker"):
            logger.warning("a removal did not answer with a delete marker", extra={"bucket": target, "key": key})
