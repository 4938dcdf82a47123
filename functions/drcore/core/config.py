"""Runtime settings of the controller's functions.

The names of the environment variables are defined once, here and (the controller's, read without pydantic
so that a watcher starts cold quickly) in drcore.core.controller_settings: the CDK stacks import `EnvVar` to
set them and the handlers pass `os.environ` to `ControllerSettings.from_environ` to read them. The domain
itself never reads the environment.

So are the defaults the seed runbook gives: the stack's settings model (stacks/settings.py) takes them as
the defaults of cdk.json's "dr" block and sets every variable from it, and a function falls back on them
only where a variable is absent (the tests, the local drill).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The controller's settings and their defaults are read without pydantic (drcore.core.controller_settings);
# they are named here too, where the stacks and the other settings take them from.
from drcore.core.controller_settings import DEFAULT_BAKE_SECONDS as DEFAULT_BAKE_SECONDS
from drcore.core.controller_settings import DEFAULT_LIVE_ALIAS as DEFAULT_LIVE_ALIAS
from drcore.core.controller_settings import DEFAULT_METRICS_NAMESPACE as DEFAULT_METRICS_NAMESPACE
from drcore.core.controller_settings import DEFAULT_MIN_BAKE_INVOCATIONS as DEFAULT_MIN_BAKE_INVOCATIONS
from drcore.core.controller_settings import DEFAULT_PENDING_REPAIR_SECONDS as DEFAULT_PENDING_REPAIR_SECONDS
from drcore.core.controller_settings import DEFAULT_REGRESSION_FACTOR as DEFAULT_REGRESSION_FACTOR
from drcore.core.controller_settings import DEFAULT_REGRESSION_MIN_INVOCATIONS as DEFAULT_REGRESSION_MIN_INVOCATIONS
from drcore.core.controller_settings import DEFAULT_STABLE_ALIAS as DEFAULT_STABLE_ALIAS
from drcore.core.controller_settings import ControllerSettings as ControllerSettings
from drcore.core.controller_settings import EnvVar as EnvVar
from drcore.core.errors import SettingsError

_Settings = TypeVar("_Settings", bound=BaseModel)

# Object copies a snapshot or a restore runs at once (S3 serves thousands of requests per second per prefix).
DEFAULT_COPY_CONCURRENCY = 16
MAX_COPY_CONCURRENCY = 128
# Hourly snapshots: a full manifest a day, at most 23 delta manifests to read through (drcore.backup.manifest).
DEFAULT_FULL_MANIFEST_EVERY = 24
MAX_FULL_MANIFEST_EVERY = 168
# A bucket snapshot whose base holds more objects than this runs as a Step Functions Distributed Map of shards
# (drcore.backup.snapshot_shards), each of about this many keys, this many at once.
DEFAULT_FANOUT_THRESHOLD_OBJECTS = 100_000
MIN_FANOUT_THRESHOLD_OBJECTS = 1_000
DEFAULT_FANOUT_SHARD_OBJECTS = 10_000
MIN_FANOUT_SHARD_OBJECTS = 1_000
MAX_FANOUT_SHARD_OBJECTS = 1_000_000
DEFAULT_FANOUT_MAX_CONCURRENCY = 100
MAX_FANOUT_MAX_CONCURRENCY = 10_000  # a Distributed Map's most child executions at once
# A plan can be confirmed for this long; after it, the operator plans again against the world as it is.
DEFAULT_PLAN_TTL_SECONDS = 3600
MIN_PLAN_TTL_SECONDS = 60
MAX_PLAN_TTL_SECONDS = 7 * 86400


def _validated(model: type[_Settings], names: type[StrEnum], environ: Mapping[str, str], label: str) -> _Settings:
    """Validate the variables `names` lists; a SettingsError names each bad variable and its problem."""
    try:
        return model.model_validate({key: environ[key] for key in names if key in environ})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()
        )
        raise SettingsError(f"invalid {label} settings: {problems}") from error


def _names(value: object) -> object:
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    return value


def _seconds_table(value: object) -> object:
    """A component-to-seconds table, given as JSON in the environment."""
    table = json.loads(value) if isinstance(value, str) else value
    return tuple(sorted(table.items())) if isinstance(table, dict) else table


HEALTH_ALARM_KINDS = ("errors", "throttles", "health-probe")
PERFORMANCE_ALARM_KINDS = ("avg-duration", "p99-duration")


def alarm_name(function_name: str, alias: str, kind: str) -> str:
    """The name of one of the alarms on LIVE, shared by the stack that creates them and the drill."""
    return f"{function_name}-{alias}-{kind}"


# A stack recovered beside the pipeline stack is named "<pipeline_stack>-recovery": the stack grants the
# recovery function that name only.
RECOVERY_STACK_SUFFIX = "-recovery"


class BackupEnvVar(StrEnum):
    """The backup function's environment (apart from the watchers' so each function gets only its own)."""

    PROTECTED_FUNCTION_NAME = EnvVar.PROTECTED_FUNCTION_NAME.value
    STATE_TABLE_NAME = EnvVar.STATE_TABLE_NAME.value  # the journal
    STATE_SCOPE = EnvVar.STATE_SCOPE.value
    DATA_BUCKET_NAME = "DR_DATA_BUCKET_NAME"
    BACKUP_BUCKET_NAME = "DR_BACKUP_BUCKET_NAME"
    PIPELINE_STACK_NAME = "DR_PIPELINE_STACK_NAME"
    LOG_GROUP_NAME = "DR_LOG_GROUP_NAME"
    METRICS_NAMESPACE = EnvVar.METRICS_NAMESPACE.value
    COPY_CONCURRENCY = "DR_COPY_CONCURRENCY"
    FULL_MANIFEST_EVERY = "DR_FULL_MANIFEST_EVERY"
    PUBLISH_BACKUP_VERSION = "DR_PUBLISH_BACKUP_VERSION"
    SNAPSHOT_FANOUT_STATE_MACHINE = "DR_SNAPSHOT_FANOUT_STATE_MACHINE"  # its ARN; empty: snapshots never fan out
    FANOUT_THRESHOLD_OBJECTS = "DR_FANOUT_THRESHOLD_OBJECTS"
    FANOUT_SHARD_OBJECTS = "DR_FANOUT_SHARD_OBJECTS"


SnapshotsKept = Annotated[int, Field(ge=1)]
PeriodsKept = Annotated[int, Field(ge=0)]


class RetentionPolicy(BaseModel):
    """How many snapshots to keep: the newest `keep_last`, plus the newest of each of the last N hours,
    days, weeks and months (grandfather-father-son). The defaults are the seed's; the stack's settings
    model takes them from here."""

    model_config = ConfigDict(frozen=True)

    keep_last: SnapshotsKept = 24
    hourly: PeriodsKept = 24
    daily: PeriodsKept = 14
    weekly: PeriodsKept = 8
    monthly: PeriodsKept = 12


DEFAULT_RETENTION = RetentionPolicy()
# Every object written to the backup bucket is locked this long by the bucket's default, in this mode.
DEFAULT_OBJECT_LOCK_DAYS = 30
ObjectLockMode = Literal["GOVERNANCE", "COMPLIANCE"]
DEFAULT_OBJECT_LOCK_MODE: ObjectLockMode = "GOVERNANCE"


class BackupSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    protected_function: str = Field(alias=BackupEnvVar.PROTECTED_FUNCTION_NAME, min_length=1)
    state_table: str = Field(alias=BackupEnvVar.STATE_TABLE_NAME, min_length=1)
    state_scope: str | None = Field(None, alias=BackupEnvVar.STATE_SCOPE)
    data_bucket: str = Field(alias=BackupEnvVar.DATA_BUCKET_NAME, min_length=3)
    backup_bucket: str = Field(alias=BackupEnvVar.BACKUP_BUCKET_NAME, min_length=3)
    pipeline_stack: str = Field(alias=BackupEnvVar.PIPELINE_STACK_NAME, min_length=1)
    log_group: str = Field("", alias=BackupEnvVar.LOG_GROUP_NAME)  # default: /aws/lambda/<function>
    metrics_namespace: str = Field(DEFAULT_METRICS_NAMESPACE, alias=BackupEnvVar.METRICS_NAMESPACE, min_length=1)
    copy_concurrency: int = Field(DEFAULT_COPY_CONCURRENCY, alias=BackupEnvVar.COPY_CONCURRENCY, ge=1,
                                  le=MAX_COPY_CONCURRENCY)
    full_manifest_every: int = Field(DEFAULT_FULL_MANIFEST_EVERY, alias=BackupEnvVar.FULL_MANIFEST_EVERY, ge=1,
                                     le=MAX_FULL_MANIFEST_EVERY)
    publish_backup_version: bool = Field(False, alias=BackupEnvVar.PUBLISH_BACKUP_VERSION)
    snapshot_fanout_state_machine: str = Field("", alias=BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE)
    fanout_threshold_objects: int = Field(DEFAULT_FANOUT_THRESHOLD_OBJECTS, alias=BackupEnvVar.FANOUT_THRESHOLD_OBJECTS,
                                          ge=MIN_FANOUT_THRESHOLD_OBJECTS)
    fanout_shard_objects: int = Field(DEFAULT_FANOUT_SHARD_OBJECTS, alias=BackupEnvVar.FANOUT_SHARD_OBJECTS,
                                      ge=MIN_FANOUT_SHARD_OBJECTS, le=MAX_FANOUT_SHARD_OBJECTS)

    @field_validator("state_scope", mode="before")
    @classmethod
    def _no_scope_when_empty(cls, value: object) -> object:
        return value or None

    @property
    def function_log_group(self) -> str:
        return self.log_group or f"/aws/lambda/{self.protected_function}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> BackupSettings:
        return _validated(cls, BackupEnvVar, environ, "backup")


class RetentionEnvVar(StrEnum):
    """What the retention function needs besides the backup function's variables."""

    RETENTION_KEEP_LAST = "DR_RETENTION_KEEP_LAST"
    RETENTION_HOURLY = "DR_RETENTION_HOURLY"
    RETENTION_DAILY = "DR_RETENTION_DAILY"
    RETENTION_WEEKLY = "DR_RETENTION_WEEKLY"
    RETENTION_MONTHLY = "DR_RETENTION_MONTHLY"
    OBJECT_LOCK_MODE = "DR_OBJECT_LOCK_MODE"  # GOVERNANCE | COMPLIANCE: the mode a lock is extended in
    OBJECT_LOCK_DAYS = "DR_OBJECT_LOCK_DAYS"  # the backup bucket's default retention, in days


class RetentionSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    keep_last: SnapshotsKept = Field(DEFAULT_RETENTION.keep_last, alias=RetentionEnvVar.RETENTION_KEEP_LAST)
    hourly: PeriodsKept = Field(DEFAULT_RETENTION.hourly, alias=RetentionEnvVar.RETENTION_HOURLY)
    daily: PeriodsKept = Field(DEFAULT_RETENTION.daily, alias=RetentionEnvVar.RETENTION_DAILY)
    weekly: PeriodsKept = Field(DEFAULT_RETENTION.weekly, alias=RetentionEnvVar.RETENTION_WEEKLY)
    monthly: PeriodsKept = Field(DEFAULT_RETENTION.monthly, alias=RetentionEnvVar.RETENTION_MONTHLY)
    object_lock_mode: ObjectLockMode = Field(DEFAULT_OBJECT_LOCK_MODE, alias=RetentionEnvVar.OBJECT_LOCK_MODE)
    object_lock_days: int = Field(DEFAULT_OBJECT_LOCK_DAYS, alias=RetentionEnvVar.OBJECT_LOCK_DAYS, ge=1)

    @property
    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(keep_last=self.keep_last, hourly=self.hourly, daily=self.daily, weekly=self.weekly,
                               monthly=self.monthly)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RetentionSettings:
        return _validated(cls, RetentionEnvVar, environ, "retention")


