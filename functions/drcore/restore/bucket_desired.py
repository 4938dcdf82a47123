"""The state a bucket restore brings back: a complete snapshot's, or the state at a moment between
snapshots from the newest snapshot before it and the bucket's own object versions since.

Versions are used only when the history since the snapshot is complete: versioning Enabled and no
lifecycle rule that can have expired a noncurrent version since the snapshot started. The merging itself
is pure (drcore.restore.bucket_diff.states_at); this module reads what it needs from S3, as streams in key
order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from drcore.aws.errors import error_code
from drcore.aws.job_estimates import KEYS_PER_LIST_PAGE
from drcore.backup.manifest import ManifestStream, list_snapshots, open_manifest
from drcore.backup.snapshot_checkpoints import KeyRange
from drcore.core.models import Clock, parse_time, to_iso
from drcore.restore.bucket_diff import (
    DesiredObject,
    HistoryCount,
    KeyOrderDigest,
    ListedVersion,
    states_at,
    versions_listed,
)
from drcore.restore.bucket_plan import DesiredStateChanged, NoRestorePoint, RestorePlan
from drcore.state.backup_store import BackupStore, backup_time

PAGES_AHEAD = 2  # listing pages a range's lister keeps ready for the reader
PAGE_KEYS = KEYS_PER_LIST_PAGE  # S3's most per ListObjectVersions page

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectVersionsOutputTypeDef, ListObjectVersionsRequestTypeDef


def snapshot_state(manifest: ManifestStream, prefix: str) -> Iterator[DesiredObject]:
    """A snapshot's objects under `prefix`, in key order, decoded as they are asked for."""
    bucket = manifest.bucket
    return (DesiredObject.of_entry(bucket, entry) for entry in manifest.entries() if entry.key.startswith(prefix))


class DesiredStates:
    """Reads restore points of buckets: their snapshots in `store` (a complete manifest, once opened, is kept
    compressed: it never changes) and their versions, with `s3_client`. A state is read as a stream, a key at a
    time in key order: a restore point of millions of objects is never held."""

    def __init__(self, s3_client: S3Client, store: BackupStore, clock: Clock) -> None:
        self._s3 = s3_client
        self._store = store
        self._clock = clock
        self._manifests: dict[tuple[str, str], ManifestStream] = {}

    def manifest(self, bucket: str, snapshot_id: str) -> ManifestStream:
        if (bucket, snapshot_id) not in self._manifests:
            self._manifests[(bucket, snapshot_id)] = open_manifest(self._store, bucket, snapshot_id)
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

    def history_needed(self, bucket: str, manifest: ManifestStream, moment: datetime,
                       now: datetime) -> tuple[bool, str | None]:
        """Whether the state at `moment` is read from the bucket's history since the snapshot (it is later, and the
        history can be relied on), and if it is later but cannot be, why: the state is then the snapshot's."""
        started = backup_time(manifest.backup_id)
        if moment <= started:
            return False, None
        unusable = self.history_unusable(bucket, started, now)
        if unusable:
            return False, f"object versions not used ({unusable}): the state is snapshot {manifest.backup_id}'s"
        return True, None

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

    def desired(self, plan: RestorePlan) -> Iterator[DesiredObject]:
        """The state `plan` restores, rebuilt as it was planned, in key order; DesiredStateChanged when it cannot be
        (at once, when the history can no longer be relied on; at the end of the stream, when what it rebuilt is
        not what was planned)."""
        manifest = self.manifest(plan.source_bucket, plan.snapshot_id)
        objects: Iterable[DesiredObject] = snapshot_state(manifest, plan.prefix)
        if plan.source == "versions":
            assert plan.at is not None
            moment = parse_time(plan.at)
            needed, unusable = self.history_needed(plan.source_bucket, manifest, moment, self._clock())
            if unusable:
                raise DesiredStateChanged(f"plan {plan.plan_id} restores object versions that can no longer be "
                                          f"relied on ({unusable}); plan again")
            if needed:
                keyed = states_at(plan.source_bucket, objects, self.versions(plan.source_bucket, plan.prefix), moment,
                                  HistoryCount())
                objects = (state for _, state, _ in keyed if state is not None)
        return _as_planned(objects, plan)

    def versions(self, bucket: str, prefix: str, bounds: KeyRange | None = None) -> Iterator[ListedVersion]:
        """Every version and delete marker under `prefix` in key order, a page at a time, or only those in the key
        range `bounds` (listed from its start, ListObjectVersions' KeyMarker alone, and no further than the page
        that passes its end)."""
        for page in self._pages(bucket, prefix, bounds):
            yield from page

    def versions_in_ranges(self, bucket: str, prefix: str, ranges: Sequence[KeyRange]) -> Iterator[ListedVersion]:
        """`versions`, listed in `ranges` (in key order, covering every key) at once, and yielded in key order: each
        range's lister keeps at most PAGES_AHEAD pages ready, so a bucket of N pages takes about N / len(ranges)
        round trips and never more than a few pages per range are held."""
        if len(ranges) < 2:
            yield from self.versions(bucket, prefix)
            return
        stop = threading.Event()
        ready: list[queue.Queue[list[ListedVersion] | Exception | None]] = [
            queue.Queue(PAGES_AHEAD) for _ in ranges]

        def hand_over(number: int, item: list[ListedVersion] | Exception | None) -> bool:
            while not stop.is_set():
                try:
                    ready[number].put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def list_range(number: int) -> None:
            try:
                for page in self._pages(bucket, prefix, ranges[number]):
                    if not hand_over(number, page):
                        return
                hand_over(number, None)  # the range is done
            except Exception as error:  # noqa: BLE001  # handed to the reader, which raises it
                hand_over(number, error)

        with ThreadPoolExecutor(len(ranges)) as listers:
            for number in range(len(ranges)):
                listers.submit(list_range, number)
            try:
                for pages in ready:
                    while (page := pages.get()) is not None:
                        if isinstance(page, Exception):
                            raise page
                        yield from page
            finally:
                stop.set()  # a reader that stops early (or fails) stops the listers

    def _pages(self, bucket: str, prefix: str, bounds: KeyRange | None) -> Iterator[list[ListedVersion]]:
        request: ListObjectVersionsRequestTypeDef = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": PAGE_KEYS}
        if bounds is not None and bounds.start_after:
            request["KeyMarker"] = bounds.start_after
        while True:
            page: ListObjectVersionsOutputTypeDef = self._s3.list_object_versions(**request)
            versions = list(versions_listed([page]))
            yield [version for version in versions if bounds is None or bounds.holds(version.key)]
            if not page.get("IsTruncated") or (bounds is not None and bounds.last is not None and any(
                    version.key > bounds.last for version in versions)):
                return
            request["KeyMarker"], request["VersionIdMarker"] = page["NextKeyMarker"], page["NextVersionIdMarker"]

    def list_versions(self, bucket: str, prefix: str, bounds: KeyRange | None = None) -> list[ListedVersion]:
        """`versions`, held."""
        return list(self.versions(bucket, prefix, bounds))


def _as_planned(objects: Iterable[DesiredObject], plan: RestorePlan) -> Iterator[DesiredObject]:
    """`objects`, checked as they go against the digest `plan` recorded of them (DesiredStateChanged at the end)."""
    hashed = KeyOrderDigest()
    for want in objects:
        hashed.add(want.identity())
        yield want
    if hashed.hexdigest() != plan.desired_digest:
        raise DesiredStateChanged(f"the state plan {plan.plan_id} restores has changed since it was planned "
                                  "(versions removed or expired); plan again")
