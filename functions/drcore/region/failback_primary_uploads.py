"""Uploads clients make to the primary bucket while a failback runs, which neither region would process otherwise.

From the moment the replica's pipeline entry comes off (the failback's `replica_off`) to the moment the primary's
goes on (`primary_on`), an upload to the primary bucket is processed by no one: the primary has no entry yet, and
its replica reaches a replica that notifies no one. Likewise an upload made before, whose replica lands after the
replica's entry came off.

With the switch gates configured, the failback, in `replica_off`, right after the replica's entry was swapped for
the replica's gate (so that every replica landing from then on is recorded there until that gate is removed, in
`catch_up_before`):

1. `place`: merges the primary's gate entry into the data bucket's notifications (the events and filter of the
   pipeline's entry): from here S3 records each upload to the primary in the primary's gate queue
   (drcore.region.switch_gate). Its replicas land after the swap: no region processed them.
2. `survey`: lists the primary's versions of the last `replication.max_latency_seconds` (every upload made before 1
   is listed) and keeps those still PENDING replication: their replicas land after the swap. Those already
   replicated landed before the swap (processed by the secondary), or after it, and then the replica's gate,
   still in place, recorded them.
3. `start` (in `primary_on`): swaps the primary's gate entry for the primary LIVE's, in one write: each later upload
   is the primary's own.
4. `catch_up` (the step after `primary_on`): drains the primary's gate, then invokes the primary LIVE once for each
   upload no region processed: those the primary's gate recorded, those kept in 2, and the primary's uploads whose
   replicas the replica's gate recorded, except the failback's own copies into the primary (the secondary's
   uploads, processed there already; drcore.restore.applied_records). Each invocation is recorded as it is made.
5. `release` (a failback that stops and hands processing back to the secondary): the gate entry is removed and what
   it recorded dropped: those uploads reach the replica, and the secondary processes them: the hand-back invokes it
   for those that landed while the replica was off (`landed_while_off`: the replica's gate recorded them, or they
   were still replicating at the survey), S3 for the others.

Each upload to the primary is thereby processed once: by the secondary if its replica landed before the swap, by
the primary otherwise (but one older than `replication.max_latency_seconds` still replicating, or beyond the
listing's 100,000 versions: `primary_listing_complete` says whether the listing read the whole bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.pipeline_notification import BucketNotifications, NotificationChange
from drcore.core.models import Clock, to_iso, utc_now
from drcore.region.failback_sites import FailbackSites
from drcore.region.failover_catch_up import MissedUpload, as_missed, drain, invoke_each_once, invoke_once, s3_event
from drcore.region.replication_s3 import ReplicationGateway
from drcore.region.replication_wait import LISTING_LIMIT, PENDING, version_name
from drcore.region.switch_gate import GatedUpload, SwitchGate, gate_entry_id
from drcore.restore.applied_records import read_written
from drcore.state.backup_store import BackupStore

logger = Logger(child=True)

# Time kept back from the invocation for recording progress before continuing in a new one.
RESERVE_MS = 30_000
PLACED = "placed"
REPLICA = "REPLICA"  # S3's replication status of a version written by replication


class PrimaryUploads:
    """The primary side of a failback's switch gate. State lives in the failback's progress (`state`)."""

    def __init__(self, sites: FailbackSites, notifications: BucketNotifications, gate: SwitchGate,
                 replication: ReplicationGateway, primary_lambda: Any, store: BackupStore,
                 max_latency_seconds: int, clock: Clock = utc_now) -> None:
        self._sites = sites
        self._notifications = notifications
        self._gate = gate
        self._replication = replication
        self._lambda = primary_lambda
        self._store = store
        self._max_latency = timedelta(seconds=max_latency_seconds)
        self._clock = clock

    def place(self, plan_id: str, template: Mapping[str, Any] | None, state: dict[str, Any],
              save: Callable[[], None]) -> None:
        """Right after the replica's entry came off: each upload to the primary recorded from now. A primary LIVE
        entry still there (a primary its fencing has not reached yet) is replaced in the same write: S3 takes no
        second entry for the same events, and the primary's processing is `primary_on`'s to start."""
        if state.get("primary_gate") != PLACED:
            self._notifications.swap(self._sites.data_bucket, self._sites.live_arn(self._sites.primary_region),
                                     self._gate.queue_arn, template, gate_entry_id(plan_id))
            state["primary_gate"] = PLACED
            save()

    def survey(self, state: dict[str, Any], save: Callable[[], None]) -> dict[str, Any]:
        """After `place`: the primary's versions still replicating (their replicas land when no region processes
        them)."""
        if state.get("primary_gate") != PLACED:
            return {}
        if "primary_replicating" not in state:
            bucket, now = self._sites.data_bucket, self._clock()
            versions, complete = self._replication.versions_between(
                bucket, now.replace(microsecond=0) - self._max_latency, now + timedelta(seconds=1), LISTING_LIMIT)
            replicating = {}
            for version in versions:
                found = self._replication.replication_of(bucket, version.key, version.version_id)
                if found is not None and found.status == PENDING:
                    replicating[version_name(version.key, version.version_id)] = GatedUpload(
                        version.key, version.version_id, version.size, version.etag,
                        to_iso(version.last_modified)).to_dict()
            state.update(primary_replicating=replicating, primary_listing_complete=complete)
            save()
        return {"primary_gate": PLACED, "primary_replicating": len(state["primary_replicating"]),
                "primary_listing_complete": state["primary_listing_complete"]}

    def start(self, plan_id: str, template: Mapping[str, Any] | None, state: dict[str, Any]) -> NotificationChange:
        """The primary LIVE's entry in the gate's place, in one write (merged in when no gate was placed)."""
        live = self._sites.live_arn(self._sites.primary_region)
        if state.get("primary_gate") != PLACED:
            return self._notifications.merge_in(self._sites.data_bucket, live, template)
        return self._notifications.swap(self._sites.data_bucket, self._gate.queue_arn, live, template)

    def catch_up(self, plan_id: str, records_id: str, state: dict[str, Any], save: Callable[[], None],
                 remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """Each upload no region processed invoked once on the primary LIVE (`paused`: call again)."""
        if state.get("primary_gate") != PLACED:
            return {"ok": True, "invoked": 0, "gate": "not placed"}
        gated: dict[str, Any] = state.setdefault("primary_gated", {})
        if not state.get("primary_gate_drained"):
            def record(uploads: tuple[GatedUpload, ...]) -> None:
                if uploads:
                    gated.update({upload.name: upload.to_dict() for upload in uploads})
                    save()

            if not drain(self._gate, gate_entry_id(plan_id), record, remaining_ms, RESERVE_MS):
                return {"paused": True}
            state["primary_gate_drained"] = True
            save()
        sites = self._sites
        own = {version_name(key, version_id) for key, versions in
               read_written(self._store, sites.data_bucket, records_id).items() for version_id, _ in versions}
        if "primary_landed_late" not in state:
            state["primary_landed_late"] = self._landed_late(state, set(gated) | own)
            save()
        candidates = {**state.get("primary_replicating", {}), **state["primary_landed_late"], **gated}

        def invoke(upload: MissedUpload) -> None:
            invoke_once(self._lambda, sites.function_name, sites.live_alias,
                        s3_event(upload, sites.data_bucket, sites.primary_region, sites.partition))

        missed = (as_missed(GatedUpload.from_dict(upload)) for name, upload in candidates.items() if name not in own)
        finished = invoke_each_once(missed, state, "primary_invoked", invoke, save, remaining_ms, RESERVE_MS)
        invoked = state.get("primary_invoked", [])
        if not finished:
            return {"paused": True, "invoked": len(invoked)}
        logger.info("failback invoked the primary for uploads no region processed", extra={
            "bucket": sites.data_bucket, "invoked": len(invoked), "gated": len(gated),
            "replicating": len(state.get("primary_replicating", {}))})
        return {"ok": True, "invoked": len(invoked), "gated": len(gated),
                "replicating": len(state.get("primary_replicating", {})),
                "landed_late": len(state["primary_landed_late"]), "own_copies_skipped": len(own & set(candidates))}

    def landed_while_off(self, state: dict[str, Any]) -> list[MissedUpload]:
        """For a failback that stops, once the replica's entry is back: the replicas of the primary's uploads that
        landed while the replica processed nothing (what its gate recorded, and what was still replicating at the
        survey and has landed since), for the secondary to process. One that landed after the entry came back is
        sent by S3 too: processed twice, never not at all."""
        found = self._landed_late(state, set())
        for name, upload in state.get("primary_replicating", {}).items():
            key, version_id = name.rsplit("#", 1)
            version = self._replication.replication_of(self._sites.data_bucket, key, version_id)
            if version is not None and version.status != PENDING:
                found[name] = upload
        return [as_missed(GatedUpload.from_dict(upload)) for upload in found.values()]

    def _landed_late(self, state: dict[str, Any], known: set[str]) -> dict[str, Any]:
        """Of the arrivals the replica's gate recorded, the replicas of the primary's own uploads (replication keeps
        the version id; a version the data bucket does not hold is the replica's own upload)."""
        found = {}
        for name in state.get("gated_replica", []):
            if name in known or name in state.get("primary_replicating", {}):
                continue
            key, version_id = name.rsplit("#", 1)
            version = self._replication.replication_of(self._sites.data_bucket, key, version_id)
            if version is not None and version.status != REPLICA:
                modified = version.last_modified or self._clock()
                found[name] = GatedUpload(key, version_id, version.size, version.etag, to_iso(modified)).to_dict()
        return found

    def release(self, plan_id: str, state: dict[str, Any], remaining_ms: Callable[[], int]) -> None:
        """The failback stopped: the gate entry removed, what it recorded dropped (the replica's hand-back has it)."""
        if state.get("primary_gate") == PLACED:
            self._notifications.remove(self._sites.data_bucket, self._gate.queue_arn)
            drain(self._gate, gate_entry_id(plan_id), lambda _: None, remaining_ms, 0)
            state["primary_gate"] = "released"
