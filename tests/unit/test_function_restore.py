"""Function restores: every captured setting back, the code verified, a version published, nothing
changed by a refused plan, and nothing but the target touched.

moto fills used (embedded/moto_gaps.py): code archives served over loopback HTTP for the backup,
GetLayerVersionByArn, every configuration field applied by UpdateFunctionConfiguration,
PutFunctionEventInvokeConfig replacing, image digests, and (opt-in, where a test says so) function
updates that stay in progress until read, as in AWS.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from drcore.aws.lambda_updates import MAX_ATTEMPTS
from drcore.backup.function_backup import FunctionBackup, FunctionBackupResult
from drcore.backup.function_format import code_sha256
from drcore.core.errors import InvalidRequest
from drcore.restore.function_plan import (
    CodeVerificationFailed,
    FunctionRestorePlan,
    RestoreIncomplete,
    TargetChanged,
    UnknownBackup,
)
from drcore.restore.function_restore import FunctionRestorer
from drcore.state.backup_files import CorruptBackup
from drcore.state.backup_store import BackupStore, Component, backup_prefix
from embedded.moto_gaps import FunctionUpdates, function_updates_take_time
from embedded.sample_system import (
    FUNCTION_ENVIRONMENT,
    FUNCTION_TAGS,
    RESERVED_CONCURRENCY,
    SampleSystem,
    execution_role_name,
)
from tests.support import MUTATING_PREFIXES, CallRecorder, SimulatedClock

BACKUP_BUCKET = "apilados-dr-backups"
SCRATCH = "apilados-pipeline-ingest-restored"
SECRET = "s3cr3t-value-never-in-a-plan"


class LambdaCalls:
    """Every call made through one Lambda client, with its parameters."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.lambda.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def mutating(self) -> list[tuple[str, dict[str, Any]]]:
        return [(name, params) for name, params in self.calls if name.startswith(MUTATING_PREFIXES)]

    def names(self, operation: str) -> list[str]:
        return [name for name, _ in self.calls if name == operation]


def _function_named(params: dict[str, Any]) -> str | None:
    value = params.get("FunctionName") or params.get("Resource")
    if value is None:
        return None
    return value.split(":")[6] if value.startswith("arn:") else value.split(":")[0]


def _zip(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", text)
    return buffer.getvalue()


@pytest.fixture
def store(system: SampleSystem) -> BackupStore:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BACKUP_BUCKET)
    return BackupStore(s3, BACKUP_BUCKET)


@pytest.fixture
def lam(system: SampleSystem) -> Any:
    return system.clients["lambda"]


@pytest.fixture
def backup(system: SampleSystem, lam: Any, store: BackupStore) -> FunctionBackupResult:
    return FunctionBackup(lam, store, system.function_name, clock=SimulatedClock()).run(reason="before the incident")


@pytest.fixture
def restorer_client(system: SampleSystem) -> Any:
    """The restorer's own client, so a test can watch exactly what the restorer asks of Lambda."""
    return boto3.client("lambda", region_name="us-east-1")


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def restorer(system: SampleSystem, restorer_client: Any, store: BackupStore, waits: list[float]) -> FunctionRestorer:
    return FunctionRestorer(restorer_client, store, system.function_name, clock=SimulatedClock(), wait=waits.append)


def _stored_key(system: SampleSystem, backup: FunctionBackupResult, path: str) -> str:
    return backup_prefix(Component.LAMBDA, system.function_name, backup.backup_id) + path


def _damage(store: BackupStore, key: str) -> None:
    """Flip the last byte of a stored file in place, its size unchanged (bit rot, or a tampered object)."""
    body = store.get_bytes(key)
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 0xFF]))


