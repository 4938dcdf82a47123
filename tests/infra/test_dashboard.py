"""The CloudWatch dashboard: versions, rollbacks and promotions, alarms, backup freshness, the last drill."""

from __future__ import annotations

import json

import pytest

from drcore.core.metric_names import (
    RESTORE_BYTES_COPIED_METRIC,
    RESTORE_OBJECTS_VERIFIED_METRIC,
    RESTORE_SHARDS_DONE_METRIC,
)
from tests.infra.support import Synthesized, logical_id, rendered

NAMESPACE = "ApiladosDR"


def _dashboard(synth: Synthesized) -> tuple[dict, dict]:
    """The dashboard's properties and its body, with references to resources as "${LogicalId.Attribute}"."""
    properties = synth.resources[logical_id(synth.resources, "AWS::CloudWatch::Dashboard")]["Properties"]
    return properties, json.loads(rendered(properties["DashboardBody"]))


def _widget(body: dict, title: str) -> dict:
    (widget,) = [w["properties"] for w in body["widgets"] if w["properties"].get("title", "").startswith(title)]
    return widget


def _metrics(widget: dict) -> list[tuple]:
    """(namespace, metric name, dimensions, stat) of each metric line of a widget, expressions left out."""
    lines = []
    for line in widget["metrics"]:
        *identity, options = line
        if identity:
            namespace, name, *dimensions = identity
            dimensions_map = dict(zip(dimensions[::2], dimensions[1::2], strict=True))
            lines.append((namespace, name, dimensions_map, options["stat"]))
    return lines


@pytest.fixture(scope="module")
def body(synth: Synthesized) -> dict:
    return _dashboard(synth)[1]


def test_one_dashboard_named_after_the_protected_function(synth: Synthesized):
    # Given the synthesized controller / Then there is one dashboard, in the primary region, over three days
    synth.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    properties, body = _dashboard(synth)
    assert properties["DashboardName"] == "apilados-pipeline-ingest-dr"
    assert body["start"] == "-P3D"


def test_live_and_stable_versions_over_time(body: dict):
    # Given the versions graph / Then it plots the versions the watchers publish for the protected function
    expected = [
        (NAMESPACE, "LiveVersion", {"FunctionName": "apilados-pipeline-ingest"}, "Maximum"),
        (NAMESPACE, "StableVersion", {"FunctionName": "apilados-pipeline-ingest"}, "Maximum"),
    ]
    graph = _widget(body, "LIVE and STABLE versions")
    assert graph["view"] == "timeSeries"
    assert _metrics(graph) == expected
    # And the current values stand next to it
    assert _metrics(_widget(body, "Versions now")) == expected


def test_rollbacks_promotions_and_freezes_as_the_watchers_publish_them(body: dict, synth: Synthesized):
    # Given the watchers' Powertools service names, which Powertools adds as the "service" dimension
    services = [
        synth.resources[logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)]["Properties"][
            "Environment"
        ]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        for handler in ("health_watcher.handler.handler", "performance_watcher.handler.handler")
    ]
    # Then the actions graph sums each action of each watcher per hour
    assert _metrics(_widget(body, "Rollbacks, promotions and freezes")) == [
        (NAMESPACE, name, {"service": service}, "Sum")
        for name in ("Rollbacks", "Promotions", "Freezes")
        for service in services
    ]


