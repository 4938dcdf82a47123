"""Post-recovery validation: the runbook's "Post-Recovery Validation" checklist, made of checks that read the world.

Each check answers on its own, `ok`, `failed` or `unknown`, with a detail an operator can act on and the facts
behind it; one that raises (a region that does not answer, an access denied) is `unknown` with the error, and
the other checks still run. `unknown` is never `ok`: the whole result is ok only if every check is.

The checks (drcore.restore.validation_function, validation_data, validation_controls):

- `health_check`: LIVE in the active region answers the runbook's health-check event (the watchers' bounded
  probe, by version number so it is counted apart from LIVE's traffic; nothing is published for the alarm);
- `event_processing`: the pipeline's notification (an entry targeting that region's LIVE alias) is on the active
  region's bucket and on no other;
- `alarms`: the LIVE alarms exist, with their actions enabled and somewhere to send them, and none is in ALARM;
- `metrics`: each alarm's own metric over the last minutes, against the alarm's own threshold (error counts,
  throttles, average and p99 duration), with the error rate;
- `backups_within_rpo`: the newest complete backup of each component is within its RPO;
- `data_integrity`: a random sample of the newest bucket snapshot's objects read back from the active region's
  bucket and compared with the manifest (objects changed since the snapshot are expected differences);
- `security_controls`: the backup bucket's versioning, Object Lock, default encryption with the backup key and
  create-only policy, and the encryption of the alert topics.

A run is journaled as action `validate`; `status` shows the latest (`ValidationJournal.latest`). Run as the final
step of an applied recovery (drcore.restore.validated_actions), a result that is not ok is alerted.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from drcore.aws.alerts import Alert, AlertPublisher
from drcore.aws.errors import error_code
from drcore.core.models import Cause, Clock, to_iso, utc_now
from drcore.state.store import ControllerStateStore

logger = Logger(child=True)

Status = Literal["ok", "failed", "unknown"]
OK: Status = "ok"
FAILED: Status = "failed"
UNKNOWN: Status = "unknown"

VALIDATE_ACTION = "validate"  # the journal's name for a validation
ActiveRegion = Callable[[], str]  # which region processes uploads now (the region record, once it exists)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "status": self.status, "detail": self.detail, **self.facts}


@dataclass(frozen=True)
class ValidationResult:
    active_region: str
    at: str
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def status(self) -> Status:
        statuses = {check.status for check in self.checks}
        return FAILED if FAILED in statuses else UNKNOWN if UNKNOWN in statuses else OK

    def named(self, status: Status) -> list[str]:
        return [check.name for check in self.checks if check.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "active_region": self.active_region, "at": self.at,
                "failed": self.named(FAILED), "unknown": self.named(UNKNOWN),
                "checks": [check.to_dict() for check in self.checks]}


class ValidationCheck(Protocol):
    name: str

    def run(self, active_region: str) -> CheckResult: ...


class ValidationJournal:
    """Validations in the controller's journal: each one appended, the newest read back for `status`."""

    def __init__(self, store: ControllerStateStore, function_name: str) -> None:
        self._store = store
        self._function = function_name

    def append(self, result: ValidationResult, cause: Cause) -> None:
        details = {"active_region": result.active_region, "failed": result.named(FAILED),
                   "unknown": result.named(UNKNOWN),
                   "checks": {check.name: {"status": check.status, "detail": check.detail[:500]}
                              for check in result.checks}}
        self._store.append_journal(self._function, entry_id=f"va-{secrets.token_hex(5)}", at=result.at,
                                   action=VALIDATE_ACTION, cause=cause, result=result.status, details=details)

    def latest(self) -> dict[str, Any] | None:
        entry = self._store.latest_journal_entry(self._function, VALIDATE_ACTION)
        if entry is None:
            return None
        return {"at": entry["at"], "status": entry["result"], "ok": entry["result"] == OK,
                "cause": (entry.get("cause") or {}).get("summary"), **(entry.get("details") or {})}


class PostRecoveryValidation:
    def __init__(self, checks: Sequence[ValidationCheck], journal: ValidationJournal, alerts: AlertPublisher,
                 function_name: str, active_region: ActiveRegion, clock: Clock = utc_now) -> None:
        self._checks = tuple(checks)
        self._journal = journal
        self._alerts = alerts
        self._function = function_name
        self._active_region = active_region
        self._clock = clock

    def active_region(self) -> str:
        return self._active_region()

    def latest(self) -> dict[str, Any] | None:
        """The newest validation in the journal, for `status`."""
        return self._journal.latest()

    def run(self, active_region: str, cause: Cause | None = None) -> ValidationResult:
        """Every check against `active_region` as the one that processes uploads; journaled."""
        at = to_iso(self._clock())
        checks = tuple(self._checked(check, active_region) for check in self._checks)
        result = ValidationResult(active_region, at, checks)
        self._journal.append(result, cause or Cause(kind="manual", summary="post-recovery validation"))
        logger.info("post-recovery validation", extra={"active_region": active_region, "status": result.status,
                                                       "failed": result.named(FAILED),
                                                       "unknown": result.named(UNKNOWN)})
        return result

    def after_recovery(self, action: str, plan_id: str, cause: Cause,
                       active_region: str | None = None) -> ValidationResult:
        """The final step of an applied recovery or region switch (`active_region`: the region it made active;
        default the region record's): validated, and alerted unless every check is ok (a failed check is
        severity 2, an unverifiable one severity 3), so a recovery that did not bring the system back is never
        only a field in a result."""
        cause = Cause(kind=cause.kind, summary=f"after {action} {plan_id}: {cause.summary}",
                      requested_by=cause.requested_by, reason=cause.reason)
        result = self.run(active_region or self.active_region(), cause)
        if not result.ok:
            self._alerts.publish(self._alert(result, action, plan_id))
        return result

    def _alert(self, result: ValidationResult, action: str, plan_id: str) -> Alert:
        failed, unknown = result.named(FAILED), result.named(UNKNOWN)
        questionable = [check for check in result.checks if not check.ok]
        return Alert(
            severity=2 if failed else 3,
            brief=f"Validation after {action} {'failed' if failed else 'incomplete'}: {', '.join(failed or unknown)}",
            occurred_at=result.at,
            impact="The recovery was applied but the system is not proven back to normal",
            components=(f"lambda:{self._function}", f"region:{result.active_region}"),
            status=f"{action} applied (plan {plan_id}); post-recovery validation {result.status}",
            actions_taken=(f"{action} plan {plan_id} applied", "Post-recovery validation run and journaled"),
            next_steps=(*(f"{check.name} ({check.status}): {check.detail}"[:300] for check in questionable),
                        'Validate again after fixing: {"action": "validate"}'),
            event_type="validation_failed", function_name=self._function,
            facts={"failed": ", ".join(failed) or "none", "unknown": ", ".join(unknown) or "none",
                   "active_region": result.active_region})

    def _checked(self, check: ValidationCheck, active_region: str) -> CheckResult:
        try:
            return check.run(active_region)
        except (ClientError, BotoCoreError) as error:
            # A region or service that does not answer, or a read the role lacks: the check cannot say.
            code = error_code(error) if isinstance(error, ClientError) else type(error).__name__
            logger.warning("validation check could not read", extra={"check": check.name, "error": str(error)})
            return CheckResult(check.name, UNKNOWN, f"could not read what the check needs: {code}: {error}")
