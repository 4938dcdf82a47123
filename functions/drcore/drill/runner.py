"""DR drills in AWS: the newest backups really restored into scratch resources, each step timed against its
recovery time objective, and a report that says what happened.

The runbook's dr-test.sh restored over production and then wrote "passed" for every test whatever had
happened. A drill here never touches the protected function, bucket or stack. Its steps, in order; a step
that fails is reported and the drill goes on with the next:

    rpo_check       every component's newest complete backup is younger than its RPO
    health_check    the LIVE alarms exist and none is in ALARM; automation is not frozen
    recover_lambda  the newest function backup restored as the scratch function: code verified against
                    the backup's CodeSha256, configuration and environment as backed up (objective: the
                    function's RTO)
    restore_s3      the scratch bucket emptied (delete markers only), the newest data snapshot restored
                    into it, every object read back and verified by content and headers; a failure names
                    the keys that differ, and those whose stored backup content is damaged (objective:
                    the data's RTO)
    validate_stack  the newest stack backup verified against its manifest and its template validated by
                    CloudFormation, parameters complete. Not created: the pipeline's resources have fixed
                    names, so a second copy in the account would collide (objective: the configuration RTO)

A restore that outlasts the invocation continues in a new one. A run is kept in the state table as a
`drill` plan (drcore.state.plans.PlanBook): steps done, the restore in progress, and finally the report, so a
continuation or a retried invocation resumes where it stopped. Step times are wall-clock, including the
pauses between invocations. The finished report is written once to the backup bucket (JSON and
Markdown, under drills/), journaled as action "drill" (the recovery function's status shows the last
one), published as the DrillPassed metric, and a failed drill is alerted at severity 3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.alarms import AlarmBoard
from drcore.aws.alerts import Alert, AlertPublisher
from drcore.aws.errors import is_precondition_failed
from drcore.backup.catalog import BackupCatalog
from drcore.core.config import DrillEnvironment
from drcore.core.errors import DrError, InvalidRequest
from drcore.core.metric_names import DRILL_PASSED_METRIC, ENVIRONMENT_DIMENSION
from drcore.core.models import Cause, Clock, ControllerState, parse_time, to_iso, utc_now
from drcore.drill.report import DrillReport, DrillStep
from drcore.restore.bucket_plan import RestorePlan
from drcore.restore.bucket_restore import BucketRestorer
from drcore.restore.function_restore import FunctionRestorer
from drcore.restore.stack_recovery import StackRecovery
from drcore.state.backup_store import REPORTS_PREFIX, BackupListing, BackupStore, Component
from drcore.state.plans import PlanBook
from drcore.state.store import ControllerStateStore

logger = Logger(child=True)

STEPS = ("rpo_check", "health_check", "recover_lambda", "restore_s3", "validate_stack")
DRILL_KIND = "drill"
# A run's record outlives any drill; DynamoDB's TTL removes it afterwards (the report stays in the bucket).
RUN_TTL_SECONDS = 7 * 86400
# A step starts only with this much of the invocation left, or the drill continues in a new invocation:
# a function restore waits for Lambda to settle, and a restore pauses itself before its own margin.
STEP_MARGIN_MS = 3 * 60 * 1000
DELETE_BATCH = 1000  # DeleteObjects' limit


class DrillRecorder:
    """Where a finished drill's report goes: the backup bucket, the journal, the metric, and on failure an alert."""

    def __init__(self, store: BackupStore, journal: ControllerStateStore, function_name: str, cloudwatch_client: Any,
                 metrics_namespace: str, alerts: AlertPublisher) -> None:
        self._store = store
        self._journal = journal
        self._function = function_name
        self._cloudwatch = cloudwatch_client
        self._namespace = metrics_namespace
        self._alerts = alerts

    def record(self, drill_id: str, report: DrillReport, requested_by: str) -> str:
        """Every output once, so a retried invocation may call it again; returns the report's key."""
        key = f"{REPORTS_PREFIX}{drill_id}/report.json"
        rendering = f"{REPORTS_PREFIX}{drill_id}/report.md"
        for name, body, content_type in ((key, report.to_json(), "application/json"),
                                         (rendering, report.to_markdown(), "text/markdown")):
            # Written already by an invocation that crashed before finishing the run: it stands.
            self._store.put_same_once(name, body.encode(), content_type)
        failed = [step.name for step in report.steps if not (step.ok and step.within_objective)]
        self._journal.append_journal(
            self._function, entry_id=drill_id, at=report.finished_at, action="drill",
            cause=Cause(kind="drill", summary=f"DR drill ({report.environment}) requested by {requested_by}"),
            result="passed" if report.ok else "failed",
            details={**report.summary(), "report": f"s3://{self._store.bucket}/{key}"})
        self._cloudwatch.put_metric_data(Namespace=self._namespace, MetricData=[{
            "MetricName": DRILL_PASSED_METRIC, "Value": 1 if report.ok else 0, "Unit": "None",
            "Dimensions": [{"Name": ENVIRONMENT_DIMENSION, "Value": report.environment}]}])
        if failed:
            self._alerts.publish(Alert(
                severity=3, brief=f"DR drill failed: {', '.join(failed)}", occurred_at=report.finished_at,
                impact="None now; a recovery this drill rehearses may fail or overrun its objective in an incident",
                components=tuple(failed), status="Drill finished; production was not touched",
                actions_taken=(f"Drill {drill_id} restored the newest backups into scratch resources",),
                next_steps=(f"Read the report: s3://{self._store.bucket}/{key}",
                            "Fix what the failed steps name, then run a drill again: {\"action\": \"drill\"}"),
                event_type="drill_failed", function_name=self._function,
                facts={step.name: _fact(step) for step in report.steps}))
        logger.info("drill recorded", extra={"drill_id": drill_id, "ok": report.ok, "failed": failed, "report": key})
        return key


