"""Failback's copy-back: what the replica wrote during a failover, copied back into the primary bucket by
content, after a safety snapshot, and verified by reading the primary back.

Never the replica copied over the primary wholesale (the runbook's recover-s3-replica.sh): only the keys the
replica itself wrote after the failover time (drcore.region.divergence_diff), each as the replica's newest
own write of it.

**Plan.** Lists both buckets' versions (each with its own region's client), asks the replica's versions after
the failover time for their replication status, and compares each wanted version with the primary's current
one by content and headers, with the bucket restore's comparison (drcore.restore.bucket_diff `content_diff`,
drcore.restore.bucket_verification): a key the primary already holds as wanted is not a change. What is left
is counted by kind (created, changed, metadata, deleted); a key the primary changed after the failover time
too, unseen by the replica's write, is a conflict (divergence_diff.conflicts). Every change is written once to
the backup store (`restores/s3/<primary>/<plan id>/changes.json.gz`); the plan names the first few.

**Conflicts** are refused (`ConflictsUnresolved`) unless the plan says who wins: `prefer: "secondary"` copies
the replica's write over the primary's, `prefer: "primary"` leaves those keys as the primary holds them.

**Apply.** A safety snapshot of the whole primary bucket first (the backup engine's snapshot, continued by id
over invocations, its id recorded before it begins, as restores take theirs: drcore.restore.applied_records).
Then a key the plan copies that the primary has changed since the plan was made, without being a planned
conflict, refuses the apply (`PrimaryChanged`). Then it lists the primary, recomputes which planned keys still
differ and changes only those, in batches while time remains: copies by S3Copier (drcore.aws.s3_copy; the
request goes to the primary's region, the source is pinned to the replica's version id and ETag, its headers
come along), deletions as delete markers (DeleteObject without a version id). What still differs is decided by
content each time, so a resumed apply copies only what is missing; the versions written are recorded after
each batch (under the failback's first plan, `records_id`), so that the failback's own writes are never taken
for the primary's changes (conflicts) by its later plans.

**Verify.** Every planned key read back from the primary: a copied key's current version must be proven to
hold the replica version's body and headers (HeadObject of both, the body read where those cannot tell); a
deleted key must have no current version. What the apply wrote is never counted as done.

Undo: restore the primary bucket from the safety snapshot (restore_s3).
"""

from __future__ import annotations

import gzip
import json
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import OBJECT_NOT_FOUND, error_code, retrying
from drcore.aws.s3_copy import ARCHIVE_STORAGE_CLASSES, CopySource, CopySourceArchived, S3Copier
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, parse_time, to_iso, utc_now
from drcore.region.divergence_diff import conflicts, kind_of, primary_changed, replica_writes, status_needed
from drcore.region.divergence_plan import (
    CHANGES_FORMAT,
    PREFERENCES,
    ConflictsUnresolved,
    DivergedKey,
    FailbackCopyPlan,
    FailbackCopyProgress,
    FailbackVerification,
    PrimaryChanged,
)
from drcore.restore.applied_records import Applied, apply_recorded_batch, read_written, safety_snapshot_of
from drcore.restore.bucket_diff import DesiredObject, ListedVersion, content_diff, current_of, listed_versions
from drcore.restore.bucket_verification import RestoreVerifier
from drcore.state.backup_store import BackupStore, restore_changes_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from drcore.backup.bucket_snapshots import BucketSnapshotter

logger = Logger(child=True)

LISTED_KEYS = 50  # keys of each kind named in the plan itself; every change in its changes object
BATCH_SIZE = 256  # changes between two records and two looks at the remaining time
SAFETY_MARGIN_MS = 30_000  # a batch of copies and its record must fit in what is left
REPLICA = "REPLICA"


def desired_of(replica_bucket: str, change: DivergedKey) -> DesiredObject:
    """The replica's version a change copies, as the bucket restore's comparison takes it."""
    return DesiredObject(key=change.key, version_id=change.version_id, etag=change.etag, size=change.size,
                         home_bucket=replica_bucket, from_store=False, content_key=None,
                         archived=change.storage_class in ARCHIVE_STORAGE_CLASSES,
                         checksum_algorithm=change.checksum_algorithm)


