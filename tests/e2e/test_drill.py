"""The drill end to end: embedded moto server, real handlers, events of AWS's exact shapes."""

from __future__ import annotations

import json
import os
from urllib.request import Request, urlopen

import boto3
import pytest

from drcore.backup.manifest import read_manifest
from drcore.state.backup_store import BackupStore
from embedded.aws_events import LambdaContextStub
from embedded.drill import main
from embedded.sample_system import add_buckets, add_drill_scratch, build_sample_system
from embedded.world import REGION, embedded_world

REGION_STEPS = ["failover", "failback"]


@pytest.fixture(scope="module")
def drill_run(tmp_path_factory):
    """The drill, run once for this module's tests: (exit code, report, report folder)."""
    report_dir = tmp_path_factory.mktemp("drill")
    exit_code = main(["--report-dir", str(report_dir)])
    return exit_code, json.loads((report_dir / "drill-report.json").read_text()), report_dir


def test_the_drill_backs_up_rolls_back_and_promotes_and_reports_honestly(drill_run):
    # Given a fresh embedded AWS endpoint and the sample system (built by the drill itself)
    # When the drill runs
    exit_code, report, _ = drill_run
    # Then its steps before the region switches pass, and its report says why
    assert report["environment"] == "embedded"
    steps = {step["name"]: step for step in report["steps"]}
    assert list(steps) == ["backup_lambda", "backup_s3", "backup_stack", "rpo_check", "restore_s3",
                           "recover_lambda", "recover_stack", "auto_rollback", "promote", "drill_function",
                           *REGION_STEPS]
    assert all(step["ok"] for name, step in steps.items() if name not in REGION_STEPS), report
    recovered = steps["recover_lambda"]["details"]
    assert recovered["code_sha256_verified"] is True and recovered["environment_restored"] is True
    assert steps["recover_stack"]["details"]["stack_status"] == "CREATE_COMPLETE"
    restored = steps["restore_s3"]["details"]
    assert restored["objects_matching"] == restored["objects_expected"] > 0
    assert restored["same_size_restored"] == 3 and restored["safety_snapshot_id"]
    assert steps["backup_lambda"]["details"]["code_sha256_verified"] is True
    assert steps["backup_lambda"]["details"]["configuration_change_captured"] is True
    backup_s3 = steps["backup_s3"]["details"]
    assert backup_s3["objects_copied"] == 3 and backup_s3["manifest_objects"] == backup_s3["objects_listed"]
    assert all(entry["ok"] and entry["age_seconds"] <= entry["rpo_seconds"]
               for entry in steps["rpo_check"]["details"].values())
    rollback = steps["auto_rollback"]["details"]
    assert rollback["from_version"] == "2" and rollback["to_version"] == "1"
    assert 1 <= rollback["api_calls_before_flip"] <= 3
    assert rollback["calls_in_order"][rollback["api_calls_before_flip"]].endswith("/aliases/LIVE")
    assert rollback["handler_ms"] > 0
    assert steps["promote"]["details"]["stable_after"] == "3"
    # The drill function, run as its schedule runs it, passed each of its own steps
    drill_function = steps["drill_function"]["details"]
    assert drill_function["status"] == "finished"
    assert drill_function["restored"]["objects_matching"] == drill_function["restored"]["objects_expected"] > 0
    assert all(step["ok"] for step in drill_function["steps"].values()) and len(drill_function["steps"]) == 5
    # The report is honest about the region steps: it passes exactly when every step passed
    assert (exit_code == 0) is report["ok"] is all(step["ok"] for step in steps.values())


def test_the_failover_moves_processing_with_every_upload_processed_exactly_once(drill_run):
    _, report, _ = drill_run
    step = {step["name"]: step for step in report["steps"]}["failover"]
    failover = step["details"]
    assert failover["regions_processing"] == ["us-west-2"]
    assert failover["env_vars_lost"] == failover["notifications_lost"] == []
    assert failover["objects_at_risk"] == 0 and failover["seconds"] > 0 and failover["uploads"] > 0
    assert failover["double_processed"] == 0 and failover["unprocessed"] == 0, failover
    assert step["ok"]


def test_the_failback_reconciles_and_moves_processing_back_with_no_upload_processed_twice(drill_run):
    exit_code, report, tmp_path = drill_run
    steps = {step["name"]: step for step in report["steps"]}
    failback = steps["failback"]["details"]
    assert failback["regions_processing"] == ["us-east-1"] and failback["env_vars_lost"] == []
    assert failback["objects_reconciled"] >= 5 and failback["conflicts"] == 0
    assert failback["double_processed"] == 0 and failback["unprocessed"] == 0, failback
    assert steps["failback"]["ok"]
    assert exit_code == 0 and report["ok"] is True
    assert "PASSED" in (tmp_path / "drill-report.md").read_text()


def test_a_drill_over_damaged_backup_content_fails_its_restore_naming_the_damaged_keys():
    import backup.handler as backup
    import drill.handler as drill

    with embedded_world() as world:
        # moto's state outlives an embedded world (another test's drill built the same system): start afresh
        urlopen(Request(f"{world.endpoint}/moto-api/reset", method="POST")).close()
        # Given the sample system on the embedded endpoint, and a snapshot of its data bucket
        session = boto3.session.Session(region_name=REGION)
        system = build_sample_system(session, world.endpoint)
        add_buckets(system, session, world.endpoint, objects=12)
        add_drill_scratch(system)
        os.environ.update({**system.environment(), **system.backup_environment(), **system.drill_environment()})
        [snapshot] = backup.handler({"component": "s3"}, LambdaContextStub("apilados-dr-backup"))["components"]
        # whose stored bodies of two objects are then gone: the versions it recorded deleted, as no role may
        s3, store = system.clients["s3"], BackupStore(system.clients["s3"], system.backup_bucket)
        entries = {entry.key: entry for entry in
                   read_manifest(store, system.data_bucket, snapshot["backup_id"]).objects}
        damaged = sorted(entries)[2:4]
        for key in damaged:
            s3.delete_object(Bucket=system.backup_bucket, Key=entries[key].content_key,
                             VersionId=entries[key].content_version_id)
        # When the drill function runs, as its schedule runs it
        result = drill.handler({"action": "drill", "requested_by": "e2e", "reason": "damaged backup content"},
                               LambdaContextStub("apilados-dr-drill"))
    # Then its restore_s3 step fails, naming the keys whose backup content is damaged
    restore = next(step for step in result["report"]["steps"] if step["name"] == "restore_s3")
    assert result["passed"] is False and restore["ok"] is False
    assert list(restore["details"]["verification"]["backup_damaged_keys"]) == damaged
    assert f"backup content damaged for {', '.join(damaged)}" in restore["details"]["error"]


def test_the_report_is_not_ok_when_a_step_fails():
    from drcore.drill.report import DrillReport, DrillStep

    report = DrillReport(environment="embedded", started_at="t0",
                         steps=[DrillStep("auto_rollback", True, 0.1, 900), DrillStep("promote", False, 0.1)])
    assert report.ok is False
    slow = DrillReport(environment="embedded", started_at="t0", steps=[DrillStep("auto_rollback", True, 901, 900)])
    assert slow.ok is False
    assert DrillReport(environment="embedded", started_at="t0").ok is False
