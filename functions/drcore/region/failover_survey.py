"""What a failover plan sees of both regions, read so that a primary that is down is an answer, not an error.

Every call to the primary region goes through clients bounded to a few seconds (drcore.aws.clients
.bounded_client_factory), and a failure to reach it (no connection, a timeout, an error answer) is reported in
the view as UNREACHABLE with the reason. The secondary is where this runs: its failures raise, as every
adapter's do, since a failover cannot be planned without it.

- The primary's health: the LIVE alarms' states there, and one health-check invocation of its LIVE.
- Data at risk: S3's OperationsPendingReplication (published in the primary's region) and, of the newest
  uploads of the data bucket (bounded listing), those not COMPLETED on the replica (drcore.region
  .replication_health).
- The secondary's readiness: the function and both aliases exist there, S3 may invoke its LIVE from the
  replica bucket, and the code STABLE serves there is the primary STABLE's, by CodeSha256 as the newest
  function backup in the backup store readable in this region recorded it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from drcore.aws.alarms import AlarmBoard
from drcore.aws.errors import error_code, is_not_found
from drcore.aws.pipeline_notification import BucketNotifications, pipeline_entries
from drcore.backup.function_format import CONFIGURATION, captured_value
from drcore.region.failover_catch_up import invoke_once
from drcore.region.failover_plan import UNREACHABLE, DataAtRisk, Readiness
from drcore.region.replication_health import ReplicationHealth
from drcore.state.backup_files import BackupReader
from drcore.state.backup_store import BackupStore, Component

T = TypeVar("T")
HEALTH_CHECK_PAYLOAD = b'{"test": "health-check"}'  # the runbook's health check


class Unreachable(Exception):
    """A call to the primary region failed: `reason` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reaching(call: Callable[[], T]) -> T:
    """`call()`, its failure to reach the other region as Unreachable."""
    try:
        return call()
    except ClientError as error:
        raise Unreachable(f"{error_code(error)}: {error}") from error
    except BotoCoreError as error:  # no connection, a timeout
        raise Unreachable(f"{type(error).__name__}: {error}") from error


class PrimaryView:
    """The primary region as far as bounded calls can see it."""

    def __init__(self, cloudwatch: Any, lambda_client: Any, s3: Any, function_name: str, live_alias: str,
                 alarm_names: tuple[str, ...]) -> None:
        self._cloudwatch = cloudwatch
        self._lambda = lambda_client
        self._notifications = BucketNotifications(s3)
        self._function = function_name
        self._live = live_alias
        self._alarms = alarm_names

    def health(self) -> dict[str, Any]:
        view: dict[str, Any] = {}
        try:
            states = reaching(lambda: AlarmBoard(self._cloudwatch).states(self._alarms))
            view["alarms"] = {name: signal.state for name, signal in states.items()}
        except Unreachable as failure:
            view["alarms"] = {"state": UNREACHABLE, "reason": failure.reason}
        try:
            view["probe"] = reaching(self._probe)
        except Unreachable as failure:
            view["probe"] = {"state": UNREACHABLE, "reason": failure.reason}
        view["reachable"] = view["probe"]["state"] != UNREACHABLE
        return view

    def invoke_live(self, event: dict[str, Any]) -> None:
        """One asynchronous invocation of the primary LIVE (an upload its gate held back)."""
        invoke_once(self._lambda, self._function, self._live, event)

    def pipeline_entry(self, bucket: str, target_arn: str) -> dict[str, Any] | None:
        """The bucket's pipeline entry (its events and filter, for the replica to copy); None when it has none.
        Raises Unreachable."""
        entries = reaching(lambda: pipeline_entries(self._notifications.configuration(bucket), target_arn))
        return {key: entries[0][key] for key in ("Events", "Filter") if key in entries[0]} if entries else None

    def _probe(self) -> dict[str, Any]:
        response = self._lambda.invoke(FunctionName=self._function, Qualifier=self._live,
                                       InvocationType="RequestResponse", Payload=HEALTH_CHECK_PAYLOAD)
        response["Payload"].read()
        healthy = response.get("StatusCode") == 200 and not response.get("FunctionError")
        return {"state": "healthy" if healthy else "unhealthy", "status_code": response.get("StatusCode"),
                "function_error": response.get("FunctionError")}


def data_at_risk(health: ReplicationHealth) -> DataAtRisk:
    """From the replication health report: its parts that failed to read come back as errors, not raised."""
    report = health.report()
    if not report.get("configured") and "rule" not in report:
        return DataAtRisk(None, None, None, str(report.get("detail", "replication is not configured")))
    metrics, sample = report.get("metrics", {}), report.get("sample", {})
    errors = [f"{part}: {view['error']}" for part, view in (("metrics", metrics), ("sample", sample))
              if "error" in view]
    pending = None if "error" in metrics else int(metrics.get("operations_pending") or 0)
    missing = None if "error" in sample else sum(int(sample.get(kind, 0)) for kind in (
        "pending", "failed", "missing_on_replica", "not_replicated"))
    return DataAtRisk(pending, None if "error" in sample else int(sample.get("checked", 0)), missing,
                      "; ".join(errors))


