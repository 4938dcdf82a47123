"""The operator's manual events: `{"action": "<name>", ...parameters}`, validated before anything runs.

An unknown action, a missing or ill-typed parameter, or an extra one is refused with a message that
names the problem and what is allowed; nothing is read or changed for a refused event.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from drcore.backup.requests import BackupId
from drcore.core.errors import InvalidRequest
from drcore.core.models import Cause, utc_now
from drcore.core.untrusted_input import describe_problems, echo

VERSION_NUMBER = r"^[1-9][0-9]{0,9}$"  # a published version (ten digits are plenty); never $LATEST
PLAN_ID = r"^[a-z]{2}-[0-9a-f]{6,32}$"
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


def _in_the_past(moment: datetime, info: ValidationInfo) -> datetime:
    """A restore point is a moment whose state was backed up: one still to come has none."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError as error:  # a year-1 time east of UTC, a year-9999 time west of it
        raise ValueError("out of range") from error
    now: datetime = (info.context or {}).get("now") or utc_now()
    if utc > now:
        raise ValueError(f"a restore point must be in the past (it is now {now.isoformat(timespec='seconds')})")
    return moment


RestorePoint = Annotated[AwareDatetime, AfterValidator(_in_the_past)]

# NoEcho values a stack backup cannot hold, named as CloudFormation names parameters. Bounded so that a
# plan that carries them always fits its state-table record.
ParameterValues = Annotated[
    dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,255}$")], Annotated[str, Field(max_length=4096)]],
    Field(max_length=20),
]


def _names_keys_of_the_bucket(prefix: str) -> str:
    """A prefix is matched literally against the bucket's keys and ends up in plans, logs and reports: one
    that reads like a path out of where it points (`..`, a leading `/`) or hides characters in a log
    line (control characters) is refused rather than guessed at."""
    if prefix.startswith("/"):
        raise ValueError("starts with '/': S3 keys are relative, give the prefix without it")
    if ".." in prefix.split("/"):
        raise ValueError("has a '..' segment: give the prefix as the keys spell it")
    hidden = next((char for char in prefix if unicodedata.category(char) == "Cc"), None)
    if hidden is not None:
        raise ValueError(f"has a control character ({hidden!r})")
    return prefix


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Operated(_Action):
    """Every action that changes something says who asked and why: both go into the journal."""

    requested_by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=3, max_length=1000)

    def cause(self) -> Cause:
        return Cause(kind="manual", summary=f"{self.action} requested by {self.requested_by}: {self.reason}",  # type: ignore[attr-defined]
                     requested_by=self.requested_by, reason=self.reason)


class Status(_Action):
    action: Literal["status"]


class ListBackups(_Action):
    action: Literal["list_backups"]
    component: Literal["lambda", "s3", "stack", "logs"]
    limit: int = Field(20, ge=1, le=500)


class VerifyBackup(_Action):
    """Read-only: a backup's stored content read and compared with its manifest, a sample or all of it."""

    action: Literal["verify_backup"]
    component: Literal["s3"]
    backup_id: BackupId
    sample: int = Field(100, ge=1, le=100_000)  # content objects checked, chosen at random
    full: bool = False  # every content object instead of a sample


class RunPreflight(_Action):
    """Read-only: what a deploy and the controller need from the account, check by check."""

    action: Literal["preflight"]


class Validate(_Action):
    """Read-only: the post-recovery validation (drcore.restore.validation) of the active region, journaled.
    Who asked and why are optional: they go into the journal entry when given."""

    action: Literal["validate"]
    requested_by: str | None = Field(None, min_length=1, max_length=200)
    reason: str | None = Field(None, min_length=3, max_length=1000)

    def cause(self) -> Cause:
        return Cause(kind="manual", summary=f"validate requested by {self.requested_by or 'an operator'}"
                     + (f": {self.reason}" if self.reason else ""), requested_by=self.requested_by, reason=self.reason)


class Rollback(_Operated):
    action: Literal["rollback"]


class Promote(_Operated):
    action: Literal["promote"]


class Release(_Operated):
    action: Literal["release"]
    version: str = Field(pattern=VERSION_NUMBER)
    canary_percent: float | None = Field(None, gt=0, lt=100)
    force: bool = False  # required to release a quarantined version


class Freeze(_Operated):
    action: Literal["freeze"]


class Unfreeze(_Operated):
    action: Literal["unfreeze"]


class RecoverVersion(_Operated):
    """The runbook's recover-lambda-version: LIVE to a published version."""

    action: Literal["recover_version"]
    version: str = Field(pattern=VERSION_NUMBER)
    force: bool = False  # required for a quarantined version


