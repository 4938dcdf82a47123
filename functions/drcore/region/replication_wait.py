"""Waiting, between stopping the primary and starting the secondary, for the primary's last uploads to replicate.

The primary processed every upload made before its pipeline entry came off. S3 replicates asynchronously: a replica
that lands after the secondary LIVE's entry is in place is sent to it by S3, and processed a second time. So a
failover that can reach the primary waits until each version last modified in the `replication.max_latency_seconds`
before the stop has left PENDING (S3's ReplicationStatus on the source: COMPLETED, or FAILED, which never lands), at
most `failover.replication_wait_seconds` after the stop (default 60: Replication Time Control replicates most
objects in seconds, 99.99% within 15 minutes). Uploads made meanwhile wait as long to be processed, and no longer:
the gates (or the listing window) record them and the catch-up invokes them.

What is still pending at the bound is reported as `late`: each may yet be processed in both regions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from drcore.core.models import Clock, utc_now
from drcore.region.replication_s3 import ReplicationGateway

# The wait lists at most this many versions of the primary bucket (S3 lists by key, not by time).
LISTING_LIMIT = 100_000
POLL_SECONDS = 1.0
PENDING = "PENDING"


def version_name(key: str, version_id: str) -> str:
    """How the plan's progress names a version (as the catch-up and the gates do)."""
    return f"{key}#{version_id}"


class ReplicationWait:
    """Resumable: its whole state is the `progress` dict it is given (a plan's checkpointed progress)."""

    def __init__(self, source: ReplicationGateway, bucket: str, max_latency_seconds: int, wait_seconds: int,
                 clock: Clock = utc_now, sleep: Callable[[float], None] = time.sleep) -> None:
        self._source = source
        self._bucket = bucket
        self._max_latency = timedelta(seconds=max_latency_seconds)
        self._wait = timedelta(seconds=wait_seconds)
        self._clock = clock
        self._sleep = sleep

    def run(self, stopped_at: datetime, progress: dict[str, Any], save: Callable[[], None],
            time_left: Callable[[], bool], full: Callable[[], bool] = lambda: False) -> bool:
        """Wait until nothing from before `stopped_at` is pending, the bound, or `full()` (what the switch holds back
        meanwhile must stay recordable); True when done (`progress` then has `awaited`, `late`, `listing_complete`
        and `ended`: `replicated`, `bound` or `full`), False when the invocation must continue in a new one."""
        if "late" in progress:
            return True
        if "pending" not in progress:
            # S3 keeps last-modified to the second: the stop's second is included.
            versions, complete = self._source.versions_between(
                self._bucket, stopped_at.replace(microsecond=0) - self._max_latency, stopped_at, LISTING_LIMIT)
            progress.update(pending=self._pending([(version.key, version.version_id) for version in versions]),
                            listing_complete=complete)
            progress["awaited"] = len(progress["pending"])
            save()
        deadline = stopped_at + self._wait
        ended = "replicated"
        while progress["pending"]:
            if self._clock() >= deadline or full():
                ended = "bound" if self._clock() >= deadline else "full"
                break
            if not time_left():
                return False
            self._sleep(POLL_SECONDS)
            progress["pending"] = self._pending([tuple(name.rsplit("#", 1)) for name in progress["pending"]])
            save()
        progress["late"], progress["ended"] = progress.pop("pending"), ended
        save()
        return True

    def _pending(self, versions: list[Any]) -> list[str]:
        found = []
        for key, version_id in versions:
            state = self._source.replication_of(self._bucket, key, version_id)
            if state is not None and state.status == PENDING:
                found.append(version_name(key, version_id))
        return found
