"""A backup of the protected function complete enough to rebuild it elsewhere, its archives verified.

The runbook's backup kept the configuration and a code archive nobody checked; a recovery from it
restored memory and timeout only. This one keeps everything CreateFunction and the calls around it
need, under `backups/lambda/<function>/<backup id>/` (drcore.state.backup_store), each file written once:

    code.zip                       the deployment package, verified against CodeSha256 (zip functions)
    layers/<name>-<version>.zip    each layer version's archive, verified against its own CodeSha256
    configuration.json             what the function is (keys below)
    manifest.json                  last: every file with its size and SHA-256, code_sha256, qualifier, times, reason

configuration.json:

    format, function_name, function_arn, qualifier, version, captured_at
    configuration   GetFunction's Configuration as returned (environment, memory, timeout, runtime, ...)
    configuration_absent   the settings AWS returns that this Configuration did not carry
    code            {package_type, repository_type, code_sha256, code_size, archive} or, for an image,
                    {package_type, repository_type, code_sha256, image_uri, resolved_image_uri}
    layers          [{arn, name, version, archive, code_sha256, code_size, layer_version}]
    published_version   the version this backup published first, or null
    settings        {name: capture} for aliases, versions, resource_policy, function_url_config,
                    event_source_mappings, event_invoke_configs, reserved_concurrency, provisioned_concurrency,
                    tags, code_signing_config, recursion_config, runtime_management_config

Each setting is captured on its own as present, absent or unavailable (drcore.backup.function_format says
what each means to a restore). Settings Lambda keeps per alias (resource policy, function URL) have as
value a mapping from `$unqualified` or the alias name to what that qualifier has.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.backup.function_format import (
    CODE_ARCHIVE,
    CONFIGURATION,
    FORMAT,
    UNAVAILABLE,
    UNQUALIFIED,
    capture,
    code_sha256,
    has_none,
    read_reserved_concurrency,
    read_tags,
)
from drcore.core.errors import DrError, InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_files import BackupFiles
from drcore.state.backup_store import BackupStore, Component, new_backup_id

logger = Logger(child=True)

# What AWS's GetFunction Configuration carries for a function that has these settings; the ones the
# endpoint left out are listed, so a restore knows they were not there rather than not captured.
_CONFIGURATION_SETTINGS = (
    "Architectures", "DeadLetterConfig", "Description", "Environment", "EphemeralStorage", "FileSystemConfigs",
    "Handler", "ImageConfigResponse", "KMSKeyArn", "Layers", "LoggingConfig", "MemorySize", "PackageType", "Role",
    "Runtime", "RuntimeVersionConfig", "SnapStart", "Timeout", "TracingConfig", "VpcConfig",
)


class FunctionNotFound(InvalidRequest):
    """The function (or the qualifier asked for) does not exist."""


class ArchiveDownloadFailed(DrError):
    """The archive at a Location could not be downloaded."""


class ArchiveVerificationFailed(DrError):
    """A downloaded archive is not the one Lambda holds: its SHA-256 differs from CodeSha256."""


def download(url: str, timeout_seconds: float = 60.0) -> bytes:
    """GET an archive from the pre-signed URL Lambda gives (Code.Location, Content.Location)."""
    if urlsplit(url).scheme not in ("https", "http"):
        raise ArchiveDownloadFailed(f"refusing to download an archive from a non-HTTP location: {url[:80]}")
    with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # nosec B310: scheme checked above
        body: bytes = response.read()
        return body


def _without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


@dataclass(frozen=True)
class FunctionBackupResult:
    function_name: str
    backup_id: str
    manifest_key: str
    qualifier: str | None  # as asked, or the version published first (None: $LATEST)
    version: str  # the version whose code and configuration were captured
    package_type: str  # "Zip" | "Image"
    code_sha256: str
    code_sha256_verified: bool  # False only for an image: it stays in ECR, its URI is recorded
    bytes: int  # written, manifest aside
    files: tuple[str, ...]
    layers: tuple[str, ...]  # layer version ARNs, each archived
    captured: dict[str, str] = field(default_factory=dict)  # setting -> present | absent | unavailable
    published_version: str | None = None


class FunctionBackup:
    def __init__(
        self,
        lambda_client: Any,
        store: BackupStore,
        function_name: str,
        *,
        fetch: Callable[[str], bytes] = download,
        clock: Clock = utc_now,
    ) -> None:
        self._lambda = lambda_client
        self._store = store
        self._function = function_name
        self._fetch = fetch
        self._clock = clock

    def run(self, qualifier: str | None = None, publish_version: bool = False,
            reason: str = "") -> FunctionBackupResult:
        """Back up the function as `qualifier` (a version or alias; default $LATEST) has it.

        With `publish_version`, $LATEST is published first (as the runbook does) and that version is
        backed up. An archive that does not match its CodeSha256 fails the backup before its manifest.
        """
        if publish_version and qualifier:
            raise InvalidRequest("publish_version backs up the version it publishes; do not also name a qualifier")
        started = self._clock()
        backup_id = new_backup_id(started)
        published = None
        if publish_version:
            published = self._call(self._lambda.publish_version, FunctionName=self._function,
                                   Description=f"DR backup {backup_id} {reason}".strip()[:256])["Version"]
            qualifier = published
        function = self._get_function(qualifier)
        configuration = function["Configuration"]
        version = configuration["Version"]
        files = BackupFiles(self._store, Component.LAMBDA, self._function, backup_id)
        code = self._back_up_code(function, files)
        layers = [self._back_up_layer(layer["Arn"], files) for layer in configuration.get("Layers") or []]
        settings = self._settings(configuration["FunctionArn"], version)
        files.put_json(CONFIGURATION, {
            "format": FORMAT,
            "function_name": self._function,
            "function_arn": configuration["FunctionArn"],
            "qualifier": qualifier,
            "version": version,
            "captured_at": to_iso(started),
            "configuration": configuration,
            "configuration_absent": [name for name in _CONFIGURATION_SETTINGS if name not in configuration],
            "code": code,
            "layers": layers,
            "published_version": published,
            "settings": settings,
        })
        captured = {name: capture["status"] for name, capture in settings.items()}
        verified = code["package_type"] == "Zip"
        key = files.finish({
            "format": FORMAT,
            "component": Component.LAMBDA.value,
            "backup_id": backup_id,
            "function_name": self._function,
            "function_arn": configuration["FunctionArn"],
            "qualifier": qualifier,
            "version": version,
            "package_type": code["package_type"],
            "code_sha256": code["code_sha256"],
            "code_sha256_verified": verified,
            "image_uri": code.get("image_uri"),
            "layers": [layer["arn"] for layer in layers],
            "published_version": published,
            "captured": captured,
            "reason": reason,
            "started_at": to_iso(started),
            "completed_at": to_iso(self._clock()),
        })
        logger.info("function backed up", extra={"function": self._function, "backup_id": backup_id,
                                                 "version": version, "bytes": files.total_bytes,
                                                 "unavailable": [name for name, status in captured.items()
                                                                 if status == UNAVAILABLE]})
        return FunctionBackupResult(
            function_name=self._function, backup_id=backup_id, manifest_key=key, qualifier=qualifier, version=version,
            package_type=code["package_type"], code_sha256=code["code_sha256"], code_sha256_verified=verified,
            bytes=files.total_bytes, files=tuple(entry["path"] for entry in files.entries),
            layers=tuple(layer["arn"] for layer in layers), captured=captured, published_version=published,
        )

    def _call(self, operation: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        try:
            return operation(**request)
        except ClientError as error:
            if has_none(error):
                raise FunctionNotFound(f"function {self._function} not found: {error}") from error
            raise

    def _get_function(self, qualifier: str | None) -> dict[str, Any]:
        return self._call(self._lambda.get_function, **self._named(qualifier))

    def _download_verified(self, what: str, location: str, expected_sha256: str) -> bytes:
        try:
            body = self._fetch(location)
        except OSError as error:  # urllib's URLError and timeouts are OSErrors
            raise ArchiveDownloadFailed(f"{what}: download failed: {error}") from error
        actual = code_sha256(body)
        if actual != expected_sha256:
            raise ArchiveVerificationFailed(
                f"{what}: downloaded archive ({len(body)} bytes) has SHA-256 {actual}, Lambda says {expected_sha256}"
            )
        return body

    def _back_up_code(self, function: dict[str, Any], files: BackupFiles) -> dict[str, Any]:
        configuration, code = function["Configuration"], function.get("Code", {})
        package_type = configuration.get("PackageType", "Zip")
        described = {"package_type": package_type, "repository_type": code.get("RepositoryType"),
                     "code_sha256": configuration["CodeSha256"]}
        if package_type == "Image":
            return {**described, "image_uri": code.get("ImageUri"), "resolved_image_uri": code.get("ResolvedImageUri")}
        body = self._download_verified(f"code of {configuration['FunctionArn']}", code["Location"],
                                       configuration["CodeSha256"])
        files.put(CODE_ARCHIVE, body, "application/zip")
        return {**described, "code_size": len(body), "archive": CODE_ARCHIVE}

    def _back_up_layer(self, arn: str, files: BackupFiles) -> dict[str, Any]:
        layer = _without_metadata(self._lambda.get_layer_version_by_arn(Arn=arn))
        content = layer.pop("Content")
        name = layer["LayerArn"].rsplit(":", 1)[-1]
        archive = f"layers/{name}-{layer['Version']}.zip"
        body = self._download_verified(f"layer {arn}", content["Location"], content["CodeSha256"])
        files.put(archive, body, "application/zip")
        # The pre-signed Location expires within minutes and grants access: it is not kept.
        kept_content = {key: value for key, value in content.items() if key != "Location"}
        return {"arn": arn, "name": name, "version": layer["Version"], "archive": archive,
                "code_sha256": content["CodeSha256"], "code_size": len(body),
                "layer_version": {**layer, "Content": kept_content}}

    # The settings around the function, each captured on its own so one the endpoint lacks does not
    # hide the others.
    def _settings(self, function_arn: str, version: str) -> dict[str, dict[str, Any]]:
        lam, name = self._lambda, self._function
        aliases = capture(lambda: self._paged("list_aliases", "Aliases", FunctionName=name))
        alias_names = [alias["Name"] for alias in aliases.get("value", [])]
        return {
            "aliases": aliases,
            "versions": capture(lambda: self._paged("list_versions_by_function", "Versions", FunctionName=name)),
            "resource_policy": capture(lambda: self._per_qualifier(alias_names, self._policy)),
            "function_url_config": capture(lambda: self._per_qualifier(alias_names, self._url_config)),
            "event_source_mappings": capture(lambda: self._event_source_mappings(alias_names)),
            "event_invoke_configs": capture(lambda: self._paged(
                "list_function_event_invoke_configs", "FunctionEventInvokeConfigs", FunctionName=name)),
            "reserved_concurrency": capture(lambda: read_reserved_concurrency(lam, name)),
            "provisioned_concurrency": capture(lambda: self._paged(
                "list_provisioned_concurrency_configs", "ProvisionedConcurrencyConfigs", FunctionName=name)),
            "tags": capture(lambda: read_tags(lam, function_arn)),
            "code_signing_config": capture(self._code_signing_config),
            "recursion_config": capture(
                lambda: _without_metadata(lam.get_function_recursion_config(FunctionName=name))),
            "runtime_management_config": capture(lambda: _without_metadata(
                lam.get_runtime_management_config(FunctionName=name, Qualifier=version))),
        }

    def _paged(self, operation: str, key: str, **request: Any) -> list[dict[str, Any]]:
        pages = self._lambda.get_paginator(operation).paginate(**request)
        return [item for page in pages for item in page.get(key, [])]

    def _named(self, qualifier: str | None) -> dict[str, str]:
        return {"FunctionName": self._function, **({"Qualifier": qualifier} if qualifier else {})}

    def _per_qualifier(self, alias_names: list[str], read: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
        """What the function and each alias has (Lambda keeps these per qualifier); ones with none are left out."""
        found = {}
        for qualifier in (None, *alias_names):
            try:
                found[qualifier or UNQUALIFIED] = read(qualifier)
            except ClientError as error:
                if not has_none(error):
                    raise
        return found

    def _policy(self, qualifier: str | None) -> dict[str, Any]:
        response = self._lambda.get_policy(**self._named(qualifier))
        return {"Policy": json.loads(response["Policy"]), "RevisionId": response.get("RevisionId")}

    def _url_config(self, qualifier: str | None) -> dict[str, Any]:
        return _without_metadata(self._lambda.get_function_url_config(**self._named(qualifier)))

    def _event_source_mappings(self, alias_names: list[str]) -> list[dict[str, Any]]:
        # Lambda lists the mappings of exactly the function or alias named, so each is asked for.
        mappings: dict[str, dict[str, Any]] = {}
        for qualifier in (None, *alias_names):
            name = f"{self._function}:{qualifier}" if qualifier else self._function
            listed = self._paged("list_event_source_mappings", "EventSourceMappings", FunctionName=name)
            mappings.update((mapping["UUID"], mapping) for mapping in listed)
        return list(mappings.values())

    def _code_signing_config(self) -> dict[str, Any] | None:
        response = self._lambda.get_function_code_signing_config(FunctionName=self._function)
        arn = response.get("CodeSigningConfigArn")
        return {"CodeSigningConfigArn": arn} if arn else None