class SecondaryReadiness:
    """Whether the secondary region can process uploads: read in that region, and from the backup store."""

    def __init__(self, lambda_client: Any, store: BackupStore, function_name: str, live_alias: str,
                 stable_alias: str, replica_bucket: str) -> None:
        self._lambda = lambda_client
        self._store = store
        self._function = function_name
        self._live = live_alias
        self._stable = stable_alias
        self._replica = replica_bucket

    def check(self) -> Readiness:
        checks: dict[str, dict[str, Any]] = {}
        function = self._configuration(None)
        checks["function"] = _check(function is not None, f"{self._function} exists" if function else
                                    f"{self._function} does not exist in the secondary region")
        aliases = {alias: self._alias_version(alias) if function else None for alias in (self._live, self._stable)}
        for alias, version in aliases.items():
            checks[f"alias_{alias}"] = _check(version is not None, f"{alias} serves version {version}" if version
                                              else f"{alias} does not exist")
        checks["s3_may_invoke_live"] = self._s3_permission() if aliases[self._live] else _check(False, "no LIVE")
        stable = aliases[self._stable]
        secondary_sha = (self._configuration(stable) or {}).get("CodeSha256") if stable else None
        expected, source = self._primary_stable_code()
        checks["stable_code"] = _check(
            secondary_sha is not None and secondary_sha == expected,
            f"the secondary STABLE's CodeSha256 {secondary_sha} " + (
                f"equals the primary STABLE's {expected}" if secondary_sha == expected and expected
                else f"is not the primary STABLE's {expected}") + f" ({source})",
            secondary=secondary_sha, primary=expected)
        return Readiness(checks)

    def _configuration(self, qualifier: str | None) -> dict[str, Any] | None:
        try:
            request = {"FunctionName": self._function, **({"Qualifier": qualifier} if qualifier else {})}
            configuration: dict[str, Any] = self._lambda.get_function_configuration(**request)
        except ClientError as error:
            if is_not_found(error):
                return None
            raise
        return configuration

    def _alias_version(self, alias: str) -> str | None:
        try:
            return str(self._lambda.get_alias(FunctionName=self._function, Name=alias)["FunctionVersion"])
        except ClientError as error:
            if is_not_found(error):
                return None
            raise

    def _s3_permission(self) -> dict[str, Any]:
        """S3 refuses a notification to a function it may not invoke: LIVE's resource policy must let S3 invoke it
        from the replica bucket."""
        try:
            policy = json.loads(self._lambda.get_policy(FunctionName=self._function, Qualifier=self._live)["Policy"])
        except ClientError as error:
            if is_not_found(error):
                return _check(False, f"{self._live} has no resource policy: S3 may not invoke it")
            raise
        allowed = any(_lets_s3_invoke(statement, self._replica) for statement in policy.get("Statement", []))
        return _check(allowed, f"S3 may invoke {self._live} from {self._replica}" if allowed else
                      f"{self._live}'s resource policy does not let S3 invoke it from {self._replica}")

    def _primary_stable_code(self) -> tuple[str | None, str]:
        """The primary STABLE's CodeSha256 as the newest complete function backup recorded it, and which backup."""
        complete = [listing for listing in self._store.list_backups(Component.LAMBDA, self._function)
                    if listing.complete]
        if not complete:
            return None, "no complete function backup in the backup store readable here"
        reader = BackupReader(self._store, Component.LAMBDA, self._function)
        newest = reader.open(complete[-1].backup_id)
        document = json.loads(reader.read(newest, CONFIGURATION))
        settings = document.get("settings", {})
        aliases = captured_value(settings.get("aliases", {"status": "absent"})) or []
        stable = next((alias["FunctionVersion"] for alias in aliases if alias.get("Name") == self._stable), None)
        versions = captured_value(settings.get("versions", {"status": "absent"})) or []
        sha = next((version.get("CodeSha256") for version in versions if version.get("Version") == stable), None)
        return sha, f"backup {newest.backup_id}, STABLE version {stable}"


def _check(ok: bool, detail: str, **seen: Any) -> dict[str, Any]:
    return {"ok": ok, "detail": detail, **seen}


def _lets_s3_invoke(statement: dict[str, Any], bucket: str) -> bool:
    principal = statement.get("Principal")
    service = principal.get("Service") if isinstance(principal, dict) else principal
    services = service if isinstance(service, list) else [service]
    action = statement.get("Action")
    actions = action if isinstance(action, list) else [action]
    source = (statement.get("Condition") or {}).get("ArnLike", {}).get("AWS:SourceArn")
    return (statement.get("Effect") == "Allow" and "s3.amazonaws.com" in services
            and any(name in ("lambda:InvokeFunction", "lambda:*") for name in actions)
            and source in (None, f"arn:aws:s3:::{bucket}"))