class RecoveryEnvVar(StrEnum):
    """What the recovery function needs besides the watchers' and the backup function's variables."""

    RESTORE_TARGET_BUCKETS = "DR_RESTORE_TARGET_BUCKETS"  # comma-separated allow-list besides the data bucket
    RPO_SECONDS = "DR_RPO_SECONDS"  # JSON: {"lambda": 300, "s3": 3600, "stack": 86400, "logs": 86400}
    PLAN_TTL_SECONDS = "DR_PLAN_TTL_SECONDS"
    # The CloudFormation service role a recovered stack's change set runs as ("": none); the recovery role may
    # pass this role and no other.
    STACK_ROLE_ARN = "DR_STACK_ROLE_ARN"
    # The restore fan-out's state machine (its ARN; empty: restores never fan out). Its threshold and shard size are
    # the backup function's DR_FANOUT_THRESHOLD_OBJECTS and DR_FANOUT_SHARD_OBJECTS.
    RESTORE_FANOUT_STATE_MACHINE = "DR_RESTORE_FANOUT_STATE_MACHINE"


class RecoverySettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    restore_target_buckets: tuple[str, ...] = Field((), alias=RecoveryEnvVar.RESTORE_TARGET_BUCKETS)
    rpo_seconds: tuple[tuple[str, int], ...] = Field(
        (("lambda", 300), ("s3", 3600), ("stack", 86400), ("logs", 86400)), alias=RecoveryEnvVar.RPO_SECONDS)
    plan_ttl_seconds: int = Field(DEFAULT_PLAN_TTL_SECONDS, alias=RecoveryEnvVar.PLAN_TTL_SECONDS,
                                  ge=MIN_PLAN_TTL_SECONDS, le=MAX_PLAN_TTL_SECONDS)
    stack_role_arn: str | None = Field(None, alias=RecoveryEnvVar.STACK_ROLE_ARN)
    restore_fanout_state_machine: str = Field("", alias=RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE)

    _split_buckets = field_validator("restore_target_buckets", mode="before")(_names)

    _rpo_table = field_validator("rpo_seconds", mode="before")(_seconds_table)

    @field_validator("stack_role_arn", mode="before")
    @classmethod
    def _none_when_empty(cls, value: object) -> object:
        # The stack sets every variable; an empty one means no role is configured.
        return value or None

    def rpo_of(self, component: str) -> int | None:
        return dict(self.rpo_seconds).get(component)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RecoverySettings:
        return _validated(cls, RecoveryEnvVar, environ, "recovery")


