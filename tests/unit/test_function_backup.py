"""Function backups: the code archive really downloaded and verified, every setting captured, the
manifest last, nothing overwritten.

moto's GetFunction names a code URL nothing serves; the moto_gaps fill serves each archive from a
real loopback HTTP server (and lets a test damage what it serves), so the download is not skipped.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

import boto3
import pytest

from drcore.backup.function_backup import (
    ArchiveDownloadFailed,
    ArchiveVerificationFailed,
    FunctionBackup,
    FunctionNotFound,
    download,
)
from drcore.core.errors import InvalidRequest
from drcore.state.backup_store import AlreadyWritten, BackupStore, Component, backup_prefix
from embedded.moto_gaps import VersionBehaviour
from embedded.sample_system import (
    FUNCTION_ENVIRONMENT,
    FUNCTION_TAGS,
    RESERVED_CONCURRENCY,
    SampleSystem,
    execution_role_name,
)
from tests.support import SimulatedClock

BACKUP_BUCKET = "apilados-dr-backups"
SETTINGS = ("aliases", "versions", "resource_policy", "function_url_config", "event_source_mappings",
            "event_invoke_configs", "reserved_concurrency", "provisioned_concurrency", "tags", "code_signing_config",
            "recursion_config", "runtime_management_config")
# What moto 5.2.5 does not implement; everything else must be captured for real.
NOT_IN_MOTO = {"provisioned_concurrency", "recursion_config", "runtime_management_config"}


@pytest.fixture
def store(system: SampleSystem) -> BackupStore:
    # Versioned, with Object Lock, as the stack builds it
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BACKUP_BUCKET, ObjectLockEnabledForBucket=True)
    return BackupStore(s3, BACKUP_BUCKET)


@pytest.fixture
def lam(system: SampleSystem) -> Any:
    return system.clients["lambda"]


def _backup(lam: Any, store: BackupStore, system: SampleSystem, **kwargs: Any) -> FunctionBackup:
    return FunctionBackup(lam, store, system.function_name, clock=SimulatedClock(), **kwargs)


def _files(store: BackupStore, system: SampleSystem, backup_id: str) -> dict[str, bytes]:
    prefix = backup_prefix(Component.LAMBDA, system.function_name, backup_id)
    return {entry["Key"][len(prefix):]: store.get_bytes(entry["Key"]) for entry in store.keys(prefix)}


def _zip_text(body: bytes, name: str) -> str:
    return zipfile.ZipFile(io.BytesIO(body)).read(name).decode()


def test_code_archive_is_downloaded_over_loopback_http_and_verified(system, lam, store, versions_behaviour):
    # Given a fetch that records the URLs it downloads with the real HTTP download
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return download(url, timeout_seconds=5)

    # When LIVE is backed up
    result = _backup(lam, store, system, fetch=fetch).run(qualifier="LIVE", reason="scheduled")

    # Then the code came from the loopback server, and is exactly the archive Lambda holds for LIVE's version
    live = lam.get_function(FunctionName=system.function_name, Qualifier="LIVE")["Configuration"]
    assert fetched[0].startswith("http://127.0.0.1:") and "/functions/" in fetched[0]
    assert versions_behaviour.archives.served[0] == fetched[0][fetched[0].index("/functions/"):]
    code = _files(store, system, result.backup_id)["code.zip"]
    assert base64.b64encode(hashlib.sha256(code).digest()).decode() == live["CodeSha256"] == result.code_sha256
    assert _zip_text(code, "index.py").startswith("RELEASE = 'good'")
    assert result.code_sha256_verified is True and result.version == system.versions["good"]
    # and the manifest lists the file with the digest of what was stored, and the version S3 stored it as
    manifest = store.get_json(result.manifest_key)
    entry = next(entry for entry in manifest["files"] if entry["path"] == "code.zip")
    stored = store.s3.head_object(Bucket=BACKUP_BUCKET, Key=f"{result.manifest_key.rsplit('/', 1)[0]}/code.zip")
    assert entry == {"path": "code.zip", "size": len(code), "sha256": hashlib.sha256(code).hexdigest(),
                     "version_id": stored["VersionId"]}
    assert manifest["code_sha256"] == live["CodeSha256"] and manifest["code_sha256_verified"] is True
    assert manifest["qualifier"] == "LIVE" and manifest["reason"] == "scheduled"


def test_a_corrupted_code_archive_fails_the_backup_and_leaves_no_manifest(system, lam, store, versions_behaviour):
    # Given the download of the function's archive arrives damaged
    versions_behaviour.archives.corrupt_function(system.function_name)
    # When it is backed up, Then verification fails
    with pytest.raises(ArchiveVerificationFailed, match="SHA-256"):
        _backup(lam, store, system).run(qualifier="LIVE")
    # and no backup is complete, nor was the damaged archive kept
    assert [listing.complete for listing in store.list_backups(Component.LAMBDA, system.function_name)] in ([], [False])
    assert not any(entry["Key"].endswith(("manifest.json", "code.zip")) for entry in store.keys("backups/"))


def test_a_corrupted_layer_archive_fails_the_backup(system, lam, store, versions_behaviour):
    # Given the function's layer downloads damaged
    versions_behaviour.archives.corrupt_layer(f"{system.function_name}-deps")
    # When it is backed up, Then verification fails and the backup stays incomplete
    with pytest.raises(ArchiveVerificationFailed, match="layer"):
        _backup(lam, store, system).run()
    listings = store.list_backups(Component.LAMBDA, system.function_name)
    assert [listing.complete for listing in listings] == [False]


def test_a_failed_download_is_a_backup_error(system, lam, store):
    def unreachable(url: str) -> bytes:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(ArchiveDownloadFailed, match="connection refused"):
        _backup(lam, store, system, fetch=unreachable).run()
    assert not any(listing.complete for listing in store.list_backups(Component.LAMBDA, system.function_name))


def test_every_setting_is_in_configuration_json(system, lam, store, versions_behaviour):
    # Given the production function (layer, memory, timeout, storage, tracing, environment, tags, reserved
    # concurrency, event invoke config, S3's permission on LIVE) and, besides, a canary on LIVE, a
    # function URL and a queue feeding LIVE
    name = system.function_name
    lam.update_alias(FunctionName=name, Name="LIVE", FunctionVersion=system.versions["good"],
                     RoutingConfig={"AdditionalVersionWeights": {system.versions["fix"]: 0.1}})
    lam.create_function_url_config(FunctionName=name, Qualifier="LIVE", AuthType="AWS_IAM")
    queue_arn = system.clients["sqs"].get_queue_attributes(QueueUrl=system.alert_queue_url,
                                                           AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(FunctionName=f"{name}:LIVE", EventSourceArn=queue_arn, BatchSize=7)

    # When $LATEST is backed up
    result = _backup(lam, store, system).run()

    # Then configuration.json holds the whole configuration
    files = _files(store, system, result.backup_id)
    document = json.loads(files["configuration.json"])
    configuration = document["configuration"]
    assert configuration["Environment"]["Variables"] == FUNCTION_ENVIRONMENT
    assert (configuration["MemorySize"], configuration["Timeout"]) == (1024, 600)
    assert configuration["EphemeralStorage"] == {"Size": 2048} and configuration["TracingConfig"] == {"Mode": "Active"}
    assert (configuration["Runtime"], configuration["Handler"]) == ("python3.13", "index.handler")
    assert configuration["Role"].endswith(f"role/{execution_role_name(name)}")
    assert configuration["Architectures"] == ["x86_64"]
    assert configuration["Description"] == "Apilados Pipeline: CSV ingest"
    # settings AWS returns but this endpoint did not are named, not silently missing
    assert "LoggingConfig" in document["configuration_absent"] and "Environment" not in document["configuration_absent"]
    # and the layer, with its own verified archive
    [layer] = document["layers"]
    assert layer["arn"] == system.layer_arn and layer["archive"] == f"layers/{name}-deps-1.zip"
    assert _zip_text(files[layer["archive"]], "python/apilados_common.py") == "CSV_DIALECT = 'excel'\n"
    assert "Location" not in layer["layer_version"]["Content"]  # pre-signed URLs are not kept
    # and every setting around the function, each with what a restore may do with it
    settings = document["settings"]
    assert set(settings) == set(SETTINGS)
    assert {name for name, capture in settings.items() if capture["status"] == "unavailable"} == NOT_IN_MOTO
    assert all("not available from this endpoint" in settings[name]["detail"] for name in NOT_IN_MOTO)
    aliases = {alias["Name"]: alias for alias in settings["aliases"]["value"]}
    assert aliases["LIVE"]["RoutingConfig"] == {"AdditionalVersionWeights": {system.versions["fix"]: 0.1}}
    assert aliases["STABLE"]["FunctionVersion"] == system.versions["good"]
    assert {version["Version"] for version in settings["versions"]["value"]} == {"$LATEST", *system.versions.values()}
    [statement] = settings["resource_policy"]["value"]["LIVE"]["Policy"]["Statement"]
    assert statement["Sid"] == "s3-invokes-live" and statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert settings["function_url_config"]["value"]["LIVE"]["AuthType"] == "AWS_IAM"
    [mapping] = settings["event_source_mappings"]["value"]
    assert mapping["EventSourceArn"] == queue_arn and mapping["BatchSize"] == 7
    [invoke_config] = settings["event_invoke_configs"]["value"]
    assert invoke_config["MaximumRetryAttempts"] == 1 and invoke_config["MaximumEventAgeInSeconds"] == 3600
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == system.failure_queue_arn
    assert settings["reserved_concurrency"] == {"status": "present", "value": RESERVED_CONCURRENCY}
    assert settings["tags"] == {"status": "present", "value": FUNCTION_TAGS}
    assert settings["code_signing_config"] == {"status": "absent"}
    # and the result and the manifest say what was captured
    assert result.captured == {name: capture["status"] for name, capture in settings.items()}
    assert store.get_json(result.manifest_key)["captured"] == result.captured


def test_settings_the_function_lacks_are_recorded_absent(system, lam, store):
    # Given a function with no aliases, tags, policy, concurrency or invoke config
    role = lam.get_function_configuration(FunctionName=system.function_name)["Role"]
    lam.create_function(FunctionName="bare", Runtime="python3.13", Role=role, Handler="index.handler",
                        Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    # When it is backed up
    result = FunctionBackup(lam, store, "bare", clock=SimulatedClock()).run()
    # Then each of those is "absent" (a restore removes or leaves none), not dropped
    for name in ("aliases", "resource_policy", "function_url_config", "event_source_mappings",
                 "event_invoke_configs", "reserved_concurrency", "tags", "code_signing_config"):
        assert result.captured[name] == "absent", name
    assert result.layers == () and result.captured["versions"] == "present"


def test_the_manifest_is_written_last(system, lam, store):
    # Given a store that records the order of writes
    order: list[str] = []
    original = store.put_once

    def recording(key: str, body: bytes, *args: Any, **kwargs: Any) -> str | None:
        order.append(key)
        return original(key, body, *args, **kwargs)

    store.put_once = recording  # type: ignore[method-assign]
    # When the function is backed up
    result = _backup(lam, store, system).run()
    # Then every file the manifest lists was written before it, the manifest last, and then the record of the
    # version it was written as
    manifest = store.get_json(result.manifest_key)
    prefix = backup_prefix(Component.LAMBDA, system.function_name, result.backup_id)
    assert order[-2:] == [result.manifest_key, prefix + "manifest-version.json"]
    assert order[:-2] == [prefix + entry["path"] for entry in manifest["files"]]
    assert [entry["path"] for entry in manifest["files"]] == ["code.zip", f"layers/{system.function_name}-deps-1.zip",
                                                              "configuration.json"]
    assert manifest["bytes"] == sum(entry["size"] for entry in manifest["files"]) == result.bytes


def test_a_backup_that_crashes_before_its_manifest_is_listed_incomplete(system, lam, store):
    # Given the invocation dies as it writes the manifest
    original = store.put_once

    def crash_on_manifest(key: str, body: bytes, *args: Any, **kwargs: Any) -> str | None:
        if key.endswith("manifest.json"):
            raise TimeoutError("Lambda timed out")
        return original(key, body, *args, **kwargs)

    store.put_once = crash_on_manifest  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        _backup(lam, store, system).run()
    # Then the backup's files are there but it is listed incomplete, so nothing restores from it
    [listing] = store.list_backups(Component.LAMBDA, system.function_name)
    assert listing.complete is False
    assert set(_files(store, system, listing.backup_id)) == {"code.zip", "configuration.json",
                                                             f"layers/{system.function_name}-deps-1.zip"}


def test_a_second_backup_never_overwrites_the_first(system, lam, store, monkeypatch):
    # Given a complete backup
    first = _backup(lam, store, system).run(reason="first")
    before = _files(store, system, first.backup_id)
    # When the function changes and is backed up again
    lam.update_function_configuration(FunctionName=system.function_name, MemorySize=2048)
    second = _backup(lam, store, system).run(reason="second")
    # Then the second is a new backup and the first is byte for byte what it was
    assert second.backup_id != first.backup_id
    assert _files(store, system, first.backup_id) == before
    assert [listing.complete for listing in store.list_backups(Component.LAMBDA, system.function_name)] == [True, True]
    # and even a backup that reused the first one's id could not replace a byte of it
    monkeypatch.setattr("drcore.backup.function_backup.new_backup_id", lambda moment: first.backup_id)
    with pytest.raises(AlreadyWritten, match=rf"s3://{BACKUP_BUCKET}/backups/lambda/{system.function_name}/"
                                              rf"{first.backup_id}/code.zip already exists"):
        _backup(lam, store, system).run(reason="third")
    assert _files(store, system, first.backup_id) == before


def test_publishing_a_version_first_backs_up_that_version(system, lam, store):
    # Given $LATEST changed since the last published version
    lam.update_function_configuration(FunctionName=system.function_name, Timeout=900)
    # When backed up with publish_version, as the runbook does
    result = _backup(lam, store, system).run(publish_version=True, reason="nightly")
    # Then a new version was published and it is the one backed up
    published = lam.get_function_configuration(FunctionName=system.function_name, Qualifier=result.published_version)
    assert result.published_version not in system.versions.values()
    assert result.version == result.qualifier == result.published_version
    assert published["Timeout"] == 900 and published["Description"].startswith("DR backup")
    document = json.loads(_files(store, system, result.backup_id)["configuration.json"])
    assert document["published_version"] == result.published_version and document["configuration"]["Timeout"] == 900


def test_publishing_and_naming_a_qualifier_is_refused(system, lam, store):
    with pytest.raises(InvalidRequest, match="qualifier"):
        _backup(lam, store, system).run(qualifier="LIVE", publish_version=True)
    assert store.list_backups(Component.LAMBDA, system.function_name) == []


def test_a_missing_function_is_a_clear_error(system, lam, store):
    with pytest.raises(FunctionNotFound, match="no-such-function"):
        FunctionBackup(lam, store, "no-such-function").run()
    assert list(store.keys("backups/")) == []


def test_a_container_image_function_records_its_image(system, lam, store, versions_behaviour):
    # Given a function deployed as a container image (its code lives in ECR, not in a zip)
    role = lam.get_function_configuration(FunctionName=system.function_name)["Role"]
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ingest:1.4.2"
    lam.create_function(FunctionName="ingest-image", Role=role, PackageType="Image", Code={"ImageUri": image})
    # When it is backed up
    result = FunctionBackup(lam, store, "ingest-image", clock=SimulatedClock()).run()
    # Then the image is recorded instead of an archive, and nothing was downloaded
    document = store.get_json(backup_prefix(Component.LAMBDA, "ingest-image", result.backup_id) + "configuration.json")
    assert document["code"]["image_uri"] == image
    assert document["code"]["resolved_image_uri"].endswith(result.code_sha256)
    assert result.package_type == "Image" and result.code_sha256_verified is False
    assert result.files == ("configuration.json",) and versions_behaviour.archives.served == []
    assert store.get_json(result.manifest_key)["image_uri"] == image


def test_download_refuses_a_non_http_location():
    with pytest.raises(ArchiveDownloadFailed, match="non-HTTP"):
        download("file:///etc/passwd")


def test_the_archive_server_serves_what_moto_holds(versions_behaviour: VersionBehaviour, system, lam):
    # Given GetFunction's Location for STABLE's version
    location = lam.get_function(FunctionName=system.function_name, Qualifier="STABLE")["Code"]["Location"]
    # When downloaded, Then it is the zip moto holds for that version, and an unknown path is a 404
    assert _zip_text(download(location), "index.py").startswith("RELEASE = 'good'")
    with pytest.raises(OSError, match="404"):
        download(location.rsplit("/", 1)[0] + "/unknown.zip")
