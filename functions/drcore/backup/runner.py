"""Runs the backups a request asks for, records each good one, and keeps long snapshots going.

After every good backup: a journal entry and the RPO metrics (`BackupSucceeded` = 1 and
`BackupCompletedAt` = epoch seconds, dimension `Component`; drcore.core.metric_names), which the stack's
RPO alarms watch.
A bucket snapshot that cannot finish in this invocation checkpoints and asks for a continuation
(the handler re-invokes the function asynchronously with the snapshot's id). A fanned-out one is continued
by its state machine instead, which invokes the function for each shard and, at the end, to merge them;
each shard's invocation publishes its progress (drcore.core.metric_names: the snapshot shard metrics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.metrics import ComponentMetrics
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.function_backup import FunctionBackup
from drcore.backup.logs_backup import LogsBackup
from drcore.backup.requests import BackupRequest
from drcore.backup.stack_backup import StackBackup
from drcore.core.config import BackupSettings
from drcore.core.errors import InvalidRequest
from drcore.core.metric_names import (
    BACKUP_COMPLETED_AT_METRIC,
    BACKUP_SUCCEEDED_METRIC,
    SNAPSHOT_BYTES_COPIED_METRIC,
    SNAPSHOT_OBJECTS_LISTED_METRIC,
    SNAPSHOT_SHARDS_DONE_METRIC,
)
from drcore.core.models import Cause, Clock, to_iso, utc_now
from drcore.state.backup_store import Component
from drcore.state.store import ControllerStateStore

logger = Logger(child=True)

ORDER = (Component.LAMBDA, Component.STACK, Component.LOGS, Component.S3)  # the long one last


@dataclass
class ComponentOutcome:
    component: str
    # "complete" | "current" | "continuing" | "fanned_out" | "running" | "shard_done" | "shard_continuing" |
    # "pending" | "failed" | "skipped"
    status: str
    backup_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class BackupMetrics:
    def __init__(self, cloudwatch_client: Any, namespace: str) -> None:
        self._metrics = ComponentMetrics(cloudwatch_client, namespace)

    def good_backup(self, component: str, completed_at: float) -> None:
        self._metrics.publish(component, {BACKUP_SUCCEEDED_METRIC: (1, "Count"),
                                          BACKUP_COMPLETED_AT_METRIC: (completed_at, "None")})

    def shard_progress(self, objects_listed: int, bytes_copied: int, finished: bool) -> None:
        """One invocation of a fanned-out snapshot's shard: what it listed and copied, and whether it finished it."""
        self._metrics.publish("s3", {SNAPSHOT_OBJECTS_LISTED_METRIC: (objects_listed, "Count"),
                                     SNAPSHOT_BYTES_COPIED_METRIC: (bytes_copied, "Bytes"),
                                     SNAPSHOT_SHARDS_DONE_METRIC: (int(finished), "Count")})


