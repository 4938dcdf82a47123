"""Rebuild the protected function, or a new one beside it, from a function backup: planned, verified, published.

The runbook's recover-lambda-backup.sh uploaded a code archive nobody checked and set memory and timeout;
the environment, layers, role, VPC, tags and the rest stayed as the incident left them. This restores
everything a function backup (drcore.backup.function_backup) captured that makes the function what it is:

    code            the backup's zip (UpdateFunctionCode, or CreateFunction for a new target), or its
                    image by digest; the CodeSha256 Lambda answers must be the backup's
    configuration   role, runtime, handler, memory, timeout, architectures, ephemeral storage, VPC,
                    dead-letter config, tracing, logging config, KMS key, file systems, image config,
                    SnapStart, description, layers, and the whole environment (variables the backup
                    lacks are removed: the plan names them)
    layers          the recorded layer version ARNs; a version deleted since is published again from
                    its archive in the backup, and the new ARN used
    settings        reserved concurrency, tags (`aws:` tags are AWS's own and never touched), and the
                    function's own event invoke config

and then publishes a version whose description names the backup. It moves no alias: the caller points
LIVE at that version through the alias controller, so nothing serves a restore before it is complete.

Left as they are, and named in the plan's and the result's `left_alone`: aliases and versions,
resource policies and function URLs (the access of the aliases that serve traffic), event source
mappings (one restored beside the original would be a second consumer of its source), provisioned
concurrency, event invoke configs of aliases and versions, the code signing config, the recursion and
runtime management settings, and every setting the backup recorded `unavailable`.

**Target.** By default the protected function, in place. Another name restores beside it: the function
is created if it does not exist; if it does (a drill's scratch function, or a restore beside that stopped
part-way), it is brought to the backup's state like the protected function, and the plan says
`target_exists`. Which names may be targets is the caller's decision. A function keeps its package type,
so a Zip backup is never restored into an image function or the other way round.

**Plan.** `plan` refuses an unknown or incomplete backup, checks the stored code archive against the
backup's CodeSha256 before anything else, and the configuration against the manifest, then reads the
target and lists each difference (`changes`): configuration fields by their Lambda names, the settings
around the function by the backup's names. Environment variables are listed by name only: a plan is
shown, stored and journaled, and values can be secrets. The plan's `fingerprint` is a digest of the
target's state as compared (code, RevisionId, configuration, tags, concurrency, event invoke config),
or "absent"; `fingerprint(plan)` recomputes it.

**Apply.** Refuses (TargetChanged) when the target's fingerprint is no longer the plan's, then makes
the changes it finds against the backup again (the backup is write-once, so they are the plan's). Lambda
applies an update asynchronously and refuses another meanwhile (ResourceConflictException): every update
waits for State and LastUpdateStatus to settle, and conflicts and throttling are retried with backoff,
bounded. A failure part-way raises RestoreIncomplete naming what was done and what failed; no version
was published then, so no alias serves the partial restore: plan again and apply to finish.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Callable, Iterator

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from drcore.state.backup_store import BackupStore, Component, backup_prefix, manifest_key
from drcore.core.errors import ConcurrentUpdate, DrError, InvalidRequest
from drcore.backup.function_backup import (
    ABSENT,
    CODE_ARCHIVE,
    CONFIGURATION,
    PRESENT,
    UNAVAILABLE,
    _capture,
    code_sha256,
)
from drcore.core.models import Clock, to_iso, utc_now

logger = Logger(child=True)

PLAN_FORMAT = "function-restore-plan/1"
ABSENT_FINGERPRINT = "absent"
# ZipFile in CreateFunction, UpdateFunctionCode and PublishLayerVersion takes at most 50 MB; a larger
# archive is handed to Lambda as its object in the backup bucket.
DIRECT_UPLOAD_LIMIT = 50 * 1024**2
MAX_ATTEMPTS = 6
BASE_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 20.0
SETTLE_TIMEOUT_SECONDS = 300.0  # a VPC function's update can take minutes
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 5.0
NEWEST_LISTED = 5
_RETRIED_CODES = frozenset({"ResourceConflictException", "TooManyRequestsException"})
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# The backup's settings this restores, and why each of the others is left as it is.
RESTORED_SETTINGS = ("tags", "reserved_concurrency", "event_invoke_configs")
_LEFT_ALONE = {
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
_CLEARED: dict[str, Any] = {
    "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}, "DeadLetterConfig": {"TargetArn": ""}, "KMSKeyArn": "",
    "FileSystemConfigs": [], "ImageConfig": {}, "Layers": [], "Environment": {},
}


class UnknownBackup(InvalidRequest):
    """No complete backup has this id."""


class CorruptBackup(InvalidRequest):
    """A backup's stored files are not what its manifest and CodeSha256 say: it is never restored."""


