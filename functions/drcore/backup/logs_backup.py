"""A daily export of a log group to the backup bucket, one UTC day per backup.

CloudWatch Logs exports take minutes and AWS runs one export task per account at a time, so one run
cannot wait for one. A run first settles the exports earlier runs started (a finished one gets its
manifest; a failed one is marked so its day can be exported again), then starts the day's export if
that day is neither exported nor being exported. Under `backups/logs/<subject>/<backup id>/`:

    export-task.json               the export task started: task id, log group, day, time range (ms)
    <task id>/<stream>/000000.gz   what CloudWatch Logs writes (it also writes `aws-logs-write-test`)
    export-failed.json             only if the task failed or was cancelled: the day is exported again
    manifest.json                  last, once the task COMPLETED: the exported objects with size, ETag and
                                   version (then manifest-version.json, the manifest's own version)

The subject is the function's name for a Lambda log group (`/aws/lambda/<function>`), otherwise the
group's name with `/` as `-`. The bucket policy must let `logs.<region>.amazonaws.com` write there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import LIMIT_EXCEEDED, error_code, is_not_found
from drcore.core.errors import InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_files import BackupReader
from drcore.state.backup_store import (
    AlreadyWritten,
    BackupListing,
    BackupStore,
    Component,
    backup_prefix,
    manifest_key,
    new_backup_id,
    readable_version,
)

logger = Logger(child=True)

FORMAT = 1
EXPORT_TASK = "export-task.json"
EXPORT_FAILED = "export-failed.json"
WRITE_TEST_OBJECT = "aws-logs-write-test"  # CloudWatch Logs' permission probe, not log data
_OWN_FILES = (EXPORT_TASK, EXPORT_FAILED, WRITE_TEST_OBJECT)
_FINISHED_BADLY = ("CANCELLED", "FAILED")
LAMBDA_LOG_GROUP_PREFIX = "/aws/lambda/"


class LogGroupNotFound(InvalidRequest):
    """The log group to export does not exist."""


def log_subject(log_group: str) -> str:
    """Where a log group's backups are filed in the backup store (see the module doc)."""
    if log_group.startswith(LAMBDA_LOG_GROUP_PREFIX):
        return log_group[len(LAMBDA_LOG_GROUP_PREFIX):]
    return log_group.strip("/").replace("/", "-")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class LogsBackupResult:
    log_group: str
    subject: str
    day: str  # the UTC day asked for, YYYY-MM-DD
    # That day's export after this run: "complete" (its manifest exists), "pending" (its task runs),
    # "busy" (another export task in the account runs: retry later; nothing was started).
    status: str
    backup_id: str | None  # the day's backup, if it has one
    task_id: str | None
    manifest_key: str | None
    objects: int  # exported objects of the day's backup, once complete
    bytes: int
    completed: tuple[str, ...] = ()  # backups of any day whose manifest this run wrote
    failed: tuple[str, ...] = ()  # backups whose export task this run found failed or cancelled


@dataclass(frozen=True)
class _Export:
    backup_id: str
    task: dict[str, Any]  # the export-task.json record
    state: str  # "complete" | "running" | "failed"
    manifest: dict[str, Any] | None = None
    settled_now: bool = False  # this run wrote its manifest or its failure