# Replication to the secondary region (drcore.region): how many recent object versions `status` samples, and
# the thresholds its health judgement shares with the replication alarms (S3 Replication Time Control's 15 minutes).
DEFAULT_REPLICATION_SAMPLE_SIZE = 20
MAX_REPLICATION_SAMPLE_SIZE = 100
DEFAULT_REPLICATION_MAX_LATENCY_SECONDS = 15 * 60
DEFAULT_REPLICATION_MAX_PENDING_OPERATIONS = 1000


class RegionEnvVar(StrEnum):
    """What the recovery function needs to configure and watch replication of the data bucket to the secondary
    region. Absent (the tests of other capabilities), replication is reported as not set up."""

    SECONDARY_REGION = "DR_SECONDARY_REGION"
    REPLICA_BUCKET_NAME = "DR_REPLICA_BUCKET_NAME"
    # The IAM role S3 assumes to replicate ("": none configured, so configure_replication refuses).
    REPLICATION_ROLE_ARN = "DR_REPLICATION_ROLE_ARN"
    REPLICATION_SAMPLE_SIZE = "DR_REPLICATION_SAMPLE_SIZE"
    REPLICATION_MAX_LATENCY_SECONDS = "DR_REPLICATION_MAX_LATENCY_SECONDS"
    REPLICATION_MAX_PENDING_OPERATIONS = "DR_REPLICATION_MAX_PENDING_OPERATIONS"


class RegionSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    secondary_region: str | None = Field(None, alias=RegionEnvVar.SECONDARY_REGION,
                                         pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    replica_bucket: str | None = Field(None, alias=RegionEnvVar.REPLICA_BUCKET_NAME, min_length=3)
    replication_role_arn: str | None = Field(None, alias=RegionEnvVar.REPLICATION_ROLE_ARN,
                                             pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    replication_sample_size: int = Field(DEFAULT_REPLICATION_SAMPLE_SIZE, alias=RegionEnvVar.REPLICATION_SAMPLE_SIZE,
                                         ge=1, le=MAX_REPLICATION_SAMPLE_SIZE)
    replication_max_latency_seconds: int = Field(DEFAULT_REPLICATION_MAX_LATENCY_SECONDS, ge=1,
                                                 alias=RegionEnvVar.REPLICATION_MAX_LATENCY_SECONDS)
    replication_max_pending_operations: int = Field(DEFAULT_REPLICATION_MAX_PENDING_OPERATIONS, ge=0,
                                                    alias=RegionEnvVar.REPLICATION_MAX_PENDING_OPERATIONS)

    @field_validator("secondary_region", "replica_bucket", "replication_role_arn", mode="before")
    @classmethod
    def _none_when_empty(cls, value: object) -> object:
        # The stack sets every variable; an empty one means the setting is not configured.
        return value or None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RegionSettings:
        return _validated(cls, RegionEnvVar, environ, "region")


# Failing over to the secondary region (drcore.region): how much a failover may leave behind without `force`, and
# when the region watcher calls the primary down and may fail over by itself.
DEFAULT_FAILOVER_MAX_DATA_AT_RISK = 0
DEFAULT_FAILOVER_DETECT_MINUTES = 5
DEFAULT_FAILOVER_AUTO_AFTER_MINUTES = 15


DEFAULT_SWITCH_GATE_SETTLE_SECONDS = 2  # S3 delivers an event to a queue within a second or so
# How long a failover waits, before the secondary processes, for the primary's last uploads to replicate.
DEFAULT_FAILOVER_REPLICATION_WAIT_SECONDS = 60
MAX_FAILOVER_REPLICATION_WAIT_SECONDS = 900  # Replication Time Control's 15 minutes


class FailoverEnvVar(StrEnum):
    """What the recovery function (and the region watcher) need to fail over and back."""

    PRIMARY_REGION = EnvVar.PRIMARY_REGION.value  # the watchers read it too (fencing)
    # Objects pending replication or newer than the replica's a failover may leave behind without force.
    MAX_DATA_AT_RISK = "DR_FAILOVER_MAX_DATA_AT_RISK"
    DETECT_MINUTES = "DR_FAILOVER_DETECT_MINUTES"
    AUTOMATIC = "DR_FAILOVER_AUTOMATIC"
    AUTO_AFTER_MINUTES = "DR_FAILOVER_AUTO_AFTER_MINUTES"
    # The runbook's external stakeholder notice goes to this topic ("": none configured, the notice is not sent).
    STAKEHOLDER_TOPIC_ARN = "DR_STAKEHOLDER_TOPIC_ARN"
    # The region watcher asks this function of its own region for failover plans (and confirms them, if automatic).
    RECOVERY_FUNCTION_NAME = "DR_RECOVERY_FUNCTION_NAME"
    # The switch gate: a queue of this name in each region (each stack's own) that records, during a switch, the
    # uploads no region processes (drcore.region.switch_gate); "": none, a switch falls back on listing times.
    SWITCH_GATE_QUEUE = "DR_SWITCH_GATE_QUEUE"
    # How long a gate's last, empty receive waits for an event S3 is still delivering.
    SWITCH_GATE_SETTLE_SECONDS = "DR_SWITCH_GATE_SETTLE_SECONDS"
    # How long a failover waits for the primary's uploads from before its stop to replicate (drcore.region.
    # replication_wait): a replica landing once the secondary processes is processed a second time.
    REPLICATION_WAIT_SECONDS = "DR_FAILOVER_REPLICATION_WAIT_SECONDS"


class FailoverSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    primary_region: str | None = Field(None, alias=FailoverEnvVar.PRIMARY_REGION,
                                       pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    max_data_at_risk: int = Field(DEFAULT_FAILOVER_MAX_DATA_AT_RISK, alias=FailoverEnvVar.MAX_DATA_AT_RISK, ge=0)
    detect_minutes: int = Field(DEFAULT_FAILOVER_DETECT_MINUTES, alias=FailoverEnvVar.DETECT_MINUTES, ge=1)
    automatic: bool = Field(False, alias=FailoverEnvVar.AUTOMATIC)
    auto_after_minutes: int = Field(DEFAULT_FAILOVER_AUTO_AFTER_MINUTES, alias=FailoverEnvVar.AUTO_AFTER_MINUTES,
                                    ge=1)
    recovery_function: str | None = Field(None, alias=FailoverEnvVar.RECOVERY_FUNCTION_NAME,
                                          pattern=r"^[A-Za-z0-9_-]{1,64}$")
    switch_gate_queue: str | None = Field(None, alias=FailoverEnvVar.SWITCH_GATE_QUEUE,
                                          pattern=r"^[A-Za-z0-9_-]{1,80}$")
    switch_gate_settle_seconds: int = Field(DEFAULT_SWITCH_GATE_SETTLE_SECONDS,
                                            alias=FailoverEnvVar.SWITCH_GATE_SETTLE_SECONDS, ge=0, le=20)
    replication_wait_seconds: int = Field(DEFAULT_FAILOVER_REPLICATION_WAIT_SECONDS,
                                          alias=FailoverEnvVar.REPLICATION_WAIT_SECONDS, ge=0,
                                          le=MAX_FAILOVER_REPLICATION_WAIT_SECONDS)
    stakeholder_topic_arn: str | None = Field(None, alias=FailoverEnvVar.STAKEHOLDER_TOPIC_ARN,
                                              pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$")

    @field_validator("primary_region", "stakeholder_topic_arn", "recovery_function", "switch_gate_queue",
                     mode="before")
    @classmethod
    def _none_when_empty(cls, value: object) -> object:
        # The stack sets every variable; an empty one means the setting is not configured.
        return value or None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FailoverSettings:
        return _validated(cls, FailoverEnvVar, environ, "failover")


class DrillEnvVar(StrEnum):
    """What the drill function needs besides the watchers', the backup and the recovery functions' variables."""

    SCRATCH_BUCKET_NAME = "DR_DRILL_SCRATCH_BUCKET"  # the newest snapshot is restored into it
    SCRATCH_FUNCTION_NAME = "DR_DRILL_SCRATCH_FUNCTION"  # the newest function backup is restored as it
    RTO_SECONDS = "DR_RTO_SECONDS"  # JSON: {"lambda": 900, "s3": 1800, "configuration": 300}
    ENVIRONMENT = "DR_DRILL_ENVIRONMENT"  # a DrillEnvironment


class DrillEnvironment(StrEnum):
    """Where a drill runs: the drill function in AWS, or the local drill (`make drill`) against the embedded
    endpoint. Reports and the DrillPassed metric carry it, so the dashboard shows AWS drills only."""

    AWS = "aws"
    EMBEDDED = "embedded"


class DrillSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    scratch_bucket: str = Field(alias=DrillEnvVar.SCRATCH_BUCKET_NAME, min_length=3)
    scratch_function: str = Field(alias=DrillEnvVar.SCRATCH_FUNCTION_NAME, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    rto_seconds: tuple[tuple[str, int], ...] = Field(
        (("configuration", 300), ("lambda", 900), ("s3", 1800)), alias=DrillEnvVar.RTO_SECONDS)
    environment: DrillEnvironment = Field(DrillEnvironment.AWS, alias=DrillEnvVar.ENVIRONMENT)

    _rto_table = field_validator("rto_seconds", mode="before")(_seconds_table)

    def rto_of(self, component: str) -> int | None:
        return dict(self.rto_seconds).get(component)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DrillSettings:
        return _validated(cls, DrillEnvVar, environ, "drill")