class TargetChanged(ConcurrentUpdate):
    """The target function changed since the plan: plan again."""


class FunctionUpdateFailed(DrError):
    """Lambda reports a failed update, or an update that does not settle."""


class RestoreIncomplete(DrError):
    """An apply stopped part-way; the message says what was done and the state the function is in."""


class CodeVerificationFailed(RestoreIncomplete):
    """Lambda holds other code than the backup's after the upload."""


class _WrongCode(DrError):
    """An upload Lambda accepted holds other code than the backup's (raised inside a step)."""


@dataclass(frozen=True)
class FunctionRestorePlan:
    plan_id: str
    created_at: str
    function_name: str  # the protected function, whose backup this restores
    backup_id: str
    backup_version: str  # the version the backup captured
    backup_captured_at: str
    target: str
    in_place: bool  # the target is the protected function
    target_exists: bool
    package_type: str  # "Zip" | "Image"
    code_sha256: str  # the backup's
    code_archive_verified: bool  # the stored zip's SHA-256 is the backup's CodeSha256 (False for an image)
    changes: list[dict[str, Any]]  # {"setting": name, ...what differs}, in the order apply makes them
    unchanged: list[str]
    republish_layers: list[str]  # recorded layer versions deleted since, published again from the backup
    left_alone: dict[str, str]  # setting -> why the restore leaves it as it is
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    format: str = PLAN_FORMAT

    @property
    def changed_settings(self) -> list[str]:
        return [change["setting"] for change in self.changes]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> FunctionRestorePlan:
        if document.get("format") != PLAN_FORMAT:
            raise InvalidRequest(f"not a {PLAN_FORMAT} plan (format {document.get('format')!r})")
        missing = [item.name for item in fields(cls) if item.name not in document]
        if missing:
            raise InvalidRequest(f"the plan lacks {', '.join(missing)}")
        return cls(**{item.name: document[item.name] for item in fields(cls)})


@dataclass(frozen=True)
class FunctionRestoreResult:
    plan_id: str
    backup_id: str
    target: str
    created: bool  # the target was created by this restore
    version: str  # published: point LIVE at it through the alias controller
    code_sha256: str
    code_sha256_verified: bool  # the published version's CodeSha256 is the backup's
    environment_restored: bool  # the published version's environment equals the backup's
    changed: list[str]  # settings this apply changed
    restored: list[str]  # settings that now equal the backup's (changed or not)
    not_restored: list[str]  # settings that still differ from the backup's after the apply
    republished_layers: dict[str, str]  # recorded layer version ARN -> the ARN published from the backup
    left_alone: dict[str, str]
    started_at: str
    finished_at: str

    @property
    def ok(self) -> bool:
        return self.code_sha256_verified and self.environment_restored and not self.not_restored

    def to_dict(self) -> dict[str, Any]:
        return {**json.loads(json.dumps(asdict(self))), "ok": self.ok}


@dataclass(frozen=True)
class _Backup:
    backup_id: str
    prefix: str
    manifest: dict[str, Any]
    document: dict[str, Any]  # configuration.json
    archive: bytes | None  # the zip; None for an image

    @property
    def code(self) -> dict[str, Any]:
        return self.document["code"]

    @property
    def package_type(self) -> str:
        return self.code["package_type"]

    @property
    def code_sha256(self) -> str:
        return self.code["code_sha256"]


@dataclass(frozen=True)
class _Target:
    """The target as it is now, in the terms a backup is compared in."""

    arn: str  # unqualified
    package_type: str
    code_sha256: str
    revision_id: str | None
    configuration: dict[str, Any]  # field -> request-form value
    settings: dict[str, dict[str, Any]]  # RESTORED_SETTINGS -> capture


