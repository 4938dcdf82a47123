"""A failback that stops after the secondary stopped processing (its `replica_off` step) and before the primary
claimed the region (a copy-back that does not verify or is refused, a claim lost to a switch that keeps the
secondary active) hands processing back to the secondary, and leaves no upload of the time it was off unprocessed:

1. the replica's `LIVE` entry is merged back into its notifications (with the events and filter it had), in place
   of the replica's switch gate entry when there is one (one write: S3 refuses two entries for the same events);
2. the moment after that is recorded: the off window is [the replica-off second, that moment];
3. the secondary `LIVE` is invoked once for each replica upload of the window, as the failover's catch-up invokes it
   (drcore.region.failover_catch_up: the same listing, event and invocation), each invocation recorded in the
   failback's progress as it is made, so that a resumption (from either region) invokes each once.

Listing times have one-second resolution: an upload of the replica-off second may have been processed before the
entry was removed, and is invoked again (processed twice, never not at all). The failback's own copies into the
primary reach the replica by replication inside the window with their version ids: they are the secondary's uploads,
processed already, and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.pipeline_notification import BucketNotifications
from drcore.core.models import Clock, parse_time, to_iso, utc_now
from drcore.region.failback_sites import FailbackSites
from drcore.region.failover_catch_up import MissedUpload, invoke_each_once, invoke_once, missed_uploads, s3_event
from drcore.restore.applied_records import read_written
from drcore.state.backup_store import BackupStore

logger = Logger(child=True)

# Time kept back from the invocation for recording progress before continuing in a new one.
RESERVE_MS = 30_000


class SecondaryHandBack:
    """`secondary_s3` lists the replica, `secondary_lambda` invokes the secondary LIVE; `store` holds the failback's
    records of what it wrote into the primary."""

    def __init__(self, sites: FailbackSites, replica_notifications: BucketNotifications, secondary_s3: Any,
                 secondary_lambda: Any, store: BackupStore, clock: Clock = utc_now) -> None:
        self._sites = sites
        self._notifications = replica_notifications
        self._s3 = secondary_s3
        self._lambda = secondary_lambda
        self._store = store
        self._clock = clock

    def hand_back(self, entry_template: Mapping[str, Any] | None, records_id: str, state: dict[str, Any],
                  save: Callable[[], None], remaining_ms: Callable[[], int], gate_arn: str | None = None,
                  held: Callable[[], Iterable[MissedUpload]] = tuple) -> dict[str, Any]:
        """What was handed back (`paused`: call again with the same state). `state` is the failback's progress:
        it holds the replica-off moment, and keeps the window's end and the invocations made. `gate_arn`: the
        replica's switch gate, whose entry (if still there) the LIVE entry replaces in one write: S3 refuses two
        entries for the same events and keys. `held`, asked once the entry is back: uploads of the off time the
        window's listing cannot see (replicas of the primary's earlier uploads, last modified before it)."""
        sites = self._sites
        live = sites.live_arn(sites.secondary_region)
        change = (self._notifications.swap(sites.replica_bucket, gate_arn, live, entry_template) if gate_arn else
                  self._notifications.merge_in(sites.replica_bucket, live, entry_template))
        if "handed_back_at" not in state:  # recorded after the merge: the window closes no earlier than it
            state["handed_back_at"] = to_iso(self._clock())
            save()
        start = parse_time(state["replica_off_at"]).replace(microsecond=0)
        own = {(key, version_id) for key, versions in read_written(self._store, sites.data_bucket, records_id).items()
               for version_id, _ in versions}
        window = missed_uploads(self._s3, sites.replica_bucket, start, parse_time(state["handed_back_at"]))

        def invoke(upload: MissedUpload) -> None:
            invoke_once(self._lambda, sites.function_name, sites.live_alias,
                        s3_event(upload, sites.replica_bucket, sites.secondary_region, sites.partition))

        uploads = chain(window, held())
        finished = invoke_each_once((upload for upload in uploads if (upload.key, upload.version_id) not in own),
                                    state, "handed_back_invoked", invoke, save, remaining_ms, RESERVE_MS)
        invoked = state.get("handed_back_invoked", [])
        if not finished:
            return {"paused": True, "invoked": len(invoked)}
        logger.info("failback handed processing back to the secondary", extra={
            "replica": sites.replica_bucket, "processing": change.processing, "invoked": len(invoked),
            "window_start": to_iso(start), "window_end": state["handed_back_at"]})
        return {**change.to_dict(), "ok": change.ok and change.processing, "invoked": len(invoked),
                "window": [to_iso(start), state["handed_back_at"]]}
