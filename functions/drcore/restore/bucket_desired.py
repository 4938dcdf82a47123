"""The state a bucket restore brings back: a complete snapshot's, or the state at a moment between
snapshots from the newest snapshot before it and the bucket's own object versions since.

Versions are used only when the history since the snapshot is complete: versioning Enabled and no
lifecycle rule that can have expired a noncurrent version since the snapshot started. The merging itself
is pure (drcore.restore.bucket_diff.state_at); this module reads what it needs from S3.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from drcore.aws.errors import error_code
from drcore.backup.manifest import SnapshotManifest, list_snapshots, read_manifest
from drcore.backup.snapshot_checkpoints import KeyRange
from drcore.core.models import Clock, parse_time, to_iso
from drcore.restore.bucket_diff import (
    DesiredObject,
    ListedVersion,
    desired_digest,
    desired_from_snapshot,
    listed_versions,
)
from drcore.restore.bucket_diff import state_at as desired_state_at
from drcore.restore.bucket_plan import DesiredStateChanged, NoRestorePoint, RestorePlan
from drcore.state.backup_store import BackupStore, backup_time

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectVersionsRequestTypeDef


class DesiredStates:
    """Reads restore points of buckets: their snapshots in `store` (complete manifests are cached: they
    never change) and their versions, with `s3_client`."""

    def __init__(self, s3_client: S3Client, store: BackupStore, clock: Clock) -> None:
        self._s3 = s3_client
        self._store = store
        self._clock = clock
        self._manifests: dict[tuple[str, str], SnapshotManifest] = {}

    def manifest(self, bucket: str, snapshot_id: str) -> SnapshotManifest:
        if (bucket, snapshot_id) not in self._manifests:
            self._manifests[(bucket, snapshot_id)] = read_manifest(self._store, bucket, snapshot_id)
        return self._manifests[(bucket, snapshot_id)]

    def snapshot_at(self, bucket: str, moment: datetime) -> str:
        """The newest complete snapshot started at or before `moment` (an unfinished one is never listed)."""
        complete = list_snapshots(self._store, bucket)
        eligible = [listing for listing in complete if listing.created_at <= moment]
        if eligible:
            return eligible[-1].backup_id
        if complete:
            oldest = complete[0]
            raise NoRestorePoint(f"no complete snapshot of {bucket} at or before {to_iso(moment)}; the oldest is "
                                 f"{oldest.backup_id} ({to_iso(oldest.created_at)})")
        raise NoRestorePoint(f"bucket {bucket} has no complete snapshot to restore from")

    def state_at(self, bucket: str, manifest: SnapshotManifest, moment: datetime, prefix: str, now: datetime,
                 listing: Callable[[str], list[ListedVersion]]) -> tuple[dict[str, DesiredObject], int, str | None]:
        """The state at `moment` (drcore.restore.bucket_diff.state_at) when the bucket's history since the
        snapshot can be relied on, else the snapshot's. Returns it, how many keys the history changed,
        and why the history was not used if it was not."""
        snapshot = desired_from_snapshot(manifest, prefix)
        started = backup_time(manifest.backup_id)
        if moment <= started:
            return snapshot, 0, None
        unusable = self.history_unusable(bucket, started, now)
        if unusable:
            return snapshot, 0, f"object versions not used ({unusable}): the state is snapshot {manifest.backup_id}'s"
        state, changed = desired_state_at(bucket, snapshot, listing(bucket), moment)
        return state, changed, None

    def history_unusable(self, bucket: str, since: datetime, now: datetime) -> str | None:
        """Why the bucket's version history since `since` may be incomplete, or None if it is complete."""
        try:
            versioning = self._s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        except ClientError as error:
            return f"versioning of {bucket} unreadable: {error_code(error)}"
        if versioning != "Enabled":
            return f"versioning of {bucket} is {versioning}"
        try:
            rules = self._s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as error:
            if error_code(error) != "NoSuchLifecycleConfiguration":
                return f"lifecycle of {bucket} unreadable: {error_code(error)}"
            rules = []
        for rule in rules:
            expiry = rule.get("NoncurrentVersionExpiration")
            if rule.get("Status") == "Enabled" and expiry \
                    and now - since >= timedelta(days=expiry.get("NoncurrentDays", 0)):
                return f"lifecycle rule {rule.get('ID', '')!r} expires noncurrent versions"
        return None

    def desired(self, plan: RestorePlan) -> dict[str, DesiredObject]:
        """The state `plan` restores, rebuilt as it was planned (DesiredStateChanged when it cannot be)."""
        manifest = self.manifest(plan.source_bucket, plan.snapshot_id)
        if plan.source == "versions":
            assert plan.at is not None
            history = self.list_versions(plan.source_bucket, plan.prefix)
            desired, _, unusable = self.state_at(plan.source_bucket, manifest, parse_time(plan.at), plan.prefix,
                                                 self._clock(), lambda _: history)
            if unusable:
                raise DesiredStateChanged(f"plan {plan.plan_id} restores object versions that can no longer be "
                                          f"relied on ({unusable}); plan again")
        else:
            desired = desired_from_snapshot(manifest, plan.prefix)
        if desired_digest(desired) != plan.desired_digest:
            raise DesiredStateChanged(f"the state plan {plan.plan_id} restores has changed since it was planned "
                                      "(versions removed or expired); plan again")
        return desired

    def list_versions(self, bucket: str, prefix: str, bounds: KeyRange | None = None) -> list[ListedVersion]:
        """Every version and delete marker under `prefix`, or only those in the key range `bounds` (listed from
        its start, ListObjectVersions' KeyMarker alone, and no further than the page that passes its end)."""
        if bounds is None:
            return listed_versions(self._s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                                        Prefix=prefix))
        listed: list[ListedVersion] = []
        request: ListObjectVersionsRequestTypeDef = {"Bucket": bucket, "Prefix": prefix}
        if bounds.start_after:
            request["KeyMarker"] = bounds.start_after
        while True:
            page = self._s3.list_object_versions(**request)
            versions = listed_versions([page])
            listed += [version for version in versions if bounds.holds(version.key)]
            if not page.get("IsTruncated") or (bounds.last is not None and any(
                    version.key > bounds.last for version in versions)):
                break
            request["KeyMarker"], request["VersionIdMarker"] = page["NextKeyMarker"], page["NextVersionIdMarker"]
        return listed