@dataclass(frozen=True)
class _Desired:
    """What the backup says the target should be."""

    configuration: dict[str, Any]
    settings: dict[str, dict[str, Any]]  # RESTORED_SETTINGS -> capture (status "unavailable": left alone)
    layers: list[dict[str, Any]]  # the backup's layer records, in order
    left_alone: dict[str, str]
    notes: list[str]


@dataclass
class _Diff:
    changes: list[dict[str, Any]]
    unchanged: list[str]

    def differs(self, setting: str) -> bool:
        return any(change["setting"] == setting for change in self.changes)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _unqualified_arn(function_arn: str) -> str:
    return ":".join(function_arn.split(":")[:7])


def _user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """Tags a caller may set and remove: `aws:` tags (CloudFormation's, ...) are AWS's own."""
    return {key: value for key, value in (tags or {}).items() if not key.startswith("aws:")}


def _sorted_strings(values: list[str] | None) -> list[str]:
    return sorted(values or [])


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
        "VpcConfig": {"SubnetIds": _sorted_strings(vpc.get("SubnetIds")),
                      "SecurityGroupIds": _sorted_strings(vpc.get("SecurityGroupIds")),
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


def _event_invoke_config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of an event invoke config PutFunctionEventInvokeConfig takes."""
    if not config:
        return None
    destinations = {kind: target for kind, target in (config.get("DestinationConfig") or {}).items()
                    if (target or {}).get("Destination")}
    kept = {key: config[key] for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")
            if config.get(key) is not None}
    return {**kept, **({"DestinationConfig": destinations} if destinations else {})} or None


def _is_function_level(config: dict[str, Any]) -> bool:
    arn = config.get("FunctionArn", "")
    return arn.count(":") == 6 or arn.endswith(":$LATEST")


def _value(capture: dict[str, Any]) -> Any:
    return capture.get("value") if capture["status"] == PRESENT else None


def _captured(value: Any) -> dict[str, Any]:
    return {"status": PRESENT, "value": value} if value else {"status": ABSENT}


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


class _Steps:
    """What an apply has done so far, to say the function's state when a step fails."""

    def __init__(self, target: str, backup_id: str, creating: bool) -> None:
        self._target = target
        self._backup_id = backup_id
        self._creating = creating
        self.done: list[str] = []

    def state(self, failed_at: str, detail: str) -> str:
        if not self.done:
            now = f"{self._target} was not changed"
        elif self._creating and "create function" in self.done:
            now = f"{self._target} exists (this restore created it) and is partly restored"
        else:
            now = f"{self._target} is partly restored"
        return (f"restore of {self._target} from backup {self._backup_id} stopped at {failed_at}: {detail}. "
                f"Done: {', '.join(self.done) or 'nothing'}. {now}; no version was published, so no alias serves "
                "it. Plan again and apply to finish.")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        try:
            yield
        except RestoreIncomplete:
            raise
        except _WrongCode as error:
            self.done.append(name)  # the upload happened: the function holds that code now
            raise CodeVerificationFailed(self.state(f"{name} verification", str(error))) from error
        except (ClientError, BotoCoreError, DrError) as error:
            raise RestoreIncomplete(self.state(name, str(error))) from error
        self.done.append(name)


class FunctionRestorer:
    """Plans and applies restores of `function_name` (or a new function beside it) from its backups in `store`."""

    def __init__(
        self,
        lambda_client: Any,
        store: BackupStore,
        function_name: str,
        *,
        clock: Clock = utc_now,
        wait: Callable[[float], None] = time.sleep,
        direct_upload_limit: int = DIRECT_UPLOAD_LIMIT,
    ) -> None:
        self._lambda = lambda_client
        self._store = store
        self._function = function_name
        self._clock = clock
        self._wait = wait
        self._direct_upload_limit = direct_upload_limit

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, backup_id: str, target: str | None = None) -> FunctionRestorePlan:
        target = target or self._function
        if not _FUNCTION_NAME.match(target):
            raise InvalidRequest(f"target {target!r} is not a function name (letters, digits, - and _, up to 64)")
        backup = self._read_backup(backup_id)  # the archive is checked before anything else is read
        current = self._read_target(target)
        if current is not None and current.package_type != backup.package_type:
            raise InvalidRequest(f"backup {backup_id} is of a {backup.package_type} function and {target} is a "
                                 f"{current.package_type} function: Lambda cannot change a function's package "
                                 "type; restore beside it under a new name")
        desired = self._desired(backup, target)
        diff = self._diff(backup, desired, current)
        republish = self._layers_to_republish(backup, desired) if diff.differs("Layers") else []
        for layer in republish:
            self._layer_archive(backup, layer)  # a corrupt layer archive refuses the plan, not the apply
        plan = FunctionRestorePlan(
            plan_id=f"fr-{secrets.token_hex(5)}", created_at=to_iso(self._clock()), function_name=self._function,
            backup_id=backup.backup_id, backup_version=backup.document["version"],
            backup_captured_at=backup.document["captured_at"], target=target, in_place=target == self._function,
            target_exists=current is not None, package_type=backup.package_type, code_sha256=backup.code_sha256,
            code_archive_verified=backup.archive is not None, changes=diff.changes, unchanged=diff.unchanged,
            republish_layers=[layer["arn"] for layer in republish], left_alone=desired.left_alone,
            fingerprint=self._fingerprint_of(current), notes=desired.notes,
        )
        logger.info("function restore planned", extra={"plan_id": plan.plan_id, "backup_id": backup_id,
                                                       "target": target, "target_exists": plan.target_exists,
                                                       "changes": plan.changed_settings,
                                                       "republish_layers": plan.republish_layers})
        return plan

    def fingerprint(self, plan: FunctionRestorePlan) -> str:
        """The target's current fingerprint; differs from `plan.fingerprint` when it changed since the plan."""
        return self._fingerprint_of(self._read_target(plan.target))

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: FunctionRestorePlan) -> FunctionRestoreResult:
        if plan.function_name != self._function:
            raise InvalidRequest(f"plan {plan.plan_id} restores a backup of {plan.function_name}, not {self._function}")
        started = self._clock()
        backup = self._read_backup(plan.backup_id)
        current = self._read_target(plan.target)
        if self._fingerprint_of(current) != plan.fingerprint:
            raise TargetChanged(f"function {plan.target} changed since plan {plan.plan_id} was made: plan again")
        desired = self._desired(backup, plan.target)
        diff = self._diff(backup, desired, current)
        steps = _Steps(plan.target, backup.backup_id, creating=current is None)
        logger.info("function restore applying", extra={"plan_id": plan.plan_id, "target": plan.target,
                                                        "changes": [change["setting"] for change in diff.changes]})
        republished: dict[str, str] = {}
        layers = [layer["arn"] for layer in desired.layers]
        if diff.differs("Layers"):
            for layer in self._layers_to_republish(backup, desired):
                with steps.step(f"republish layer {layer['arn']}"):
                    republished[layer["arn"]] = self._republish_layer(backup, layer)
            layers = [republished.get(arn, arn) for arn in layers]
        if "Layers" in desired.configuration:
            desired = replace(desired, configuration={**desired.configuration, "Layers": layers})
        if current is None:
            self._create(plan.target, backup, desired, steps)
        else:
            self._update(plan.target, backup, desired.configuration, diff, steps)
        self._apply_settings(plan.target, current, desired, diff, steps)
        with steps.step("publish version"):
            published = self._publish(plan.target, backup, steps)
        result = self._verify(plan, backup, desired, published, diff, republished, started)
        logger.info("function restored", extra={"plan_id": plan.plan_id, "target": plan.target,
                                                "version": result.version, "ok": result.ok,
                                                "not_restored": result.not_restored, "republished_layers": republished})
        return result

    def _create(self, target: str, backup: _Backup, desired: _Desired, steps: _Steps) -> None:
        request: dict[str, Any] = {"FunctionName": target, "PackageType": backup.package_type, "Publish": False,
                                   "Code": self._code_source(backup)}
        for name, value in desired.configuration.items():
            if _CLEARED.get(name, object()) != value:
                request[name] = {"Variables": value} if name == "Environment" else value
        tags = _value(desired.settings["tags"])
        if tags:
            request["Tags"] = tags
        with steps.step("create function"):
            created = self._lambda.create_function(**request)
            self._require_code(backup, created["CodeSha256"])
            self._settled(target)

    def _update(self, target: str, backup: _Backup, configuration: dict[str, Any], diff: _Diff, steps: _Steps) -> None:
        if diff.differs("Code") or diff.differs("Architectures"):
            with steps.step("code"):
                updated = self._retrying(self._lambda.update_function_code, FunctionName=target, Publish=False,
                                         Architectures=configuration["Architectures"], **self._code_source(backup))
                self._require_code(backup, updated["CodeSha256"])
                self._settled(target)
        changed = {change["setting"] for change in diff.changes} & (set(configuration) - {"Architectures"})
        if changed:
            request = {name: {"Variables": configuration[name]} if name == "Environment" else configuration[name]
                       for name in sorted(changed)}
            with steps.step("configuration"):
                self._retrying(self._lambda.update_function_configuration, FunctionName=target, **request)
                self._settled(target)

    def _apply_settings(self, target: str, current: _Target | None, desired: _Desired, diff: _Diff,
                        steps: _Steps) -> None:
        if diff.differs("reserved_concurrency"):
            with steps.step("reserved concurrency"):
                concurrency = _value(desired.settings["reserved_concurrency"])
                if concurrency is None:
                    self._retrying(self._lambda.delete_function_concurrency, FunctionName=target)
                else:
                    self._retrying(self._lambda.put_function_concurrency, FunctionName=target,
                                   ReservedConcurrentExecutions=concurrency)
        if current is not None and diff.differs("tags"):  # a created function got its tags with CreateFunction
            change = next(change for change in diff.changes if change["setting"] == "tags")
            with steps.step("tags"):
                backup_tags = _value(desired.settings["tags"]) or {}
                if change["to_remove"]:
                    self._retrying(self._lambda.untag_resource, Resource=current.arn, TagKeys=change["to_remove"])
                if change["to_add"] or change["to_change"]:
                    self._retrying(self._lambda.tag_resource, Resource=current.arn,
                                   Tags={key: backup_tags[key] for key in [*change["to_add"], *change["to_change"]]})
        if diff.differs("event_invoke_configs"):
            with steps.step("event invoke config"):
                config = _value(desired.settings["event_invoke_configs"])
                if config is None:
                    self._retrying(self._lambda.delete_function_event_invoke_config, FunctionName=target)
                else:
                    self._retrying(self._lambda.put_function_event_invoke_config, FunctionName=target, **config)

    def _publish(self, target: str, backup: _Backup, steps: _Steps) -> dict[str, Any]:
        """Publish $LATEST; the published version's configuration. When $LATEST already equals the newest
        published version, Lambda publishes no duplicate and answers with that version."""
        settled = self._settled(target)
        # CodeSha256 and RevisionId make Lambda refuse to publish anything but what was just restored.
        request = {"FunctionName": target, "CodeSha256": backup.code_sha256,
                   "Description": f"DR restore of backup {backup.backup_id}"[:256]}
        if settled.get("RevisionId"):
            request["RevisionId"] = settled["RevisionId"]
        version = self._retrying(self._lambda.publish_version, **request)["Version"]
        published = self._lambda.get_function_configuration(FunctionName=target, Qualifier=version)
        if published["CodeSha256"] != backup.code_sha256:
            raise CodeVerificationFailed(
                f"version {version} of {target} was published with CodeSha256 {published['CodeSha256']}, not the "
                f"backup's {backup.code_sha256}: do not point an alias at it. Done before: {', '.join(steps.done)}. "
                "Plan again and apply.")
        return published

    def _verify(self, plan: FunctionRestorePlan, backup: _Backup, desired: _Desired, published: dict[str, Any],
                applied: _Diff, republished: dict[str, str], started: datetime) -> FunctionRestoreResult:
        """Compare the function with the backup again, as Lambda now reports it."""
        after = self._diff(backup, desired, self._read_target(plan.target))
        return FunctionRestoreResult(
            plan_id=plan.plan_id, backup_id=backup.backup_id, target=plan.target, created=not plan.target_exists,
            version=published["Version"], code_sha256=backup.code_sha256,
            code_sha256_verified=published["CodeSha256"] == backup.code_sha256,
            environment_restored=configuration_fields(published, plan.target)["Environment"]
            == desired.configuration["Environment"],
            changed=[change["setting"] for change in applied.changes], restored=after.unchanged,
            not_restored=[change["setting"] for change in after.changes], republished_layers=republished,
            left_alone=desired.left_alone, started_at=to_iso(started), finished_at=to_iso(self._clock()),
        )

    # Lambda's asynchronous updates ---------------------------------------------------------------

    def _retrying(self, operation: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        """Retry an update Lambda refused because another is in progress, or throttled; bounded."""
        attempt = 1
        while True:
            try:
                return operation(**request)
            except ClientError as error:
                if _error_code(error) not in _RETRIED_CODES or attempt == MAX_ATTEMPTS:
                    raise
                delay = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** (attempt - 1))
                logger.info("lambda busy, retrying", extra={"operation": error.operation_name,
                                                            "code": _error_code(error), "attempt": attempt,
                                                            "delay_seconds": delay})
                self._wait(delay)
                attempt += 1

    def _settled(self, target: str) -> dict[str, Any]:
        """The function's configuration once State and LastUpdateStatus say no update is in progress."""
        waited, delay = 0.0, FIRST_POLL_SECONDS
        while True:
            configuration = self._lambda.get_function_configuration(FunctionName=target)
            state, update = configuration.get("State"), configuration.get("LastUpdateStatus")
            if state == "Failed" or update == "Failed":
                reason = configuration.get("LastUpdateStatusReason") or configuration.get("StateReason") or ""
                raise FunctionUpdateFailed(f"Lambda reports {target} State {state}, "
                                           f"LastUpdateStatus {update}: {reason}")
            if state != "Pending" and update != "InProgress":
                return configuration
            if waited >= SETTLE_TIMEOUT_SECONDS:
                raise FunctionUpdateFailed(f"{target} is still updating after {waited:.0f} s "
                                           f"(State {state}, LastUpdateStatus {update})")
            self._wait(delay)
            waited += delay
            delay = min(MAX_POLL_SECONDS, delay * 2)

    @staticmethod
    def _require_code(backup: _Backup, answered: str) -> None:
        if answered != backup.code_sha256:
            raise _WrongCode(f"Lambda answered CodeSha256 {answered} for the upload, not the backup's "
                             f"{backup.code_sha256}: $LATEST holds code that is not the backup's")

    # The backup ----------------------------------------------------------------------------------

    def _read_backup(self, backup_id: str) -> _Backup:
        if not _BACKUP_ID.match(backup_id or ""):
            raise UnknownBackup(f"{backup_id!r} is not a backup id (like 20261126T132500Z-3f9a1c); "
                                f"{self._newest_backups()}")
        key = manifest_key(Component.LAMBDA, self._function, backup_id)
        if not self._store.exists(key):
            listed = {listing.backup_id for listing in self._store.list_backups(Component.LAMBDA, self._function)}
            why = ("is incomplete (it has no manifest) and is never restored" if backup_id in listed
                   else "does not exist")
            raise UnknownBackup(f"backup {backup_id} of {self._function} {why}; {self._newest_backups()}")
        prefix = backup_prefix(Component.LAMBDA, self._function, backup_id)
        manifest = self._store.get_json(key)
        files = {entry["path"]: entry for entry in manifest.get("files", [])}
        archive = None
        if manifest["package_type"] == "Zip":
            archive = self._stored_file(backup_id, prefix, files, CODE_ARCHIVE)
            if code_sha256(archive) != manifest["code_sha256"]:
                raise CorruptBackup(f"backup {backup_id}: the stored {CODE_ARCHIVE} has CodeSha256 "
                                    f"{code_sha256(archive)}, the backup's is {manifest['code_sha256']}; "
                                    "a corrupt backup is never restored")
        document = json.loads(self._stored_file(backup_id, prefix, files, CONFIGURATION))
        if document["code"]["code_sha256"] != manifest["code_sha256"]:
            raise CorruptBackup(f"backup {backup_id}: {CONFIGURATION} and the manifest name different code")
        return _Backup(backup_id, prefix, manifest, document, archive)

    def _stored_file(self, backup_id: str, prefix: str, files: dict[str, dict[str, Any]], path: str) -> bytes:
        """A file of the backup, checked against the size and SHA-256 its manifest lists."""
        entry = files.get(path)
        if entry is None:
            raise CorruptBackup(f"backup {backup_id}: its manifest does not list {path}")
        try:
            body = self._store.get_bytes(prefix + path)
        except ClientError as error:
            if _error_code(error) in ("NoSuchKey", "404"):
                raise CorruptBackup(f"backup {backup_id}: {path} is listed in its manifest but missing") from error
            raise
        digest = hashlib.sha256(body).hexdigest()
        if (len(body), digest) != (entry["size"], entry["sha256"]):
            raise CorruptBackup(f"backup {backup_id}: the stored {path} ({len(body)} bytes, SHA-256 {digest}) is not "
                                f"the one its manifest lists ({entry['size']} bytes, SHA-256 {entry['sha256']}); "
                                "a corrupt backup is never restored")
        return body

    def _newest_backups(self) -> str:
        complete = [listing.backup_id for listing in self._store.list_backups(Component.LAMBDA, self._function)
                    if listing.complete]
        if not complete:
            return f"{self._function} has no complete backup"
        return f"newest complete backups of {self._function}: {', '.join(reversed(complete[-NEWEST_LISTED:]))}"

    def _layer_archive(self, backup: _Backup, layer: dict[str, Any]) -> bytes:
        files = {entry["path"]: entry for entry in backup.manifest.get("files", [])}
        body = self._stored_file(backup.backup_id, backup.prefix, files, layer["archive"])
        if code_sha256(body) != layer["code_sha256"]:
            raise CorruptBackup(f"backup {backup.backup_id}: the stored {layer['archive']} is not layer "
                                f"{layer['arn']} (CodeSha256 {code_sha256(body)}, recorded {layer['code_sha256']})")
        return body

    def _archive_source(self, backup: _Backup, path: str, body: bytes) -> dict[str, Any]:
        if len(body) <= self._direct_upload_limit:
            return {"ZipFile": body}
        return {"S3Bucket": self._store.bucket, "S3Key": backup.prefix + path}

    def _code_source(self, backup: _Backup) -> dict[str, Any]:
        if backup.archive is None:
            # By digest: the tag the backup recorded may point at another image by now.
            return {"ImageUri": backup.code.get("resolved_image_uri") or backup.code["image_uri"]}
        return self._archive_source(backup, CODE_ARCHIVE, backup.archive)

    # Desired and current state -------------------------------------------------------------------

    def _desired(self, backup: _Backup, target: str) -> _Desired:
        document = backup.document
        configuration = configuration_fields(document["configuration"], self._function)
        notes: list[str] = []
        default_group = f"/aws/lambda/{self._function}"
        if target != self._function and configuration["LoggingConfig"]["LogGroup"] == default_group:
            configuration["LoggingConfig"]["LogGroup"] = f"/aws/lambda/{target}"
            notes.append(f"{target} logs to its own log group /aws/lambda/{target}, "
                         f"as {self._function} logs to its own")
        captured = document["settings"]
        settings: dict[str, dict[str, Any]] = {}
        left_alone: dict[str, str] = {}
        for name, capture in captured.items():
            if capture["status"] == UNAVAILABLE:
                detail = capture.get("detail", "unavailable")
                left_alone[name] = f"the backup could not capture it ({detail}): left as it is"
            elif name in _LEFT_ALONE:
                left_alone[name] = _LEFT_ALONE[name]
        tags = captured.get("tags", {"status": ABSENT})
        settings["tags"] = tags if tags["status"] == UNAVAILABLE else _captured(_user_tags(_value(tags)))
        settings["reserved_concurrency"] = captured.get("reserved_concurrency", {"status": ABSENT})
        invoke_configs = captured.get("event_invoke_configs", {"status": ABSENT})
        if invoke_configs["status"] == UNAVAILABLE:
            settings["event_invoke_configs"] = invoke_configs
        else:
            configs = _value(invoke_configs) or []
            own = next((config for config in configs if _is_function_level(config)), None)
            settings["event_invoke_configs"] = _captured(_event_invoke_config(own))
            qualified = sorted(config["FunctionArn"].rsplit(":", 1)[1] for config in configs
                               if not _is_function_level(config))
            if qualified:
                left_alone["event_invoke_configs"] = (f"the function's own is restored; those of "
                                                      f"{', '.join(qualified)} are configured on aliases and "
                                                      "versions and left as they are")
        return _Desired(configuration, settings, document.get("layers") or [], left_alone, notes)

    def _read_target(self, target: str) -> _Target | None:
        try:
            configuration = self._lambda.get_function_configuration(FunctionName=target)
        except ClientError as error:
            if _error_code(error) == "ResourceNotFoundException":
                return None
            raise
        arn = _unqualified_arn(configuration["FunctionArn"])
        settings = {
            "tags": _capture(lambda: _user_tags(self._lambda.list_tags(Resource=arn).get("Tags"))),
            "reserved_concurrency": _capture(
                lambda: self._lambda.get_function_concurrency(FunctionName=target).get("ReservedConcurrentExecutions")),
            "event_invoke_configs": _capture(
                lambda: _event_invoke_config(self._lambda.get_function_event_invoke_config(FunctionName=target))),
        }
        return _Target(arn=arn, package_type=configuration.get("PackageType", "Zip"),
                       code_sha256=configuration["CodeSha256"], revision_id=configuration.get("RevisionId"),
                       configuration=configuration_fields(configuration, target), settings=settings)

    def _diff(self, backup: _Backup, desired: _Desired, current: _Target | None) -> _Diff:
        """Each difference, in the order apply makes them: code, configuration, then the settings around it."""
        changes: list[dict[str, Any]] = []
        unchanged: list[str] = []

        def compare(setting: str, now: Any, wanted: Any, change: dict[str, Any]) -> None:
            if current is not None and now == wanted:
                unchanged.append(setting)
            else:
                changes.append(change)

        now_code = current.code_sha256 if current else None
        code_change = {"setting": "Code", "now": now_code, "backup": backup.code_sha256}
        if backup.archive is None:
            code_change["image_uri"] = backup.code.get("resolved_image_uri") or backup.code["image_uri"]
        compare("Code", now_code, backup.code_sha256, code_change)
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
            now, wanted = _value(now_capture), _value(wanted_capture)
            if current is None and wanted is None:
                continue  # a new function has none either
            if name == "tags":
                compare(name, now, wanted, _tags_change(now or {}, wanted or {}))
            else:
                compare(name, now, wanted, {"setting": name, "now": now, "backup": wanted})
        return _Diff(changes, unchanged)

    def _layers_to_republish(self, backup: _Backup, desired: _Desired) -> list[dict[str, Any]]:
        missing = []
        for layer in desired.layers:
            try:
                self._lambda.get_layer_version_by_arn(Arn=layer["arn"])
            except ClientError as error:
                if _error_code(error) != "ResourceNotFoundException":
                    raise
                missing.append(layer)
        return missing

    def _republish_layer(self, backup: _Backup, layer: dict[str, Any]) -> str:
        body = self._layer_archive(backup, layer)
        record = layer.get("layer_version") or {}
        description = f"{record.get('Description', '')} (republished from DR backup {backup.backup_id})".strip()
        request: dict[str, Any] = {"LayerName": layer["name"], "Description": description[:256],
                                   "Content": self._archive_source(backup, layer["archive"], body)}
        for name in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if record.get(name):
                request[name] = record[name]
        published = self._retrying(self._lambda.publish_layer_version, **request)
        if published["Content"]["CodeSha256"] != layer["code_sha256"]:
            raise CodeVerificationFailed(f"layer {layer['name']} was published again as {published['LayerVersionArn']} "
                                         f"with CodeSha256 {published['Content']['CodeSha256']}, not the recorded "
                                         f"{layer['code_sha256']}; the function was not changed")
        logger.info("layer version published again", extra={"recorded": layer["arn"],
                                                            "published": published["LayerVersionArn"]})
        return published["LayerVersionArn"]

    @staticmethod
    def _fingerprint_of(current: _Target | None) -> str:
        if current is None:
            return ABSENT_FINGERPRINT
        state = {"code": current.code_sha256, "revision_id": current.revision_id,
                 "configuration": current.configuration, "settings": current.settings}
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()