class _TwoStep(_Operated):
    """A destructive action: without `confirm` it answers a plan; `confirm` applies exactly that plan;
    `resume` continues an applied plan that an earlier invocation could not finish."""

    confirm: str | None = Field(None, pattern=PLAN_ID)
    resume: str | None = Field(None, pattern=PLAN_ID)
    # Parameters a plan needs; a resumption names only the plan.
    planning_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _planning_fields_given(self) -> _TwoStep:
        missing = [name for name in self.planning_fields if getattr(self, name) is None]
        if self.resume is None and missing:
            raise ValueError(f"{', '.join(missing)} required (or \"resume\": \"<plan id>\" to continue a plan)")
        return self

    def plan_request(self) -> dict[str, Any]:
        """What defines the plan: the parameters, not who asks, why, or the confirmation."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"requested_by", "reason", "confirm", "resume"})


class RestoreS3(_TwoStep):
    """Point-in-time restore of the data bucket (or a prefix of it), into it or an allowed bucket."""

    action: Literal["restore_s3"]
    snapshot_id: BackupId | None = None
    at: RestorePoint | None = None
    prefix: Annotated[str, Field(max_length=1024), AfterValidator(_names_keys_of_the_bucket)] = ""
    target_bucket: str | None = Field(None, pattern=BUCKET_NAME)

    @model_validator(mode="after")
    def _one_restore_point(self) -> RestoreS3:
        if self.resume is None and (self.snapshot_id is None) == (self.at is None):
            raise ValueError("give exactly one of snapshot_id or at (an ISO 8601 time with its zone)")
        return self


class RecoverFromBackup(_TwoStep):
    """Rebuild the function from a backup: in place (LIVE then serves the restored version) or beside it."""

    action: Literal["recover_from_backup"]
    backup_id: BackupId | None = None
    planning_fields: ClassVar[tuple[str, ...]] = ("backup_id",)
    target: str | None = Field(None, pattern=FUNCTION_NAME)


class RecoverStack(_TwoStep):
    """Recreate the pipeline's stack from a backup beside it (`<stack>-recovery`) or update it in place."""

    action: Literal["recover_stack"]
    backup_id: BackupId | None = None
    mode: Literal["new", "update"] | None = None
    planning_fields: ClassVar[tuple[str, ...]] = ("backup_id", "mode")
    parameter_values: ParameterValues = Field(default_factory=dict)  # NoEcho parameters the backup cannot hold


class ComprehensiveRollback(_TwoStep):
    """Function, environment, data and stack back to the backups nearest before `at`, in that order."""

    action: Literal["comprehensive_rollback"]
    at: RestorePoint | None = None
    planning_fields: ClassVar[tuple[str, ...]] = ("at",)
    parameter_values: ParameterValues = Field(default_factory=dict)


class ConfigureReplication(_TwoStep):
    """Merge the controller's replication rule (data bucket to the replica in the secondary region, with Replication
    Time Control and delete markers) into the data bucket's replication configuration; every other rule is kept.
    Everything it needs comes from the settings."""

    action: Literal["configure_replication"]


class Failover(_TwoStep):
    """Move upload processing to the secondary region (drcore.region.failover_action); planned and applied there,
    with the primary reachable or not. `force` (with the reason every action gives) accepts data at risk above
    failover.max_data_at_risk, or not known; it never overrides a secondary that is not ready."""

    action: Literal["failover"]
    force: bool = False


class Failback(_TwoStep):
    """Processing back to the primary region after a failover: what the secondary wrote copied back by content (after
    a safety snapshot of the data bucket), then the notifications, the region record and the environments switched
    back. Keys changed in both regions are refused unless `prefer` says which side wins."""

    action: Literal["failback"]
    prefer: Literal["secondary", "primary"] | None = None


_MODELS = (Status, ListBackups, Rollback, Promote, Release, Freeze, Unfreeze, RecoverVersion, RestoreS3,
           RecoverFromBackup, RecoverStack, ComprehensiveRollback, VerifyBackup, RunPreflight, ConfigureReplication,
           Failover, Failback, Validate)
# Union over the tuple: the models are listed once, above. (A tuple has no `|` spelling, hence the noqa.)
ManualAction = Annotated[Union[_MODELS], Field(discriminator="action")]  # type: ignore[valid-type]  # noqa: UP007
_adapter: TypeAdapter[Any] = TypeAdapter(ManualAction)
ACTION_NAMES = tuple(model.model_fields["action"].annotation.__args__[0]  # type: ignore[union-attr]
                     for model in _MODELS)


def parse_manual_action(event: Any, now: datetime | None = None) -> Any:
    """The action an operator's event asks for; InvalidRequest names what is wrong and what is allowed.

    `now` is the moment restore points are checked against (the present unless a test says otherwise).
    """
    if not isinstance(event, dict):
        raise InvalidRequest(f"expected a JSON object like {{\"action\": \"status\"}}, got {type(event).__name__}")
    action = event.get("action")
    if action not in ACTION_NAMES:
        raise InvalidRequest(f"unknown action {echo(action)}; valid actions: {', '.join(ACTION_NAMES)}")
    try:
        return _adapter.validate_python(event, context={"now": now or utc_now()})
    except ValidationError as error:
        # The first part of each location is the action's tag, which names no field of the event.
        raise InvalidRequest(f"invalid {action} request: {describe_problems(error, skip_location_parts=1)}") from error
