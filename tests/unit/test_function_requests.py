"""The translation of a function backup into Lambda's requests, without AWS: what the target should be,
what differs, and the exact request parameters a restore sends. No moto: these are pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from drcore.restore.function_requests import (
    ABSENT_FINGERPRINT,
    ArchiveSource,
    DesiredState,
    Differences,
    LambdaCall,
    TargetState,
    code_source,
    configuration_fields,
    create_function_request,
    desired_state,
    differences,
    fingerprint_of,
    publish_version_request,
    republish_layer_request,
    settings_calls,
    update_code_request,
    update_configuration_request,
)

FUNCTION = "apilados-pipeline-ingest"
ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
ROLE = "arn:aws:iam::123456789012:role/ingest"
LAYER = "arn:aws:lambda:us-east-1:123456789012:layer:deps:1"
CODE = {"package_type": "Zip", "code_sha256": "YmFja2Vk", "archive": "code.zip"}


def _configuration(**overrides: Any) -> dict[str, Any]:
    """A GetFunction Configuration as Lambda answers it for a zip function."""
    return {"FunctionName": FUNCTION, "FunctionArn": ARN, "PackageType": "Zip", "Role": ROLE, "Runtime": "python3.13",
            "Handler": "index.handler", "MemorySize": 1024, "Timeout": 60, "Layers": [{"Arn": LAYER}],
            "Environment": {"Variables": {"STAGE": "production", "API_KEY": "s3cr3t"}}, **overrides}


def _document(configuration: dict[str, Any] | None = None, **settings: dict[str, Any]) -> dict[str, Any]:
    """A backup's configuration.json."""
    return {"version": "7", "captured_at": "2026-11-26T13:25:00Z", "code": CODE,
            "configuration": configuration or _configuration(), "layers": [{"arn": LAYER, "name": "deps"}],
            "settings": {"tags": {"status": "present", "value": {"team": "data", "aws:cloudformation:stack-name": "S"}},
                         "reserved_concurrency": {"status": "present", "value": 20},
                         "event_invoke_configs": {"status": "absent"}, **settings}}


def _target(desired: DesiredState, **changes: Any) -> TargetState:
    """A target that is what `desired` says, but for `changes` (configuration fields, or settings' values)."""
    configuration = {**desired.configuration, **{key: value for key, value in changes.items() if key[0].isupper()}}
    settings = {name: ({"status": "present", "value": changes[name]} if changes.get(name) is not None
                       else {"status": "absent"}) if name in changes else capture
                for name, capture in desired.settings.items()}
    return TargetState(arn=ARN, package_type="Zip", code_sha256=changes.get("code", CODE["code_sha256"]),
                       revision_id="r1", configuration=configuration, settings=settings)


def test_a_setting_never_set_equals_one_cleared():
    # Given a function that never had a VPC, a DLQ or a description, and one whose were cleared
    never = configuration_fields({"PackageType": "Zip"}, FUNCTION)
    cleared = configuration_fields({"PackageType": "Zip", "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []},
                                    "DeadLetterConfig": {}, "Description": "", "MemorySize": 128, "Timeout": 3},
                                   FUNCTION)
    # Then both are Lambda's defaults, field by field
    assert never == cleared
    assert never["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{FUNCTION}"}
    assert never["Architectures"] == ["x86_64"] and never["Environment"] == {}


def test_an_image_function_has_an_image_config_and_no_runtime_handler_or_layers():
    fields = configuration_fields({"PackageType": "Image", "ImageConfigResponse": {
        "ImageConfig": {"Command": ["app.handler"], "EntryPoint": [], "WorkingDirectory": ""}}}, FUNCTION)
    assert fields["ImageConfig"] == {"Command": ["app.handler"]}
    assert not {"Runtime", "Handler", "Layers"} & set(fields)