def _fact(step: DrillStep) -> str:
    verdict = "ok" if step.ok and step.within_objective else ("over objective" if step.ok else "FAILED")
    objective = f" (objective {step.objective_seconds:g}s)" if step.objective_seconds else ""
    error = f": {step.details['error']}" if "error" in step.details else ""
    return f"{verdict} in {step.seconds:g}s{objective}{error}"


@dataclass(frozen=True)
class DrillTargets:
    """What a drill rehearses the recovery of, where it restores to, and the objectives it is timed against."""

    protected_function: str
    data_bucket: str
    watched_alarms: tuple[str, ...]
    scratch_function: str
    scratch_bucket: str
    environment: DrillEnvironment
    rto_seconds: Mapping[str, int]  # component ("lambda", "s3", "configuration") -> seconds

    def __post_init__(self) -> None:
        if self.scratch_function == self.protected_function or self.scratch_bucket == self.data_bucket:
            raise ValueError("a drill's scratch function and bucket must not be the protected ones")


@dataclass(frozen=True)
class DrillSources:
    """What a drill reads: the backups, the LIVE alarms and the controller record."""

    catalog: BackupCatalog
    alarm_board: AlarmBoard
    controller_state: ControllerStateStore


@dataclass(frozen=True)
class DrillEngines:
    """What a drill restores with: the restore engines, and the clients it clears and trims the scratch
    bucket and function with."""

    function_restorer: FunctionRestorer
    bucket_restorer: BucketRestorer
    stack_recovery: StackRecovery
    s3_client: Any
    lambda_client: Any


@dataclass(frozen=True)
class DrillRecords:
    """Where a drill keeps its run and its report; `continue_later(event)` invokes the drill function again
    with `event`."""

    runs: PlanBook
    recorder: DrillRecorder
    continue_later: Callable[[dict[str, Any]], None]


