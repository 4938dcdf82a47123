"""The drill's backup steps: the real backup handler against the embedded endpoint.

- backup_lambda: a scheduled function backup, its code archive downloaded over HTTP and verified
  against CodeSha256; then a configuration change reported by CloudTrail is backed up within the
  same invocation (the runbook's real-time RPO for configuration).
- backup_s3: a snapshot of the data bucket, then a second one after a few uploads that copies only those.
- backup_stack: the pipeline's CloudFormation stack, and the day's logs export until it completes.
- rpo_check: every component's newest complete backup is younger than its recovery point objective,
  and its good-backup metric (what the stack's RPO alarms watch) was published.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drcore.backup.manifest import read_manifest
from drcore.core.config import DEFAULT_METRICS_NAMESPACE
from drcore.core.metric_names import BACKUP_SUCCEEDED_METRIC, COMPONENT_DIMENSION
from drcore.state.backup_store import BackupStore, Component
from embedded.aws_events import LambdaContextStub, cloudtrail_event
from embedded.sample_system import SampleSystem
from stacks.settings import CONTEXT_KEY, Settings

BACKUP_FUNCTION = "apilados-dr-backup"


def recovery_objectives() -> dict[str, dict[str, int]]:
    """The recovery objectives table as configured in cdk.json (the runbook's by default), in seconds."""
    context = json.loads((Path(__file__).resolve().parent.parent / "cdk.json").read_text())["context"]
    table = Settings.from_context(context.get(CONTEXT_KEY)).recovery_objectives
    return {name: {"rto_seconds": row["rto_minutes"] * 60, "rpo_seconds": row["rpo_minutes"] * 60}
            for name, row in table.model_dump().items()}


def _backup(event: dict[str, Any]) -> dict[str, Any]:
    import backup.handler as backup

    return backup.handler(event, LambdaContextStub(BACKUP_FUNCTION))


def backup_lambda(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    [scheduled] = _backup({"component": "lambda"})["components"]
    # An operator changes the function's configuration; CloudTrail reports it through EventBridge.
    changed = {**system.clients["lambda"].get_function_configuration(FunctionName=system.function_name)
               ["Environment"]["Variables"], "DRILL_MARKER": datetime.now(UTC).isoformat()}
    system.clients["lambda"].update_function_configuration(FunctionName=system.function_name,
                                                           Environment={"Variables": changed})
    [on_change] = _backup(cloudtrail_event("UpdateFunctionConfiguration20150331v2", system.function_name))["components"]
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    captured = store.get_json(f"backups/lambda/{system.function_name}/{on_change['backup_id']}/configuration.json")
    environment_captured = captured["configuration"]["Environment"]["Variables"] == changed
    details = {
        "backup_id": scheduled["backup_id"],
        "code_sha256_verified": scheduled["details"]["code_sha256_verified"],
        "bytes": scheduled["details"]["bytes"],
        "settings_captured": sorted(k for k, v in scheduled["details"]["captured"].items() if v == "present"),
        "configuration_change_backup_id": on_change["backup_id"],
        "configuration_change_captured": environment_captured,
    }
    completed = scheduled["status"] == on_change["status"] == "complete"
    ok = completed and details["code_sha256_verified"] and environment_captured
    return ok, details


def backup_s3(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    [first] = _backup({"component": "s3"})["components"]
    s3 = system.clients["s3"]
    added = [f"uploads/2026/11/late-{n}.csv" for n in range(3)]
    for key in added:
        s3.put_object(Bucket=system.data_bucket, Key=key, Body=f"id,amount\n{key},1\n".encode(), ContentType="text/csv")
    [second] = _backup({"component": "s3"})["components"]
    store = BackupStore(s3, system.backup_bucket)
    manifest = read_manifest(store, system.data_bucket, second["backup_id"])
    details = {
        "snapshot_id": second["backup_id"],
        "objects_listed": second["details"]["objects_listed"],
        "objects_copied": second["details"]["objects_copied"],
        "bytes_copied": second["details"]["bytes_copied"],
        "first_snapshot_copied": first["details"]["objects_copied"],
        "manifest_objects": len(manifest.objects),
    }
    ok = (first["status"] == second["status"] == "complete" and details["objects_copied"] == len(added)
          and len(manifest.objects) == first["details"]["objects_listed"] + len(added))
    return ok, details


def backup_stack(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    [stack] = _backup({"component": "stack"})["components"]
    logs_statuses = []
    for _ in range(4):  # a CloudWatch Logs export finishes on a later run
        [logs] = _backup({"component": "logs"})["components"]
        logs_statuses.append(logs["status"])
        if logs["status"] == "complete":
            break
    details = {"backup_id": stack["backup_id"], "stack_status": stack["details"]["stack_status"],
               "resources": stack["details"]["resources"], "logs_runs": logs_statuses}
    return stack["status"] == "complete" and logs_statuses[-1] == "complete", details


def rpo_check(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    objectives = recovery_objectives()
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    now = datetime.now(UTC)
    # The stack has no row of its own in the runbook's table: its changes are configuration changes,
    # captured in real time by the function backup, and the stack itself daily.
    subjects = {
        Component.LAMBDA: (system.function_name, objectives["lambda_function"]["rpo_seconds"]),
        Component.S3: (system.data_bucket, objectives["s3_data"]["rpo_seconds"]),
        Component.STACK: (system.stack_name, 24 * 3600),
        Component.LOGS: (system.function_name, objectives["cloudwatch_logs"]["rpo_seconds"]),
    }
    details: dict[str, Any] = {}
    for component, (subject, rpo) in subjects.items():
        complete = [listing for listing in store.list_backups(component, subject) if listing.complete]
        age = (now - complete[-1].created_at).total_seconds() if complete else None
        metric = system.clients["cloudwatch"].get_metric_statistics(
            Namespace=DEFAULT_METRICS_NAMESPACE, MetricName=BACKUP_SUCCEEDED_METRIC,
            Dimensions=[{"Name": COMPONENT_DIMENSION, "Value": component.value}], Statistics=["Sum"], Period=3600,
            StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5))["Datapoints"]
        details[component.value] = {"age_seconds": None if age is None else round(age, 1), "rpo_seconds": rpo,
                                    "metric_published": bool(metric),
                                    "ok": age is not None and age <= rpo and bool(metric)}
    return all(entry["ok"] for entry in details.values()), details
