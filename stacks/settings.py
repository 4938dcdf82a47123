"""The protected system and the controller's tuning, as described in `cdk.json` under the context key "dr".

Defaults come from the seed runbook, as the functions define them (drcore.core.config), so the stack sets what
a function would assume anyway. `Settings.from_context` validates the whole block and turns every
problem into one `InvalidSettings` message that names the key (`dr.bake_minutes: ...`), so a wrong value
fails synth instead of deploying a controller that cannot work.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drcore.core.config import (
    DEFAULT_BAKE_SECONDS,
    DEFAULT_COPY_CONCURRENCY,
    DEFAULT_FAILOVER_AUTO_AFTER_MINUTES,
    DEFAULT_FAILOVER_DETECT_MINUTES,
    DEFAULT_FAILOVER_MAX_DATA_AT_RISK,
    DEFAULT_FAILOVER_REPLICATION_WAIT_SECONDS,
    DEFAULT_FANOUT_MAX_CONCURRENCY,
    DEFAULT_FANOUT_SHARD_OBJECTS,
    DEFAULT_FANOUT_THRESHOLD_OBJECTS,
    DEFAULT_FULL_MANIFEST_EVERY,
    DEFAULT_LIVE_ALIAS,
    DEFAULT_METRICS_NAMESPACE,
    DEFAULT_MIN_BAKE_INVOCATIONS,
    DEFAULT_OBJECT_LOCK_DAYS,
    DEFAULT_OBJECT_LOCK_MODE,
    DEFAULT_PENDING_REPAIR_SECONDS,
    DEFAULT_PLAN_TTL_SECONDS,
    DEFAULT_REGRESSION_FACTOR,
    DEFAULT_REGRESSION_MIN_INVOCATIONS,
    DEFAULT_REPLICATION_MAX_LATENCY_SECONDS,
    DEFAULT_REPLICATION_MAX_PENDING_OPERATIONS,
    DEFAULT_REPLICATION_SAMPLE_SIZE,
    DEFAULT_STABLE_ALIAS,
    DEFAULT_SWITCH_GATE_SETTLE_SECONDS,
    MAX_COPY_CONCURRENCY,
    MAX_FAILOVER_REPLICATION_WAIT_SECONDS,
    MAX_FANOUT_MAX_CONCURRENCY,
    MAX_FANOUT_SHARD_OBJECTS,
    MAX_FULL_MANIFEST_EVERY,
    MAX_PLAN_TTL_SECONDS,
    MAX_REPLICATION_SAMPLE_SIZE,
    MIN_FANOUT_SHARD_OBJECTS,
    MIN_FANOUT_THRESHOLD_OBJECTS,
    MIN_PLAN_TTL_SECONDS,
    RECOVERY_STACK_SUFFIX,
    ObjectLockMode,
    RetentionPolicy,
)
from drcore.core.controller_settings import DEFAULT_HEALTH_PROBE_TIMEOUT_SECONDS, MAX_HEALTH_PROBE_TIMEOUT_SECONDS

CONTEXT_KEY = "dr"
# Memory buys CPU and network for concurrent copies and for hashing code archives, and holds the manifests a
# function goes through a line at a time (compressed, about 95 bytes per object).
DEFAULT_BACKUP_MEMORY_MB = DEFAULT_RECOVERY_MEMORY_MB = DEFAULT_RETENTION_MEMORY_MB = 1024
MAX_FUNCTION_MEMORY_MB = 10_240  # Lambda's largest function

# CloudWatch Logs accepts only these retention periods.
LogRetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
]

LAMBDA_NAME = r"^[A-Za-z0-9_-]{1,64}$"
# An alias name may not be all digits: that would be a version number.
ALIAS_NAME = r"^[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*$"
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
STACK_NAME = r"^[A-Za-z][A-Za-z0-9-]{0,127}$"
TABLE_NAME = r"^[A-Za-z0-9_.-]{3,255}$"
# A standard (not FIFO) SQS queue's name: S3 event notifications cannot send to a FIFO queue.
QUEUE_NAME = r"^[A-Za-z0-9_-]{1,80}$"
REGION = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"
METRICS_NAMESPACE = r"^[A-Za-z0-9 ._/#:-]{1,255}$"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# SNS sends SMS to E.164 numbers; HTTPS subscribers (chat relays, AWS Chatbot, paging services) by URL.
PHONE_NUMBER = re.compile(r"\+[1-9]\d{6,14}")
HTTPS_URL = re.compile(r"https://[^\s/?#]+([/?#]\S*)?")
# Who may be named in a resource policy: an account's root, an IAM user or an IAM role (groups cannot be).
IAM_PRINCIPAL_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:(root|(user|role)(/[\w+=,.@-]+)+)")
IAM_ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role(/[\w+=,.@-]+)+")
# A pattern of role ARNs for iam:PassRole: IAM's wildcards `*` and `?` may stand for parts of the path and name.
IAM_ROLE_ARN_PATTERN = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:role(/[\w+=,.@*?-]+)+")

# Lambda stops any invocation at 15 minutes, so a longer duration threshold could never be crossed.
MAX_DURATION_MS = 900_000
# A backup's RPO alarm sums its success metric over one period as long as the RPO, and CloudWatch allows
# at most one day per alarm period.
MAX_WATCHED_RPO_MINUTES = 24 * 60
# S3 Object Lock accepts a default retention of up to 100 years.
MAX_OBJECT_LOCK_DAYS = 36_500
# The recovery function reads the plan TTL in seconds (drcore.core.config.RecoverySettings).
MIN_PLAN_TTL_MINUTES = MIN_PLAN_TTL_SECONDS // 60
MAX_PLAN_TTL_MINUTES = MAX_PLAN_TTL_SECONDS // 60
# A stack recovered beside the pipeline stack is named "<pipeline_stack>-recovery" (RECOVERY_STACK_SUFFIX);
# stack names have at most 128 characters.
MAX_STACK_NAME = 128
# Lambda keeps at least this many of an account's concurrent executions unreserved, and refuses a
# reservation that would leave fewer.
UNRESERVED_CONCURRENCY_MINIMUM = 100
# The concurrent executions quota AWS gives an account in a region unless raised (new accounts may get less).
DEFAULT_ACCOUNT_CONCURRENCY = 1000
# The retention function runs alone: two runs at once would judge and hide the same backups twice.
RETENTION_CONCURRENCY = 1


class InvalidSettings(ValueError):
    """The `dr` context in cdk.json does not describe a deployable controller."""


class _Strict(BaseModel):
    # A misspelt key is an error, not a silently ignored value; cross-field checks also run when one side
    # keeps its default.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class RecoveryObjective(_Strict):
    rto_minutes: int = Field(gt=0)
    # 0 means real time: every change is captured as it happens.
    rpo_minutes: int = Field(ge=0)


class ScheduledObjective(RecoveryObjective):
    """A component backed up on a schedule as often as its RPO, and watched by an alarm over that window."""

    rpo_minutes: int = Field(ge=1, le=MAX_WATCHED_RPO_MINUTES)


class ConfigurationObjective(RecoveryObjective):
    """0 is real time: configuration changes trigger a backup as they happen (CloudTrail), and the stack is
    also backed up daily; a positive RPO schedules the stack backup that often."""

    rpo_minutes: int = Field(ge=0, le=MAX_WATCHED_RPO_MINUTES)


class RecoveryObjectives(_Strict):
    """The seed's recovery objectives table, one row per component."""

    lambda_function: ScheduledObjective = ScheduledObjective(rto_minutes=15, rpo_minutes=5)
    s3_data: ScheduledObjective = ScheduledObjective(rto_minutes=30, rpo_minutes=60)
    cloudwatch_logs: ScheduledObjective = ScheduledObjective(rto_minutes=60, rpo_minutes=24 * 60)
    configuration: ConfigurationObjective = ConfigurationObjective(rto_minutes=5, rpo_minutes=0)
    health_reports: RecoveryObjective = RecoveryObjective(rto_minutes=120, rpo_minutes=4 * 60)