def _event_invoke_config(lam: Any, name: str) -> dict[str, Any]:
    config = lam.get_function_event_invoke_config(FunctionName=name)
    return {key: config.get(key) for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")}


def _leaves(document: Any) -> Iterator[Any]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield key
            yield from _leaves(value)
    elif isinstance(document, list):
        for value in document:
            yield from _leaves(value)
    else:
        yield document


def _change(plan: FunctionRestorePlan, setting: str) -> dict[str, Any]:
    return next(change for change in plan.changes if change["setting"] == setting)


def _change_everything(system: SampleSystem, lam: Any) -> str:
    """What an incident and a bad deployment leave behind: every setting of the function changed.
    Returns the layer version the function uses now."""
    name = system.function_name
    other_role = system.clients["iam"].create_role(
        RoleName="some-other-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    other_layer = lam.publish_layer_version(LayerName="some-other-layer", Content={"ZipFile": _zip("OTHER = 1\n")},
                                            CompatibleRuntimes=["python3.12"])["LayerVersionArn"]
    lam.update_function_code(FunctionName=name, ZipFile=_zip("RELEASE = 'broken hotfix'\n"), Architectures=["arm64"])
    environment = {**FUNCTION_ENVIRONMENT, "STAGE": SECRET, "DEBUG_TOKEN": SECRET}
    del environment["LOG_LEVEL"]
    lam.update_function_configuration(
        FunctionName=name, MemorySize=256, Timeout=30, Description="hotfix", Runtime="python3.12",
        Handler="hotfix.handler", Role=other_role, EphemeralStorage={"Size": 4096},
        TracingConfig={"Mode": "PassThrough"},
        VpcConfig={"SubnetIds": ["subnet-0a1b2c"], "SecurityGroupIds": ["sg-0a1b2c"]},
        DeadLetterConfig={"TargetArn": system.failure_queue_arn},
        KMSKeyArn="arn:aws:kms:us-east-1:123456789012:key/5f3c1d2e-0000-4000-8000-000000000000",
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN"},
        Layers=[other_layer], Environment={"Variables": environment},
    )
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    lam.untag_resource(Resource=arn, TagKeys=["owner"])
    lam.tag_resource(Resource=arn, Tags={"component": "hotfix", "temporary": "yes"})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0, MaximumEventAgeInSeconds=60)
    return other_layer


EVERY_SETTING = {"Code", "Architectures", "MemorySize", "Timeout", "Description", "Runtime", "Handler", "Role",
                 "EphemeralStorage", "TracingConfig", "VpcConfig", "DeadLetterConfig", "KMSKeyArn", "LoggingConfig",
                 "Layers", "Environment", "tags", "reserved_concurrency", "event_invoke_configs"}


