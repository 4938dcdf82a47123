"""Preflight: what a deploy and the controller will need from the account, checked read-only, one answer per check.

Run by the recovery function's `preflight` action (its own role, its own region) and by `make preflight`
(embedded/preflight.py, the operator's credentials, before or after a deploy). Every check answers
`{"name", "ok", "detail"}`; the whole is ok only if every check is. A check that cannot be made (access
denied, nothing deployed yet) says why and counts as not ok: an unknown is not a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import error_code, is_not_found, stack_does_not_exist


class PreflightEnvVar(StrEnum):
    """What the recovery function's preflight needs beyond the controller's settings; set by the stack
    (stacks/constructs/preflight_grants.py) from cdk.json and the pinned Powertools version."""

    LAYER_PARAMETER = "DR_PREFLIGHT_LAYER_PARAMETER"  # AWS's public SSM parameter naming the Powertools layer
    RUNTIME = "DR_PREFLIGHT_RUNTIME"  # the functions' Lambda runtime, e.g. python3.13
    FUNCTION_ROLE_PATTERNS = "DR_PREFLIGHT_FUNCTION_ROLE_PATTERNS"  # JSON list: recovery.function_role_arns
    STACK_ROLE_ARN = "DR_PREFLIGHT_STACK_ROLE_ARN"  # recovery.stack_role_arn, empty when unset


@dataclass(frozen=True)
class PreflightSettings:
    """The preflight's own settings, beyond the controller's."""

    layer_parameter: str = ""
    runtime: str = ""
    function_role_patterns: tuple[str, ...] = ()
    stack_role_arn: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PreflightSettings:
        patterns = json.loads(environ.get(PreflightEnvVar.FUNCTION_ROLE_PATTERNS) or "[]")
        return cls(layer_parameter=environ.get(PreflightEnvVar.LAYER_PARAMETER, ""),
                   runtime=environ.get(PreflightEnvVar.RUNTIME, ""),
                   function_role_patterns=tuple(str(pattern) for pattern in patterns),
                   stack_role_arn=environ.get(PreflightEnvVar.STACK_ROLE_ARN) or None)


@dataclass(frozen=True)
class PreflightTarget:
    """What to check, as the stack (or cdk.json, for `make preflight`) describes it."""

    settings: PreflightSettings
    protected_function: str
    live_alias: str
    stable_alias: str
    data_bucket: str
    pipeline_stack: str
    # None: the controller's stack is not deployed, so there are no topics to look at yet.
    alert_topic_arns: tuple[str, ...] | None


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def role_pattern_matches(pattern: str, arn: str) -> bool:
    """IAM's matching of a resource pattern: `*` any run of characters (slashes too), `?` any one."""
    expression = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch(expression, arn) is not None


def _logs_management_writes(selectors: Mapping[str, Any]) -> bool:
    """Whether a trail's event selectors include management write events.

    A trail never given selectors logs every management event; GetEventSelectors then answers the default
    selector in AWS (and nothing at all in moto), so no selector of either kind reads as the default."""
    basic = selectors.get("EventSelectors") or []
    advanced = selectors.get("AdvancedEventSelectors") or []
    if not basic and not advanced:
        return True
    writes = ("All", "WriteOnly")
    if any(selector.get("IncludeManagementEvents", True) and selector.get("ReadWriteType", "All") in writes
           for selector in basic):
        return True
    for selector in advanced:
        fields = {field["Field"]: field for field in selector.get("FieldSelectors", [])}
        category = fields.get("eventCategory", {})
        read_only = fields.get("readOnly", {})
        if "Management" in category.get("Equals", []) and "true" not in read_only.get("Equals", []):
            return True
    return False