class AlarmWindow(_Strict):
    """When an alarm fires: `datapoints_to_alarm` breaching periods out of the last `evaluation_periods`."""

    period_minutes: int = Field(1, ge=1)
    evaluation_periods: int = Field(3, ge=1)
    datapoints_to_alarm: int = Field(2, ge=1)

    @field_validator("evaluation_periods")
    @classmethod
    def _within_one_day(cls, value: int, info: ValidationInfo) -> int:
        period = info.data.get("period_minutes")
        if period is not None and period * value > 24 * 60:
            raise ValueError(
                f"period_minutes x evaluation_periods is {period * value} minutes; CloudWatch allows at most one day"
            )
        return value

    @field_validator("datapoints_to_alarm")
    @classmethod
    def _not_more_than_evaluated(cls, value: int, info: ValidationInfo) -> int:
        evaluated = info.data.get("evaluation_periods")
        if evaluated is not None and value > evaluated:
            raise ValueError(f"must not exceed evaluation_periods ({evaluated})")
        return value

    @property
    def window_minutes(self) -> int:
        return self.period_minutes * self.evaluation_periods


class CountAlarm(AlarmWindow):
    """Fires when the sum of a count (errors, throttles) per period reaches `threshold`."""

    threshold: int = Field(1, ge=1)


class DurationAlarm(AlarmWindow):
    """Fires when a Duration statistic per period is above `threshold_ms`."""

    threshold_ms: int = Field(gt=0, le=MAX_DURATION_MS)


