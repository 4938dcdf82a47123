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
applies an update asynchronously and refuses another meanwhile: every update is retried while Lambda is
busy and waited for until it settles (drcore.aws.lambda_updates). A failure part-way raises
RestoreIncomplete naming what was done and what failed; no version was published then, so no alias
serves the partial restore: plan again and apply to finish.

This module reads and sends; what the backup amounts to in Lambda's requests is worked out, without AWS,
in drcore.restore.function_requests, and the plan and result types are in drcore.restore.function_plan.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from drcore.aws.lambda_updates import LambdaUpdates
from drcore.backup.function_format import (
    capture,
    has_none,
    read_reserved_concurrency,
    read_tags,
    unqualified_arn,
)
from drcore.core.errors import DrError, InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.restore.function_backup_reader import FunctionBackupReader, VerifiedFunctionBackup
from drcore.restore.function_plan import (
    CodeVerificationFailed,
    FunctionRestorePlan,
    FunctionRestoreResult,
    RestoreIncomplete,
    TargetChanged,
)
from drcore.restore.function_requests import (
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
    event_invoke_config,
    fingerprint_of,
    publish_version_request,
    republish_layer_request,
    settings_calls,
    update_code_request,
    update_configuration_request,
    user_tags,
)
from drcore.state.backup_store import BackupStore

logger = Logger(child=True)

