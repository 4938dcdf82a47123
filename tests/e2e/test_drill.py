"""The drill end to end: embedded moto server, real handlers, events of AWS's exact shapes."""

from __future__ import annotations

import json

from embedded.drill import main


def test_the_drill_backs_up_rolls_back_and_promotes_and_reports_honestly(tmp_path, capsys):
    # Given a fresh embedded AWS endpoint and the sample system (built by the drill itself)
    # When the drill runs
    exit_code = main(["--report-dir", str(tmp_path)])
    # Then it passes, and its report says why
    report = json.loads((tmp_path / "drill-report.json").read_text())
    assert exit_code == 0, capsys.readouterr().out
    assert report["environment"] == "embedded" and report["ok"] is True
    steps = {step["name"]: step for step in report["steps"]}
    assert list(steps) == ["backup_lambda", "backup_s3", "backup_stack", "rpo_check", "restore_s3",
                           "recover_lambda", "recover_stack", "auto_rollback", "promote", "drill_function"]
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
    assert "PASSED" in (tmp_path / "drill-report.md").read_text()


def test_the_report_is_not_ok_when_a_step_fails():
    from drcore.drill.report import DrillReport, DrillStep

    report = DrillReport(environment="embedded", started_at="t0",
                         steps=[DrillStep("auto_rollback", True, 0.1, 900), DrillStep("promote", False, 0.1)])
    assert report.ok is False
    slow = DrillReport(environment="embedded", started_at="t0", steps=[DrillStep("auto_rollback", True, 901, 900)])
    assert slow.ok is False
    assert DrillReport(environment="embedded", started_at="t0").ok is False