class Preflight:
    """The checks, over clients of one account and region (constructor-injected: `client(service)`)."""

    def __init__(self, client: Callable[[str], Any], target: PreflightTarget) -> None:
        self._client = client
        self._target = target

    def run(self) -> dict[str, Any]:
        checks = [
            self._answer("powertools_layer_parameter", self.layer_parameter),
            self._answer("runtime_available", self.runtime_available),
            self._answer("cloudtrail_management_events", self.cloudtrail_management_events),
            self._answer("protected_function_and_aliases", self.protected_function_and_aliases),
            self._answer("roles_to_pass", self.roles_to_pass),
            self._answer("alert_subscriptions_confirmed", self.alert_subscriptions_confirmed),
            self._answer("data_bucket_versioned", self.data_bucket_versioned),
        ]
        return {"ok": all(check.ok for check in checks), "checks": [check.to_dict() for check in checks]}

    @staticmethod
    def _answer(name: str, check: Callable[[], tuple[bool, str]]) -> CheckResult:
        try:
            ok, detail = check()
        except ClientError as error:
            # AccessDenied, a missing resource the check did not expect, a throttle that outlasted the retries.
            return CheckResult(name, False, f"could not be checked: {error_code(error)}: {error}")
        return CheckResult(name, ok, detail)

    def _layer_arn(self) -> str | None:
        try:
            answer = self._client("ssm").get_parameter(Name=self._target.settings.layer_parameter)
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return None
            raise
        return str(answer["Parameter"]["Value"])

    def layer_parameter(self) -> tuple[bool, str]:
        name = self._target.settings.layer_parameter
        if not name:
            return False, "no Powertools layer parameter configured (the stack sets it from requirements.txt's pin)"
        arn = self._layer_arn()
        if arn is None:
            return False, (f"{name} does not exist in this region: Powertools publishes no layer for this version, "
                           "runtime and architecture here; the deploy would fail to resolve it")
        return True, f"{name} names {arn}"

    def runtime_available(self) -> tuple[bool, str]:
        """The layer the stack will use declares the runtime compatible. AWS publishes a Powertools layer in a
        region only for runtimes Lambda offers there, so this shows the runtime is known in the region with
        the layer the functions load; it does not prove CreateFunction still accepts the runtime (a runtime
        past its deprecation date may stay listed)."""
        runtime = self._target.settings.runtime
        arn = self._layer_arn() if self._target.settings.layer_parameter else None
        if arn is None:
            return False, "cannot be checked without the Powertools layer parameter (see powertools_layer_parameter)"
        layer, _, version = arn.rpartition(":")
        answer = self._client("lambda").get_layer_version(LayerName=layer, VersionNumber=int(version))
        runtimes = list(answer.get("CompatibleRuntimes") or [])
        if runtime in runtimes:
            return True, f"layer {arn} declares {runtime} compatible"
        return False, f"layer {arn} declares {', '.join(runtimes) or 'no runtime'}, not {runtime}"

    def cloudtrail_management_events(self) -> tuple[bool, str]:
        """The backup function's configuration-change rule reacts to CloudTrail's management write events."""
        cloudtrail = self._client("cloudtrail")
        trails = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", [])
        problems: list[str] = []
        for trail in trails:
            arn = trail["TrailARN"]
            if not cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
                problems.append(f"{trail['Name']} is not logging")
            elif not _logs_management_writes(cloudtrail.get_event_selectors(TrailName=arn)):
                problems.append(f"{trail['Name']} logs no management write events")
            else:
                return True, f"trail {trail['Name']} logs management write events"
        if not trails:
            return False, "no trail logs this region: configuration changes will not trigger a backup"
        return False, "; ".join(problems)

    def protected_function_and_aliases(self) -> tuple[bool, str]:
        target = self._target
        lam = self._client("lambda")
        try:
            lam.get_function_configuration(FunctionName=target.protected_function)
        except ClientError as error:
            if is_not_found(error):
                return False, f"function {target.protected_function} does not exist"
            raise
        versions: dict[str, str] = {}
        missing: list[str] = []
        for alias in (target.live_alias, target.stable_alias):
            try:
                versions[alias] = lam.get_alias(FunctionName=target.protected_function, Name=alias)["FunctionVersion"]
            except ClientError as error:
                if not is_not_found(error):
                    raise
                missing.append(alias)
        if missing:
            return False, f"alias {', '.join(missing)} of {target.protected_function} does not exist"
        # LIVE on $LATEST would serve unpublished code (invariant 1); STABLE must be a version to roll back to.
        unpublished = [alias for alias, version in versions.items() if not version.isdigit()]
        if unpublished:
            return False, f"{', '.join(unpublished)} points at {versions[unpublished[0]]}, not a published version"
        return True, ", ".join(f"{alias} -> version {version}" for alias, version in versions.items())

    def roles_to_pass(self) -> tuple[bool, str]:
        """A recovery passes the backed-up execution role to Lambda and the stack's role to CloudFormation;
        IAM lets it pass only the roles the settings list."""
        target = self._target
        configuration = self._client("lambda").get_function_configuration(FunctionName=target.protected_function)
        role = str(configuration["Role"])
        problems: list[str] = []
        if not any(role_pattern_matches(pattern, role) for pattern in target.settings.function_role_patterns):
            problems.append(f"execution role {role} matches no recovery.function_role_arns pattern")
        stack_role = self._pipeline_stack_role()
        if stack_role and stack_role != target.settings.stack_role_arn:
            problems.append(f"{target.pipeline_stack} runs as {stack_role}, but recovery.stack_role_arn is "
                            f"{target.settings.stack_role_arn or 'unset'}")
        if problems:
            return False, "; ".join(problems)
        detail = f"execution role {role} is listed"
        return True, detail + (f"; stack role {stack_role} is listed" if stack_role else "")

    def _pipeline_stack_role(self) -> str | None:
        try:
            stacks = self._client("cloudformation").describe_stacks(StackName=self._target.pipeline_stack)["Stacks"]
        except ClientError as error:
            if stack_does_not_exist(error):
                # No stack yet: nothing to recover, and so no role a recovery would pass.
                return None
            raise
        role = stacks[0].get("RoleARN") if stacks else None
        return str(role) if role else None

    def alert_subscriptions_confirmed(self) -> tuple[bool, str]:
        topics = self._target.alert_topic_arns
        if topics is None:
            return False, "the controller's stack is not deployed yet: its alert topics cannot be checked"
        sns = self._client("sns")
        problems: list[str] = []
        counts: list[str] = []
        for topic in topics:
            subscriptions = [subscription for page in sns.get_paginator("list_subscriptions_by_topic").paginate(
                TopicArn=topic) for subscription in page.get("Subscriptions", [])]
            pending = [sub["Endpoint"] for sub in subscriptions if sub["SubscriptionArn"] == "PendingConfirmation"]
            confirmed = len(subscriptions) - len(pending)
            if pending:
                problems.append(f"{topic}: awaiting confirmation by {', '.join(pending)}")
            if not confirmed:
                problems.append(f"{topic}: no confirmed subscription, its alerts reach nobody")
            counts.append(f"{topic}: {confirmed} confirmed")
        if problems:
            return False, "; ".join(problems)
        return True, "; ".join(counts) or "no alert topics"

    def data_bucket_versioned(self) -> tuple[bool, str]:
        bucket = self._target.data_bucket
        status = self._client("s3").get_bucket_versioning(Bucket=bucket).get("Status")
        if status == "Enabled":
            return True, f"{bucket} is versioned"
        return False, f"{bucket} versioning is {status or 'never enabled'}: restores and snapshots need versions"