class LiveAlarms(_Strict):
    """The alarms on the LIVE alias. Health alarms act through health_watcher, duration alarms through
    performance_watcher."""

    errors: CountAlarm = CountAlarm()
    throttles: CountAlarm = CountAlarm()
    # The seed's rule: average Duration above 300,000 ms over 10 minutes.
    average_duration: DurationAlarm = DurationAlarm(
        threshold_ms=300_000, period_minutes=10, evaluation_periods=1, datapoints_to_alarm=1
    )
    p99_duration: DurationAlarm = DurationAlarm(
        threshold_ms=600_000, period_minutes=10, evaluation_periods=1, datapoints_to_alarm=1
    )
    # The seed rolled back after two failed health checks; the tick probes once a minute.
    health_probe: AlarmWindow = AlarmWindow()

    @property
    def longest_window_minutes(self) -> int:
        return max(
            alarm.window_minutes
            for alarm in (self.errors, self.throttles, self.average_duration, self.p99_duration, self.health_probe)
        )


def _email(address: str) -> str:
    if EMAIL.fullmatch(address) is None:
        raise ValueError(f"{address!r} is not an e-mail address")
    return address


EmailAddress = Annotated[str, AfterValidator(_email)]
# The alert topics, as alert_emails and alert_subscriptions name them, and what each alerts on.
ALERTED_ON = {
    "emergency": "severity 1: STABLE failing, automation frozen",
    "alert": "severities 2 to 4: rollbacks, RPO alarms, failed events, failed drills",
}
ALERT_TOPICS = tuple(ALERTED_ON)


class AlertEmails(_Strict):
    """E-mail addresses subscribed to the alert topics."""

    # Severity 1: STABLE itself failing, nothing left to roll back to, automation frozen.
    emergency: tuple[EmailAddress, ...] = ()
    # Severities 2 to 4: rollbacks, RPO alarms, failed events, failed drills.
    alert: tuple[EmailAddress, ...] = ()

    @field_validator("emergency", "alert")
    @classmethod
    def _each_once(cls, addresses: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(addresses)) != len(addresses):
            raise ValueError("lists an address twice")
        return addresses