def test_a_restore_beside_the_function_logs_to_its_own_group_and_leaves_what_it_cannot_restore():
    # Given a backup whose tags the endpoint could not read, and an event invoke config on an alias
    document = _document(tags={"status": "unavailable", "detail": "ListTags is not available (501)"},
                         event_invoke_configs={"status": "present", "value": [
                             {"FunctionArn": f"{ARN}:LIVE", "MaximumRetryAttempts": 0}]},
                         aliases={"status": "present", "value": [{"Name": "LIVE"}]})
    # When the desired state of a function beside it is worked out
    desired = desired_state(document, FUNCTION, f"{FUNCTION}-restored")
    # Then it logs to its own log group, says so, and says why each setting is left as it is
    assert desired.configuration["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{FUNCTION}-restored"
    assert desired.notes and f"{FUNCTION}-restored" in desired.notes[0]
    assert "could not capture it (ListTags is not available (501))" in desired.left_alone["tags"]
    assert desired.settings["tags"]["status"] == "unavailable"
    assert "LIVE" in desired.left_alone["event_invoke_configs"] and "alias controller" in desired.left_alone["aliases"]
    assert desired.settings["event_invoke_configs"] == {"status": "absent"}


def test_aws_own_tags_are_never_restored():
    desired = desired_state(_document(), FUNCTION, FUNCTION)
    assert desired.settings["tags"] == {"status": "present", "value": {"team": "data"}}


def test_a_new_target_differs_in_everything_the_backup_sets():
    desired = desired_state(_document(), FUNCTION, "scratch")
    diff = differences(CODE, desired, None)
    assert diff.unchanged == []
    assert diff.changed_settings[0] == "Code" and {"MemorySize", "Environment", "tags"} <= set(diff.changed_settings)
    assert "event_invoke_configs" not in diff.changed_settings  # a new function has none either


def test_the_environment_differs_by_name_and_never_shows_a_value():
    # Given a target whose environment gained, lost and changed variables
    desired = desired_state(_document(), FUNCTION, FUNCTION)
    target = _target(desired, Environment={"STAGE": "staging", "DEBUG": "1"})
    # When compared with the backup
    diff = differences(CODE, desired, target)
    # Then the change names the variables, and no value appears in it
    assert diff.changed_settings == ["Environment"]
    assert diff.change("Environment") == {"setting": "Environment", "to_add": ["API_KEY"], "to_remove": ["DEBUG"],
                                          "to_change": ["STAGE"]}
    assert "s3cr3t" not in str(diff.changes) and "staging" not in str(diff.changes)


def test_a_new_function_is_created_unpublished_with_only_what_is_set():
    # Given the desired state of a function the backup says has no VPC, DLQ or KMS key
    desired = desired_state(_document(), FUNCTION, "scratch")
    # When the CreateFunction request is made
    request = create_function_request("scratch", "Zip", {"ZipFile": b"zip"}, desired)
    # Then it is unpublished, its environment is wrapped as Lambda takes it, the tags go with it, and
    # what would only clear a setting is left out
    assert request["FunctionName"] == "scratch" and request["Publish"] is False
    assert request["Code"] == {"ZipFile": b"zip"}
    assert request["Environment"] == {"Variables": {"STAGE": "production", "API_KEY": "s3cr3t"}}
    assert request["Tags"] == {"team": "data"} and request["Layers"] == [LAYER]
    assert not {"VpcConfig", "DeadLetterConfig", "KMSKeyArn", "FileSystemConfigs"} & set(request)


def test_only_the_fields_that_differ_are_updated():
    desired = desired_state(_document(), FUNCTION, FUNCTION)
    diff = differences(CODE, desired, _target(desired, MemorySize=128, Environment={}, Architectures=["arm64"]))
    assert update_configuration_request(FUNCTION, desired, diff) == {
        "FunctionName": FUNCTION, "Environment": {"Variables": {"STAGE": "production", "API_KEY": "s3cr3t"}},
        "MemorySize": 1024}
    # Architectures go with the code, which only UpdateFunctionCode sets
    assert update_code_request(FUNCTION, desired, {"ZipFile": b"zip"}) == {
        "FunctionName": FUNCTION, "Publish": False, "Architectures": ["x86_64"], "ZipFile": b"zip"}
    assert update_configuration_request(FUNCTION, desired, Differences([], [])) is None


def test_the_settings_around_the_function_are_restored_by_put_delete_tag_and_untag():
    # Given a target with other tags, no reserved concurrency, and an event invoke config the backup lacks
    desired = desired_state(_document(), FUNCTION, FUNCTION)
    target = _target(desired, tags={"team": "web", "owner": "ops"}, reserved_concurrency=None,
                     event_invoke_configs={"MaximumRetryAttempts": 2})
    diff = differences(CODE, desired, target)
    # When the settings' calls are made
    steps = settings_calls(FUNCTION, ARN, desired, diff)
    # Then each step has the calls that bring it to the backup's, in order
    assert steps == [
        ("reserved concurrency", [LambdaCall("put_function_concurrency", {
            "FunctionName": FUNCTION, "ReservedConcurrentExecutions": 20})]),
        ("tags", [LambdaCall("untag_resource", {"Resource": ARN, "TagKeys": ["owner"]}),
                  LambdaCall("tag_resource", {"Resource": ARN, "Tags": {"team": "data"}})]),
        ("event invoke config", [LambdaCall("delete_function_event_invoke_config", {"FunctionName": FUNCTION})]),
    ]


def test_a_created_function_got_its_tags_already_and_a_cleared_concurrency_is_deleted():
    document = _document(reserved_concurrency={"status": "absent"})
    desired = desired_state(document, FUNCTION, "scratch")
    diff = differences(CODE, desired, _target(desired, reserved_concurrency=5))
    assert settings_calls("scratch", None, desired, diff) == [
        ("reserved concurrency", [LambdaCall("delete_function_concurrency", {"FunctionName": "scratch"})])]


@pytest.mark.parametrize("size, expected", [
    (16, {"ZipFile": b"x" * 16}),
    (17, {"S3Bucket": "backups", "S3Key": "backups/lambda/f/id/code.zip"}),
])
def test_an_archive_over_the_direct_upload_limit_is_taken_from_the_backup_bucket(size, expected):
    archives = ArchiveSource("backups", "backups/lambda/f/id/", direct_upload_limit=16)
    assert code_source(CODE, b"x" * size, archives) == expected


def test_an_image_is_restored_by_digest():
    code = {"package_type": "Image", "code_sha256": "abc", "image_uri": "repo/ingest:1.4.2",
            "resolved_image_uri": "repo/ingest@sha256:abc"}
    assert code_source(code, None, ArchiveSource("b", "p/", 16)) == {"ImageUri": "repo/ingest@sha256:abc"}


def test_a_version_is_published_only_of_exactly_what_was_restored():
    request = publish_version_request(FUNCTION, "YmFja2Vk", "20261126T132500Z-3f9a1c", "r9")
    assert request == {"FunctionName": FUNCTION, "CodeSha256": "YmFja2Vk", "RevisionId": "r9",
                       "Description": "DR restore of backup 20261126T132500Z-3f9a1c"}
    assert "RevisionId" not in publish_version_request(FUNCTION, "YmFja2Vk", "id", None)


def test_a_deleted_layer_is_published_again_as_it_was_recorded():
    layer = {"name": "deps", "layer_version": {"Description": "pinned deps", "CompatibleRuntimes": ["python3.13"],
                                               "LicenseInfo": "", "CompatibleArchitectures": None}}
    request = republish_layer_request(layer, "20261126T132500Z-3f9a1c", {"ZipFile": b"layer"})
    assert request == {"LayerName": "deps", "Content": {"ZipFile": b"layer"}, "CompatibleRuntimes": ["python3.13"],
                       "Description": "pinned deps (republished from DR backup 20261126T132500Z-3f9a1c)"}


def test_the_fingerprint_follows_the_target():
    desired = desired_state(_document(), FUNCTION, FUNCTION)
    assert fingerprint_of(None) == ABSENT_FINGERPRINT
    assert fingerprint_of(_target(desired)) == fingerprint_of(_target(desired))
    assert fingerprint_of(_target(desired)) != fingerprint_of(_target(desired, MemorySize=256))
    assert fingerprint_of(_target(desired)) != fingerprint_of(_target(desired, tags={"team": "web"}))