def test_alarm_states_of_the_live_alias_the_rpos_and_the_controller(body: dict, synth: Synthesized):
    # Given every alarm of the stack
    resources = synth.resources
    alarms = {
        name: r["Properties"].get("AlarmName") for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    live = [name for name, alarm_name in alarms.items() if alarm_name and "-LIVE-" in alarm_name]
    rpo = [name for name, alarm_name in alarms.items() if alarm_name and alarm_name.endswith("-rpo")]
    # Then the five LIVE alarms have a status widget, and the four RPO alarms and the failed-events alarm
    # another: every alarm of the stack is on the dashboard
    assert len(live) == 5 and len(rpo) == 4
    assert _widget(body, "LIVE alias alarms")["alarms"] == [f"${{{name}.Arn}}" for name in live]
    others = _widget(body, "Backup RPO and controller alarms")["alarms"]
    assert sorted(others) == sorted(f"${{{name}.Arn}}" for name in alarms if name not in live)


@pytest.mark.parametrize(("component", "rpo"), [("lambda", 5), ("s3", 60), ("stack", 1440), ("logs", 1440)])
def test_backup_age_of_each_component_against_its_rpo(body: dict, component: str, rpo: int):
    # Given a component's backup freshness graph
    graph = _widget(body, f"{component} backup age")
    (expression,) = [line[0] for line in graph["metrics"] if "expression" in line[0]]
    # Then it plots the minutes since the last good backup, from BackupCompletedAt carried between backups
    assert expression["expression"] == (
        "(EPOCH(FILL(completed, REPEAT)) + PERIOD(completed) - FILL(completed, REPEAT)) / 60"
    )
    (completed,) = [line for line in graph["metrics"] if line[-1].get("id") == "completed"]
    assert completed[:4] == [NAMESPACE, "BackupCompletedAt", "Component", component]
    assert completed[-1]["visible"] is False
    # And a line at the component's RPO window
    assert graph["annotations"]["horizontal"] == [
        {"value": rpo, "color": "#d62728", "label": "RPO", "yAxis": "left"}
    ]
    # And the good backups per hour on the right
    assert (NAMESPACE, "BackupSucceeded", {"Component": component}, "Sum") in _metrics(graph)


def test_the_last_drills_result(body: dict):
    # Given the drill widget / Then it shows DrillPassed of the drill in AWS, over the last month
    widget = _widget(body, "Last DR drill")
    assert widget["view"] == "singleValue"
    assert _metrics(widget) == [(NAMESPACE, "DrillPassed", {"Environment": "aws"}, "Minimum")]
    assert widget["start"] == "-P30D"


def test_the_dashboard_follows_the_settings(tuned: Synthesized):
    # Given another function, namespace and objectives
    properties, body = _dashboard(tuned)
    # Then the name, the metrics' namespace and dimensions, and the RPO lines follow
    assert properties["DashboardName"] == "orders-api-dr"
    assert _metrics(_widget(body, "LIVE and STABLE versions"))[0] == (
        "OrdersDR",
        "LiveVersion",
        {"FunctionName": "orders-api"},
        "Maximum",
    )
    assert _widget(body, "stack backup age")["annotations"]["horizontal"][0]["value"] == 120
    assert _widget(body, "lambda backup age")["annotations"]["horizontal"][0]["value"] == 5


def _state_machine(synth: Synthesized, kind: str) -> dict[str, str]:
    name = f"apilados-pipeline-ingest-{kind}-fanout"
    machine = logical_id(synth.resources, "AWS::StepFunctions::StateMachine", StateMachineName=name)
    return {"StateMachineArn": f"${{{machine}}}"}


def test_the_snapshot_fan_outs_executions_and_its_shards_progress(body: dict, synth: Synthesized):
    # Given the state machine that fans big snapshots out
    machine = _state_machine(synth, "snapshot")
    # Then its executions started, succeeded and failed are summed per hour
    executions = ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed")
    assert _metrics(_widget(body, "Snapshot fan-out: executions")) == [
        ("AWS/States", name, machine, "Sum") for name in executions
    ]
    # And its shards' progress is plotted as the backup function's shard workers publish it
    snapshot = {"Component": "s3"}
    shards_done = _widget(body, "Snapshot fan-out: shards done")
    assert _metrics(shards_done) == [(NAMESPACE, "SnapshotShardsDone", snapshot, "Sum")]
    copied = _widget(body, "Snapshot fan-out: objects listed and bytes copied")
    assert _metrics(copied) == [
        (NAMESPACE, "SnapshotObjectsListed", snapshot, "Sum"),
        (NAMESPACE, "SnapshotBytesCopied", snapshot, "Sum"),
    ]
    assert copied["metrics"][1][-1]["yAxis"] == "right"  # bytes, beside a count


def test_the_restore_fan_outs_executions_and_its_shards_progress_beside_the_recovery_function(body: dict,
                                                                                              synth: Synthesized):
    # Given the state machine that fans big restores out
    machine = _state_machine(synth, "restore")
    # Then its executions started, succeeded and failed are summed per hour
    executions = ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed")
    assert _metrics(_widget(body, "Restore fan-out: executions")) == [
        ("AWS/States", name, machine, "Sum") for name in executions
    ]
    # And its shards' progress is plotted as the restore shard worker publishes it, as the snapshot fan-out's is
    restore = {"Component": "s3"}
    assert _metrics(_widget(body, "Restore fan-out: shards done")) == [
        (NAMESPACE, RESTORE_SHARDS_DONE_METRIC, restore, "Sum")
    ]
    verified = _widget(body, "Restore fan-out: objects verified and bytes copied")
    assert _metrics(verified) == [
        (NAMESPACE, RESTORE_OBJECTS_VERIFIED_METRIC, restore, "Sum"),
        (NAMESPACE, RESTORE_BYTES_COPIED_METRIC, restore, "Sum"),
    ]
    assert verified["metrics"][1][-1]["yAxis"] == "right"  # bytes, beside a count
    # And they stand in one row with the recovery function's invocations, which start and merge them
    (row,) = {w["y"] for w in body["widgets"]
              if w["properties"].get("title", "").startswith(("Restore fan-out", "Recovery function"))}
    assert sum(w["width"] for w in body["widgets"] if w["y"] == row) == 24