def test_a_restore_in_place_puts_back_every_captured_setting(system, lam, store, backup, restorer, restorer_client):
    # Given a backup of the production function, and then every one of its settings changed
    name = system.function_name
    versions_before = {version["Version"] for version in lam.list_versions_by_function(FunctionName=name)["Versions"]}
    aliases_before = {alias: system.alias_version(alias) for alias in ("LIVE", "STABLE")}
    other_layer = _change_everything(system, lam)

    # When a restore is planned
    plan = restorer.plan(backup.backup_id)

    # Then the plan lists each difference
    assert set(plan.changed_settings) == EVERY_SETTING
    assert plan.target == name and plan.in_place and plan.target_exists
    assert plan.code_archive_verified and plan.code_sha256 == backup.code_sha256
    assert _change(plan, "MemorySize") == {"setting": "MemorySize", "now": 256, "backup": 1024}
    assert _change(plan, "Timeout") == {"setting": "Timeout", "now": 30, "backup": 600}
    assert _change(plan, "Layers") == {"setting": "Layers", "now": [other_layer], "backup": [system.layer_arn]}
    assert _change(plan, "Architectures") == {"setting": "Architectures", "now": ["arm64"], "backup": ["x86_64"]}
    assert _change(plan, "DeadLetterConfig")["now"] == {"TargetArn": system.failure_queue_arn}
    assert _change(plan, "reserved_concurrency") == {"setting": "reserved_concurrency", "now": 3,
                                                     "backup": RESERVED_CONCURRENCY}
    assert _change(plan, "event_invoke_configs")["now"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
    assert _change(plan, "tags") == {"setting": "tags", "to_add": {"owner": "data-platform"},
                                     "to_remove": ["temporary"],
                                     "to_change": {"component": {"now": "hotfix", "backup": "ingest"}}}
    # environment variables by name, never by value
    assert _change(plan, "Environment") == {"setting": "Environment", "to_add": ["LOG_LEVEL"],
                                            "to_remove": ["DEBUG_TOKEN"], "to_change": ["STAGE"]}
    document = plan.to_dict()
    assert SECRET not in json.dumps(document) and "production" not in json.dumps(document)
    # and the plan is plain JSON that round-trips
    assert all(isinstance(leaf, (str, int, bool, type(None))) for leaf in _leaves(document))
    assert FunctionRestorePlan.from_dict(json.loads(json.dumps(document))) == plan
    assert "aliases" in plan.left_alone and "event_source_mappings" in plan.left_alone

    # When it is applied
    result = restorer.apply(plan)

    # Then every captured setting is back, every environment variable included
    now = lam.get_function_configuration(FunctionName=name)
    assert now["Environment"]["Variables"] == FUNCTION_ENVIRONMENT
    assert (now["MemorySize"], now["Timeout"], now["Description"]) == (1024, 600, "Apilados Pipeline: CSV ingest")
    assert (now["Runtime"], now["Handler"], now["Role"]) == ("python3.13", "index.handler",
                                                             f"arn:aws:iam::123456789012:role/{execution_role_name(name)}")
    assert now["Architectures"] == ["x86_64"] and now["EphemeralStorage"] == {"Size": 2048}
    assert now["TracingConfig"] == {"Mode": "Active"}
    assert [layer["Arn"] for layer in now["Layers"]] == [system.layer_arn]
    assert not (now.get("VpcConfig") or {}).get("SubnetIds") and "DeadLetterConfig" not in now
    assert "KMSKeyArn" not in now and now["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    assert lam.list_tags(Resource=now["FunctionArn"])["Tags"] == FUNCTION_TAGS
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == RESERVED_CONCURRENCY
    assert _event_invoke_config(lam, name) == {
        "MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 3600,
        "DestinationConfig": {"OnFailure": {"Destination": system.failure_queue_arn}}}
    # and the code is the backup's
    assert now["CodeSha256"] == backup.code_sha256
    # and a new version was published with it, naming the backup; no alias moved
    published = lam.get_function_configuration(FunctionName=name, Qualifier=result.version)
    assert result.version not in versions_before
    assert published["CodeSha256"] == backup.code_sha256 and backup.backup_id in published["Description"]
    assert published["Environment"]["Variables"] == FUNCTION_ENVIRONMENT
    assert {alias: system.alias_version(alias) for alias in ("LIVE", "STABLE")} == aliases_before
    # and the result says so
    assert result.ok and result.code_sha256_verified and result.environment_restored
    assert set(result.changed) == EVERY_SETTING and result.not_restored == [] and set(result.restored) >= EVERY_SETTING
    assert result.created is False and result.republished_layers == {}
    assert result.to_dict()["ok"] is True
    # and a plan made now finds nothing left to do
    assert restorer.plan(backup.backup_id).changes == []


def test_a_restore_beside_the_original_leaves_it_untouched(system, lam, store, backup, restorer, restorer_client):
    # Given the original changed since its backup
    name = system.function_name
    lam.update_function_configuration(FunctionName=name, MemorySize=512, Environment={"Variables": {"ONLY": "now"}})
    original_before = lam.get_function(FunctionName=name)
    versions_before = lam.list_versions_by_function(FunctionName=name)["Versions"]
    calls = LambdaCalls(restorer_client)

    # When the backup is restored beside it, under a new name
    plan = restorer.plan(backup.backup_id, target=SCRATCH)
    result = restorer.apply(plan)

    # Then the plan was for a new function
    assert (plan.target, plan.in_place, plan.target_exists, plan.fingerprint) == (SCRATCH, False, False, "absent")
    assert _change(plan, "Environment")["to_add"] == sorted(FUNCTION_ENVIRONMENT)
    # and no call that changes anything named the original
    mutating = calls.mutating()
    assert {_function_named(params) for _, params in mutating} == {SCRATCH}
    assert [operation for operation, _ in mutating] == ["CreateFunction", "PutFunctionConcurrency",
                                                        "PutFunctionEventInvokeConfig", "PublishVersion"]
    # and the original is as it was
    original_after = lam.get_function(FunctionName=name)
    assert original_after["Configuration"] == original_before["Configuration"]
    assert original_after["Tags"] == original_before["Tags"]
    assert lam.list_versions_by_function(FunctionName=name)["Versions"] == versions_before
    # and the new function is the backup's
    restored = lam.get_function_configuration(FunctionName=SCRATCH)
    assert restored["CodeSha256"] == backup.code_sha256 and restored["Environment"]["Variables"] == FUNCTION_ENVIRONMENT
    assert (restored["MemorySize"], restored["Timeout"], restored["EphemeralStorage"]) == (1024, 600, {"Size": 2048})
    assert [layer["Arn"] for layer in restored["Layers"]] == [system.layer_arn]
    assert lam.list_tags(Resource=restored["FunctionArn"])["Tags"] == FUNCTION_TAGS
    assert lam.get_function_concurrency(FunctionName=SCRATCH)["ReservedConcurrentExecutions"] == RESERVED_CONCURRENCY
    assert _event_invoke_config(lam, SCRATCH)["MaximumRetryAttempts"] == 1
    # logging into its own log group, not the original's
    assert restored["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{SCRATCH}" and plan.notes
    assert result.created and result.version == "1" and result.ok
    # and planning the same restore again finds the existing function already matching
    again = restorer.plan(backup.backup_id, target=SCRATCH)
    assert again.target_exists and again.changes == []


def test_an_existing_target_beside_the_original_is_brought_to_the_backup(system, lam, backup, restorer):
    # Given a scratch function restored once, then changed (a drill's leftovers)
    restorer.apply(restorer.plan(backup.backup_id, target=SCRATCH))
    lam.update_function_configuration(FunctionName=SCRATCH, Timeout=5, Environment={"Variables": {"X": "1"}})
    # When the backup is restored into it again
    plan = restorer.plan(backup.backup_id, target=SCRATCH)
    result = restorer.apply(plan)
    # Then it is updated, not recreated, and matches the backup again
    assert plan.target_exists and set(plan.changed_settings) == {"Timeout", "Environment"}
    assert result.created is False and result.ok and result.version == "2"
    assert lam.get_function_configuration(FunctionName=SCRATCH)["Environment"]["Variables"] == FUNCTION_ENVIRONMENT


@pytest.mark.parametrize("damaged", ["code.zip", "configuration.json"])
def test_a_corrupt_stored_file_is_refused_at_plan_time_and_nothing_changes(system, store, backup, restorer,
                                                                           monkeypatch, damaged):
    # Given a backup one of whose stored files was damaged in place (same size)
    _damage(store, _stored_key(system, backup, damaged))
    recorder = CallRecorder().spy_on_every_client(monkeypatch)
    # When a restore is planned, Then it is refused, naming the file
    with pytest.raises(CorruptBackup, match=damaged) as refused:
        restorer.plan(backup.backup_id, target=SCRATCH)
    assert isinstance(refused.value, InvalidRequest) and backup.backup_id in str(refused.value)
    # and nothing changed: no mutating call, and the function was not even read
    assert recorder.mutating() == []
    assert not any(call.startswith(("Get", "List")) and call not in ("GetObject", "ListObjectsV2")
                   for call in recorder.calls), recorder.calls


def test_the_code_archive_is_checked_against_the_backups_code_sha256(system, store, backup, restorer, monkeypatch):
    # Given a backup written before manifests were recorded (no record of the manifest's version and digest),
    # whose stored archive was replaced together with its manifest entry (the manifest alone would not catch
    # it): the archive is no longer the code Lambda held
    store.s3.delete_object(Bucket=store.bucket, Key=_stored_key(system, backup, "manifest-version.json"))
    key = _stored_key(system, backup, "code.zip")
    manifest = store.get_json(backup.manifest_key)
    other = _zip("RELEASE = 'not what was backed up'\n")
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=other)
    for entry in manifest["files"]:
        if entry["path"] == "code.zip":
            entry.update(size=len(other), sha256=hashlib.sha256(other).hexdigest())
    store.s3.put_object(Bucket=store.bucket, Key=backup.manifest_key, Body=json.dumps(manifest).encode())
    recorder = CallRecorder().spy_on_every_client(monkeypatch)
    # When planned, Then it is refused by CodeSha256, and nothing changed
    with pytest.raises(CorruptBackup, match=re.escape(f"code.zip has CodeSha256 {code_sha256(other)}")):
        restorer.plan(backup.backup_id)
    assert recorder.mutating() == []


@pytest.mark.parametrize("backup_id, why", [
    ("20240101T000000Z-abcdef", "does not exist"),
    ("../../snapshots/s3", "is not a backup id"),
    ("", "is not a backup id"),
])
def test_an_unknown_backup_is_refused_naming_the_newest_ones(system, backup, restorer, monkeypatch, backup_id, why):
    recorder = CallRecorder().spy_on_every_client(monkeypatch)
    with pytest.raises(UnknownBackup) as refused:
        restorer.plan(backup_id)
    message = str(refused.value)
    assert (why in message and repr(backup_id) in message) or backup_id in message
    assert f"newest complete backups of {system.function_name}: {backup.backup_id}" in message
    assert isinstance(refused.value, InvalidRequest) and recorder.mutating() == []


def test_an_incomplete_backup_is_refused(system, lam, store, backup, restorer, monkeypatch):
    # Given a second backup that died before its manifest
    original = store.put_once

    def crash_on_manifest(key: str, body: bytes, *args: Any, **kwargs: Any) -> str | None:
        if key.endswith("manifest.json"):
            raise TimeoutError("Lambda timed out")
        return original(key, body, *args, **kwargs)

    monkeypatch.setattr(store, "put_once", crash_on_manifest)
    with pytest.raises(TimeoutError):
        FunctionBackup(lam, store, system.function_name, clock=SimulatedClock(SimulatedClock().advance(60))).run()
    monkeypatch.setattr(store, "put_once", original)
    [incomplete] = [listing.backup_id for listing in store.list_backups(Component.LAMBDA, system.function_name)
                    if not listing.complete]
    recorder = CallRecorder().spy_on_every_client(monkeypatch)
    # When it is named, Then it is refused as incomplete, and only complete ones are offered
    with pytest.raises(UnknownBackup, match=f"backup {incomplete} of {system.function_name} is incomplete") as refused:
        restorer.plan(incomplete)
    assert str(refused.value).endswith(f"newest complete backups of {system.function_name}: {backup.backup_id}")
    assert recorder.mutating() == []


def test_no_backup_at_all_is_said_plainly(system, store, restorer):
    with pytest.raises(UnknownBackup, match=f"{system.function_name} has no complete backup"):
        restorer.plan("20261126T120000Z-000000")


@pytest.mark.parametrize("change", ["memory", "tag", "concurrency", "code", "created"])
def test_the_fingerprint_changes_when_the_target_changes_after_the_plan(system, lam, backup, restorer, restorer_client,
                                                                        change):
    # Given a plan (in place, or beside the original for a function that does not exist yet)
    name = system.function_name
    target = SCRATCH if change == "created" else name
    plan = restorer.plan(backup.backup_id, target=target)
    assert restorer.fingerprint(plan) == plan.fingerprint
    # When the target changes after the plan
    if change == "memory":
        lam.update_function_configuration(FunctionName=name, MemorySize=2048)
    elif change == "tag":
        lam.tag_resource(Resource=lam.get_function_configuration(FunctionName=name)["FunctionArn"], Tags={"new": "tag"})
    elif change == "concurrency":
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    elif change == "code":
        lam.update_function_code(FunctionName=name, ZipFile=_zip("RELEASE = 'later'\n"))
    else:
        lam.create_function(FunctionName=SCRATCH, Runtime="python3.13", Handler="index.handler",
                            Code={"ZipFile": _zip("")}, Role=lam.get_function_configuration(FunctionName=name)["Role"])
    # Then its fingerprint is not the plan's, and applying the plan is refused with nothing changed
    assert restorer.fingerprint(plan) != plan.fingerprint
    calls = LambdaCalls(restorer_client)
    with pytest.raises(TargetChanged, match="plan again"):
        restorer.apply(plan)
    assert calls.mutating() == []


def test_a_deleted_layer_version_is_published_again_from_the_backup(system, lam, store, backup, restorer):
    # Given the function moved off its layer and the layer version was deleted
    name = system.function_name
    layer_name = f"{name}-deps"
    lam.update_function_configuration(FunctionName=name, Layers=[])
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    # When a restore is planned, Then it says the layer version will be published again
    plan = restorer.plan(backup.backup_id)
    assert plan.republish_layers == [system.layer_arn]
    assert _change(plan, "Layers") == {"setting": "Layers", "now": [], "backup": [system.layer_arn]}
    # When applied
    result = restorer.apply(plan)
    # Then a new version of the layer holds the backup's archive, and the function uses it
    [(recorded, republished)] = result.republished_layers.items()
    assert recorded == system.layer_arn and republished == f"{system.layer_arn.rsplit(':', 1)[0]}:2"
    layer = lam.get_layer_version(LayerName=layer_name, VersionNumber=2)
    [recorded_layer] = store.get_json(_stored_key(system, backup, "configuration.json"))["layers"]
    assert layer["Content"]["CodeSha256"] == recorded_layer["code_sha256"]
    assert backup.backup_id in layer["Description"] and layer["CompatibleRuntimes"] == ["python3.13"]
    assert [item["Arn"] for item in lam.get_function_configuration(FunctionName=name)["Layers"]] == [republished]
    assert result.ok and result.not_restored == []


def test_a_corrupt_layer_archive_that_must_be_republished_refuses_the_plan(system, lam, store, backup, restorer,
                                                                           monkeypatch):
    # Given the layer version is gone and its archive in the backup is damaged
    lam.update_function_configuration(FunctionName=system.function_name, Layers=[])
    lam.delete_layer_version(LayerName=f"{system.function_name}-deps", VersionNumber=1)
    _damage(store, _stored_key(system, backup, f"layers/{system.function_name}-deps-1.zip"))
    recorder = CallRecorder().spy_on_every_client(monkeypatch)
    # When planned, Then refused before anything changes
    with pytest.raises(CorruptBackup, match="layers/"):
        restorer.plan(backup.backup_id)
    assert recorder.mutating() == []


@pytest.fixture
def updates(system: SampleSystem) -> Iterator[FunctionUpdates]:
    with function_updates_take_time() as in_progress:
        yield in_progress


def test_each_update_waits_for_the_last_to_settle_and_conflicts_are_retried(system, lam, backup, restorer, waits,
                                                                            updates):
    # Given the function's code and configuration changed (updates now stay in progress until read, as in
    # AWS), and another writer's updates in the way of the first two the restore makes
    name = system.function_name
    lam.update_function_code(FunctionName=name, ZipFile=_zip("RELEASE = 'other'\n"))
    lam.get_function_configuration(FunctionName=name)  # that update settles
    lam.update_function_configuration(FunctionName=name, MemorySize=128)
    lam.get_function_configuration(FunctionName=name)
    updates.conflict(name, times=2)
    plan = restorer.plan(backup.backup_id)
    # When applied
    result = restorer.apply(plan)
    # Then it retried the refused update with growing backoff, and waited for each update to settle, so
    # none of its own updates (nor its publication) ran into another
    assert updates.refused == [("update_function_code", name)] * 2
    assert waits[:2] == [1.0, 2.0] and len(waits) >= 4
    assert result.ok and lam.get_function_configuration(FunctionName=name)["MemorySize"] == 1024


def test_a_new_function_is_published_only_once_it_is_active(system, lam, backup, restorer, waits, updates):
    result = restorer.apply(restorer.plan(backup.backup_id, target=SCRATCH))
    assert result.ok and result.created and updates.refused == [] and waits


def test_endless_conflicts_stop_the_restore_and_say_what_state_the_function_is_in(system, lam, backup, restorer,
                                                                                  restorer_client, waits, updates):
    # Given the configuration changed, and another writer that keeps updating the function
    name = system.function_name
    lam.update_function_configuration(FunctionName=name, MemorySize=128)
    lam.get_function_configuration(FunctionName=name)
    plan = restorer.plan(backup.backup_id)
    updates.conflict(name, times=1000)
    calls = LambdaCalls(restorer_client)
    # When applied, Then it gives up after a bounded number of attempts, saying nothing was changed
    with pytest.raises(RestoreIncomplete, match="stopped at configuration") as stopped:
        restorer.apply(plan)
    message = str(stopped.value)
    assert "ResourceConflictException" in message and f"{name} was not changed" in message
    assert "no version was published" in message
    assert calls.names("UpdateFunctionConfiguration") == ["UpdateFunctionConfiguration"] * MAX_ATTEMPTS
    assert len(waits) == MAX_ATTEMPTS - 1 and calls.names("PublishVersion") == []


def test_code_that_lambda_stores_differently_stops_the_restore_before_publishing(system, lam, backup, restorer,
                                                                                 restorer_client):
    # Given the code changed, and an upload that Lambda answers with another CodeSha256 (as a damaged
    # transfer would; injected into the response, since moto stores what it is sent)
    name = system.function_name
    lam.update_function_code(FunctionName=name, ZipFile=_zip("RELEASE = 'other'\n"))

    def damaged(parsed: dict[str, Any], **_: Any) -> None:
        parsed["CodeSha256"] = "bm90IHRoZSBiYWNrdXAncyBjb2Rl"

    restorer_client.meta.events.register("after-call.lambda.UpdateFunctionCode", damaged)
    calls = LambdaCalls(restorer_client)
    # When applied, Then it stops at the verification, saying what $LATEST holds, and publishes nothing
    with pytest.raises(CodeVerificationFailed) as stopped:
        restorer.apply(restorer.plan(backup.backup_id))
    message = str(stopped.value)
    assert "stopped at code verification" in message and "bm90IHRoZSBiYWNrdXAncyBjb2Rl" in message
    assert "$LATEST holds code that is not the backup's" in message and "no version was published" in message
    assert calls.names("PublishVersion") == [] and calls.names("UpdateFunctionConfiguration") == []


def test_settings_the_backup_could_not_capture_are_left_as_they_are(system, lam, store, restorer, restorer_client):
    # Given a backup made where ListTags was not available (the endpoint answered 501)
    name = system.function_name
    backup_client = boto3.client("lambda", region_name="us-east-1")

    def not_implemented(model: Any, **_: Any) -> Any:
        if model.name == "ListTags":
            raise ClientError({"Error": {"Code": "501", "Message": "Not Implemented"}}, "ListTags")
        return None

    backup_client.meta.events.register("before-call.lambda.*", not_implemented)
    unavailable = FunctionBackup(backup_client, store, name, clock=SimulatedClock()).run()
    assert unavailable.captured["tags"] == "unavailable"
    # and the tags changed since
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"added": "later"})
    lam.update_function_configuration(FunctionName=name, MemorySize=512)
    # When restored
    plan = restorer.plan(unavailable.backup_id)
    result = restorer.apply(plan)
    # Then the tags are as they were found, and the plan and result say why
    assert plan.changed_settings == ["MemorySize"]
    assert "could not capture" in plan.left_alone["tags"] and result.left_alone["tags"] == plan.left_alone["tags"]
    assert lam.list_tags(Resource=arn)["Tags"] == {**FUNCTION_TAGS, "added": "later"}
    assert result.ok and "tags" not in result.restored


