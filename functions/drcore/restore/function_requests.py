"""The pure half of a function restore: a function backup translated into what the target should be, the
differences from what it is, and the Lambda requests that make them (CreateFunction,
UpdateFunctionCode, UpdateFunctionConfiguration, PutFunctionConcurrency, TagResource, ...).

Nothing here calls AWS: drcore.restore.function_restore reads the backup and the target, and sends what
these functions return. Configuration fields are compared in their UpdateFunctionConfiguration form,
each missing one as Lambda's default, so a function that never had a setting equals one that had it
cleared; the settings around the function are compared as captures (drcore.backup.function_format).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from drcore.backup.function_format import ABSENT, CODE_ARCHIVE, UNAVAILABLE, captured, captured_value

# The backup's settings a restore applies, and why each of the others is left as it is.
RESTORED_SETTINGS = ("tags", "reserved_concurrency", "event_invoke_configs")
LEFT_ALONE = {
    "aliases": "aliases are the alias controller's: point LIVE at the published version through it",
    "versions": "published versions never change: the restore publishes a new one",
    "resource_policy": "permissions belong to the aliases that serve traffic",
    "function_url_config": "function URLs belong to the aliases that serve traffic",
    "event_source_mappings": "a mapping restored beside the original would be a second consumer of its source",
    "provisioned_concurrency": "configured on aliases and versions",
    "code_signing_config": "who may sign the function's code is not restored from a backup",
    "recursion_config": "not restored",
    "runtime_management_config": "not restored",
}
# Values that clear a setting in UpdateFunctionConfiguration; CreateFunction leaves them out.
CLEARED: dict[str, Any] = {
    "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}, "DeadLetterConfig": {"TargetArn": ""}, "KMSKeyArn": "",
    "FileSystemConfigs": [], "ImageConfig": {}, "Layers": [], "Environment": {},
}
ABSENT_FINGERPRINT = "absent"


@dataclass(frozen=True)
class TargetState:
    """The target as it is now, in the terms a backup is compared in."""

    arn: str  # unqualified
    package_type: str
    code_sha256: str
    revision_id: str | None
    configuration: dict[str, Any]  # field -> request-form value
    settings: dict[str, dict[str, Any]]  # RESTORED_SETTINGS -> capture


@dataclass(frozen=True)
class DesiredState:
    """What the backup says the target should be."""

    configuration: dict[str, Any]
    settings: dict[str, dict[str, Any]]  # RESTORED_SETTINGS -> capture (status "unavailable": left alone)
    layers: list[dict[str, Any]]  # the backup's layer records, in order
    left_alone: dict[str, str]
    notes: list[str]

    def with_layers(self, layer_arns: list[str]) -> DesiredState:
        """The same, its layers published again under `layer_arns` (a zip function's only)."""
        if "Layers" not in self.configuration:
            return self
        return replace(self, configuration={**self.configuration, "Layers": layer_arns})


@dataclass(frozen=True)
class Differences:
    changes: list[dict[str, Any]]  # {"setting": name, ...what differs}, in the order apply makes them
    unchanged: list[str]

    def differs(self, setting: str) -> bool:
        return any(change["setting"] == setting for change in self.changes)

    def change(self, setting: str) -> dict[str, Any]:
        return next(change for change in self.changes if change["setting"] == setting)

    @property
    def changed_settings(self) -> list[str]:
        return [change["setting"] for change in self.changes]


@dataclass(frozen=True)
class LambdaCall:
    """One Lambda request: the client method's name and its parameters."""

    operation: str
    request: dict[str, Any]


@dataclass(frozen=True)
class ArchiveSource:
    """Where Lambda takes an archive of the backup from: inline up to the direct-upload limit (ZipFile takes
    at most 50 MB), else from the archive's object in the backup bucket."""

    bucket: str
    prefix: str  # the backup's
    direct_upload_limit: int

    def of(self, path: str, body: bytes) -> dict[str, Any]:
        if len(body) <= self.direct_upload_limit:
            return {"ZipFile": body}
        return {"S3Bucket": self.bucket, "S3Key": self.prefix + path}


def configuration_fields(configuration: dict[str, Any], function_name: str) -> dict[str, Any]:
    """A GetFunction(Configuration) Configuration as the UpdateFunctionConfiguration fields it amounts to
    (Architectures, which UpdateFunctionCode takes, included), each missing one as Lambda's default, so a
    function that never had a setting equals one that had it cleared."""
    vpc = configuration.get("VpcConfig") or {}
    logging_config = configuration.get("LoggingConfig") or {}
    fields_ = {
        "Role": configuration.get("Role"),
        "Description": configuration.get("Description") or "",
        "MemorySize": configuration.get("MemorySize", 128),
        "Timeout": configuration.get("Timeout", 3),
        "Architectures": configuration.get("Architectures") or ["x86_64"],
        "EphemeralStorage": {"Size": (configuration.get("EphemeralStorage") or {}).get("Size", 512)},
        "VpcConfig": {"SubnetIds": sorted(vpc.get("SubnetIds") or []),
                      "SecurityGroupIds": sorted(vpc.get("SecurityGroupIds") or []),
                      **({"Ipv6AllowedForDualStack": True} if vpc.get("Ipv6AllowedForDualStack") else {})},
        "DeadLetterConfig": {"TargetArn": (configuration.get("DeadLetterConfig") or {}).get("TargetArn") or ""},
        "TracingConfig": {"Mode": (configuration.get("TracingConfig") or {}).get("Mode") or "PassThrough"},
        "KMSKeyArn": configuration.get("KMSKeyArn") or "",
        "LoggingConfig": {"LogFormat": logging_config.get("LogFormat") or "Text",
                          "LogGroup": logging_config.get("LogGroup") or f"/aws/lambda/{function_name}",
                          **{key: logging_config[key] for key in ("ApplicationLogLevel", "SystemLogLevel")
                             if logging_config.get(key)}},
        "FileSystemConfigs": sorted(({"Arn": item["Arn"], "LocalMountPath": item["LocalMountPath"]}
                                     for item in configuration.get("FileSystemConfigs") or []),
                                    key=lambda item: item["Arn"]),
        "SnapStart": {"ApplyOn": (configuration.get("SnapStart") or {}).get("ApplyOn") or "None"},
        "Environment": dict((configuration.get("Environment") or {}).get("Variables") or {}),
    }
    if configuration.get("PackageType") == "Image":
        image = (configuration.get("ImageConfigResponse") or {}).get("ImageConfig") or {}
        fields_["ImageConfig"] = {key: value for key, value in image.items() if value not in (None, "", [])}
    else:
        fields_.update(Runtime=configuration.get("Runtime"), Handler=configuration.get("Handler"),
                       Layers=[layer["Arn"] for layer in configuration.get("Layers") or []])
    return fields_


def event_invoke_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of an event invoke config PutFunctionEventInvokeConfig takes."""
    if not config:
        return None
    destinations = {kind: target for kind, target in (config.get("DestinationConfig") or {}).items()
                    if (target or {}).get("Destination")}
    kept = {key: config[key] for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")
            if config.get(key) is not None}
    return {**kept, **({"DestinationConfig": destinations} if destinations else {})} or None


def user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """Tags a caller may set and remove: `aws:` tags (CloudFormation's, ...) are AWS's own."""
    return {key: value for key, value in (tags or {}).items() if not key.startswith("aws:")}


def image_uri(code: dict[str, Any]) -> str:
    """The image a backup's code is, by digest where it was resolved: the tag it recorded may point at
    another image by now."""
    uri: str = code.get("resolved_image_uri") or code["image_uri"]
    return uri


def _is_function_level(config: dict[str, Any]) -> bool:
    arn: str = config.get("FunctionArn", "")
    return arn.count(":") == 6 or arn.endswith(":$LATEST")


def desired_state(document: dict[str, Any], function_name: str, target: str) -> DesiredState:
    """What a backup's configuration.json (of `function_name`) says `target` should be."""
    configuration = configuration_fields(document["configuration"], function_name)
    notes: list[str] = []
    if target != function_name and configuration["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{function_name}":
        configuration["LoggingConfig"]["LogGroup"] = f"/aws/lambda/{target}"
        notes.append(f"{target} logs to its own log group /aws/lambda/{target}, as {function_name} logs to its own")
    captures = document["settings"]
    settings: dict[str, dict[str, Any]] = {}
    left_alone: dict[str, str] = {}
    for name, capture in captures.items():
        if capture["status"] == UNAVAILABLE:
            detail = capture.get("detail", "unavailable")
            left_alone[name] = f"the backup could not capture it ({detail}): left as it is"
        elif name in LEFT_ALONE:
            left_alone[name] = LEFT_ALONE[name]
    tags = captures.get("tags", {"status": ABSENT})
    settings["tags"] = tags if tags["status"] == UNAVAILABLE else captured(user_tags(captured_value(tags)))
    settings["reserved_concurrency"] = captures.get("reserved_concurrency", {"status": ABSENT})
    invoke_configs = captures.get("event_invoke_configs", {"status": ABSENT})
    if invoke_configs["status"] == UNAVAILABLE:
        settings["event_invoke_configs"] = invoke_configs
    else:
        configs = captured_value(invoke_configs) or []
        own = next((config for config in configs if _is_function_level(config)), None)
        settings["event_invoke_configs"] = captured(event_invoke_config(own))
        qualified = sorted(config["FunctionArn"].rsplit(":", 1)[1] for config in configs
                           if not _is_function_level(config))
        if qualified:
            left_alone["event_invoke_configs"] = (f"the function's own is restored; those of {', '.join(qualified)} "
                                                  "are configured on aliases and versions and left as they are")
    return DesiredState(configuration, settings, document.get("layers") or [], left_alone, notes)


def _environment_change(now: dict[str, str], backup: dict[str, str]) -> dict[str, Any]:
    # Names only, never values: a plan is shown, stored and journaled.
    return {"setting": "Environment",
            "to_add": sorted(set(backup) - set(now)),
            "to_remove": sorted(set(now) - set(backup)),
            "to_change": sorted(name for name in set(now) & set(backup) if now[name] != backup[name])}


def _tags_change(now: dict[str, str], backup: dict[str, str]) -> dict[str, Any]:
    return {"setting": "tags",
            "to_add": {key: backup[key] for key in sorted(set(backup) - set(now))},
            "to_remove": sorted(set(now) - set(backup)),
            "to_change": {key: {"now": now[key], "backup": backup[key]}
                          for key in sorted(set(now) & set(backup)) if now[key] != backup[key]}}


def differences(code: dict[str, Any], desired: DesiredState, current: TargetState | None) -> Differences:
    """Each difference between the target (None: it does not exist) and the backup whose code record is
    `code`, in the order apply makes them: code, configuration, then the settings around the function."""
    changes: list[dict[str, Any]] = []
    unchanged: list[str] = []

    def compare(setting: str, now: Any, wanted: Any, change: dict[str, Any]) -> None:
        if current is not None and now == wanted:
            unchanged.append(setting)
        else:
            changes.append(change)

    now_code = current.code_sha256 if current else None
    code_change = {"setting": "Code", "now": now_code, "backup": code["code_sha256"]}
    if code["package_type"] == "Image":
        code_change["image_uri"] = image_uri(code)
    compare("Code", now_code, code["code_sha256"], code_change)
    for name, wanted in desired.configuration.items():
        now = current.configuration.get(name) if current else None
        if name == "Environment":
            compare(name, now, wanted, _environment_change(now or {}, wanted))
        else:
            compare(name, now, wanted, {"setting": name, "now": now, "backup": wanted})
    for name in RESTORED_SETTINGS:
        wanted_capture = desired.settings[name]
        now_capture = current.settings[name] if current else {"status": ABSENT}
        if UNAVAILABLE in (wanted_capture["status"], now_capture["status"]):
            continue
        now, wanted = captured_value(now_capture), captured_value(wanted_capture)
        if current is None and wanted is None:
            continue  # a new function has none either
        if name == "tags":
            compare(name, now, wanted, _tags_change(now or {}, wanted or {}))
        else:
            compare(name, now, wanted, {"setting": name, "now": now, "backup": wanted})
    return Differences(changes, unchanged)


def fingerprint_of(current: TargetState | None) -> str:
    """A digest of the target's state as compared (code, RevisionId, configuration, settings), or "absent"."""
    if current is None:
        return ABSENT_FINGERPRINT
    state = {"code": current.code_sha256, "revision_id": current.revision_id,
             "configuration": current.configuration, "settings": current.settings}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


# Requests ----------------------------------------------------------------------------------------


def code_source(code: dict[str, Any], archive: bytes | None, archives: ArchiveSource) -> dict[str, Any]:
    """The code part of CreateFunction and UpdateFunctionCode: the backup's image, or its archive."""
    if archive is None:
        return {"ImageUri": image_uri(code)}
    return archives.of(CODE_ARCHIVE, archive)


def create_function_request(target: str, package_type: str, source: dict[str, Any],
                            desired: DesiredState) -> dict[str, Any]:
    """CreateFunction for a target that does not exist: unpublished, with the backup's configuration (what
    would clear a setting left out) and tags."""
    request: dict[str, Any] = {"FunctionName": target, "PackageType": package_type, "Publish": False,
                               "Code": source}
    for name, value in desired.configuration.items():
        if CLEARED.get(name, object()) != value:
            request[name] = {"Variables": value} if name == "Environment" else value
    tags = captured_value(desired.settings["tags"])
    if tags:
        request["Tags"] = tags
    return request


def update_code_request(target: str, desired: DesiredState, source: dict[str, Any]) -> dict[str, Any]:
    """UpdateFunctionCode, unpublished, with the backup's architectures (which only it sets)."""
    return {"FunctionName": target, "Publish": False, "Architectures": desired.configuration["Architectures"],
            **source}


def update_configuration_request(target: str, desired: DesiredState, diff: Differences) -> dict[str, Any] | None:
    """UpdateFunctionConfiguration of the fields that differ; None when none does."""
    changed = set(diff.changed_settings) & (set(desired.configuration) - {"Architectures"})
    if not changed:
        return None
    configuration = desired.configuration
    return {"FunctionName": target, **{name: {"Variables": configuration[name]} if name == "Environment"
                                       else configuration[name] for name in sorted(changed)}}


def settings_calls(target: str, target_arn: str | None, desired: DesiredState,
                   diff: Differences) -> list[tuple[str, list[LambdaCall]]]:
    """The calls that restore the settings around the function, as (step, calls) in the order made. A
    target created by this restore (`target_arn` None) got its tags with CreateFunction."""
    steps: list[tuple[str, list[LambdaCall]]] = []
    if diff.differs("reserved_concurrency"):
        concurrency = captured_value(desired.settings["reserved_concurrency"])
        steps.append(("reserved concurrency", [
            LambdaCall("delete_function_concurrency", {"FunctionName": target}) if concurrency is None else
            LambdaCall("put_function_concurrency", {"FunctionName": target,
                                                    "ReservedConcurrentExecutions": concurrency})]))
    if target_arn is not None and diff.differs("tags"):
        change = diff.change("tags")
        backup_tags = captured_value(desired.settings["tags"]) or {}
        calls = []
        if change["to_remove"]:
            calls.append(LambdaCall("untag_resource", {"Resource": target_arn, "TagKeys": change["to_remove"]}))
        if change["to_add"] or change["to_change"]:
            calls.append(LambdaCall("tag_resource", {"Resource": target_arn, "Tags": {
                key: backup_tags[key] for key in [*change["to_add"], *change["to_change"]]}}))
        steps.append(("tags", calls))
    if diff.differs("event_invoke_configs"):
        config = captured_value(desired.settings["event_invoke_configs"])
        steps.append(("event invoke config", [
            LambdaCall("delete_function_event_invoke_config", {"FunctionName": target}) if config is None else
            LambdaCall("put_function_event_invoke_config", {"FunctionName": target, **config})]))
    return steps


def publish_version_request(target: str, code_sha256: str, backup_id: str, revision_id: str | None) -> dict[str, Any]:
    """PublishVersion of exactly what was restored: CodeSha256 and RevisionId make Lambda refuse anything else."""
    request = {"FunctionName": target, "CodeSha256": code_sha256,
               "Description": f"DR restore of backup {backup_id}"[:256]}
    if revision_id:
        request["RevisionId"] = revision_id
    return request


def republish_layer_request(layer: dict[str, Any], backup_id: str, content: dict[str, Any]) -> dict[str, Any]:
    """PublishLayerVersion of a recorded layer version deleted since, as it was recorded."""
    record = layer.get("layer_version") or {}
    description = f"{record.get('Description', '')} (republished from DR backup {backup_id})".strip()
    request: dict[str, Any] = {"LayerName": layer["name"], "Description": description[:256], "Content": content}
    for name in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
        if record.get(name):
            request[name] = record[name]
    return request
