"""The post-recovery checks of the data (drcore.restore.validation): which bucket processes uploads, whether the
newest backups are within their RPO, and whether the active region's bucket holds what the newest snapshot says.

**Which bucket processes.** The data bucket is in the primary region, the replica in the secondary. A bucket
processes uploads exactly when its notification configuration has a `LambdaFunctionConfigurations` entry whose
target is that region's LIVE alias of the protected function (`arn:aws:lambda:<region>:<account>:function:<fn>:LIVE`,
the account not compared: S3 notifies functions of its own region). The active region's bucket must, every other
must not. A bucket that cannot be read leaves the check `unknown`: a region that is down may still process the
moment it returns, so its silence is not taken as "not processing".

**Data against the newest snapshot.** A random sample of the newest complete snapshot's keys (`sample_size`),
each looked up in the active region's bucket by one listing of its newest version or delete marker
(ListObjectVersions with the key as prefix and one key: a key sorts before every longer key it prefixes, and its
newest version first). Decided per key:

- the newest is the version the manifest recorded, or another version not newer than the snapshot: it must be
  proven to hold the manifest's content and headers (ETag or checksum, content type, user metadata, ...; read and
  hashed when the headers cannot decide), drcore.restore.bucket_verification's comparison;
- the newest (a version or a delete marker) is newer than the snapshot's start: the object changed since, as the
  pipeline changes it. An expected difference, counted and named, never a failure: the snapshot is a point in
  time, not the bucket's contract (an object that must not change is a retention question, not a backup one);
- no version at all, or a delete marker older than the snapshot: the object is gone in a way no later change
  explains (a version deleted for good). A failure, as is a version that does not hold the manifest's content.

In the secondary region the replica is compared with the same manifest: replication keeps the key, the version
id, the content and the headers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drcore.backup.catalog import BackupCatalog
from drcore.backup.manifest import ManifestCorrupt, ManifestEntry, open_manifest
from drcore.core.sampling import StreamSample
from drcore.restore.bucket_diff import DesiredObject, ListedVersion, listed_versions
from drcore.restore.bucket_verification import RestoreVerifier
from drcore.restore.validation import FAILED, OK, UNKNOWN, CheckResult
from drcore.state.backup_store import BackupStore, Component, backup_time

DEFAULT_SAMPLE_SIZE = 50
SAMPLE_CONCURRENCY = 8
NAMED_AT_MOST = 20  # keys named per finding; the counts are always whole


def processes(configuration: dict[str, Any], region: str, function_name: str, alias: str) -> bool:
    """Whether a bucket's notification configuration sends uploads to `region`'s LIVE alias."""
    for entry in configuration.get("LambdaFunctionConfigurations", []):
        parts = str(entry.get("LambdaFunctionArn", "")).split(":")
        # arn:aws:lambda:<region>:<account>:function:<name>:<qualifier>
        if len(parts) == 8 and parts[2] == "lambda" and parts[3] == region and parts[5] == "function" \
                and parts[6] == function_name and parts[7] == alias:
            return True
    return False


class EventProcessingCheck:
    """The pipeline's notification reaches LIVE in the active region only."""

    name = "event_processing"

    def __init__(self, s3_in: Callable[[str], Any], buckets: dict[str, str], function_name: str, alias: str) -> None:
        self._s3_in = s3_in
        self._buckets = buckets  # region -> the bucket that feeds the pipeline there
        self._function = function_name
        self._alias = alias

    def run(self, active_region: str) -> CheckResult:
        if active_region not in self._buckets:
            return CheckResult(self.name, UNKNOWN, f"no bucket is known for region {active_region}; known: "
                               f"{', '.join(f'{region}: {bucket}' for region, bucket in self._buckets.items())}")
        seen: dict[str, Any] = {}
        for region, bucket in self._buckets.items():
            try:
                configuration = self._s3_in(region).get_bucket_notification_configuration(Bucket=bucket)
                seen[region] = processes(configuration, region, self._function, self._alias)
            except Exception as error:  # noqa: BLE001  # a region that is down is reported, not raised
                seen[region] = f"unreadable: {type(error).__name__}: {error}"[:300]
        facts = {"active_region": active_region,
                 "buckets": {region: {"bucket": self._buckets[region], "processes": answer}
                             for region, answer in seen.items()}}
        active, others = seen[active_region], {region: seen[region] for region in seen if region != active_region}
        problems = []
        if active is False:
            problems.append(f"{self._buckets[active_region]} ({active_region}) does not notify {self._alias}: "
                            "uploads are not processed")
        problems += [f"{self._buckets[region]} ({region}) also notifies its {self._alias}: uploads are processed "
                     "twice" for region, answer in others.items() if answer is True]
        if problems:
            return CheckResult(self.name, FAILED, "; ".join(problems), facts)
        unreadable = [f"{self._buckets[region]} ({region}) {answer}" for region, answer in seen.items()
                      if isinstance(answer, str)]
        if unreadable:
            return CheckResult(self.name, UNKNOWN, f"cannot tell which buckets process: {'; '.join(unreadable)}",
                               facts)
        return CheckResult(self.name, OK, f"only {self._buckets[active_region]} ({active_region}) notifies "
                           f"{self._alias}", facts)