class ReplicaDivergence:
    """Plans, applies and verifies failback copies. `primary_s3` is a client of the primary bucket's region
    (it lists, snapshots and writes the primary; copies are its requests, reading the replica), `secondary_s3`
    one of the replica's region (it lists and reads the replica). `snapshots_of(bucket)` builds the
    snapshotter that takes the safety snapshot; `store` keeps the plan's changes and records."""

    def __init__(self, primary_s3: S3Client, secondary_s3: S3Client, store: BackupStore, *,
                 snapshots_of: Callable[[str], BucketSnapshotter], concurrency: int = 16, clock: Clock = utc_now,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._primary = primary_s3
        self._secondary = secondary_s3
        self._store = store
        self._snapshots_of = snapshots_of
        self._concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._copier = S3Copier(primary_s3, concurrency=concurrency, sleep=sleep)
        self._verifier = RestoreVerifier(primary_s3, store, concurrency=concurrency, sleep=sleep,
                                         source_client=secondary_s3)

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, primary_bucket: str, replica_bucket: str, since: datetime, *, prefer: str | None = None,
             records_id: str | None = None, until: datetime | None = None,
             leave: frozenset[str] = frozenset()) -> FailbackCopyPlan:
        """What the replica wrote since `since` (up to `until`, when given) that the primary does not hold.
        `records_id`: an earlier plan of the same failback (a catch-up), whose safety snapshot and writes this
        plan shares. `leave`: replica versions ("key#version id") left out (for a later sweep)."""
        if prefer is not None and prefer not in PREFERENCES:
            raise InvalidRequest(f"prefer must be one of {', '.join(PREFERENCES)} (got {prefer!r})")
        plan_id = f"fb-{secrets.token_hex(5)}"
        records_id = records_id or plan_id
        replica_listing = self._list(self._secondary, replica_bucket)
        primary_listing = self._list(self._primary, primary_bucket)
        current = current_of(primary_listing)
        with ThreadPoolExecutor(self._concurrency) as pool:
            own = self._replica_own(replica_bucket, status_needed(replica_listing, since), pool)
            wanted = {key: item for key, item in replica_writes(replica_listing, own, primary_listing, since,
                                                                until).items()
                      if f"{key}#{item.version_id}" not in leave}
            copies = {key: desired_of(replica_bucket, self._change(item, "created")) for key, item in wanted.items()
                      if not item.delete_marker}
            diff = content_diff(copies, current, primary_bucket, {}, self._same_objects(primary_bucket, pool))
        differing = {item.key for item in diff.copy} | set(diff.archived)
        differing |= {key for key, item in wanted.items() if item.delete_marker and key in current}
        both = conflicts(wanted, primary_listing, replica_listing, since,
                         read_written(self._store, primary_bucket, records_id))
        changes = [self._change(wanted[key], kind_of(wanted[key], current), conflict=key in both)
                   for key in sorted(differing)]
        conflicting = [change for change in changes if change.conflict]
        applied = [change for change in changes if not (change.conflict and prefer == "primary")]
        changes_key = None
        if changes:
            changes_key = restore_changes_key(primary_bucket, plan_id)
            document = {"format": CHANGES_FORMAT, "changes": [change.to_row() for change in applied]}
            self._store.put_once(changes_key, gzip.compress(json.dumps(document).encode(), mtime=0),
                                 "application/json", ContentEncoding="gzip")
        copy_back = [change for change in applied if not change.is_delete]
        plan = FailbackCopyPlan(
            plan_id=plan_id, records_id=records_id, created_at=to_iso(self._clock()), primary_bucket=primary_bucket,
            replica_bucket=replica_bucket, since=to_iso(since), prefer=prefer,
            created=sum(change.kind == "created" for change in changes),
            changed=sum(change.kind == "changed" for change in changes),
            metadata=sum(change.kind == "metadata" for change in changes),
            deleted=sum(change.kind == "deleted" for change in changes), conflicts=len(conflicting),
            kept_primary=len(changes) - len(applied), to_copy=len(copy_back), to_delete=len(applied) - len(copy_back),
            bytes_to_copy=sum(change.size for change in copy_back),
            copy_keys=tuple(change.key for change in copy_back[:LISTED_KEYS]),
            delete_keys=tuple(change.key for change in applied if change.is_delete)[:LISTED_KEYS],
            conflict_keys=tuple(change.key for change in conflicting[:LISTED_KEYS]), changes_key=changes_key)
        logger.info("failback copy planned", extra={
            "plan_id": plan_id, "primary": primary_bucket, "replica": replica_bucket, "since": plan.since,
            "to_copy": plan.to_copy, "to_delete": plan.to_delete, "conflicts": plan.conflicts, "prefer": prefer})
        return plan

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: FailbackCopyPlan, remaining_ms: Callable[[], int]) -> FailbackCopyProgress:
        blocked = plan.blocked
        if blocked:
            raise ConflictsUnresolved(blocked)
        changes = self.changes(plan)
        if not changes:  # nothing to change: no safety snapshot to take
            return FailbackCopyProgress(plan.plan_id, True, None, 0, 0, 0,
                                        verification=FailbackVerification(expected=0, matching=0))
        safety_id = safety_snapshot_of(self._store, plan.primary_bucket, plan.records_id, self._clock())
        safety = self._snapshots_of(plan.primary_bucket).snapshot(safety_id, remaining_ms)
        if not safety.finished:
            logger.info("failback copy waits for its safety snapshot", extra={"plan_id": plan.plan_id,
                                                                              "safety_snapshot_id": safety_id})
            return FailbackCopyProgress(plan.plan_id, False, safety.backup_id, 0, 0, 0)
        primary_listing = self._list(self._primary, plan.primary_bucket)
        self._require_no_new_conflicts(plan, changes, primary_listing)
        current = current_of(primary_listing)
        copied = deleted = bytes_copied = 0
        with ThreadPoolExecutor(self._concurrency) as pool:
            copies = {change.key: desired_of(plan.replica_bucket, change) for change in changes if not change.is_delete}
            # By content, not by the records: a key a catch-up plan copies again may hold an earlier copy.
            diff = content_diff(copies, current, plan.primary_bucket, {}, self._same_objects(plan.primary_bucket, pool))
            pending: list[DivergedKey | DesiredObject] = [*diff.copy]
            pending += [change for change in changes if change.is_delete and change.key in current]
            for start in range(0, len(pending), BATCH_SIZE):
                if remaining_ms() < SAFETY_MARGIN_MS:
                    logger.info("failback copy paused", extra={"plan_id": plan.plan_id, "copied": copied,
                                                               "deleted": deleted})
                    return FailbackCopyProgress(plan.plan_id, False, safety.backup_id, copied, deleted, bytes_copied,
                                                tuple(diff.archived))
                done = self._apply_batch(plan, pending[start:start + BATCH_SIZE], pool)
                copied += sum(isinstance(item, DesiredObject) for item in done)
                deleted += sum(isinstance(item, DivergedKey) for item in done)
                bytes_copied += sum(item.size for item in done if isinstance(item, DesiredObject))
            if remaining_ms() < SAFETY_MARGIN_MS:
                return FailbackCopyProgress(plan.plan_id, False, safety.backup_id, copied, deleted, bytes_copied,
                                            tuple(diff.archived))
            verification = self._verify(plan, changes, pool)
        logger.info("failback copy applied", extra={
            "plan_id": plan.plan_id, "safety_snapshot_id": safety.backup_id, "copied": copied, "deleted": deleted,
            "verified": verification.ok, "mismatched": verification.mismatched})
        return FailbackCopyProgress(plan.plan_id, True, safety.backup_id, copied, deleted, bytes_copied,
                                    tuple(diff.archived), verification)

    def verify(self, plan: FailbackCopyPlan) -> FailbackVerification:
        with ThreadPoolExecutor(self._concurrency) as pool:
            return self._verify(plan, self.changes(plan), pool)

    def changes(self, plan: FailbackCopyPlan) -> list[DivergedKey]:
        """Every change the plan makes (conflicts left to the primary excluded), as it was planned."""
        if plan.changes_key is None:
            return []
        document = json.loads(gzip.decompress(self._store.get_bytes(plan.changes_key)))
        if document.get("format") != CHANGES_FORMAT:
            raise InvalidRequest(f"{plan.changes_key} is not a {CHANGES_FORMAT} document")
        return [DivergedKey.from_row(row) for row in document["changes"]]

    # Reading the buckets ---------------------------------------------------------------------------

    def _list(self, client: S3Client, bucket: str) -> list[ListedVersion]:
        return listed_versions(client.get_paginator("list_object_versions").paginate(Bucket=bucket))

    def _replica_own(self, replica_bucket: str, versions: list[ListedVersion],
                     pool: ThreadPoolExecutor) -> set[tuple[str, str]]:
        """The (key, version id) of those replica versions that are not replicas: written in the secondary."""
        def status(item: ListedVersion) -> str | None:
            try:
                head = retrying(lambda: self._secondary.head_object(Bucket=replica_bucket, Key=item.key,
                                                                    VersionId=item.version_id), sleep=self._sleep)
            except ClientError as error:
                if error_code(error) in OBJECT_NOT_FOUND:
                    return REPLICA  # gone since it was listed: nothing of it to copy back
                raise
            return head.get("ReplicationStatus")

        return {(item.key, item.version_id) for item, found in zip(versions, pool.map(status, versions), strict=True)
                if found != REPLICA}

    def _same_objects(self, primary_bucket: str, pool: ThreadPoolExecutor,
                      ) -> Callable[[list[tuple[DesiredObject, ListedVersion]]], Iterable[bool]]:
        return lambda pairs: self._verifier.same_objects(primary_bucket, pairs, pool)

    @staticmethod
    def _change(item: ListedVersion, kind: str, *, conflict: bool = False) -> DivergedKey:
        return DivergedKey.from_row({"key": item.key, "kind": kind, "version_id": item.version_id, "etag": item.etag,
                                     "size": item.size, "storage_class": item.storage_class or "STANDARD",
                                     "checksum_algorithm": item.checksum_algorithm, "conflict": conflict})

    def _require_no_new_conflicts(self, plan: FailbackCopyPlan, changes: list[DivergedKey],
                                  primary_listing: list[ListedVersion]) -> None:
        """A key the plan copies that the primary changed since the plan (not a conflict it resolved) refuses."""
        # What this failback's plans wrote into the primary is no change of the primary's own. Listing times
        # have one-second resolution: a write in the plan's second counts as after it.
        own = read_written(self._store, plan.primary_bucket, plan.records_id)
        changed = primary_changed(primary_listing, parse_time(plan.created_at).replace(microsecond=0)
                                  - timedelta(microseconds=1), own)
        new = sorted(change.key for change in changes if change.key in changed and not change.conflict)
        if new:
            raise PrimaryChanged(f"the primary changed {len(new)} keys plan {plan.plan_id} copies back since it was "
                                 f"made (such as {', '.join(new[:3])}); plan again")

    # Changes -------------------------------------------------------------------------------------

    def _apply_batch(self, plan: FailbackCopyPlan, batch: list[DivergedKey | DesiredObject],
                     pool: ThreadPoolExecutor) -> list[DivergedKey | DesiredObject]:
        """One batch concurrently, recorded under the failback's records: its later plans know these for its own
        writes."""
        done = apply_recorded_batch(batch, lambda item: self._change_one(plan, item), pool, self._store,
                                    plan.primary_bucket, plan.records_id, self._clock)
        return [item for item, _ in done]

    def _change_one(self, plan: FailbackCopyPlan, item: DivergedKey | DesiredObject) -> Applied | None:
        """Copy a replica version, or add a delete marker; the version written in the primary (None: not copied)."""
        if isinstance(item, DivergedKey):
            # No VersionId: only a delete marker; every version stays, and the safety snapshot has the object.
            answer = retrying(lambda: self._primary.delete_object(Bucket=plan.primary_bucket, Key=item.key),
                              sleep=self._sleep)
            return Applied((item.key, answer.get("VersionId", "null"), ""))
        try:
            copied = self._copier.copy(CopySource(plan.replica_bucket, item.key, item.version_id, item.etag),
                                       plan.primary_bucket, item.key, item.size,
                                       checksum_algorithm=item.checksum_algorithm)
        except CopySourceArchived:
            logger.warning("failback source is archived; not copied", extra={"key": item.key})
            return None
        return Applied((item.key, copied.version_id, copied.etag))

    # Verify --------------------------------------------------------------------------------------

    def _verify(self, plan: FailbackCopyPlan, changes: list[DivergedKey], pool: ThreadPoolExecutor,
                ) -> FailbackVerification:
        current = current_of(self._list(self._primary, plan.primary_bucket))
        to_read = [change for change in changes if not change.is_delete and change.key in current]

        def matches(change: DivergedKey) -> bool:
            return self._verifier.matches(plan.primary_bucket, desired_of(plan.replica_bucket, change),
                                          current[change.key])

        proven = dict(zip((change.key for change in to_read), pool.map(matches, to_read), strict=True))
        mismatched = sorted(change.key for change in changes
                            if ((change.key in current) if change.is_delete else not proven.get(change.key, False)))
        verification = FailbackVerification(expected=len(changes), matching=len(changes) - len(mismatched),
                                            mismatched_keys=tuple(mismatched[:LISTED_KEYS]), read_back=len(to_read))
        if not verification.ok:
            logger.warning("failback copy verification found differences", extra={
                "plan_id": plan.plan_id, "mismatched": verification.mismatched, "mismatched_keys": mismatched[:10]})
        return verification