class DrillRunner:
    """Runs drills step by step."""

    def __init__(self, targets: DrillTargets, sources: DrillSources, engines: DrillEngines, records: DrillRecords,
                 clock: Clock = utc_now) -> None:
        self._targets = targets
        self._function = targets.protected_function
        self._catalog = sources.catalog
        self._alarm_board = sources.alarm_board
        self._state = sources.controller_state
        self._function_restorer = engines.function_restorer
        self._bucket_restorer = engines.bucket_restorer
        self._stack_recovery = engines.stack_recovery
        self._s3 = engines.s3_client
        self._lambda = engines.lambda_client
        self._runs = records.runs
        self._recorder = records.recorder
        self._continue_later = records.continue_later
        self._clock = clock

    # Runs ----------------------------------------------------------------------------------------

    def start(self, drill_id: str, requested_by: str, reason: str, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """A new drill; a second start with the same id (a duplicated schedule event) starts nothing."""
        request = {"drill_id": drill_id, "requested_by": requested_by, "reason": reason}
        run = {"started_at": to_iso(self._clock()), "environment": self._targets.environment.value}
        try:
            self._runs.save(drill_id, DRILL_KIND, request, run)
        except ClientError as error:
            if is_precondition_failed(error):
                logger.info("drill already started", extra={"drill_id": drill_id})
                return {"status": "already_started", "drill_id": drill_id,
                        "note": f"resume it with {{\"resume\": \"{drill_id}\"}} if it stopped"}
            raise
        if not self._runs.claim(drill_id, requested_by):  # a resumption got there first: it runs the drill
            return {"status": "already_started", "drill_id": drill_id}
        logger.info("drill started", extra={"drill_id": drill_id, "requested_by": requested_by, "reason": reason})
        return self._run(drill_id, request, run, {}, remaining_ms)

    def resume(self, drill_id: str, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        stored = self._runs.load(drill_id, DRILL_KIND, None)
        if stored.result is not None:
            return {"status": "finished", "drill_id": drill_id, "passed": stored.result["ok"], "report": stored.result}
        return self._run(drill_id, stored.request, stored.plan, dict(stored.progress or {}), remaining_ms)

    def _run(self, drill_id: str, request: dict[str, Any], run: dict[str, Any], progress: dict[str, Any],
             remaining_ms: Callable[[], int]) -> dict[str, Any]:
        steps = [DrillStep(**step) for step in progress.get("steps", [])]
        for name in STEPS[len(steps):]:  # steps run, and are recorded, in order
            if remaining_ms() < STEP_MARGIN_MS:
                return self._later(drill_id, progress, f"{name} starts in a new invocation")
            if name == "restore_s3":
                step, restore = self._restore_s3(progress.get("restore"), remaining_ms)
                if step is None:
                    progress["restore"] = restore
                    return self._later(drill_id, progress, "restore_s3 continues in a new invocation")
                progress.pop("restore", None)
            else:
                step = self._timed(name, getattr(self, f"_{name}"))
            steps.append(step)
            progress["steps"] = [asdict(step) for step in steps]
            self._runs.record(drill_id, progress=progress)
            logger.info("drill step finished", extra={"drill_id": drill_id, "step": name, "ok": step.ok,
                                                      "seconds": step.seconds, "objective": step.objective_seconds})
        if "report" not in progress:  # fixed before recording, so a retried invocation records the same report
            progress["report"] = DrillReport(environment=run["environment"], started_at=run["started_at"],
                                             finished_at=to_iso(self._clock()), steps=steps).to_dict()
            self._runs.record(drill_id, progress=progress)
        report = DrillReport.from_dict(progress["report"])
        key = self._recorder.record(drill_id, report, request["requested_by"])
        result = {**report.to_dict(), "report_key": key}
        self._runs.record(drill_id, progress=progress, result=result)
        return {"status": "finished", "drill_id": drill_id, "passed": report.ok, "report": result}

    def _later(self, drill_id: str, progress: dict[str, Any], why: str) -> dict[str, Any]:
        self._runs.record(drill_id, progress=progress)
        self._continue_later({"resume": drill_id})
        logger.info("drill continues in a new invocation", extra={"drill_id": drill_id, "why": why})
        return {"status": "in_progress", "drill_id": drill_id, "note": why,
                "steps_done": [step["name"] for step in progress.get("steps", [])]}

    def _timed(self, name: str, run: Callable[[], tuple[bool, dict[str, Any]]]) -> DrillStep:
        started = self._clock()
        try:
            ok, details = run()
        except Exception as error:  # a drill reports a failed step and goes on; it never stops at the first error
            logger.exception("drill step failed", extra={"step": name})
            ok, details = False, {"error": f"{type(error).__name__}: {error}"}
        return DrillStep(name=name, ok=ok, seconds=self._seconds_since(started),
                         objective_seconds=self._objective(name), details=details)

    def _objective(self, name: str) -> float | None:
        component = {"recover_lambda": "lambda", "restore_s3": "s3", "validate_stack": "configuration"}.get(name)
        return None if component is None else self._targets.rto_seconds.get(component)

    def _seconds_since(self, started: datetime) -> float:
        return round((self._clock() - started).total_seconds(), 3)

    def _newest(self, component: Component) -> BackupListing:
        complete = [listing for listing in self._catalog.listings(component) if listing.complete]
        if not complete:
            raise InvalidRequest(f"there is no complete {component.value} backup of {self._catalog.subject(component)} "
                                 "to restore: run the backup function first")
        return complete[-1]

    # Steps ---------------------------------------------------------------------------------------

    def _rpo_check(self) -> tuple[bool, dict[str, Any]]:
        latest = self._catalog.latest()
        stale = sorted(component for component, backup in latest.items() if not backup["within_rpo"])
        return not stale, {"components": latest, "outside_rpo": stale}

    def _health_check(self) -> tuple[bool, dict[str, Any]]:
        watched = self._targets.watched_alarms
        states = self._alarm_board.states(watched)
        missing = sorted(set(watched) - set(states))
        in_alarm = sorted(name for name, signal in states.items() if signal.state == "ALARM")
        record = self._state.get(self._function)
        frozen = record is not None and record.state is ControllerState.FROZEN
        details = {
            "alarms": {name: signal.state for name, signal in sorted(states.items())},
            "alarms_missing": missing,
            "alarms_in_alarm": in_alarm,
            "controller_state": record.state.value if record else None,
            "live_version": record.live_version if record else None,
            "stable_version": record.stable_version if record else None,
        }
        return bool(watched) and not missing and not in_alarm and not frozen, details

    def _recover_lambda(self) -> tuple[bool, dict[str, Any]]:
        backup = self._newest(Component.LAMBDA)
        plan = self._function_restorer.plan(backup.backup_id, self._targets.scratch_function)
        result = self._function_restorer.apply(plan)
        details: dict[str, Any] = {"reserved_concurrency_released": self._release_reserved_concurrency()}
        details |= {
            "backup_id": backup.backup_id,
            "target": result.target,
            "created": result.created,
            "version": result.version,
            "code_sha256_verified": result.code_sha256_verified,
            "environment_restored": result.environment_restored,
            "settings_restored": len(result.restored),
            "not_restored": result.not_restored,
        }
        return result.ok, details

    def _release_reserved_concurrency(self) -> int | None:
        """Once verified, the scratch function gives back the concurrency its backup reserved: nothing
        invokes it, and a reservation would shrink the account's unreserved pool until the next drill."""
        scratch = self._targets.scratch_function
        reserved: int | None = self._lambda.get_function_concurrency(FunctionName=scratch).get(
            "ReservedConcurrentExecutions")
        if reserved is not None:
            self._lambda.delete_function_concurrency(FunctionName=scratch)
        return reserved

    def _restore_s3(self, restore: dict[str, Any] | None,
                    remaining_ms: Callable[[], int]) -> tuple[DrillStep | None, dict[str, Any]]:
        """(the finished step, or None with the restore's state to continue from)."""
        try:
            if restore is None:
                restore = self._begin_restore()
            plan = RestorePlan.from_dict(restore["plan"])
            restore["invocations"] += 1
            step = self._bucket_restorer.apply(plan, remaining_ms, safety_snapshot_id=restore["safety_snapshot_id"])
            restore.update(safety_snapshot_id=step.safety_snapshot_id, copied=restore["copied"] + step.copied,
                           bytes_copied=restore["bytes_copied"] + step.bytes_copied)
            if not step.finished:
                return None, restore
        except Exception as error:  # reported as the step's failure, like any other step's
            logger.exception("drill step failed", extra={"step": "restore_s3"})
            started = parse_time(restore["started_at"]) if restore else self._clock()
            return DrillStep(name="restore_s3", ok=False, seconds=self._seconds_since(started),
                             objective_seconds=self._objective("restore_s3"),
                             details={"error": f"{type(error).__name__}: {error}"}), {}
        verification = step.verification
        assert verification is not None, "a finished apply carries its verification"
        details: dict[str, Any] = {
            "snapshot_id": plan.snapshot_id,
            "target_bucket": plan.target_bucket,
            "scratch_objects_cleared": restore["cleared"],
            "objects_expected": verification.objects_expected,
            "objects_matching": verification.objects_matching,
            "objects_copied": restore["copied"],
            "bytes_copied": restore["bytes_copied"],
            "archived_not_restored": plan.archived,
            "invocations": restore["invocations"],
            "verification": verification.to_dict(),
        }
        if not verification.ok:
            # The drill's alert quotes a failed step's error: it names the keys.
            details["error"] = verification.failure(plan.snapshot_id)
        return DrillStep(name="restore_s3", ok=verification.ok and not plan.archived,
                         seconds=self._seconds_since(parse_time(restore["started_at"])),
                         objective_seconds=self._objective("restore_s3"), details=details), restore

    def _begin_restore(self) -> dict[str, Any]:
        started = self._clock()
        snapshot = self._newest(Component.S3)
        # An empty scratch bucket makes the drill copy everything, as a restore into a lost bucket would.
        cleared = self._clear_scratch_bucket()
        plan = self._bucket_restorer.plan(source_bucket=self._targets.data_bucket, snapshot_id=snapshot.backup_id,
                                          target_bucket=self._targets.scratch_bucket)
        return {"started_at": to_iso(started), "plan": plan.to_dict(), "cleared": cleared, "safety_snapshot_id": None,
                "copied": 0, "bytes_copied": 0, "invocations": 0}

    def _clear_scratch_bucket(self) -> int:
        """Hide every current object of the scratch bucket behind a delete marker; its lifecycle expires them."""
        cleared, scratch = 0, self._targets.scratch_bucket
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=scratch,
                                                                   PaginationConfig={"PageSize": DELETE_BATCH})
        for page in pages:
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
            if not keys:
                continue
            answer = self._s3.delete_objects(Bucket=scratch, Delete={"Objects": keys, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise DrError(f"could not clear s3://{scratch}: {len(answer['Errors'])} objects refused, "
                              f"such as {first.get('Key')} ({first.get('Code')}: {first.get('Message')})")
            cleared += len(keys)
        return cleared

    def _validate_stack(self) -> tuple[bool, dict[str, Any]]:
        backup = self._newest(Component.STACK)
        checked = self._stack_recovery.validate(backup.backup_id)
        return checked["recoverable"], {**checked, "created": False,
                                        "why_not_created": "the pipeline's resources have fixed names; a second "
                                        "copy would collide with them"}