# ZipFile in CreateFunction, UpdateFunctionCode and PublishLayerVersion takes at most 50 MB; a larger
# archive is handed to Lambda as its object in the backup bucket.
DIRECT_UPLOAD_LIMIT = 50 * 1024**2
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _WrongCode(DrError):
    """An upload Lambda accepted holds other code than the backup's (raised inside a step)."""


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
        self._updates = LambdaUpdates(lambda_client, wait=wait)
        self._backups = FunctionBackupReader(store, function_name)
        self._direct_upload_limit = direct_upload_limit

    # Plan ----------------------------------------------------------------------------------------

    def plan(self, backup_id: str, target: str | None = None) -> FunctionRestorePlan:
        target = target or self._function
        if not _FUNCTION_NAME.match(target):
            raise InvalidRequest(f"target {target!r} is not a function name (letters, digits, - and _, up to 64)")
        backup = self._backups.read(backup_id)  # the archive is checked before anything else is read
        current = self._read_target(target)
        if current is not None and current.package_type != backup.package_type:
            raise InvalidRequest(f"backup {backup_id} is of a {backup.package_type} function and {target} is a "
                                 f"{current.package_type} function: Lambda cannot change a function's package "
                                 "type; restore beside it under a new name")
        desired = desired_state(backup.document, self._function, target)
        diff = differences(backup.code, desired, current)
        republish = self._layers_to_republish(desired) if diff.differs("Layers") else []
        for layer in republish:
            self._backups.layer_archive(backup, layer)  # a corrupt layer archive refuses the plan, not the apply
        plan = FunctionRestorePlan(
            plan_id=f"fr-{secrets.token_hex(5)}", created_at=to_iso(self._clock()), function_name=self._function,
            backup_id=backup.backup_id, backup_version=backup.document["version"],
            backup_captured_at=backup.document["captured_at"], target=target, in_place=target == self._function,
            target_exists=current is not None, package_type=backup.package_type, code_sha256=backup.code_sha256,
            code_archive_verified=backup.archive is not None, changes=diff.changes, unchanged=diff.unchanged,
            republish_layers=[layer["arn"] for layer in republish], left_alone=desired.left_alone,
            fingerprint=fingerprint_of(current), notes=desired.notes,
        )
        logger.info("function restore planned", extra={"plan_id": plan.plan_id, "backup_id": backup_id,
                                                       "target": target, "target_exists": plan.target_exists,
                                                       "changes": plan.changed_settings,
                                                       "republish_layers": plan.republish_layers})
        return plan

    def fingerprint(self, plan: FunctionRestorePlan) -> str:
        """The target's current fingerprint; differs from `plan.fingerprint` when it changed since the plan."""
        return fingerprint_of(self._read_target(plan.target))

    # Apply ---------------------------------------------------------------------------------------

    def apply(self, plan: FunctionRestorePlan) -> FunctionRestoreResult:
        if plan.function_name != self._function:
            raise InvalidRequest(f"plan {plan.plan_id} restores a backup of {plan.function_name}, not {self._function}")
        started = self._clock()
        backup = self._backups.read(plan.backup_id)
        current = self._read_target(plan.target)
        if fingerprint_of(current) != plan.fingerprint:
            raise TargetChanged(f"function {plan.target} changed since plan {plan.plan_id} was made: plan again")
        desired = desired_state(backup.document, self._function, plan.target)
        diff = differences(backup.code, desired, current)
        steps = _Steps(plan.target, backup.backup_id, creating=current is None)
        logger.info("function restore applying", extra={"plan_id": plan.plan_id, "target": plan.target,
                                                        "changes": diff.changed_settings})
        republished: dict[str, str] = {}
        if diff.differs("Layers"):
            for layer in self._layers_to_republish(desired):
                with steps.step(f"republish layer {layer['arn']}"):
                    republished[layer["arn"]] = self._republish_layer(backup, layer)
            desired = desired.with_layers([republished.get(layer["arn"], layer["arn"]) for layer in desired.layers])
        if current is None:
            self._create(plan.target, backup, desired, steps)
        else:
            self._update(plan.target, backup, desired, diff, steps)
        for step, calls in settings_calls(plan.target, current.arn if current else None, desired, diff):
            with steps.step(step):
                for call in calls:
                    self._send(call)
        with steps.step("publish version"):
            published = self._publish(plan.target, backup, steps)
        result = self._verify(plan, backup, desired, published, diff, republished, started)
        logger.info("function restored", extra={"plan_id": plan.plan_id, "target": plan.target,
                                                "version": result.version, "ok": result.ok,
                                                "not_restored": result.not_restored, "republished_layers": republished})
        return result

    def _archives(self, backup: VerifiedFunctionBackup) -> ArchiveSource:
        return ArchiveSource(self._store.bucket, backup.stored.prefix, self._direct_upload_limit)

    def _create(self, target: str, backup: VerifiedFunctionBackup, desired: DesiredState, steps: _Steps) -> None:
        source = code_source(backup.code, backup.archive, self._archives(backup))
        with steps.step("create function"):
            created = self._lambda.create_function(**create_function_request(target, backup.package_type, source,
                                                                             desired))
            self._require_code(backup, created["CodeSha256"])
            self._updates.settled(target)

    def _update(self, target: str, backup: VerifiedFunctionBackup, desired: DesiredState, diff: Differences,
                steps: _Steps) -> None:
        if diff.differs("Code") or diff.differs("Architectures"):
            source = code_source(backup.code, backup.archive, self._archives(backup))
            with steps.step("code"):
                updated = self._updates.call(self._lambda.update_function_code,
                                             **update_code_request(target, desired, source))
                self._require_code(backup, updated["CodeSha256"])
                self._updates.settled(target)
        request = update_configuration_request(target, desired, diff)
        if request is not None:
            with steps.step("configuration"):
                self._updates.call(self._lambda.update_function_configuration, **request)
                self._updates.settled(target)

    def _send(self, call: LambdaCall) -> None:
        self._updates.call(getattr(self._lambda, call.operation), **call.request)

    def _publish(self, target: str, backup: VerifiedFunctionBackup, steps: _Steps) -> dict[str, Any]:
        """Publish $LATEST; the published version's configuration. When $LATEST already equals the newest
        published version, Lambda publishes no duplicate and answers with that version."""
        settled = self._updates.settled(target)
        request = publish_version_request(target, backup.code_sha256, backup.backup_id, settled.get("RevisionId"))
        version = self._updates.call(self._lambda.publish_version, **request)["Version"]
        published: dict[str, Any] = self._lambda.get_function_configuration(FunctionName=target, Qualifier=version)
        if published["CodeSha256"] != backup.code_sha256:
            raise CodeVerificationFailed(
                f"version {version} of {target} was published with CodeSha256 {published['CodeSha256']}, not the "
                f"backup's {backup.code_sha256}: do not point an alias at it. Done before: {', '.join(steps.done)}. "
                "Plan again and apply.")
        return published

    def _verify(self, plan: FunctionRestorePlan, backup: VerifiedFunctionBackup, desired: DesiredState,
                published: dict[str, Any], applied: Differences, republished: dict[str, str],
                started: datetime) -> FunctionRestoreResult:
        """Compare the function with the backup again, as Lambda now reports it."""
        after = differences(backup.code, desired, self._read_target(plan.target))
        return FunctionRestoreResult(
            plan_id=plan.plan_id, backup_id=backup.backup_id, target=plan.target, created=not plan.target_exists,
            version=published["Version"], code_sha256=backup.code_sha256,
            code_sha256_verified=published["CodeSha256"] == backup.code_sha256,
            environment_restored=configuration_fields(published, plan.target)["Environment"]
            == desired.configuration["Environment"],
            changed=applied.changed_settings, restored=after.unchanged, not_restored=after.changed_settings,
            republished_layers=republished, left_alone=desired.left_alone, started_at=to_iso(started),
            finished_at=to_iso(self._clock()),
        )

    @staticmethod
    def _require_code(backup: VerifiedFunctionBackup, answered: str) -> None:
        if answered != backup.code_sha256:
            raise _WrongCode(f"Lambda answered CodeSha256 {answered} for the upload, not the backup's "
                             f"{backup.code_sha256}: $LATEST holds code that is not the backup's")

    # The target ----------------------------------------------------------------------------------

    def _read_target(self, target: str) -> TargetState | None:
        try:
            configuration = self._lambda.get_function_configuration(FunctionName=target)
        except ClientError as error:
            if has_none(error):
                return None
            raise
        arn = unqualified_arn(configuration["FunctionArn"])
        settings = {
            "tags": capture(lambda: user_tags(read_tags(self._lambda, arn))),
            "reserved_concurrency": capture(lambda: read_reserved_concurrency(self._lambda, target)),
            "event_invoke_configs": capture(
                lambda: event_invoke_config(self._lambda.get_function_event_invoke_config(FunctionName=target))),
        }
        return TargetState(arn=arn, package_type=configuration.get("PackageType", "Zip"),
                           code_sha256=configuration["CodeSha256"], revision_id=configuration.get("RevisionId"),
                           configuration=configuration_fields(configuration, target), settings=settings)

    def _layers_to_republish(self, desired: DesiredState) -> list[dict[str, Any]]:
        missing = []
        for layer in desired.layers:
            try:
                self._lambda.get_layer_version_by_arn(Arn=layer["arn"])
            except ClientError as error:
                if not has_none(error):
                    raise
                missing.append(layer)
        return missing

    def _republish_layer(self, backup: VerifiedFunctionBackup, layer: dict[str, Any]) -> str:
        content = self._archives(backup).of(layer["archive"], self._backups.layer_archive(backup, layer))
        published = self._updates.call(self._lambda.publish_layer_version,
                                       **republish_layer_request(layer, backup.backup_id, content))
        if published["Content"]["CodeSha256"] != layer["code_sha256"]:
            raise CodeVerificationFailed(f"layer {layer['name']} was published again as {published['LayerVersionArn']} "
                                         f"with CodeSha256 {published['Content']['CodeSha256']}, not the recorded "
                                         f"{layer['code_sha256']}; the function was not changed")
        logger.info("layer version published again", extra={"recorded": layer["arn"],
                                                            "published": published["LayerVersionArn"]})
        return str(published["LayerVersionArn"])