def test_a_large_archive_is_handed_to_lambda_from_the_backup_bucket(system, store, backup, restorer_client):
    # Given a restorer whose direct-upload limit is below the archive's size (50 MB in AWS)
    restorer = FunctionRestorer(restorer_client, store, system.function_name, wait=lambda seconds: None,
                                direct_upload_limit=16)
    calls = LambdaCalls(restorer_client)
    # When restored beside the original
    result = restorer.apply(restorer.plan(backup.backup_id, target=SCRATCH))
    # Then Lambda read the archive from the backup bucket, and its CodeSha256 is still the backup's
    [(_, create)] = [call for call in calls.calls if call[0] == "CreateFunction"]
    assert create["Code"] == {"S3Bucket": BACKUP_BUCKET, "S3Key": _stored_key(system, backup, "code.zip")}
    assert result.code_sha256_verified and result.ok


def test_an_image_function_is_restored_by_digest(system, lam, store):
    # Given a function deployed as a container image, backed up, then moved to another image and resized
    role = lam.get_function_configuration(FunctionName=system.function_name)["Role"]
    lam.create_function(FunctionName="ingest-image", Role=role, PackageType="Image", MemorySize=2048,
                        Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ingest:1.4.2"})
    backup = FunctionBackup(lam, store, "ingest-image", clock=SimulatedClock()).run()
    lam.update_function_code(FunctionName="ingest-image",
                             ImageUri="123456789012.dkr.ecr.us-east-1.amazonaws.com/ingest:9.9.9")
    lam.update_function_configuration(FunctionName="ingest-image", MemorySize=512)
    restorer = FunctionRestorer(lam, store, "ingest-image", wait=lambda seconds: None)
    # When planned, Then the code comes back as the image the backup resolved, by digest (a tag can move)
    plan = restorer.plan(backup.backup_id)
    assert plan.package_type == "Image" and not plan.code_archive_verified
    assert set(plan.changed_settings) == {"Code", "MemorySize"}
    assert _change(plan, "Code")["image_uri"] == (
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/ingest@sha256:{backup.code_sha256}")
    # When applied, Then the function runs that image again
    result = restorer.apply(plan)
    assert result.ok and lam.get_function_configuration(FunctionName="ingest-image")["CodeSha256"] == backup.code_sha256


def test_a_zip_backup_is_not_restored_into_an_image_function(system, lam, backup, restorer):
    role = lam.get_function_configuration(FunctionName=system.function_name)["Role"]
    lam.create_function(FunctionName="ingest-image", Role=role, PackageType="Image",
                        Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ingest:1"})
    with pytest.raises(InvalidRequest, match="package type"):
        restorer.plan(backup.backup_id, target="ingest-image")


@pytest.mark.parametrize("target", ["arn:aws:lambda:us-east-1:123456789012:function:x", "a/b", "x" * 65])
def test_a_target_that_is_not_a_function_name_is_refused(system, backup, restorer, target):
    with pytest.raises(InvalidRequest, match="not a function name"):
        restorer.plan(backup.backup_id, target=target)


def test_a_plan_is_applied_only_by_the_restorer_of_its_function(system, store, backup, restorer, restorer_client):
    plan = restorer.plan(backup.backup_id)
    with pytest.raises(InvalidRequest, match=f"backup of {system.function_name}"):
        FunctionRestorer(restorer_client, store, "another-function").apply(plan)
    with pytest.raises(InvalidRequest, match="not a function-restore-plan/1 plan"):
        FunctionRestorePlan.from_dict({**plan.to_dict(), "format": "s3-restore-plan/1"})