class BackupRunner:
    def __init__(
        self,
        settings: BackupSettings,
        *,
        run_component: dict[Component, Callable[[BackupRequest, Callable[[], int]], ComponentOutcome]],
        journal: ControllerStateStore,
        metrics: BackupMetrics,
        continue_snapshot: Callable[[BackupRequest], None],
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self._run_component = run_component
        self._journal = journal
        self._metrics = metrics
        self._continue_snapshot = continue_snapshot
        self._clock = clock

    def run(self, request: BackupRequest, remaining_ms: Callable[[], int]) -> list[ComponentOutcome]:
        components = ORDER if request.component == "all" else (Component(request.component),)
        outcomes = []
        for component in components:
            outcome = self._run_one(component, request, remaining_ms)
            outcomes.append(outcome)
        failed = [outcome for outcome in outcomes if outcome.status == "failed"]
        if failed:
            # Raise so Lambda retries and, in the end, the failed-events queue alarms; the RPO alarm
            # also fires if no good backup follows in time.
            raise BackupFailed("; ".join(f"{o.component}: {o.details.get('error')}" for o in failed), outcomes)
        return outcomes

    def _run_one(self, component: Component, request: BackupRequest,
                 remaining_ms: Callable[[], int]) -> ComponentOutcome:
        cause = Cause(kind="config_change" if request.reason.startswith("configuration change") else "schedule",
                      summary=request.reason)
        try:
            outcome = self._run_component[component](request, remaining_ms)
        except Exception as error:  # one component's failure must not stop the others
            if isinstance(error, InvalidRequest) and request.shard is not None:
                raise  # a shard its snapshot's plan does not hold: refused, before anything was written
            logger.exception("backup failed", extra={"component": component.value})
            outcome = ComponentOutcome(component.value, "failed", details={"error": f"{type(error).__name__}: {error}"})
        now = self._clock()
        if outcome.status in ("complete", "current"):
            self._metrics.good_backup(component.value, now.timestamp())
        if outcome.status == "continuing":
            self._continue_snapshot(BackupRequest(component="s3", resume=outcome.backup_id, reason=request.reason))
        if outcome.status in ("shard_done", "shard_continuing"):
            self._metrics.shard_progress(outcome.details["listed_here"], outcome.details["copied_here"],
                                         outcome.status == "shard_done")
        # A shard's failure is its state machine's (retried there, then alarmed); the snapshot's result is the merge's.
        if outcome.status in ("complete", "failed") and request.shard is None:
            at = to_iso(now)
            self._journal.append_journal(
                self._settings.protected_function, entry_id=f"backup-{component.value}-{outcome.backup_id or at}",
                at=at, action=f"backup_{component.value}", cause=cause, result=outcome.status,
                details={"backup_id": outcome.backup_id, **{k: v for k, v in outcome.details.items() if _small(v)}},
            )
        logger.info("backup step", extra={"component": component.value, "status": outcome.status,
                                          "backup_id": outcome.backup_id})
        return outcome


def _small(value: Any) -> bool:
    """Journal entries keep figures and short facts, not whole listings."""
    return not isinstance(value, (list, dict)) or len(str(value)) < 2000


def component_runners(
    *,
    function_backup: FunctionBackup,
    stack_backup: StackBackup,
    logs_backup: LogsBackup,
    snapshotter: BucketSnapshotter,
    publish_version: bool,
) -> dict[Component, Callable[[BackupRequest, Callable[[], int]], ComponentOutcome]]:
    """Each component's backup, its result told as a ComponentOutcome."""

    def lambda_(request: BackupRequest, _: Callable[[], int]) -> ComponentOutcome:
        result = function_backup.run(publish_version=publish_version, reason=request.reason)
        return ComponentOutcome("lambda", "complete", result.backup_id, {
            "code_sha256": result.code_sha256, "code_sha256_verified": result.code_sha256_verified,
            "bytes": result.bytes, "version": result.version, "published_version": result.published_version,
            "captured": result.captured})

    def stack(_: BackupRequest, __: Callable[[], int]) -> ComponentOutcome:
        result = stack_backup.run()
        return ComponentOutcome("stack", "complete", result.backup_id, {
            "stack_status": result.stack_status, "resources": result.resources, "bytes": result.bytes})

    def logs(_: BackupRequest, __: Callable[[], int]) -> ComponentOutcome:
        result = logs_backup.run()
        # A day's export completes on a later run. The run that writes its manifest is a new backup; later
        # runs that find the last full day exported say the logs backup is "current" (within its RPO).
        later_run = {"busy": "skipped", "complete": "current"}
        status = "complete" if result.completed else later_run.get(result.status, result.status)
        return ComponentOutcome("logs", status, result.backup_id, {
            "day": result.day, "export_status": result.status, "objects": result.objects, "bytes": result.bytes})

    def s3(request: BackupRequest, remaining_ms: Callable[[], int]) -> ComponentOutcome:
        if request.shard is not None:
            shard = snapshotter.snapshot_shard(request.shard.backup_id, request.shard.number, remaining_ms)
            return ComponentOutcome("s3", "shard_done" if shard.finished else "shard_continuing", shard.backup_id, {
                "shard": shard.shard, "listed_here": shard.listed_here, "copied_here": shard.copied_here,
                **{name: value for name, value in shard.stats.items() if name != "archived_not_copied"}})
        progress = snapshotter.snapshot(request.resume, remaining_ms)
        if progress.fanned_out:  # its state machine continues it
            return ComponentOutcome("s3", "fanned_out", progress.backup_id, dict(progress.stats))
        if progress.running_elsewhere:  # a first snapshot's census, which its own continuations carry on
            return ComponentOutcome("s3", "running", progress.backup_id, dict(progress.stats))
        if not progress.finished:
            return ComponentOutcome("s3", "continuing", progress.backup_id, dict(progress.stats))
        return ComponentOutcome("s3", "complete", progress.backup_id, dict(progress.stats))

    return {Component.LAMBDA: lambda_, Component.STACK: stack, Component.LOGS: logs, Component.S3: s3}


class BackupFailed(Exception):
    def __init__(self, message: str, outcomes: list[ComponentOutcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes
