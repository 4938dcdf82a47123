"""A first snapshot's census: how many keys the data bucket holds, and where to cut it into shards.

A snapshot with a base knows from the base how the bucket's keys spread, and cuts its shards there
(drcore.backup.snapshot_shards). A first snapshot has no base. Where the fan-out is configured, it counts
the bucket's keys before it lists versions or copies anything: ListObjectsV2, a page of key names at a
time, from the key after the last one counted. It keeps the count and every `shard_objects`-th key, the
cuts. This costs a LIST per 1,000 keys (10,000 pages at 10 million keys, some 50 minutes at 0.3 s a page)
and no copy, and it is held to one page after another: nothing says where to split it before it is done.

The census checkpoints before its first page (so a schedule that comes meanwhile finds the snapshot counting,
however little it has counted), every `CENSUS_CHECKPOINT_PAGES` pages (at most that many are counted again after
an invocation dies), when time runs low and when it is done. Checkpoints are `snapshots/s3/<bucket>/<backup
id>/census/<page>.json` (write-once, each with the count, the cuts so far and the key to go on after), and an
invocation given the snapshot's id goes on from the last one. A done census decides the snapshot's way: past
`threshold_objects` keys it fans out into shards cut at the cuts, none with a base (each copies what it lists);
otherwise it runs as any snapshot does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from drcore.aws.job_estimates import CENSUS_CHECKPOINT_PAGES
from drcore.backup.snapshot_checkpoints import KeyRange, ranges_cut_at
from drcore.core.errors import ConcurrentUpdate
from drcore.state.backup_store import AlreadyWritten, BackupStore, Component, backup_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2RequestTypeDef

logger = Logger(child=True)

CENSUS = "census/"


@dataclass(frozen=True)
class Census:
    objects: int = 0  # keys counted so far
    cuts: tuple[str, ...] = ()  # every `shard_objects`-th key counted
    after: str | None = None  # the last key counted: the count goes on after it
    pages: int = 0
    done: bool = False

    def ranges(self) -> tuple[KeyRange, ...]:
        """The shards' key ranges: up to each cut, the last one open-ended. A cut on the bucket's last key would
        leave the last range empty of keys counted, so it is not one."""
        cuts = list(self.cuts)
        if self.done and cuts and cuts[-1] == self.after:
            cuts.pop()
        return ranges_cut_at(cuts)

    def progress(self) -> dict[str, Any]:
        return {"objects_counted": self.objects, "pages": self.pages, "done": self.done}


def census_key(bucket: str, backup_id: str, pages: int) -> str:
    return backup_prefix(Component.S3, bucket, backup_id) + f"{CENSUS}{pages:06d}.json"


def read_census(store: BackupStore, bucket: str, backup_id: str) -> Census | None:
    """The snapshot's census as its last checkpoint left it, or None before its first."""
    keys = sorted(entry["Key"] for entry in store.keys(backup_prefix(Component.S3, bucket, backup_id) + CENSUS))
    if not keys:
        return None
    document = store.get_json(keys[-1])
    return Census(document["objects"], tuple(document["cuts"]), document["after"], document["pages"],
                  document["done"])


class BucketCensus:
    """Counts `bucket`'s keys with `s3_client` (s3:ListBucket), checkpointing into `store`."""

    def __init__(self, s3_client: S3Client, store: BackupStore, bucket: str, *, page_size: int = 1000) -> None:
        self._s3 = s3_client
        self._store = store
        self._bucket = bucket
        self._page_size = page_size

    def count(self, backup_id: str, shard_objects: int, time_left: Callable[[], bool]) -> Census:
        """Go on with the snapshot's census from its last checkpoint until it is done or `time_left` says no."""
        stored = read_census(self._store, self._bucket, backup_id)
        census = stored or Census()
        if stored is None:  # the snapshot is known to be counting before its first page: a schedule meanwhile finds it
            self._checkpoint(backup_id, census)
        started = checkpointed = census.pages
        while not census.done and time_left():
            census = self._count_page(census, shard_objects)
            if census.done or census.pages % CENSUS_CHECKPOINT_PAGES == 0:
                checkpointed = self._checkpoint(backup_id, census)
        if census.pages != checkpointed:  # paused between checkpoints
            self._checkpoint(backup_id, census)
        logger.info("census", extra={"bucket": self._bucket, "backup_id": backup_id, **census.progress(),
                                     "pages_here": census.pages - started})
        return census

    def _count_page(self, census: Census, shard_objects: int) -> Census:
        request: ListObjectsV2RequestTypeDef = {"Bucket": self._bucket, "MaxKeys": self._page_size}
        if census.after is not None:
            request["StartAfter"] = census.after
        listing = self._s3.list_objects_v2(**request)
        keys = [item["Key"] for item in listing.get("Contents", [])]
        objects, cuts = census.objects, list(census.cuts)
        for key in keys:
            objects += 1
            if objects % shard_objects == 0:
                cuts.append(key)
        return replace(census, objects=objects, cuts=tuple(cuts), after=keys[-1] if keys else census.after,
                       pages=census.pages + 1, done=not listing.get("IsTruncated") or not keys)

    def _checkpoint(self, backup_id: str, census: Census) -> int:
        """Write the census as it is, once; the page it was checkpointed at."""
        try:
            self._store.put_once(census_key(self._bucket, backup_id, census.pages),
                                 json.dumps(asdict(census)).encode(), "application/json")
        except AlreadyWritten as error:
            raise ConcurrentUpdate(f"snapshot {backup_id}'s census page {census.pages} was checkpointed by another "
                                   "invocation") from error
        return census.pages