class AlertSubscription(_Strict):
    """A subscriber that is not an e-mail address: a phone number for SMS, or an HTTPS endpoint (a chat
    webhook relay, AWS Chatbot, a paging service)."""

    protocol: Literal["sms", "https"]
    endpoint: str

    @field_validator("endpoint")
    @classmethod
    def _fits_protocol(cls, endpoint: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")
        if protocol == "sms" and PHONE_NUMBER.fullmatch(endpoint) is None:
            raise ValueError(f"{endpoint!r} is not a phone number in E.164 form (e.g. +15555550100)")
        if protocol == "https" and HTTPS_URL.fullmatch(endpoint) is None:
            raise ValueError(f"{endpoint!r} is not an https:// URL")
        return endpoint


class AlertSubscriptions(_Strict):
    """Subscribers other than e-mail, per topic (as alert_emails)."""

    emergency: tuple[AlertSubscription, ...] = ()
    alert: tuple[AlertSubscription, ...] = ()

    @field_validator("emergency", "alert")
    @classmethod
    def _each_once(cls, subscriptions: tuple[AlertSubscription, ...]) -> tuple[AlertSubscription, ...]:
        if len(set(subscriptions)) != len(subscriptions):
            raise ValueError("lists a subscription twice")
        return subscriptions


def unsubscribed_topics(emails: AlertEmails, subscriptions: AlertSubscriptions) -> list[str]:
    """The alert topics nobody is subscribed to."""
    return [topic for topic in ALERT_TOPICS if not getattr(emails, topic) and not getattr(subscriptions, topic)]


class ReservedConcurrency(_Strict):
    """Concurrent executions reserved for the functions that answer an incident, so that the protected function
    (or anything else in the account) throttling cannot starve them. A reservation is also a cap."""

    # Each watcher runs on its alarms' actions, their EventBridge events and the every-minute tick, each
    # invocation a few seconds: five leave room for a burst of alarms while the tick runs.
    health_watcher: int = Field(5, ge=1)
    performance_watcher: int = Field(5, ge=1)
    # An operator's call while a restore hands over to its next invocation (two overlap for a moment).
    recovery: int = Field(3, ge=1)
    # The account's concurrent executions quota in the region: Lambda refuses reservations that leave fewer than
    # UNRESERVED_CONCURRENCY_MINIMUM of it unreserved.
    account_limit: int = Field(DEFAULT_ACCOUNT_CONCURRENCY, ge=1)

    @property
    def total(self) -> int:
        """Everything the stack reserves, the retention function's one included."""
        return self.health_watcher + self.performance_watcher + self.recovery + RETENTION_CONCURRENCY

    @model_validator(mode="after")
    def _leaves_the_unreserved_minimum(self) -> Self:
        available = self.account_limit - UNRESERVED_CONCURRENCY_MINIMUM
        if self.total > available:
            raise ValueError(
                f"reserves {self.total} concurrent executions, but an account limit of {self.account_limit} leaves "
                f"at most {max(available, 0)} to reserve (Lambda keeps {UNRESERVED_CONCURRENCY_MINIMUM} unreserved); "
                "lower the reservations, or raise the quota and set account_limit to it"
            )
        return self


def _bucket_name(name: str) -> str:
    if re.fullmatch(BUCKET_NAME, name) is None or ".." in name:
        raise ValueError(f"{name!r} is not an S3 bucket name")
    return name


BucketName = Annotated[str, AfterValidator(_bucket_name)]


def _role_arn(arn: str) -> str:
    if IAM_ROLE_ARN.fullmatch(arn) is None:
        raise ValueError(f"{arn!r} is not the ARN of an IAM role (e.g. arn:aws:iam::123456789012:role/deployer)")
    return arn


def _role_arn_pattern(arn: str) -> str:
    if IAM_ROLE_ARN_PATTERN.fullmatch(arn) is None:
        raise ValueError(
            f"{arn!r} is not an IAM role ARN or pattern (e.g. arn:aws:iam::123456789012:role/apilados-pipeline-*)"
        )
    if not arn.split(":role/", 1)[1].strip("*?/"):
        raise ValueError(f"{arn!r} matches every role of the account; name the roles a restored function may use")
    return arn


RoleArn = Annotated[str, AfterValidator(_role_arn)]
RoleArnPattern = Annotated[str, AfterValidator(_role_arn_pattern)]


class BackupRetention(RetentionPolicy):
    """How many bucket snapshots survive pruning: the newest `keep_last`, plus the newest snapshot of each
    of the last `hourly` hours, `daily` days, `weekly` weeks and `monthly` months. The fields, their bounds
    and defaults are the backup function's own policy's."""

    model_config = _Strict.model_config


class BackupOptions(_Strict):
    """The backup function and the backup bucket."""

    retention: BackupRetention = BackupRetention()
    # Object copies a snapshot runs at once (S3 serves thousands of requests per second per prefix).
    copy_concurrency: int = Field(DEFAULT_COPY_CONCURRENCY, ge=1, le=MAX_COPY_CONCURRENCY)
    # A snapshot's manifest is a delta on its base's except every this many snapshots of a chain (1: always full).
    full_manifest_every: int = Field(DEFAULT_FULL_MANIFEST_EVERY, ge=1, le=MAX_FULL_MANIFEST_EVERY)
    # A snapshot whose base holds more objects than this runs as shards of about `fanout_shard_objects` keys each,
    # `fanout_max_concurrency` at once, in a Step Functions Distributed Map (stacks/constructs/snapshot_fanout.py).
    fanout_threshold_objects: int = Field(DEFAULT_FANOUT_THRESHOLD_OBJECTS, ge=MIN_FANOUT_THRESHOLD_OBJECTS)
    fanout_shard_objects: int = Field(DEFAULT_FANOUT_SHARD_OBJECTS, ge=MIN_FANOUT_SHARD_OBJECTS,
                                      le=MAX_FANOUT_SHARD_OBJECTS)
    fanout_max_concurrency: int = Field(DEFAULT_FANOUT_MAX_CONCURRENCY, ge=1, le=MAX_FANOUT_MAX_CONCURRENCY)
    # The backup function's memory (it also runs the fan-out's shards). A fanned-out snapshot's merge holds its
    # base's manifest and its own, compressed: about 300 bytes per object of the bucket at its peak
    # (embedded/bench_manifest_memory.py), so some 3 million objects in the default; 3,584 for 10 million.
    memory_mb: int = Field(DEFAULT_BACKUP_MEMORY_MB, ge=DEFAULT_BACKUP_MEMORY_MB, le=MAX_FUNCTION_MEMORY_MB)
    # The retention function's memory. A run holds what its lock extension is given and the referenced set: about
    # 673 bytes per stored body (embedded/bench_manifest_memory.py), so some 1.5 million bodies in the default;
    # 7,168 for 10 million.
    retention_memory_mb: int = Field(DEFAULT_RETENTION_MEMORY_MB, ge=DEFAULT_RETENTION_MEMORY_MB,
                                     le=MAX_FUNCTION_MEMORY_MB)
    # Also publish a version of the protected function at each function backup, as the seed did.
    publish_version: bool = False
    # Every object written to the backup bucket is locked this long: not even the controller can delete or
    # overwrite it before then. The retention function extends the lock of whatever a kept snapshot still needs.
    object_lock_retention_days: int = Field(DEFAULT_OBJECT_LOCK_DAYS, ge=1, le=MAX_OBJECT_LOCK_DAYS)
    # GOVERNANCE: a principal allowed s3:BypassGovernanceRetention could shorten a lock (the bucket's policy allows
    # it to no one). COMPLIANCE: no one can, not even the account's root user, until the lock ends: irreversible.
    object_lock_mode: ObjectLockMode = DEFAULT_OBJECT_LOCK_MODE
    # The backup key can never be disabled or scheduled for deletion (its key policy denies both to everyone):
    # that would make every backup unreadable. The one way out besides changing the key policy (which raises a
    # severity-1 alert, as do both actions, even refused) is this role, if set: a break-glass role kept for it.
    key_break_glass_role_arn: RoleArn | None = None
    # Pruning only hides an object behind a delete marker; its bytes are removed this many days later
    # (and never while its lock lasts).
    noncurrent_version_expiry_days: int = Field(30, ge=1)




class RecoveryOptions(_Strict):
    """The recovery function: where a restore may write, how long a plan stays confirmable, and the roles a
    recovery may hand to Lambda and CloudFormation."""

    # Buckets a bucket restore may target besides the data bucket (e.g. a scratch bucket for drills or for
    # inspecting a point in time); a restore anywhere else is refused, and IAM grants nothing else.
    restore_target_buckets: tuple[BucketName, ...] = ()
    # A plan (restore, recovery into a function, stack change set) can be confirmed this long after it was
    # made; then the operator plans again against the world as it is.
    plan_ttl_minutes: int = Field(DEFAULT_PLAN_TTL_SECONDS // 60, ge=MIN_PLAN_TTL_MINUTES, le=MAX_PLAN_TTL_MINUTES)
    # Execution roles a function recovered from a backup may be given (iam:PassRole to Lambda only): needed
    # to restore beside the original (a new function, and the drill's scratch function) or with a role other
    # than the function's current one. None (the default): the roles the pipeline stack creates,
    # `<pipeline_stack>-*` in this account, as CloudFormation names roles it creates without a RoleName.
    # An empty list: none.
    function_role_arns: tuple[RoleArnPattern, ...] | None = None
    # The pipeline stack's CloudFormation service role: a recovered stack's change set runs as it. Without
    # it, CloudFormation acts with the recovery function's own permissions, which cannot create arbitrary
    # resources.
    stack_role_arn: RoleArn | None = None
    # The recovery function's memory. Its checks of a snapshot (list_backups, verify_backup's sample, the
    # post-recovery data check) hold its manifest compressed and a hash per stored body: about 200 bytes per object
    # (embedded/bench_manifest_memory.py), some 5 million objects in the default; 2,560 for 10 million. A restore's
    # plan streams (about 100 bytes per object), but its safety snapshot reads the target's newest snapshot whole:
    # about 1,400 bytes per object of the target.
    memory_mb: int = Field(DEFAULT_RECOVERY_MEMORY_MB, ge=DEFAULT_RECOVERY_MEMORY_MB, le=MAX_FUNCTION_MEMORY_MB)

    @field_validator("restore_target_buckets", "function_role_arns")
    @classmethod
    def _each_once(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError("lists a value twice")
        return values


class ReplicationOptions(_Strict):
    """Replication of the data bucket to the replica bucket in the secondary region: the role S3 replicates with,
    and when the replication alarms (and `status`) call it unhealthy."""

    # The IAM role S3 assumes to replicate (it needs to read the data bucket's versions and write the replica's);
    # the recovery function may pass this role to S3 and no other. None: configure_replication refuses.
    role_arn: RoleArn | None = None
    # ReplicationLatency (seconds the replica is behind) above this alarms; default S3 RTC's 15 minutes.
    max_latency_seconds: int = Field(DEFAULT_REPLICATION_MAX_LATENCY_SECONDS, ge=60, le=24 * 3600)
    # OperationsPendingReplication above this alarms: what a region outage now would leave behind.
    max_pending_operations: int = Field(DEFAULT_REPLICATION_MAX_PENDING_OPERATIONS, ge=0)
    # How long the latency or the pending operations must stay above their threshold before the alarm fires
    # (S3 publishes the metrics every minute).
    alarm_window: AlarmWindow = AlarmWindow(period_minutes=5, evaluation_periods=3, datapoints_to_alarm=3)
    # The newest object versions `status` checks for their replication status, and on the replica.
    sample_size: int = Field(DEFAULT_REPLICATION_SAMPLE_SIZE, ge=1, le=MAX_REPLICATION_SAMPLE_SIZE)


# An AWS account id, as the default backup copy bucket's name embeds it.
ACCOUNT_ID_LENGTH = 12
MAX_BUCKET_NAME = 63


class StandbyOptions(_Strict):
    """The standby stack in secondary_region: where the backup bucket's replication writes."""

    # The bucket in secondary_region that the backup bucket replicates to. Named in settings so that both stacks
    # name it without a cross-region reference. None: "<standby_stack in lower case>-backups-<account id>-
    # <secondary_region>" (Settings.backup_copy_bucket).
    backup_copy_bucket: BucketName | None = None


SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")


def _topic_arn(arn: str) -> str:
    if SNS_TOPIC_ARN.fullmatch(arn) is None:
        raise ValueError(f"{arn!r} is not the ARN of an SNS topic (e.g. arn:aws:sns:us-east-1:123456789012:notices)")
    return arn


class FailoverOptions(_Strict):
    """Failing over to the secondary region and back (drcore.region): what a failover may leave behind, when the
    primary is called down, whether the controller may fail over by itself, and where stakeholders hear of it."""

    # Objects pending replication or newer than the replica's that a failover may leave behind without
    # `force` and a reason (default 0: any data at risk needs an operator's explicit decision).
    max_data_at_risk: int = Field(DEFAULT_FAILOVER_MAX_DATA_AT_RISK, ge=0)
    # The region watcher calls the primary down after it has been unhealthy this long...
    detect_minutes: int = Field(DEFAULT_FAILOVER_DETECT_MINUTES, ge=1, le=24 * 60)
    # ...and, only when automatic, confirms its ready failover plan this long after (if the safety rules pass).
    automatic: bool = False
    auto_after_minutes: int = Field(DEFAULT_FAILOVER_AUTO_AFTER_MINUTES, ge=1, le=24 * 60)
    # The runbook's external stakeholder notice is published here on a failover (None: not sent).
    stakeholder_topic_arn: Annotated[str, AfterValidator(_topic_arn)] | None = None
    # The switch gate's queue (stacks/constructs/switch_gate.py): one of this name in each region, so that the
    # recovery function of either region addresses both without a cross-region reference.
    switch_gate_queue: str = Field("apilados-dr-switch-gate", pattern=QUEUE_NAME)
    # How long a gate's last, empty receive waits for an event S3 is still delivering.
    switch_gate_settle_seconds: int = Field(DEFAULT_SWITCH_GATE_SETTLE_SECONDS, ge=0, le=20)
    # How long a failover waits, before the secondary processes, for the primary's uploads from before its stop to
    # replicate (0: not at all); what is still replicating then may be processed in both regions, and is reported.
    replication_wait_seconds: int = Field(DEFAULT_FAILOVER_REPLICATION_WAIT_SECONDS, ge=0,
                                          le=MAX_FAILOVER_REPLICATION_WAIT_SECONDS)


# EventBridge schedule expressions: rate(N unit) or cron() with its six fields.
SCHEDULE_EXPRESSION = re.compile(r"rate\(([1-9]\d*) (minute|minutes|hour|hours|day|days)\)|cron\((\S+( \S+){5})\)")


def _schedule_expression(expression: str) -> str:
    match = SCHEDULE_EXPRESSION.fullmatch(expression)
    if match is None:
        raise ValueError(f"{expression!r} is not an EventBridge schedule expression: rate(7 days) or "
                         "cron(minutes hours day-of-month month day-of-week year), e.g. cron(0 6 ? * MON *)")
    if match.group(1) is not None and (match.group(1) == "1") != (not match.group(2).endswith("s")):
        raise ValueError(f"{expression!r}: EventBridge wants a singular unit for 1 and a plural one otherwise")
    return expression


class DrillOptions(_Strict):
    """The drill function: when it runs, and how long its scratch copies are kept."""

    # Drills run on this schedule (and whenever an operator invokes the drill function); the runbook's
    # checklist ends with "next DR test scheduled". Default: Mondays 06:00 UTC.
    schedule: Annotated[str, AfterValidator(_schedule_expression)] = "cron(0 6 ? * MON *)"
    # False keeps the schedule's rule but disabled: drills run only when invoked.
    scheduled: bool = True
    # The scratch bucket's restored copies of production data expire this many days after a drill.
    scratch_expiry_days: int = Field(7, ge=1, le=90)


def _principal_arn(arn: str) -> str:
    if IAM_PRINCIPAL_ARN.fullmatch(arn) is None:
        raise ValueError(
            f"{arn!r} is not the ARN of an IAM role, an IAM user or an account root "
            "(e.g. arn:aws:iam::123456789012:role/dr-operator)"
        )
    return arn


PrincipalArn = Annotated[str, AfterValidator(_principal_arn)]


class Settings(_Strict):
    """Everything the controller stack needs to know, from cdk.json's "dr" context."""

    controller_stack: str = Field("ApiladosDrController", pattern=STACK_NAME)
    # The standby controller in secondary_region (stacks/standby_stack.py), deployed before the controller stack.
    standby_stack: str = Field("ApiladosDrStandby", pattern=STACK_NAME)
    # The state table, a global table with a replica in secondary_region: named, so that the standby stack
    # addresses its replica without a cross-region reference.
    state_table: str = Field("apilados-dr-state", pattern=TABLE_NAME)
    protected_function: str = Field("apilados-pipeline-ingest", pattern=LAMBDA_NAME)
    live_alias: str = Field(DEFAULT_LIVE_ALIAS, pattern=ALIAS_NAME, max_length=128)
    stable_alias: str = Field(DEFAULT_STABLE_ALIAS, pattern=ALIAS_NAME, max_length=128)
    data_bucket: str = Field("apilados-production-data", pattern=BUCKET_NAME)
    replica_bucket: str = Field("apilados-production-data-replica", pattern=BUCKET_NAME)
    pipeline_stack: str = Field("ApiladosPipelineStack", pattern=STACK_NAME)
    primary_region: str = Field("us-east-1", pattern=REGION)
    secondary_region: str = Field("us-west-2", pattern=REGION)
    recovery_objectives: RecoveryObjectives = RecoveryObjectives()
    alarms: LiveAlarms = LiveAlarms()
    # A released version becomes STABLE after serving LIVE this long with every alarm OK (seed: 30 minutes)...
    bake_minutes: int = Field(DEFAULT_BAKE_SECONDS // 60, ge=0)
    # ...and only if it served at least this many invocations: an idle bake proves nothing.
    min_bake_invocations: int = Field(DEFAULT_MIN_BAKE_INVOCATIONS, ge=0)
    # Roll back when LIVE's p99 Duration exceeds STABLE's recorded baseline by this factor...
    regression_factor: float = Field(DEFAULT_REGRESSION_FACTOR, gt=1.0)
    # ...measured over at least this many invocations.
    regression_min_invocations: int = Field(DEFAULT_REGRESSION_MIN_INVOCATIONS, ge=1)
    # A rollback whose bookkeeping is still unfinished after this long is taken to have crashed and completed
    # by the next tick.
    pending_repair_seconds: int = Field(DEFAULT_PENDING_REPAIR_SECONDS, ge=0)
    # The health probe waits this long for LIVE's answer, and counts none by then as a failure. At most the
    # watcher's timeout less the time its tick keeps for reconciling (drcore.core.controller_settings); each tick
    # cuts it further to what its invocation has left.
    health_probe_timeout_seconds: int = Field(
        DEFAULT_HEALTH_PROBE_TIMEOUT_SECONDS, ge=1, le=MAX_HEALTH_PROBE_TIMEOUT_SECONDS
    )
    metrics_namespace: str = Field(DEFAULT_METRICS_NAMESPACE, pattern=METRICS_NAMESPACE)
    log_retention_days: LogRetentionDays = 90
    # Declared before alert_emails, whose validator reads them: deploying with a topic nobody hears must be
    # said out loud (acknowledged) or fixed with a subscriber.
    alerts_acknowledged_unsubscribed: bool = False
    alert_subscriptions: AlertSubscriptions = AlertSubscriptions()
    alert_emails: AlertEmails = AlertEmails()
    reserved_concurrency: ReservedConcurrency = ReservedConcurrency()
    backup: BackupOptions = BackupOptions()
    # Who may invoke the recovery function (roll back, restore, fail over), through its resource policy.
    # Identities of the function's own account whose IAM policies allow lambda:InvokeFunction on it can
    # invoke it too: a resource policy adds to those, it cannot take them away.
    operator_principals: tuple[PrincipalArn, ...] = ()
    recovery: RecoveryOptions = RecoveryOptions()
    replication: ReplicationOptions = ReplicationOptions()
    failover: FailoverOptions = FailoverOptions()
    drill: DrillOptions = DrillOptions()
    standby: StandbyOptions = StandbyOptions()

    @field_validator("operator_principals")
    @classmethod
    def _principals_once(cls, principals: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(principals)) != len(principals):
            raise ValueError("lists a principal twice")
        return principals

    @field_validator("standby_stack")
    @classmethod
    def _stacks_differ(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("controller_stack"):
            raise ValueError("must differ from controller_stack")
        return value

    @field_validator("protected_function")
    @classmethod
    def _controller_outside_restore_names(cls, value: str, info: ValidationInfo) -> str:
        # The recovery function may create and rewrite functions named "<protected_function>-<suffix>"
        # (restores beside the original); the controller's own functions, named after its stacks, must not be.
        for setting in ("controller_stack", "standby_stack"):
            stack = info.data.get(setting)
            if stack is not None and stack.startswith(f"{value}-"):
                raise ValueError(
                    f"{setting} {stack!r} starts with {value + '-'!r}, the names of functions a recovery may "
                    "create and rewrite; the controller's functions, named after its stacks, would be among them"
                )
        return value

    @field_validator("alert_emails")
    @classmethod
    def _someone_hears_each_topic(cls, emails: AlertEmails, info: ValidationInfo) -> AlertEmails:
        if not {"alert_subscriptions", "alerts_acknowledged_unsubscribed"} <= info.data.keys():
            return emails  # one of them is invalid, and reported as such
        unheard = unsubscribed_topics(emails, info.data["alert_subscriptions"])
        if unheard and not info.data["alerts_acknowledged_unsubscribed"]:
            topics = " and ".join(f"the {topic} topic ({ALERTED_ON[topic]})" for topic in unheard)
            raise ValueError(
                f"nobody is subscribed to {topics}, so those alerts would reach no one: list addresses in "
                f"{' and '.join(f'dr.alert_emails.{topic}' for topic in unheard)} (or SMS/HTTPS endpoints in "
                "dr.alert_subscriptions), or set dr.alerts_acknowledged_unsubscribed to true to deploy so anyway"
            )
        return emails

    @field_validator("stable_alias")
    @classmethod
    def _aliases_differ(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("live_alias"):
            raise ValueError("must differ from live_alias")
        return value

    @field_validator("replica_bucket")
    @classmethod
    def _buckets_differ(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("data_bucket"):
            raise ValueError("must differ from data_bucket")
        return value

    @field_validator("pipeline_stack")
    @classmethod
    def _room_for_recovery_stack(cls, value: str) -> str:
        if len(value) + len(RECOVERY_STACK_SUFFIX) > MAX_STACK_NAME:
            raise ValueError(
                f"must leave room for the {RECOVERY_STACK_SUFFIX!r} suffix of a recovered stack "
                f"(at most {MAX_STACK_NAME - len(RECOVERY_STACK_SUFFIX)} characters)"
            )
        return value

    @field_validator("recovery")
    @classmethod
    def _controller_roles_not_passable(cls, recovery: RecoveryOptions, info: ValidationInfo) -> RecoveryOptions:
        # The default function_role_arns lets a recovered function be given any role named "<pipeline_stack>-*";
        # the controller's own roles, named after its stack, must not be among them.
        controller, pipeline = info.data.get("controller_stack"), info.data.get("pipeline_stack")
        if recovery.function_role_arns is None and controller is not None and pipeline is not None:
            if controller == pipeline or controller.startswith(f"{pipeline}-"):
                raise ValueError(
                    f"function_role_arns is not set, so a recovered function may be given any role named "
                    f"'{pipeline}-*'; the controller's own roles, named after controller_stack {controller!r}, "
                    "would be among them: list the execution roles in function_role_arns, or rename the controller"
                )
        return recovery

    @field_validator("secondary_region")
    @classmethod
    def _regions_differ(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("primary_region"):
            raise ValueError("must differ from primary_region")
        return value

    @model_validator(mode="after")
    def _backup_copy_named(self) -> Self:
        if self.standby.backup_copy_bucket is None:
            derived = len(self.backup_copy_bucket(account="0" * ACCOUNT_ID_LENGTH))
            if derived > MAX_BUCKET_NAME or re.fullmatch(BUCKET_NAME, self.standby_stack.lower()) is None:
                raise ValueError(
                    f"standby.backup_copy_bucket: the default name after standby_stack {self.standby_stack!r} "
                    f"would have {derived} characters (S3 allows {MAX_BUCKET_NAME}); name the bucket"
                )
        return self

    def backup_copy_bucket(self, account: str) -> str:
        """The backup bucket's copy in secondary_region, where the backups replicate to; `account` is the
        deploying account (a stack's `account`, which both stacks resolve alike)."""
        named = self.standby.backup_copy_bucket
        return named or f"{self.standby_stack.lower()}-backups-{account}-{self.secondary_region}"

    def backup_copy_key_alias(self) -> str:
        """The alias of the copy's KMS key, by which the backup bucket's replication names it (an alias ARN
        needs no reference to the key's id, which only the standby stack knows)."""
        return f"alias/{self.standby_stack}-backup-copy"

    @field_validator("metrics_namespace")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("AWS/"):
            raise ValueError("the AWS/ prefix is reserved for AWS services")
        return value

    @property
    def settle_seconds(self) -> int:
        """After a rollback, alarms keep evaluating the rolled-back version's datapoints for their whole
        window: an ALARM within it is not blamed on STABLE."""
        return self.alarms.longest_window_minutes * 60

    @classmethod
    def from_context(cls, context: Any) -> Settings:
        """Validate the "dr" context value (None when cdk.json has none: every default applies)."""
        try:
            return cls.model_validate({} if context is None else context)
        except ValidationError as error:
            problems = "\n".join(
                f"  {'.'.join([CONTEXT_KEY, *(str(part) for part in issue['loc'])])}: {issue['msg']}"
                for issue in error.errors()
            )
            raise InvalidSettings(f"invalid cdk.json context:\n{problems}") from None

