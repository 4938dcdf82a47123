"""`failback`: the two-step action (drcore.state.plans) that brings processing back to the primary region after a
failover, with what the secondary wrote during it copied back by content.

The runbook's failback-region.sh synced the whole replica over the primary, replaced the primary function's
environment and the data bucket's notifications wholesale, and left the replica processing. Here:

**Plan.** Nothing to do when the region record says the primary is active (a no-op answer: the plan says
so and its apply changes nothing). Otherwise the primary must pass its health probe (the watchers' probe,
run against the primary region's function) or the plan is refused. The plan lists what diverged since the
failover (drcore.region.divergence: created, changed, metadata-only, deleted, and conflicts: keys the
primary changed too). Conflicts block the apply unless the request says `prefer: "secondary" | "primary"`.
The failover's time is its region claim's `at`, less `SWITCH_WINDOW`.

**Apply**, in an order that never leaves both regions processing, never processes an upload twice (but in the
second of the switch) and leaves none unprocessed:

1. `replica_off`: the secondary stops processing first: the moment is recorded (write-once, in the backup store),
   then the replica's `LIVE` entry is removed from its notifications (with the gates, the primary's gate entry is
   then placed on the data bucket and its versions still replicating listed: drcore.region.failback_primary_uploads).
   Uploads to the replica before it were
   processed there. From here on nothing the failback writes is processed by the secondary: its copies into the
   primary come back into the replica by replication, and the replica notifies no one of them.
2. `copy`: the planned copy-back, the divergence the operator approved (safety snapshot of the primary bucket first,
   then copies, then the read-back verification). The primary does not process yet: nothing is processed twice.
3. `catch_up_before`: what the replica wrote after the plan and before the second of the replica-off moment is
   copied as well. Listing times have one-second resolution: an upload in that second is left for the last sweep,
   where it may be processed a second time, never not at all. With the gate, the seconds from the replica-off
   moment's to the one its swap was read back in are split exactly: what the gate recorded is left for the last
   sweep, the rest (the secondary processed it) is copied now.
   A copy-back of 2 or 3 that does not verify, or that the primary refuses (`PrimaryChanged`), stops the failback
   with nothing switched, and hands processing back to the secondary (drcore.region.failback_hand_back): the
   replica's entry merged back, then the secondary `LIVE` invoked once for each upload of the time the replica was
   off, the failback's own copies excepted. The stop is recorded in the progress before the hand-back begins, so a
   resumed failback finishes stopping and never goes on to switch.
4. `claim`: the region record claims the epoch after the failover's for the primary (kind failback). A claim that
   does not hold (a later switch made the secondary active) stops the failback and hands processing back as well.
5. `environment`: the variables failover merged into the secondary function's environment are removed from it
   (merge: every other variable stays).
6. `primary_on`: the primary `LIVE` entry is merged into the data bucket's notifications, with the events and filter
   the replica's entry had (with the gates, swapped for the primary's gate entry `replica_off` placed, in one write).
   `catch_up_primary`: the uploads made to the primary bucket while neither region processed it (recorded by that
   gate, or still replicating when it was placed) are invoked once on the primary LIVE
   (drcore.region.failback_primary_uploads).
7. `alert`, then `validation` (the post-recovery validation with the primary as the active region).
8. `catch_up_after`, the last thing the failback does: every upload the replica received since the replica-off second
   (clients still writing to the secondary while the failback ran) is copied into the primary, where the copy's
   ObjectCreated event processes it once. Its listing's moment is in the result (`listed_at`): an upload made to the
   replica after it is beyond this failback (clients must write to the primary once it answers).

Each finished step is recorded in the plan (`checkpoint`), and each step is idempotent besides (it looks at
the world, not at a note that it ran), so a crash between any two is completed by resuming the plan from either
region: every client this action uses is of the region it addresses, and the plan and its progress are in the
global state table.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.alerts import Alert, AlertPublisher
from drcore.aws.pipeline_notification import BucketNotifications, pipeline_entries
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, parse_time, to_iso, utc_now
from drcore.region.divergence import ReplicaDivergence
from drcore.region.divergence_plan import ConflictsUnresolved, FailbackCopyPlan, PrimaryChanged
from drcore.region.failback_hand_back import RESERVE_MS, SecondaryHandBack
from drcore.region.failback_primary_uploads import PrimaryUploads
from drcore.region.failback_sites import FailbackSites
from drcore.region.failover_catch_up import MissedUpload, drain
from drcore.region.failover_plan import FAILOVER_VARIABLES, SwitchValidation
from drcore.region.function_environment import FunctionEnvironment
from drcore.region.switch_gate import GatedUpload, SwitchGate, gate_entry_id
from drcore.rollback.outcome import Outcome
from drcore.state.backup_store import AlreadyWritten, BackupStore, restore_changes_key
from drcore.state.region_record import RegionRecord

logger = Logger(child=True)

# Divergence is looked for from this long before the failover's claim: uploads may reach the replica before the
# claim is written (clients moved ahead of the switch, a failover resumed over invocations). Starting earlier only
# makes a key more likely to be compared (and copied if it differs) or called a conflict, never lost.
SWITCH_WINDOW = timedelta(minutes=15)
STEPS = ("replica_off", "copy", "catch_up_before", "claim", "environment", "primary_on", "catch_up_primary", "alert",
         "validation", "catch_up_after")

VALIDATION_NOT_BUILT = "post-recovery validation is not built yet (issue 12 item 6: drcore.restore.validation)"


class FailbackRefused(InvalidRequest):
    """A failback that cannot be done now: the primary fails its health probe."""


# The post-recovery validation: its result as a document (ok, checks), given the region made active; None until
# drcore.restore.validation is built (the result then says so, and nothing pretends to have validated).
Validation = SwitchValidation | None
Checkpoint = Callable[[str, dict[str, Any]], None]  # (plan id, progress): recorded in the plan after each step


class FailbackAction:
    kind = "failback"

    def __init__(self, sites: FailbackSites, record: RegionRecord, divergence: ReplicaDivergence, store: BackupStore,
                 primary_notifications: BucketNotifications, replica_notifications: BucketNotifications,
                 secondary_environment: FunctionEnvironment, primary_health: Callable[[], Outcome],
                 alerts: AlertPublisher, hand_back: SecondaryHandBack, validation: Validation = None,
                 checkpoint: Checkpoint | None = None, gate: SwitchGate | None = None,
                 primary_uploads: PrimaryUploads | None = None, clock: Clock = utc_now) -> None:
        self._sites = sites
        self._record = record
        self._divergence = divergence
        self._store = store
        self._primary_notifications = primary_notifications
        self._replica_notifications = replica_notifications
        self._environment = secondary_environment
        self._primary_health = primary_health
        self._alerts = alerts
        self._hand_back_to_secondary = hand_back
        self._validation = validation
        self._checkpoint = checkpoint
        self._gate = gate  # the replica's switch gate (drcore.region.switch_gate); None: not configured
        # The primary's side of the gate (drcore.region.failback_primary_uploads); None: not configured
        self._primary_uploads = primary_uploads
        self._clock = clock

    # Plan ----------------------------------------------------------------------------------------

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        sites = self._sites
        current = self._record.current()
        if current is None or current.active_region == sites.primary_region:
            plan_id = f"fb-{secrets.token_hex(5)}"
            plan = {"plan_id": plan_id, "noop": True, "epoch": current.epoch if current else 0,
                    "active_region": sites.primary_region}
            return plan_id, plan, {"noop": True, "active_region": sites.primary_region,
                                   "detail": f"the primary region {sites.primary_region} is already active: "
                                             "nothing to fail back"}
        health = self._primary_health()
        if health.facts.get("healthy") is not True:
            raise FailbackRefused(f"the primary region {sites.primary_region} failed its health probe "
                                  f"({health.detail}): fail back once it answers")
        since = parse_time(current.at) - SWITCH_WINDOW
        copy = self._divergence.plan(sites.data_bucket, sites.replica_bucket, since, prefer=request.prefer)
        entries = pipeline_entries(self._replica_notifications.configuration(sites.replica_bucket),
                                   sites.live_arn(sites.secondary_region))
        plan = {"plan_id": copy.plan_id, "noop": False, "epoch": current.epoch, "active_region": current.active_region,
                "failover_plan_id": current.plan_id, "failover_at": current.at, "since": to_iso(since),
                "prefer": request.prefer, "primary_health": dict(health.facts), "copy": copy.to_dict(),
                "entry_template": entries[0] if entries else None}
        summary = {"noop": False, "from_region": current.active_region, "to_region": sites.primary_region,
                   "failover": {"plan_id": current.plan_id, "at": current.at, "epoch": current.epoch},
                   "primary_health": dict(health.facts), "diverged_since": to_iso(since),
                   "divergence": copy.to_dict(), "blocked": copy.blocked, "steps": list(STEPS)}
        return copy.plan_id, plan, summary

    def fingerprint(self, plan: dict[str, Any]) -> str:
        current = self._record.current()
        return f"{current.epoch if current else 0}:{current.active_region if current else self._sites.primary_region}"

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return f"{plan['epoch']}:{plan['active_region']}"

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any = None) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        if plan["noop"]:
            return True, {}, {"ok": True, "noop": True, "active_region": self._sites.primary_region}
        copy = FailbackCopyPlan.from_dict(plan["copy"])
        if copy.blocked:
            raise ConflictsUnresolved(copy.blocked)
        state = dict(progress or {})
        result: dict[str, Any] = {"ok": False, "noop": False, "plan_id": plan["plan_id"],
                                  "from_region": plan["active_region"], "to_region": self._sites.primary_region}
        done = state.setdefault("done", {})
        for step in STEPS:
            if step in done:  # finished by an earlier invocation: its outcome as it was
                result[step] = done[step]
                if done[step].get("stop"):
                    return True, state, result
                continue
            if "stopped" in state:  # this step stopped the failback in an invocation that died: finish stopping
                outcome = self._handed_back(plan, copy, state, remaining_ms)
            else:
                outcome = getattr(self, f"_step_{step}")(plan, copy, state, remaining_ms)
            result[step] = outcome
            if outcome.get("paused"):
                return False, state, result
            done[step] = _summary(outcome)
            self._save(plan, state)  # a crash after this step resumes after it, from either region
            if outcome.get("stop"):
                logger.warning("failback stopped", extra={"plan_id": plan["plan_id"], "step": step,
                                                          "reason": outcome.get("reason")})
                return True, state, result
        # As for every applied recovery: `ok` says the switch was made, `validation_status` whether the system is
        # proven back to normal (the validation alerts unless every check is ok).
        result["ok"] = all(result[step].get("ok", True) for step in STEPS if step != "validation")
        result["validation_status"] = result["validation"].get("status")
        logger.info("failback applied", extra={"plan_id": plan["plan_id"], "ok": result["ok"]})
        return True, state, result

    # Steps: each answers a document (`paused`: call again; `stop`: the failback ends here, unswitched) ------

    def _step_replica_off(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                          remaining_ms: Callable[[], int]) -> dict[str, Any]:
        state["replica_off_at"] = self._replica_off_moment(copy)
        live, bucket = self._sites.live_arn(self._sites.secondary_region), self._sites.replica_bucket
        if self._gate is None:
            change = self._replica_notifications.remove(bucket, live)
        else:  # the gate in the entry's place, in one write: each upload is the secondary's or the gate's
            change = self._replica_notifications.swap(bucket, live, self._gate.queue_arn, plan["entry_template"],
                                                      gate_entry_id(plan["plan_id"]))
            change = replace(change, processing=self._replica_notifications.processing(bucket, live))
        # `removed_at`: without the gate, an upload between `at`'s second and this moment may be processed twice, never
        # not at all; with it, the seconds from `at`'s to this moment's are split exactly (catch_up_before).
        removed_at = to_iso(self._clock())
        held: dict[str, Any] = {}
        if self._primary_uploads is not None:  # after the swap: see drcore.region.failback_primary_uploads
            self._primary_uploads.place(plan["plan_id"], plan["entry_template"], state, lambda: self._save(plan, state))
            held = self._primary_uploads.survey(state, lambda: self._save(plan, state))
        return {**change.to_dict(), **held, "ok": change.ok and not change.processing,
                "at": state["replica_off_at"], "removed_at": removed_at}

    def _step_copy(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                   remaining_ms: Callable[[], int]) -> dict[str, Any]:
        return self._copy_back(plan, copy, copy, state, remaining_ms)

    def _step_catch_up_before(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                              remaining_ms: Callable[[], int]) -> dict[str, Any]:
        leave: frozenset[str] = frozenset()
        if self._gate is None:
            # Listing times have one-second resolution: an upload in the second of the removal is left for the
            # last sweep, where it may be processed a second time, never not at all.
            until = _off_second(state) - timedelta(microseconds=1)
        else:
            # With the gate, the seconds from the replica-off moment's to the swap's are split exactly: what the gate
            # recorded was processed by no one and is left for the last sweep; the rest of them was the secondary's
            # (a swap that took effect seconds after the moment, slow or retried, included), and is copied now.
            gated = self._gated(plan, state, remaining_ms)
            if gated is None:
                return {"paused": True}
            until, leave = _swap_second(state) + timedelta(seconds=1, microseconds=-1), gated
        return self._copy_back(plan, copy, self._catch_up_plan(plan, copy, state, "catch_up_before",
                                                               since=parse_time(plan["since"]), until=until,
                                                               leave=leave),
                               state, remaining_ms)

    def _gated(self, plan: dict[str, Any], state: dict[str, Any],
               remaining_ms: Callable[[], int]) -> frozenset[str] | None:
        """The uploads the replica's gate recorded until the second its swap was read back in was over; None:
        continue in a new invocation. The gate only splits the seconds from the replica-off moment's to that one
        (what came after them is the last sweep's, by listing), so its entry is removed once they are over: the
        queue then stops filling, and the drain ends however fast clients upload."""
        assert self._gate is not None
        names: list[str] = state.setdefault("gated_replica", [])
        if not state.get("gated_replica_drained"):
            wait = (_swap_second(state) + timedelta(seconds=1) - self._clock()).total_seconds()
            if wait > 0:
                time.sleep(min(wait, 1.0))
            self._replica_notifications.remove(self._sites.replica_bucket, self._gate.queue_arn)

            def record(uploads: tuple[GatedUpload, ...]) -> None:
                if uploads:
                    names.extend(upload.name for upload in uploads)
                    self._save(plan, state)

            if not drain(self._gate, gate_entry_id(plan["plan_id"]), record, remaining_ms, RESERVE_MS):
                return None
            state["gated_replica_drained"] = True
            self._save(plan, state)
        return frozenset(names)

    def _step_claim(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                    remaining_ms: Callable[[], int]) -> dict[str, Any]:
        sites = self._sites
        holding = self._record.current()
        if holding is not None and holding.plan_id == plan["plan_id"] and holding.kind == "failback":
            # Claimed by an earlier invocation, maybe in the other region: one claim per failback.
            return {"ok": True, **holding.to_dict()}
        claim = self._record.claim(sites.primary_region, "failback", plan["plan_id"], sites.here, plan["epoch"])
        if self._record.holds(claim):
            return {"ok": True, **claim.to_dict()}
        holding = self._record.current()
        reason = "superseded: another switch holds the region record"
        lost = {"claim": claim.to_dict(), "holding": holding.to_dict() if holding else None}
        if holding is not None and holding.active_region == sites.secondary_region:
            # A later switch made the secondary active: it must process again, the uploads of its off time too.
            return {**lost, **self._stop(plan, copy, state, remaining_ms, reason)}
        return {"ok": False, "stop": True, "reason": reason, **lost}

    def _step_environment(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                          remaining_ms: Callable[[], int]) -> dict[str, Any]:
        change = self._environment.merge(self._sites.function_name, {}, remove=FAILOVER_VARIABLES)
        return {**change.to_dict(), "ok": change.verified, "region": self._sites.secondary_region}

    def _step_primary_on(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                         remaining_ms: Callable[[], int]) -> dict[str, Any]:
        if self._primary_uploads is not None:  # the gate's entry swapped for LIVE's, in one write
            change = self._primary_uploads.start(plan["plan_id"], plan["entry_template"], state)
        else:
            change = self._primary_notifications.merge_in(self._sites.data_bucket,
                                                          self._sites.live_arn(self._sites.primary_region),
                                                          plan["entry_template"])
        return {**change.to_dict(), "ok": change.ok and change.processing}

    def _step_catch_up_primary(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                               remaining_ms: Callable[[], int]) -> dict[str, Any]:
        if self._primary_uploads is None:
            return {"ok": True, "invoked": 0, "gate": "not configured"}
        return self._primary_uploads.catch_up(plan["plan_id"], copy.records_id, state,
                                              lambda: self._save(plan, state), remaining_ms)

    def _step_alert(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                    remaining_ms: Callable[[], int]) -> dict[str, Any]:
        sites = self._sites
        self._alerts.publish(Alert(
            severity=2, brief=f"Regional Failback to {sites.primary_region} completed",
            occurred_at=to_iso(self._clock()),
            impact=f"Uploads are processed in {sites.primary_region} again; {copy.to_copy + copy.to_delete} objects "
                   f"the secondary wrote were reconciled into s3://{sites.data_bucket}",
            components=(f"lambda:{sites.function_name}", f"s3:{sites.data_bucket}", f"s3:{sites.replica_bucket}"),
            status="Failback applied", actions_taken=(
                f"Copied back what diverged since {plan['since']} (plan {plan['plan_id']}), verified by read-back",
                f"Notifications moved from {sites.replica_bucket} to {sites.data_bucket}",
                f"Region record claimed for {sites.primary_region}"),
            next_steps=("Check the post-recovery validation in the result and in status",
                        "Undo the copy-back if needed: restore_s3 of the data bucket from the safety snapshot"),
            event_type="region_failback", function_name=sites.function_name,
            facts={"plan_id": plan["plan_id"], "conflicts": str(copy.conflicts), "prefer": str(copy.prefer)}))
        return {"ok": True, "published": True}

    def _step_validation(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                         remaining_ms: Callable[[], int]) -> dict[str, Any]:
        if self._validation is None:
            return {"ran": False, "reason": VALIDATION_NOT_BUILT}
        return {"ran": True, **self._validation("failback", plan["plan_id"], self._sites.primary_region)}

    def _step_catch_up_after(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                             remaining_ms: Callable[[], int]) -> dict[str, Any]:
        # The last sweep: the uploads the replica received from the replica-off second on (what it wrote before was
        # copied and verified above); from then on only, so that it is short, and its listing as late as it can be.
        # The primary processes now: the copy of each is processed once.
        sweep = self._catch_up_plan(plan, copy, state, "catch_up_after",
                                    since=_off_second(state) - timedelta(microseconds=1), until=None)
        progress = self._divergence.apply(sweep, remaining_ms)
        if not progress.finished:
            return {"paused": True, **progress.to_dict()}
        verified = progress.verification is not None and progress.verification.ok
        if self._gate is not None:  # its work is done: the entry removed, what it recorded since dropped
            self._replica_notifications.remove(self._sites.replica_bucket, self._gate.queue_arn)
            drain(self._gate, gate_entry_id(plan["plan_id"]), lambda _: None, remaining_ms, 0)
        return {**progress.to_dict(), "ok": verified, "listed_at": state["catch_up_after_listed_at"]}

    # Helpers -------------------------------------------------------------------------------------

    def _copy_back(self, plan: dict[str, Any], copy: FailbackCopyPlan, step_plan: FailbackCopyPlan,
                   state: dict[str, Any], remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """A copy-back before the claim: one that does not verify, or that the primary refuses, stops the failback."""
        try:
            progress = self._divergence.apply(step_plan, remaining_ms)
        except PrimaryChanged as refused:
            return self._stop(plan, copy, state, remaining_ms, f"the copy-back was refused: {refused}")
        if not progress.finished:
            return {"paused": True, **progress.to_dict()}
        document = {**progress.to_dict(), "ok": progress.verification is not None and progress.verification.ok}
        if document["ok"]:
            return document
        return {**document, **self._stop(plan, copy, state, remaining_ms, "the copy-back did not verify")}

    def _catch_up_plan(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any], step: str, *,
                       since: datetime, until: datetime | None,
                       leave: frozenset[str] = frozenset()) -> FailbackCopyPlan:
        """A copy-back of what the replica wrote after `since` (up to `until`), planned once and kept in the
        progress with the moment its listing began. Conflicts are decided as the request said, or for the
        secondary: the replica holds the uploads the primary never saw."""
        if step not in state:
            state[f"{step}_listed_at"] = to_iso(self._clock())
            state[step] = self._divergence.plan(self._sites.data_bucket, self._sites.replica_bucket, since,
                                                prefer=copy.prefer or "secondary", records_id=copy.records_id,
                                                until=until, leave=leave).to_dict()
        return FailbackCopyPlan.from_dict(state[step])

    def _stop(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
              remaining_ms: Callable[[], int], reason: str) -> dict[str, Any]:
        """The failback ends here, nothing switched: recorded first, so that a resumption finishes stopping rather
        than go on with the failback, then processing is handed back to the secondary."""
        state["stopped"] = reason
        self._save(plan, state)
        return self._handed_back(plan, copy, state, remaining_ms)

    def _handed_back(self, plan: dict[str, Any], copy: FailbackCopyPlan, state: dict[str, Any],
                     remaining_ms: Callable[[], int]) -> dict[str, Any]:
        restored = self._hand_back_to_secondary.hand_back(plan["entry_template"], copy.records_id, state,
                                                          lambda: self._save(plan, state), remaining_ms,
                                                          self._gate.queue_arn if self._gate else None,
                                                          lambda: self._landed_while_off(plan, state))
        if restored.get("paused"):
            return restored
        if self._primary_uploads is not None:
            self._primary_uploads.release(plan["plan_id"], state, remaining_ms)
        if self._gate is not None:  # the secondary processes again: the gate's entry and records are not needed
            self._replica_notifications.remove(self._sites.replica_bucket, self._gate.queue_arn)
            drain(self._gate, gate_entry_id(plan["plan_id"]), lambda _: None, remaining_ms, 0)
        return {"ok": False, "stop": True, "reason": state["stopped"], "secondary_restored": restored}

    def _landed_while_off(self, plan: dict[str, Any], state: dict[str, Any]) -> list[MissedUpload]:
        """For a failback that stops: replicas of the primary's uploads that landed while the replica processed
        nothing (drcore.region.failback_primary_uploads `landed_while_off`), the replica's gate drained first (its
        entry is gone by now)."""
        if self._gate is None or self._primary_uploads is None:
            return []
        names: list[str] = state.setdefault("gated_replica", [])
        if not state.get("gated_replica_drained"):
            def record(uploads: tuple[GatedUpload, ...]) -> None:
                names.extend(upload.name for upload in uploads if upload.name not in names)
                self._save(plan, state)

            drain(self._gate, gate_entry_id(plan["plan_id"]), record, lambda: RESERVE_MS, 0)
            state["gated_replica_drained"] = True
            self._save(plan, state)
        return self._primary_uploads.landed_while_off(state)

    def _save(self, plan: dict[str, Any], state: dict[str, Any]) -> None:
        if self._checkpoint is not None:
            self._checkpoint(plan["plan_id"], state)

    def _replica_off_moment(self, copy: FailbackCopyPlan) -> str:
        """When the replica stopped processing: written once, before its entry is removed, so that a resumed
        failback (from either region) splits the uploads at the same moment; an upload between this moment and
        the removal may be processed twice, never not at all."""
        key = restore_changes_key(copy.primary_bucket, copy.records_id).replace("changes.json.gz",
                                                                                "replica-off.json")
        if next(iter(self._store.keys(key)), None) is None:
            try:
                self._store.put_json_once(key, {"at": to_iso(self._clock())})
            except AlreadyWritten:  # another invocation of the failback wrote it first
                pass
        return str(self._store.get_json(key)["at"])


def _off_second(state: dict[str, Any]) -> datetime:
    """The start of the second the replica stopped processing in (listing times have one-second resolution)."""
    return parse_time(state["replica_off_at"]).replace(microsecond=0)


def _swap_second(state: dict[str, Any]) -> datetime:
    """The start of the second the replica's swap for its gate was read back in (`replica_off`'s `removed_at`, kept
    in the progress with the step's outcome)."""
    return parse_time(state["done"]["replica_off"]["removed_at"]).replace(microsecond=0)


def _summary(outcome: dict[str, Any]) -> dict[str, Any]:
    """What the progress keeps of a finished step: its figures, not its key lists (the plan item stays small)."""
    return {name: value for name, value in outcome.items() if not isinstance(value, (list, tuple, dict))
            or name in ("verification", "secondary_restored")}
