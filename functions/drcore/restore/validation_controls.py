"""The post-recovery check of the security controls this stack owns (drcore.restore.validation), as
stacks/constructs/backup_bucket.py and alerting.py configure them:

- the backup bucket: versioning Enabled; Object Lock enabled with the configured default retention (mode and
  days); default encryption SSE-KMS with the backup key; the bucket policy's create-only statement (a Deny of
  s3:PutObject without `If-None-Match`, which keeps every backup write-once);
- the alert and emergency topics: encrypted with a KMS key.

Each control answers on its own; one whose read is refused or fails is `unknown`, not passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import error_code
from drcore.restore.validation import FAILED, OK, UNKNOWN, CheckResult, Status

# The backup bucket policy's statement that makes backups write-once (stacks/constructs/backup_bucket.py).
CREATE_ONLY_STATEMENT_SID = "BackupsAreWrittenOnce"
# What S3 answers for a bucket without the configuration asked for.
_NOT_CONFIGURED = {"ObjectLockConfigurationNotFoundError", "ServerSideEncryptionConfigurationNotFoundError",
                   "NoSuchBucketPolicy"}


class ValidationEnvVar(StrEnum):
    """What the validation compares the controls with; set on the recovery function by the stack
    (stacks/constructs/validation_grants.py) from what it configured."""

    BACKUP_KEY_ARN = "DR_BACKUP_KEY_ARN"
    OBJECT_LOCK_MODE = "DR_OBJECT_LOCK_MODE"  # the same variable (and value) the retention function reads
    OBJECT_LOCK_DAYS = "DR_OBJECT_LOCK_DAYS"
    SAMPLE_SIZE = "DR_VALIDATION_SAMPLE_SIZE"  # objects of the newest snapshot read back


@dataclass(frozen=True)
class ValidationSettings:
    backup_key_arn: str | None = None  # None: the key is not compared, only that it is a KMS key
    object_lock_mode: str | None = None  # None: any mode
    object_lock_days: int | None = None
    sample_size: int = 50

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ValidationSettings:
        days = environ.get(ValidationEnvVar.OBJECT_LOCK_DAYS, "")
        sample = environ.get(ValidationEnvVar.SAMPLE_SIZE, "")
        return cls(backup_key_arn=environ.get(ValidationEnvVar.BACKUP_KEY_ARN) or None,
                   object_lock_mode=environ.get(ValidationEnvVar.OBJECT_LOCK_MODE) or None,
                   object_lock_days=int(days) if days.isdigit() else None,
                   sample_size=max(1, min(1000, int(sample))) if sample.isdigit() else 50)


Control = tuple[Status, str]


class SecurityControlsCheck:
    name = "security_controls"

    def __init__(self, s3_client: Any, sns_client: Any, backup_bucket: str, topic_arns: tuple[str, ...],
                 settings: ValidationSettings) -> None:
        self._s3 = s3_client
        self._sns = sns_client
        self._bucket = backup_bucket
        self._topics = topic_arns
        self._settings = settings

    def run(self, active_region: str) -> CheckResult:
        controls: dict[str, Callable[[], Control]] = {
            "backup_versioning": self._versioning, "backup_object_lock": self._object_lock,
            "backup_encryption": self._encryption, "backup_create_only_policy": self._create_only_policy,
            **{f"topic_encryption:{arn.rsplit(':', 1)[-1]}": partial(self._topic, arn) for arn in self._topics}}
        answers = {name: _answered(control) for name, control in controls.items()}
        facts = {"controls": {name: {"status": status, "detail": detail} for name, (status, detail) in answers.items()}}
        failed = [f"{name}: {detail}" for name, (status, detail) in answers.items() if status == FAILED]
        unknown = [f"{name}: {detail}" for name, (status, detail) in answers.items() if status == UNKNOWN]
        if failed:
            return CheckResult(self.name, FAILED, "; ".join(failed + unknown) + " (redeploy the controller stack "
                               "to restore what it configures)", facts)
        if unknown:
            return CheckResult(self.name, UNKNOWN, "; ".join(unknown), facts)
        return CheckResult(self.name, OK, f"{len(answers)} controls in place", facts)

    def _versioning(self) -> Control:
        status = self._s3.get_bucket_versioning(Bucket=self._bucket).get("Status", "never enabled")
        return (OK, "Enabled") if status == "Enabled" else (FAILED, f"versioning of {self._bucket} is {status}")

    def _object_lock(self) -> Control:
        configuration = self._s3.get_object_lock_configuration(Bucket=self._bucket)["ObjectLockConfiguration"]
        if configuration.get("ObjectLockEnabled") != "Enabled":
            return FAILED, f"Object Lock is not enabled on {self._bucket}"
        retention = configuration.get("Rule", {}).get("DefaultRetention", {})
        mode, days = retention.get("Mode"), retention.get("Days")
        if not mode:
            return FAILED, f"{self._bucket} has no default retention: new backups are not locked"
        expected_mode, expected_days = self._settings.object_lock_mode, self._settings.object_lock_days
        if expected_mode and mode != expected_mode:
            return FAILED, f"default retention mode is {mode}, configured {expected_mode}"
        if expected_days and days != expected_days:
            held = days or retention.get("Years", 0) * 365
            return FAILED, f"default retention is {held} days, configured {expected_days}"
        return OK, f"{mode}, {days} days"

    def _encryption(self) -> Control:
        rules = self._s3.get_bucket_encryption(Bucket=self._bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        default = (rules[0] if rules else {}).get("ApplyServerSideEncryptionByDefault", {})
        algorithm, key = default.get("SSEAlgorithm"), default.get("KMSMasterKeyID", "")
        if algorithm not in ("aws:kms", "aws:kms:dsse"):
            return FAILED, f"default encryption is {algorithm}, not SSE-KMS with the backup key"
        expected = self._settings.backup_key_arn
        if expected and not _same_key(key, expected):
            return FAILED, f"default encryption uses key {key or 'aws/s3'}, not the backup key {expected}"
        return OK, f"SSE-KMS with {key}" + ("" if expected else " (the backup key is not configured to compare)")

    def _create_only_policy(self) -> Control:
        policy = json.loads(self._s3.get_bucket_policy(Bucket=self._bucket)["Policy"])
        for statement in policy.get("Statement", []):
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            condition = statement.get("Condition", {}).get("Null", {})
            if statement.get("Effect") == "Deny" and "s3:PutObject" in actions \
                    and str(condition.get("s3:if-none-match", "")).lower() == "true":
                return OK, f"statement {statement.get('Sid', '(no sid)')} denies writes that could overwrite"
        return FAILED, (f"the bucket policy of {self._bucket} lacks its create-only statement "
                        f"({CREATE_ONLY_STATEMENT_SID}): a backup could be overwritten by a new version")

    def _topic(self, arn: str) -> Control:
        key = self._sns.get_topic_attributes(TopicArn=arn)["Attributes"].get("KmsMasterKeyId")
        return (OK, f"encrypted with {key}") if key else (FAILED, f"topic {arn} is not encrypted")


def _same_key(configured: str, expected: str) -> bool:
    """A key named by ARN, by id or by alias ARN: the same when the ids (the ARN's last part) agree."""
    return configured == expected or configured.rsplit("/", 1)[-1] == expected.rsplit("/", 1)[-1]


def _answered(control: Callable[[], Control]) -> Control:
    try:
        return control()
    except ClientError as error:
        if error_code(error) in _NOT_CONFIGURED:
            return FAILED, f"not configured ({error_code(error)})"
        return UNKNOWN, f"could not read: {error_code(error)}"