class BackupsWithinRpoCheck:
    """The newest complete backup of each component is within that component's RPO."""

    name = "backups_within_rpo"

    def __init__(self, catalog: BackupCatalog) -> None:
        self._catalog = catalog

    def run(self, active_region: str) -> CheckResult:
        latest = self._catalog.latest()
        stale = {component: summary for component, summary in latest.items() if not summary["within_rpo"]}
        facts = {"backups": latest}
        if stale:
            return CheckResult(self.name, FAILED, "; ".join(
                f"{component}: " + ("no complete backup" if summary["backup_id"] is None else
                                    f"newest {summary['backup_id']} is {summary['age_seconds']}s old, RPO "
                                    f"{summary['rpo_seconds']}s") for component, summary in stale.items())
                + ' (back up now: invoke the backup function with {"component": "<component>"})', facts)
        return CheckResult(self.name, OK, "the newest backup of every component is within its RPO", facts)


class DataSampleCheck:
    """A sample of the newest snapshot's objects, read back from the active region's bucket."""

    name = "data_integrity"

    def __init__(self, catalog: BackupCatalog, store: BackupStore, s3_in: Callable[[str], Any],
                 verifier_in: Callable[[str], RestoreVerifier], buckets: dict[str, str], data_bucket: str,
                 sample_size: int = DEFAULT_SAMPLE_SIZE, choose: random.Random | None = None) -> None:
        self._catalog = catalog
        self._store = store
        self._s3_in = s3_in
        self._verifier_in = verifier_in
        self._buckets = buckets
        self._data_bucket = data_bucket
        self._sample_size = sample_size
        self._choose = choose or random.SystemRandom()

    def run(self, active_region: str) -> CheckResult:
        target = self._buckets.get(active_region)
        if target is None:
            return CheckResult(self.name, UNKNOWN, f"no bucket is known for region {active_region}")
        complete = [listing for listing in self._catalog.listings(Component.S3) if listing.complete]
        if not complete:
            return CheckResult(self.name, UNKNOWN, f"{self._data_bucket} has no complete snapshot to verify against")
        snapshot_id = complete[-1].backup_id
        # Gone through a line at a time, holding only the sample: a snapshot of millions of objects is never held.
        sample: StreamSample[ManifestEntry] = StreamSample(self._sample_size, self._choose)
        try:
            manifest = open_manifest(self._store, self._data_bucket, snapshot_id)
            for entry in manifest.entries():
                sample.offer(entry.key, entry)
        except ManifestCorrupt as error:
            return CheckResult(self.name, FAILED, f"the newest snapshot {snapshot_id} is damaged: {error}",
                               {"snapshot_id": snapshot_id})
        desired = {key: DesiredObject.of_entry(manifest.bucket, entry) for key, entry in sample.chosen().items()}
        keys = list(desired)
        started = backup_time(snapshot_id)
        s3, verifier = self._s3_in(active_region), self._verifier_in(active_region)

        def judge(key: str) -> str:
            newest = _newest_of(s3, target, key)
            if newest is not None and newest.last_modified > started:
                return "changed_since"
            if newest is None or newest.delete_marker:
                return "lost"
            return "matching" if verifier.matches(target, desired[key], newest) else "different"

        with ThreadPoolExecutor(max_workers=SAMPLE_CONCURRENCY, thread_name_prefix="validate-data") as pool:
            verdicts = dict(zip(keys, pool.map(judge, keys), strict=True))
        named = {kind: sorted(key for key, verdict in verdicts.items() if verdict == kind)
                 for kind in ("matching", "changed_since", "lost", "different")}
        facts = {"bucket": target, "region": active_region, "snapshot_id": snapshot_id,
                 "snapshot_objects": manifest.objects, "sampled": len(keys),
                 **{kind: len(found) for kind, found in named.items()},
                 "changed_since_keys": named["changed_since"][:NAMED_AT_MOST],
                 "lost_keys": named["lost"][:NAMED_AT_MOST], "different_keys": named["different"][:NAMED_AT_MOST]}
        if named["lost"] or named["different"]:
            return CheckResult(self.name, FAILED, f"{len(named['lost'])} sampled objects of snapshot {snapshot_id} are "
                               f"gone and {len(named['different'])} differ from it without a later change; restore "
                               f'them: {{"action": "restore_s3", "snapshot_id": "{snapshot_id}", ...}}', facts)
        return CheckResult(self.name, OK, f"{len(named['matching'])} of {len(keys)} sampled objects match snapshot "
                           f"{snapshot_id}; {len(named['changed_since'])} changed since it (expected)", facts)


def _newest_of(s3: Any, bucket: str, key: str) -> ListedVersion | None:
    """The newest version or delete marker of exactly `key`, or None when it has none."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=key, MaxKeys=1)
    found = [item for item in listed_versions([page]) if item.key == key]
    latest = [item for item in found if item.is_latest] or found
    return latest[0] if latest else None

