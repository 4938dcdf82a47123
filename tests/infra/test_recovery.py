"""The recovery function: how it runs, the environment its handler reads, who may invoke it, the dashboard."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from types import SimpleNamespace

import pytest

from drcore.core.config import (
    BackupEnvVar,
    BackupSettings,
    ControllerSettings,
    EnvVar,
    FailoverEnvVar,
    RecoveryEnvVar,
    RecoverySettings,
    RegionEnvVar,
)
from drcore.restore.preflight import PreflightEnvVar
from drcore.restore.validation_controls import ValidationEnvVar
from stacks.constructs import recovery as recovery_module
from stacks.constructs.failover import REGION_WATCHER_ONLY
from stacks.settings import Settings
from tests.infra.support import (
    STANDBY_ONLY,
    TUNED,
    Synthesized,
    default_settings,
    failed_events_queue,
    logical_id,
    rendered,
)

RECOVERY = "recovery.handler.handler"
WATCHER = "health_watcher.handler.handler"
BACKUP = "backup.handler.handler"


def _function(synth: Synthesized, handler: str = RECOVERY) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=handler)


def _variables(synth: Synthesized, handler: str = RECOVERY) -> dict:
    return synth.resources[_function(synth, handler)]["Properties"]["Environment"]["Variables"]


# The function


def test_recovery_function_runs_long_with_memory_from_the_shared_asset(synth: Synthesized, tuned: Synthesized):
    # Given the recovery function
    properties = synth.resources[_function(synth)]["Properties"]
    watcher = synth.resources[_function(synth, WATCHER)]["Properties"]
    # Then it runs the recovery handler for Lambda's full 15 minutes with 1 GB (recovery.memory_mb), on the
    # watchers' runtime and asset
    assert properties["Handler"] == "recovery.handler.handler"
    assert (properties["Timeout"], properties["MemorySize"]) == (900, 1024)
    assert tuned.resources[_function(tuned)]["Properties"]["MemorySize"] == 2560
    assert (properties["Runtime"], properties["Architectures"]) == ("python3.13", ["arm64"])
    assert properties["Code"] == watcher["Code"]
    assert properties["Layers"] == watcher["Layers"]
    assert properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "recovery"


def test_recovery_function_has_its_own_role_and_log_group(synth: Synthesized):
    # Given the recovery function
    resources = synth.resources
    properties = resources[_function(synth)]["Properties"]
    role = properties["Role"]["Fn::GetAtt"][0]
    log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
    # Then no other function runs as its role, and its logs are kept for the configured retention
    users = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Role"]["Fn::GetAtt"][0] == role
    ]
    assert users == [_function(synth)]
    assert resources[log_group]["Properties"]["RetentionInDays"] == 90


def test_a_failed_continuation_is_retried_then_dead_lettered(synth: Synthesized):
    # Given the recovery function's asynchronous invocations (its own continuations of a long restore)
    queue = failed_events_queue(synth.resources)
    (config,) = [
        r["Properties"]
        for r in synth.resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": _function(synth)}
    ]
    # Then one that fails is retried, then lands in the failed-events queue, whose alarm tells people
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 900
    assert config["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}}


# Environment


def test_environment_is_the_watchers_the_backup_functions_and_its_own(synth: Synthesized):
    # Given the recovery function's environment
    variables = _variables(synth)
    # Then it sets every variable of the three sets drcore.core.config defines, and no other DR_ variable
    expected = ({v.value for v in EnvVar} | {v.value for v in BackupEnvVar} | {v.value for v in RecoveryEnvVar}
                | {v.value for v in PreflightEnvVar} | {v.value for v in RegionEnvVar}
                | {v.value for v in ValidationEnvVar} | {v.value for v in FailoverEnvVar})
    # (but the recovery function's own name, which only the region watcher is given, to ask it for plans)
    region_watcher_only = {v.value for v in REGION_WATCHER_ONLY}
    assert {name for name in variables if name.startswith("DR_")} == expected - STANDBY_ONLY - region_watcher_only
    # And the watchers' and the backup function's variables have exactly their values there, the snapshot fan-out's
    # state machine too: a restore's safety snapshot of the data bucket is a snapshot of it, in shards when big
    watcher, backup = _variables(synth, WATCHER), _variables(synth, BACKUP)
    shared = {v.value for v in EnvVar} - STANDBY_ONLY
    backups = {v.value for v in BackupEnvVar} - STANDBY_ONLY
    assert {name: variables[name] for name in shared} == {name: watcher[name] for name in shared}
    assert {name: variables[name] for name in backups} == {name: backup[name] for name in backups}
    assert variables[BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE] != ""


def test_recovery_variables_follow_the_objectives_and_the_defaults(synth: Synthesized):
    # Given the seed's objectives and no recovery settings in cdk.json
    variables = _variables(synth)
    # Then the RPO of each component is in seconds: the function 5 minutes, the data an hour, the stack its
    # RPO alarm's daily window (real-time configuration RPO), the logs a day
    assert json.loads(variables[RecoveryEnvVar.RPO_SECONDS]) == {
        "lambda": 300,
        "s3": 3600,
        "stack": 86400,
        "logs": 86400,
    }
    # And a plan stays confirmable an hour, and no bucket besides the data bucket may be restored into
    assert variables[RecoveryEnvVar.PLAN_TTL_SECONDS] == "3600"
    assert variables[RecoveryEnvVar.RESTORE_TARGET_BUCKETS] == ""
    # And no stack role is configured
    assert variables[RecoveryEnvVar.STACK_ROLE_ARN] == ""


def test_the_validation_compares_the_backup_bucket_with_what_the_stack_configures(synth: Synthesized):
    # Given the recovery function's environment / Then the validation expects the backup key and the bucket's lock
    variables = _variables(synth)
    key = logical_id(synth.resources, "AWS::KMS::Key", Description="Encrypts the backups of apilados-pipeline-ingest")
    assert variables[ValidationEnvVar.BACKUP_KEY_ARN] == {"Fn::GetAtt": [key, "Arn"]}
    bucket = synth.resources[logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)]["Properties"]
    retention = bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (variables[ValidationEnvVar.OBJECT_LOCK_MODE], variables[ValidationEnvVar.OBJECT_LOCK_DAYS]) == (
        retention["Mode"], str(retention["Days"]))


def test_recovery_variables_follow_the_settings(tuned: Synthesized):
    # Given objectives of 1, 30, 120 (configuration) and 720 minutes, two target buckets and a 15-minute TTL
    variables = _variables(tuned)
    # Then the environment says so
    assert json.loads(variables[RecoveryEnvVar.RPO_SECONDS]) == {
        "lambda": 60,
        "s3": 1800,
        "stack": 7200,
        "logs": 43200,
    }
    assert variables[RecoveryEnvVar.PLAN_TTL_SECONDS] == "900"
    assert variables[RecoveryEnvVar.RESTORE_TARGET_BUCKETS] == "orders-restore-scratch,orders.drill.example"
    assert variables[RecoveryEnvVar.STACK_ROLE_ARN] == "arn:aws:iam::123456789012:role/orders-cfn-deployer"


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
def test_environment_parses_as_the_handler_reads_it(fixture: str, request):
    # Given the recovery function's environment, deploy-time references stood in for by names
    synth: Synthesized = request.getfixturevalue(fixture)
    environ = {
        name: value if isinstance(value, str) else f"resolved-{name}" for name, value in _variables(synth).items()
    }
    settings = default_settings() if fixture == "synth" else Settings.from_context(TUNED["dr"])
    # When the handler reads it as it does in Lambda (functions/recovery/handler.py)
    controller = ControllerSettings.from_environ(environ)
    backup = BackupSettings.from_environ(environ)
    recovery = RecoverySettings.from_environ(environ)
    # Then every settings model accepts it and holds what cdk.json describes
    assert controller.protected_function == backup.protected_function == settings.protected_function
    assert backup.data_bucket == settings.data_bucket
    assert backup.backup_bucket == f"resolved-{BackupEnvVar.BACKUP_BUCKET_NAME.value}"
    assert recovery.restore_target_buckets == settings.recovery.restore_target_buckets
    assert recovery.plan_ttl_seconds == settings.recovery.plan_ttl_minutes * 60
    assert recovery.rpo_of("s3") == settings.recovery_objectives.s3_data.rpo_minutes * 60
    # And the stack role the change sets run as, the only one the recovery role may pass (None: none)
    assert recovery.stack_role_arn == settings.recovery.stack_role_arn


def test_a_recovery_variable_the_stack_does_not_set_fails_synth(monkeypatch):
    # Given the functions' side defines a new recovery variable the stack knows nothing of
    # (mypy checks the functional Enum API only with literal members; these are the real enum's, plus one)
    grown = StrEnum("RecoveryEnvVar", {**{v.name: v.value for v in RecoveryEnvVar}, "NEW_KNOB": "DR_NEW_KNOB"})  # type: ignore[misc]
    monkeypatch.setattr(recovery_module, "RecoveryEnvVar", grown)
    # When the environment is built / Then synth stops and names it, rather than deploy its default silently
    with pytest.raises(ValueError, match="defines DR_NEW_KNOB, which the stack does not set"):
        recovery_module.recovery_environment(default_settings(), *_stand_ins())


def test_the_shared_variables_must_agree(monkeypatch):
    # Given the backup function's environment would name another protected function than the watchers'
    real = recovery_module.backup_environment
    monkeypatch.setattr(
        recovery_module,
        "backup_environment",
        lambda *args: {**real(*args), BackupEnvVar.PROTECTED_FUNCTION_NAME.value: "another-function"},
    )
    # When the recovery environment is built / Then synth stops rather than pick one
    with pytest.raises(ValueError, match="DR_PROTECTED_FUNCTION_NAME would be set to both"):
        recovery_module.recovery_environment(default_settings(), *_stand_ins())


def _stand_ins() -> tuple:
    """The state table, alerting, alarms and backup bucket as far as the environment reads them."""
    table = SimpleNamespace(table_name="table")
    alerting = SimpleNamespace(
        alert_topic=SimpleNamespace(topic_arn="alert-arn"), emergency_topic=SimpleNamespace(topic_arn="emergency-arn")
    )
    alarms = SimpleNamespace(health_names=["errors"], performance_names=["p99"])
    bucket = SimpleNamespace(bucket=SimpleNamespace(bucket_name="bucket"))
    return table, alerting, alarms, bucket


# Who may invoke it


def _invoke_permissions(synth: Synthesized) -> list[dict]:
    arn = {"Fn::GetAtt": [_function(synth), "Arn"]}
    return [
        r["Properties"]
        for r in synth.resources.values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] == arn
    ]


def test_without_operator_principals_its_resource_policy_grants_nobody(synth: Synthesized):
    # Given no operator principals in cdk.json / Then the function's resource policy has no statement: only
    # this account's identities whose IAM policies allow it can invoke it
    assert _invoke_permissions(synth) == []


def test_each_operator_principal_and_only_they_may_invoke_it(tuned: Synthesized):
    # Given two operator principals in cdk.json (a role, another account's root)
    permissions = _invoke_permissions(tuned)
    # Then each has one grant to invoke the function, and nothing else is granted to anybody
    assert sorted(permissions, key=lambda p: p["Principal"]) == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Fn::GetAtt": [_function(tuned), "Arn"]},
            "Principal": principal,
        }
        for principal in ("arn:aws:iam::123456789012:role/ops/dr-operator", "arn:aws:iam::210987654321:root")
    ]
    # And the output no longer says that no operator is configured
    output = tuned.template.to_json()["Outputs"]["RecoveryFunctionName"]
    assert "operator principals in cdk.json" in output["Description"]


def test_an_operators_grant_is_named_after_the_principal_not_its_place_in_the_list(tuned: Synthesized):
    # Given the operators' grants
    grants = {
        name: r["Properties"]["Principal"]
        for name, r in tuned.resources.items()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] == {
            "Fn::GetAtt": [_function(tuned), "Arn"]
        }
    }
    # Then each logical id carries a digest of its principal, so reordering cdk.json replaces no permission
    assert len(grants) == 2
    for name, principal in grants.items():
        assert hashlib.sha256(principal.encode()).hexdigest()[:12] in name, name


# Dashboard


def test_the_dashboard_shows_the_recovery_functions_invocations_and_errors(synth: Synthesized):
    # Given the dashboard
    properties = synth.resources[logical_id(synth.resources, "AWS::CloudWatch::Dashboard")]["Properties"]
    body = json.loads(rendered(properties["DashboardBody"]))
    (widget,) = [w["properties"] for w in body["widgets"] if w["properties"].get("title", "").startswith("Recovery")]
    # Then a graph sums the recovery function's invocations and errors per hour
    function = f"${{{_function(synth)}}}"
    assert [line[:4] for line in widget["metrics"]] == [
        ["AWS/Lambda", "Invocations", "FunctionName", function],
        ["AWS/Lambda", "Errors", "FunctionName", function],
    ]
    assert {(line[-1]["stat"], line[-1]["period"]) for line in widget["metrics"]} == {("Sum", 3600)}
