"""A severity-1 alert when anything could take the backups away: the backup key disabled, scheduled for deletion
or given another policy; the backup bucket's policy, Object Lock, versioning or lifecycle changed.

No role of the stack can do any of these; an administrator can (or a stolen administrator's credential), and the
break-glass of the key's and the bucket's protections is to change their policies first. Each such call, made or
refused (a refused try at destroying the key says as much), is an "AWS API Call via CloudTrail" management event
that EventBridge matches here and sends, with the fields of the runbook's alert template, to the emergency topic
(severity 1 goes there, DESIGN.md section 4): who, what, when, from where, refused or not, and what to do.
CloudTrail must log management events in the region (preflight checks it): without a trail, EventBridge sees none
of these calls.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from stacks.constructs.alerting import Alerting
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.controller_functions import MAX_EVENT_AGE, RETRY_ATTEMPTS, ControllerFunctions
from stacks.settings import Settings

CLOUDTRAIL_API_CALL = "AWS API Call via CloudTrail"
# The calls that can make every backup unreadable or let them be destroyed (CloudTrail's event names).
KEY_CHANGES = ("DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy")
# CloudTrail names PutBucketLifecycleConfiguration "PutBucketLifecycle": a lifecycle rule can expire current
# versions, which places delete markers, and remove noncurrent ones once unlocked.
BUCKET_CHANGES = ("PutBucketPolicy", "DeleteBucketPolicy", "PutObjectLockConfiguration", "PutBucketVersioning",
                  "PutBucketLifecycle", "DeleteBucketLifecycle")


def _alert(settings: Settings, what: str, target: str, impact: str, next_steps: str) -> events.RuleTargetInput:
    """The runbook's internal alert template (drcore.aws.alerts), as a JSON document filled in from the CloudTrail
    event: what was called, by whom, when, from where, on what, and whether it was refused."""
    call = events.EventField.from_path("$.detail.eventName")
    who = events.EventField.from_path("$.detail.userIdentity.arn")
    when = events.EventField.from_path("$.detail.eventTime")
    return events.RuleTargetInput.from_object({
        "subject": f"[SEVERITY 1] Apilados Pipeline Incident - {what} changed: {call} by {who}",
        "time": when,
        "severity": 1,
        "impact": impact,
        "affected_components": [target, settings.protected_function],
        "current_status": f"{call} called by {who}",
        "actions_taken": "none: the controller does not undo changes to its own protection",
        "next_steps": next_steps,
        "event_type": "backup_protection_changed",
        "change": {"call": call, "by": who, "at": when, "from": events.EventField.from_path("$.detail.sourceIPAddress"),
                   "refused_with": events.EventField.from_path("$.detail.errorCode"),
                   "request": events.EventField.from_path("$.detail.requestParameters"),
                   "account": events.EventField.account, "region": events.EventField.region},
    })


class BackupGuard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, backup_bucket: BackupBucket,
                 alerting: Alerting, functions: ControllerFunctions) -> None:
        super().__init__(scope, construct_id)
        self._topic = alerting.emergency_topic
        self._failed_events = functions.failed_events
        key_arn, key_id = backup_bucket.key.key_arn, backup_bucket.key.key_id
        bucket = backup_bucket.bucket.bucket_name
        events.Rule(
            self,
            "BackupKeyChanged",
            description=f"Severity 1: the key of {settings.protected_function}'s backups disabled, scheduled for "
            "deletion or given another policy (or a try at it)",
            event_pattern=events.EventPattern(
                source=["aws.kms"],
                detail_type=[CLOUDTRAIL_API_CALL],
                # The caller names the key by id, ARN or alias; CloudTrail's `resources` names it by ARN whatever
                # the caller gave (EventBridge matches a field of any object of an array).
                detail={"eventSource": ["kms.amazonaws.com"], "eventName": list(KEY_CHANGES),
                        "$or": [{"resources": {"ARN": [key_arn]}},
                                {"requestParameters": {"keyId": [key_id, key_arn]}}]},
            ),
            targets=[self._target(_alert(
                settings, "Backup key", f"KMS key {key_arn}",
                "a disabled key decrypts no backup, and a key deleted never again: every backup, restore and "
                "drill fails",
                "confirm with who called it; if unintended, CancelKeyDeletion and EnableKey at once, restore the "
                "key policy from the controller stack (cdk deploy), and rotate the caller's credentials"))],
        )
        events.Rule(
            self,
            "BackupBucketProtectionChanged",
            description=f"Severity 1: the policy, Object Lock, versioning or lifecycle of the bucket of "
            f"{settings.protected_function}'s backups changed (or a try at it)",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=[CLOUDTRAIL_API_CALL],
                detail={"eventSource": ["s3.amazonaws.com"], "eventName": list(BUCKET_CHANGES),
                        "requestParameters": {"bucketName": [bucket]}},
            ),
            targets=[self._target(_alert(
                settings, "Backup bucket protection", f"S3 bucket {bucket}",
                "the bucket's policy keeps every role from overwriting, hiding or deleting a backup; Object Lock, "
                "versioning and the lifecycle keep what is stored: a change can let backups be destroyed",
                "confirm with who called it; if unintended, restore the bucket's policy, Object Lock, versioning and "
                "lifecycle from the controller stack (cdk deploy), run verify_backup on the newest snapshots, and "
                "rotate the caller's credentials"))],
        )

    def _target(self, message: events.RuleTargetInput) -> targets.SnsTopic:
        return targets.SnsTopic(self._topic, message=message, dead_letter_queue=self._failed_events,
                                retry_attempts=RETRY_ATTEMPTS, max_event_age=MAX_EVENT_AGE)