class LogsBackup:
    def __init__(self, logs_client: Any, store: BackupStore, log_group: str, clock: Clock = utc_now) -> None:
        self._logs = logs_client
        self._store = store
        self._log_group = log_group
        self._subject = log_subject(log_group)
        self._clock = clock

    def run(self, day: date | None = None) -> LogsBackupResult:
        """Export `day` (default: the previous UTC day) unless it is exported or being exported."""
        now = self._clock().astimezone(UTC)
        day = day or now.date() - timedelta(days=1)
        if _day_start(day + timedelta(days=1)) > now:
            raise InvalidRequest(f"{day} is not over yet (UTC): only whole days are exported")
        exports = [export for listing in self._store.list_backups(Component.LOGS, self._subject)
                   if (export := self._settle(listing, day)) is not None]
        completed = [export.backup_id for export in exports if export.settled_now and export.state == "complete"]
        failed = [export.backup_id for export in exports if export.settled_now and export.state == "failed"]
        same_day = [export for export in exports if export.task["day"] == day.isoformat() and export.state != "failed"]
        done = next((export for export in same_day if export.state == "complete"), None)
        running = next((export for export in same_day if export.state == "running"), None)
        if done:
            return self._result(day, "complete", done, completed, failed)
        if running:
            return self._result(day, "pending", running, completed, failed)
        return self._start(day, completed, failed)

    def _settle(self, listing: BackupListing, day: date) -> _Export | None:
        """The export a backup holds, finishing its bookkeeping if its task ended since the last run."""
        if listing.complete:
            # Only a backup made after the day ended can hold it: older complete ones are not read.
            if listing.created_at < _day_start(day + timedelta(days=1)):
                return None
            manifest = self._manifest(listing.backup_id)
            return _Export(listing.backup_id, manifest["task"], "complete", manifest)
        prefix = backup_prefix(Component.LOGS, self._subject, listing.backup_id)
        try:
            task = self._store.get_json(prefix + EXPORT_TASK)
        except ClientError as error:
            if not is_not_found(error):
                raise
            return None  # a run stopped between starting the task and recording it: never complete
        if self._store.exists(prefix + EXPORT_FAILED):
            return _Export(listing.backup_id, task, "failed")
        status = self._task_status(task["task_id"])
        # A run overlapping this one may settle the same task first: write-once makes one of them win.
        if status["code"] == "COMPLETED":
            try:
                manifest = self._write_manifest(listing.backup_id, task, status)
            except AlreadyWritten:
                manifest = self._manifest(listing.backup_id)
                return _Export(listing.backup_id, task, "complete", manifest)
            return _Export(listing.backup_id, task, "complete", manifest, settled_now=True)
        if status["code"] in _FINISHED_BADLY:
            try:
                self._store.put_json_once(prefix + EXPORT_FAILED, {"task_id": task["task_id"], "status": status,
                                                                  "found_at": to_iso(self._clock())})
            except AlreadyWritten:
                return _Export(listing.backup_id, task, "failed")
            logger.warning("log export failed", extra={"log_group": self._log_group, "day": task["day"],
                                                       "task_id": task["task_id"], "status": status})
            return _Export(listing.backup_id, task, "failed", settled_now=True)
        return _Export(listing.backup_id, task, "running")

    def _manifest(self, backup_id: str) -> dict[str, Any]:
        """A complete export's manifest, the version it was written as (drcore.state.backup_files)."""
        return BackupReader(self._store, Component.LOGS, self._subject).open(backup_id).manifest

    def _task_status(self, task_id: str) -> dict[str, Any]:
        try:
            tasks = self._logs.describe_export_tasks(taskId=task_id)["exportTasks"]
        except ClientError as error:
            if not is_not_found(error):
                raise
            tasks = []
        if not tasks:  # CloudWatch Logs keeps finished tasks for a while only
            return {"code": "FAILED", "message": f"export task {task_id} is no longer known to CloudWatch Logs"}
        status: dict[str, Any] = tasks[0]["status"]
        return status

    def _write_manifest(self, backup_id: str, task: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        prefix = backup_prefix(Component.LOGS, self._subject, backup_id)
        exported = [entry for entry in self._store.current_versions(prefix)
                    if entry["Key"][len(prefix):] not in _OWN_FILES]
        objects = [{"path": entry["Key"][len(prefix):], "size": entry["Size"], "etag": entry["ETag"].strip('"'),
                    "version_id": readable_version(entry.get("VersionId")), "last_modified": entry["LastModified"]}
                   for entry in exported]
        manifest = {
            "format": FORMAT,
            "component": Component.LOGS.value,
            "backup_id": backup_id,
            "log_group": self._log_group,
            "subject": self._subject,
            "day": task["day"],
            "task": task,
            "task_status": status,
            "objects": objects,
            "object_count": len(objects),
            "bytes": sum(entry["Size"] for entry in exported),
            "completed_at": to_iso(self._clock()),
        }
        self._store.put_manifest_once(Component.LOGS, self._subject, backup_id, manifest)
        logger.info("log export backed up", extra={"log_group": self._log_group, "day": task["day"],
                                                   "backup_id": backup_id, "objects": len(objects)})
        return manifest

    def _start(self, day: date, completed: list[str], failed: list[str]) -> LogsBackupResult:
        started = self._clock()
        backup_id = new_backup_id(started)
        # CloudWatch Logs puts objects under `<prefix>/<task id>/`: the prefix is given without its slash.
        prefix = backup_prefix(Component.LOGS, self._subject, backup_id).rstrip("/")
        from_ms = _millis(_day_start(day))
        to_ms = _millis(_day_start(day + timedelta(days=1))) - 1  # `to` is inclusive
        task_name = f"dr-backup-{self._subject}-{day.isoformat()}"[:512]
        try:
            task_id = self._logs.create_export_task(
                taskName=task_name, logGroupName=self._log_group, fromTime=from_ms, to=to_ms,
                destination=self._store.bucket, destinationPrefix=prefix,
            )["taskId"]
        except ClientError as error:
            if error_code(error) in LIMIT_EXCEEDED:
                logger.info("another export task is running; retry later",
                            extra={"log_group": self._log_group, "day": day.isoformat()})
                return LogsBackupResult(self._log_group, self._subject, day.isoformat(), "busy", None, None, None,
                                        0, 0, tuple(completed), tuple(failed))
            if is_not_found(error):
                raise LogGroupNotFound(f"log group {self._log_group} does not exist") from error
            raise
        task = {"format": FORMAT, "task_id": task_id, "task_name": task_name, "log_group": self._log_group,
                "day": day.isoformat(), "from_ms": from_ms, "to_ms": to_ms, "destination_bucket": self._store.bucket,
                "destination_prefix": prefix, "started_at": to_iso(started)}
        self._store.put_json_once(f"{prefix}/{EXPORT_TASK}", task)
        logger.info("log export started", extra={"log_group": self._log_group, "day": day.isoformat(),
                                                 "backup_id": backup_id, "task_id": task_id})
        return self._result(day, "pending", _Export(backup_id, task, "running"), completed, failed)

    def _result(self, day: date, status: str, export: _Export, completed: list[str],
                failed: list[str]) -> LogsBackupResult:
        manifest = export.manifest or {}
        return LogsBackupResult(
            log_group=self._log_group, subject=self._subject, day=day.isoformat(), status=status,
            backup_id=export.backup_id, task_id=export.task["task_id"],
            manifest_key=manifest_key(Component.LOGS, self._subject, export.backup_id) if export.manifest else None,
            objects=manifest.get("object_count", 0), bytes=manifest.get("bytes", 0),
            completed=tuple(completed), failed=tuple(failed),
        )
