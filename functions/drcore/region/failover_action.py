"""`failover`: the two-step action (drcore.state.plans) that moves upload processing to the secondary region.

Planned in the secondary region with the primary perhaps unreachable (drcore.region.failover_survey); refused when
the secondary is not ready, or when more data is at risk than `failover.max_data_at_risk` (or it cannot be known)
without `force` and a reason (drcore.region.failover_plan).

Applied in an order that never lets both regions process, and never loses an upload. With the switch gates
configured (`failover.switch_gate_queue`, drcore.region.switch_gate) the uploads no region was sent are known
exactly, from S3's own events; without them (or with the primary unreachable) by listing times, to the second:

0. gate_replica: the replica bucket's gate entry merged in (the replica's arrivals recorded from now on);
1. stop_primary: the moment is recorded first (the catch-up window opens there), then the primary bucket's
   pipeline entry is swapped for its gate entry in one write (removed, without gates) if the primary can be
   reached; if not, its own controller removes it on its first tick once it reads the region record (fencing:
   drcore.rollback.region_fence);
2. claim_region: the region record's next epoch names the secondary (drcore.state.region_record); a claim that
   loses to another switch's stops the failover as superseded (and puts back the primary's entry it removed
   when the winner keeps the primary active, invoking there what its gate recorded meanwhile);
3. merge_environment: ACTIVE_REGION / FAILOVER_MODE merged into the secondary function's environment;
   then, with the primary reachable, the wait until its uploads from before the stop are replicated (at most
   `replication.max_latency_seconds`; drcore.region.replication_wait): a replica landing after the next step would
   be sent to the secondary LIVE, and processed twice;
4. start_secondary: the replica's gate entry swapped for the secondary LIVE's in one write (merged in, without
   gates), the moment recorded; then the primary's gate entry is removed;
5. catch_up: each upload both gates recorded (created after the primary stopped, on the replica before it started)
   is invoked once on the secondary LIVE (drcore.region.failover_catch_up), each invocation recorded as it is
   made. Without the primary's gate, the replica's arrivals last modified since the primary stopped; without
   gates, every replica object last modified between the two moments;
6. alert: the "Regional Failover" alert (severity 1) and the external stakeholder notice;
7. validate: the post-recovery validation with the secondary active, journaled and alerted unless every check is
   ok. As for every applied recovery (drcore.restore.validated_actions), the result's `ok` says whether the
   switch was made; `validation_status` beside it says whether the system is proven back to normal.

Each step is recorded in the plan's progress as soon as it is done (the checkpoint), and each is idempotent, so a
crash between any two is completed by `resume`, from either region (the plan and the record are in the global
table). A failover planned while the secondary is already active changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import is_not_found
from drcore.aws.pipeline_notification import BucketNotifications, live_alias_arn
from drcore.core.models import Clock, to_iso, utc_now
from drcore.region.failover_catch_up import (
    MissedUpload,
    as_missed,
    drain,
    invoke_each_once,
    invoke_once,
    missed_uploads,
    s3_event,
)
from drcore.region.failover_notices import FailoverNotices
from drcore.region.failover_plan import (
    FAILOVER_VARIABLES,
    UNREACHABLE,
    FailoverPlan,
    FailoverRefused,
    SwitchValidation,
    refusals,
)
from drcore.region.failover_survey import PrimaryView, SecondaryReadiness, Unreachable, data_at_risk, reaching
from drcore.region.function_environment import FunctionEnvironment
from drcore.region.replication_health import ReplicationHealth
from drcore.region.replication_wait import ReplicationWait
from drcore.region.switch_gate import GatedUpload, SwitchGate, gate_entry_id
from drcore.state.region_record import ClaimConflict, RegionClaim, RegionRecord

logger = Logger(child=True)

# Time kept back from the invocation for recording progress before continuing in a new one.
RESERVE_MS = 30_000
# The replication wait ends once the replica's gate holds this many messages: the plan item (DynamoDB's 400 KB)
# keeps each upload the gate records (about 270 bytes) and its name twice more (about 72 each): 500 keeps the
# wait's share of it to about half.
MAX_GATED_DURING_WAIT = 500

Checkpoint = Callable[[str, dict[str, Any]], None]  # (plan id, progress): recorded in the plan


@dataclass(frozen=True)
class FailoverNames:
    function_name: str
    live_alias: str
    stable_alias: str
    data_bucket: str
    replica_bucket: str
    primary_region: str
    secondary_region: str
    local_region: str  # where this runs: the region record's writer
    max_data_at_risk: int


@dataclass(frozen=True)
class SwitchGates:
    primary: SwitchGate
    replica: SwitchGate


@dataclass(frozen=True)
class SecondaryParts:
    lambda_client: Any
    s3: Any
    environment: FunctionEnvironment
    readiness: SecondaryReadiness


class FailoverAction:
    kind = "failover"

    def __init__(self, names: FailoverNames, record: RegionRecord, primary: PrimaryView, primary_s3: Any,
                 replication: ReplicationHealth, secondary: SecondaryParts, notices: FailoverNotices,
                 checkpoint: Checkpoint, validation: SwitchValidation, gates: SwitchGates | None = None,
                 replication_wait: ReplicationWait | None = None, clock: Clock = utc_now) -> None:
        self._names = names
        self._record = record
        self._primary = primary
        self._primary_notifications = BucketNotifications(primary_s3)
        self._replication = replication
        self._secondary = secondary
        self._replica_notifications = BucketNotifications(secondary.s3)
        self._notices = notices
        self._checkpoint = checkpoint
        self._validation = validation
        self._gates = gates  # None: not configured, the catch-up falls back on the listing window
        self._replication_wait = replication_wait  # None: the secondary starts without waiting for replication
        self._clock = clock

    # Plan

    def make_plan(self, request: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        names = self._names
        current = self._record.current()
        epoch = current.epoch if current else 0
        already = (current.active_region if current else names.primary_region) == names.secondary_region
        account, partition = self._account()
        primary_live = live_alias_arn(names.primary_region, account, names.function_name, names.live_alias, partition)
        secondary_live = live_alias_arn(names.secondary_region, account, names.function_name, names.live_alias,
                                        partition)
        health = self._primary.health()
        template = None
        try:
            template = self._primary.pipeline_entry(names.data_bucket, primary_live)
        except Unreachable as failure:
            health["notification"] = {"state": UNREACHABLE, "reason": failure.reason}
        risk = data_at_risk(self._replication)
        readiness = self._secondary.readiness.check()
        problems = [] if already else refusals(readiness, risk, names.max_data_at_risk, bool(request.force))
        if problems:
            raise FailoverRefused(problems)
        forced = bool(request.force) and not already and bool(refusals(readiness, risk, names.max_data_at_risk, False))
        plan = FailoverPlan(
            plan_id=f"fo-{secrets.token_hex(5)}", created_at=to_iso(self._clock()), primary_region=names.primary_region,
            secondary_region=names.secondary_region, function_name=names.function_name, data_bucket=names.data_bucket,
            replica_bucket=names.replica_bucket, primary_live_arn=primary_live, secondary_live_arn=secondary_live,
            after_epoch=epoch, already_active=already, primary=health,
            data_at_risk={"objects": risk.objects, "operations_pending": risk.operations_pending,
                          "sampled": risk.sampled, "not_on_replica": risk.not_on_replica, "detail": risk.detail},
            readiness={"ready": readiness.ready, "checks": readiness.checks}, notification_template=template,
            forced=forced, fingerprint=self._world(current))
        return plan.plan_id, plan.to_dict(), plan.summary()

    def fingerprint(self, plan: dict[str, Any]) -> str:
        return self._world(self._record.current())

    def planned_fingerprint(self, plan: dict[str, Any]) -> str:
        return str(plan["fingerprint"])

    # Apply

    def apply(self, plan: dict[str, Any], progress: dict[str, Any] | None, remaining_ms: Callable[[], int],
              request: Any) -> tuple[bool, dict[str, Any], dict[str, Any]]:
        planned = FailoverPlan.from_dict(plan)
        done = dict(progress or {})
        if planned.already_active:
            return True, done, {"ok": True, "already_active": True, "active_region": planned.secondary_region,
                                "epoch": planned.after_epoch, "changes": []}
        if self._gates is not None and "replica_gate" not in done:  # before the primary stops: see the module's note
            done["replica_gate"] = self._replica_notifications.merge_in(
                planned.replica_bucket, self._gates.replica.queue_arn, planned.notification_template,
                gate_entry_id(planned.plan_id)).to_dict()
            self._save(planned, done)
        self._stop_primary(planned, done)
        claim = self._claim(planned, done)
        if claim is None or not self._record.holds(claim):
            return True, done, self._superseded(planned, done)
        if "environment" not in done:
            variables = dict(zip(FAILOVER_VARIABLES, (planned.secondary_region, "true"), strict=True))
            done["environment"] = self._secondary.environment.merge(planned.function_name, variables).to_dict()
            self._save(planned, done)
        if not self._await_replication(planned, done, remaining_ms):
            return False, done, {}
        if "replica_notification" not in done:
            change = (self._replica_notifications.swap(planned.replica_bucket, self._gates.replica.queue_arn,
                                                       planned.secondary_live_arn, planned.notification_template)
                      if self._gates else
                      self._replica_notifications.merge_in(planned.replica_bucket, planned.secondary_live_arn,
                                                           planned.notification_template))
            done.update(replica_notification=change.to_dict(), started_at=to_iso(self._clock()))
            self._save(planned, done)
        self._close_primary_gate(planned, done)
        if not self._catch_up(planned, done, remaining_ms):
            return False, done, {}
        if "notices" not in done:
            done["notices"] = self._notices.send(planned, to_iso(self._clock()), request.requested_by, request.reason,
                                                 self._figures(done, claim))
            self._save(planned, done)
        if "validation" not in done:
            done["validation"] = self._validation(self.kind, planned.plan_id, planned.secondary_region)
            self._save(planned, done)
        return True, done, self._result(planned, done, claim)

    def _stop_primary(self, planned: FailoverPlan, done: dict[str, Any]) -> None:
        if "stopped_at" not in done:  # recorded before the removal: the catch-up window opens no later than it
            done["stopped_at"] = to_iso(self._clock())
            self._save(planned, done)
        if "primary_notification" in done:
            return
        gates = self._gates
        try:
            if gates is None:
                change = reaching(lambda: self._primary_notifications.remove(planned.data_bucket,
                                                                             planned.primary_live_arn))
            else:  # the primary's gate in its entry's place, in one write (drcore.region.switch_gate)
                change = reaching(lambda: self._primary_notifications.swap(
                    planned.data_bucket, planned.primary_live_arn, gates.primary.queue_arn,
                    planned.notification_template, gate_entry_id(planned.plan_id)))
                done["primary_gate"] = "placed"
            done["primary_notification"] = "removed" if change.changed else "absent"
            done["primary_notification_lost_entries"] = list(change.lost_entries)
        except Unreachable as failure:
            done["primary_notification"] = f"{UNREACHABLE}: left to fencing ({failure.reason})"
        self._save(planned, done)

    def _await_replication(self, planned: FailoverPlan, done: dict[str, Any], remaining_ms: Callable[[], int]) -> bool:
        """The primary's uploads from before the stop replicated before the secondary is notified (see
        drcore.region.replication_wait); False when the invocation must continue in a new one."""
        wait = self._replication_wait
        if "replica_notification" in done or wait is None or str(done["primary_notification"]).startswith(
                UNREACHABLE):  # unreachable: what it processed last cannot be known (README, region runbook)
            return True
        progress: dict[str, Any] = done.setdefault("replication", {})
        gates = self._gates

        def full() -> bool:
            return gates is not None and gates.replica.held() >= MAX_GATED_DURING_WAIT

        try:
            return reaching(lambda: wait.run(datetime.fromisoformat(done["stopped_at"]), progress,
                                             lambda: self._save(planned, done),
                                             lambda: remaining_ms() >= RESERVE_MS, full))
        except Unreachable as failure:  # lost mid-wait: the switch goes on, what was pending named as late
            progress.update(late=progress.pop("pending", []), unreachable=failure.reason)
            self._save(planned, done)
            return True

    def _claim(self, planned: FailoverPlan, done: dict[str, Any]) -> RegionClaim | None:
        """This failover's claim as written; None when another switch claimed its epoch from this region first."""
        if "claim" not in done:
            try:
                claim = self._record.claim(planned.secondary_region, "failover", planned.plan_id,
                                           self._names.local_region, planned.after_epoch)
            except ClaimConflict:
                return None
            done["claim"] = claim.to_dict()
            self._save(planned, done)
        return RegionClaim(**done["claim"])

    def _close_primary_gate(self, planned: FailoverPlan, done: dict[str, Any]) -> None:
        """The primary's gate entry removed once the replica processes: later uploads to the primary reach the
        replica after its notification is in place, and S3 sends them to the secondary LIVE itself."""
        if done.get("primary_gate") != "placed" or self._gates is None:
            return
        gate_arn = self._gates.primary.queue_arn
        try:
            reaching(lambda: self._primary_notifications.remove(planned.data_bucket, gate_arn))
            done["primary_gate"] = "closed"
        except Unreachable as failure:
            done["primary_gate"] = f"{UNREACHABLE}: {failure.reason}"
        self._save(planned, done)

    def _missed(self, planned: FailoverPlan, done: dict[str, Any],
                remaining_ms: Callable[[], int]) -> list[MissedUpload] | None:
        """The uploads no region processed (see drcore.region.failover_catch_up); None: continue in a new
        invocation."""
        # S3 keeps last-modified times to the second: the window opens at the start of the second it opened in
        # (an upload processed by the primary within that second may be processed again; none is missed).
        start = datetime.fromisoformat(done["stopped_at"]).replace(microsecond=0)
        end = datetime.fromisoformat(done["started_at"])
        if self._gates is None:
            return list(missed_uploads(self._secondary.s3, planned.replica_bucket, start, end))
        entry_id = gate_entry_id(planned.plan_id)
        reached: dict[str, Any] = done.setdefault("gated_replica", {})
        both: list[str] = done.setdefault("gated_both", [])

        def record_replica(uploads: tuple[GatedUpload, ...]) -> None:
            reached.update({upload.name: upload.to_dict() for upload in uploads})
            self._save(planned, done)

        def record_primary(uploads: tuple[GatedUpload, ...]) -> None:
            both.extend(upload.name for upload in uploads if upload.name in reached)
            self._save(planned, done)

        if not done.get("replica_gate_drained"):
            if not drain(self._gates.replica, entry_id, record_replica, remaining_ms, RESERVE_MS):
                return None
            done["replica_gate_drained"] = True
        if done.get("primary_gate") != "closed":  # the primary could not be gated or closed: its side by time
            return [upload for upload in missed_uploads(self._secondary.s3, planned.replica_bucket, start, end)
                    if upload.name in reached]
        if not done.get("primary_gate_drained"):
            if not drain(self._gates.primary, entry_id, record_primary, remaining_ms, RESERVE_MS):
                return None
            done["primary_gate_drained"] = True
        return [as_missed(GatedUpload.from_dict(reached[name])) for name in dict.fromkeys(both)]

    def _catch_up(self, planned: FailoverPlan, done: dict[str, Any], remaining_ms: Callable[[], int]) -> bool:
        """Invoke each upload no region processed, once; False when the invocation must continue in a new one."""
        if done.get("caught_up_complete"):
            return True
        missed = self._missed(planned, done, remaining_ms)
        if missed is None:
            return False

        def invoke(upload: MissedUpload) -> None:
            invoke_once(self._secondary.lambda_client, planned.function_name, self._names.live_alias,
                        s3_event(upload, planned.replica_bucket, planned.secondary_region))

        if not invoke_each_once(missed, done, "caught_up", invoke, lambda: self._save(planned, done), remaining_ms,
                                RESERVE_MS):
            return False
        done["caught_up_complete"] = True
        self._save(planned, done)
        return True

    def _superseded(self, planned: FailoverPlan, done: dict[str, Any]) -> dict[str, Any]:
        """Another switch's claim holds: this failover stops; the primary's entry goes back if the winner keeps the
        primary active and this failover removed it (with what its gate recorded meanwhile invoked there once)."""
        winner = self._record.current()
        restored: dict[str, Any] | None = None
        if winner is not None and winner.active_region == planned.primary_region and (
                done.get("primary_notification") == "removed"):
            try:
                restored = reaching(lambda: self._restore_primary(planned, done))
            except Unreachable as failure:
                restored = {"state": UNREACHABLE, "reason": failure.reason}
        if self._gates is not None and "replica_gate" in done:  # nothing it recorded is the replica's to process
            replica_gate = self._gates.replica
            self._replica_notifications.remove(planned.replica_bucket, replica_gate.queue_arn)
            drain(replica_gate, gate_entry_id(planned.plan_id), lambda _: None, lambda: RESERVE_MS, 0)
        logger.warning("failover superseded", extra={"plan_id": planned.plan_id,
                                                     "holding": None if winner is None else winner.to_dict()})
        return {"ok": False, "superseded": True, "holding_claim": None if winner is None else winner.to_dict(),
                "primary_notification_restored": restored}

    def _restore_primary(self, planned: FailoverPlan, done: dict[str, Any]) -> dict[str, Any]:
        notifications, live = self._primary_notifications, planned.primary_live_arn
        if self._gates is None or done.get("primary_gate") != "placed":
            return notifications.merge_in(planned.data_bucket, live, planned.notification_template).to_dict()
        gate = self._gates.primary
        restored = notifications.swap(planned.data_bucket, gate.queue_arn, live, planned.notification_template)
        replayed: list[str] = []

        def replay(uploads: tuple[GatedUpload, ...]) -> None:  # processed by no region: the primary, once
            for upload in uploads:
                self._primary.invoke_live(s3_event(as_missed(upload), planned.data_bucket, planned.primary_region))
                replayed.append(upload.name)

        drain(gate, gate_entry_id(planned.plan_id), replay, lambda: RESERVE_MS, 0)
        return {**restored.to_dict(), "replayed": replayed}

    def _figures(self, done: dict[str, Any], claim: RegionClaim) -> dict[str, Any]:
        return {"epoch": claim.epoch, "primary_notification": done.get("primary_notification"),
                "caught_up": len(done.get("caught_up", []))}

    def _result(self, planned: FailoverPlan, done: dict[str, Any], claim: RegionClaim) -> dict[str, Any]:
        environment, replica = done["environment"], done["replica_notification"]
        ok = bool(environment["verified"] and replica["processing"] and not replica["lost_entries"]
                  and not done.get("primary_notification_lost_entries"))
        return {"ok": ok, "active_region": planned.secondary_region, **self._figures(done, claim),
                "stopped_at": done["stopped_at"], "started_at": done["started_at"],
                "replication": done.get("replication"), "environment": environment,
                "replica_notification": replica, "notices": done["notices"], "validation": done["validation"],
                "validation_status": done["validation"].get("status"), "forced": planned.forced}

    def _save(self, planned: FailoverPlan, done: dict[str, Any]) -> None:
        self._checkpoint(planned.plan_id, done)

    def _account(self) -> tuple[str, str]:
        """The account and partition, from the secondary function's ARN (the same account holds both regions)."""
        try:
            arn = str(self._secondary.lambda_client.get_function_configuration(
                FunctionName=self._names.function_name)["FunctionArn"])
        except ClientError as error:
            if is_not_found(error):  # the readiness check reports it, and refuses the failover
                return "000000000000", "aws"
            raise
        parts = arn.split(":")
        return parts[4], parts[1]

    @staticmethod
    def _world(current: RegionClaim | None) -> str:
        """What a plan depends on: the region record as it was (another switch since makes it stale)."""
        state = None if current is None else current.to_dict()
        return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()

