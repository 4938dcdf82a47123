"""What keeps the backups readable and stored whatever an administrator does: the backup key's policy (no one
disables it or schedules its deletion, but a break-glass role when one is set) and a severity-1 alert on every
change, or try, that could take the backups away (stacks/constructs/backup_guard.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.events.models import EventPattern

from stacks.constructs.backup_guard import BUCKET_CHANGES, KEY_CHANGES
from tests.infra.support import Synthesized, as_list, failed_events_queue, logical_id, rendered, synthesize

BACKUP_KEY = "Encrypts the backups of apilados-pipeline-ingest"
ACCOUNT = "${AWS::AccountId}"
BREAK_GLASS = "arn:aws:iam::123456789012:role/dr-break-glass"


def _key_policy(synth: Synthesized) -> list[dict[str, Any]]:
    key = logical_id(synth.resources, "AWS::KMS::Key", Description=BACKUP_KEY)
    return rendered(synth.resources[key]["Properties"]["KeyPolicy"]["Statement"])


def _guard_rules(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {name: resource["Properties"] for name, resource in synth.resources.items()
            if resource["Type"] == "AWS::Events::Rule" and name.startswith("BackupGuard")}


def _rule(synth: Synthesized, source: str) -> dict[str, Any]:
    (rule,) = [rule for rule in _guard_rules(synth).values() if rule["EventPattern"]["source"] == [source]]
    return rule


def test_the_account_administers_the_backup_key_but_no_one_disables_or_deletes_it(synth: Synthesized):
    # Given the backup key's policy
    statements = {statement["Sid"]: statement for statement in _key_policy(synth)}
    # Then the account administers it and its IAM policies decide who uses it, disabling and deleting aside: no kms:*
    assert statements["AccountAdministersAndIamDecidesUse"] == {
        "Sid": "AccountAdministersAndIamDecidesUse", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "NotAction": ["kms:ScheduleKeyDeletion", "kms:DisableKey"], "Resource": "*"}
    assert not any(statement.get("Action") == "kms:*" for statement in statements.values())
    # And no one at all, the root user included, may disable it or schedule its deletion
    assert statements["NoOneDestroysTheBackupKey"] == {
        "Sid": "NoOneDestroysTheBackupKey", "Effect": "Deny", "Principal": {"AWS": "*"},
        "Action": ["kms:DisableKey", "kms:ScheduleKeyDeletion"], "Resource": "*"}
    # And the only other principal is CloudWatch Logs, encrypting the function's log exports
    assert set(statements) == {"AccountAdministersAndIamDecidesUse", "NoOneDestroysTheBackupKey",
                               "LogsExportEncryptsWithBackupKey"}


@pytest.fixture(scope="module")
def with_break_glass() -> Synthesized:
    return synthesize({"dr": {"alerts_acknowledged_unsubscribed": True,
                              "backup": {"key_break_glass_role_arn": BREAK_GLASS}}})


def test_a_break_glass_role_is_the_one_principal_that_may_disable_or_delete_the_key(with_break_glass: Synthesized):
    # Given a break-glass role in cdk.json / Then the deny spares it, and it alone is allowed both
    statements = {statement["Sid"]: statement for statement in _key_policy(with_break_glass)}
    assert statements["NoOneDestroysTheBackupKey"]["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": BREAK_GLASS}}
    assert statements["BreakGlassRoleMayDestroyTheBackupKey"] == {
        "Sid": "BreakGlassRoleMayDestroyTheBackupKey", "Effect": "Allow", "Principal": {"AWS": BREAK_GLASS},
        "Action": ["kms:DisableKey", "kms:ScheduleKeyDeletion"], "Resource": "*"}


def test_changes_to_the_backup_key_and_bucket_raise_a_severity_1_alert(synth: Synthesized):
    # Given the two guard rules
    resources = synth.resources
    emergency = logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
    queue = failed_events_queue(resources)
    assert len(_guard_rules(synth)) == 2
    for source, source_of_calls, changes in (("aws.kms", "kms.amazonaws.com", KEY_CHANGES),
                                             ("aws.s3", "s3.amazonaws.com", BUCKET_CHANGES)):
        rule = _rule(synth, source)
        # Then each matches CloudTrail's record of those calls, refused ones included (no errorCode filter)
        pattern = rule["EventPattern"]
        assert pattern["detail-type"] == ["AWS API Call via CloudTrail"] and "errorCode" not in pattern["detail"]
        assert pattern["detail"]["eventSource"] == [source_of_calls] and pattern["detail"]["eventName"] == list(changes)
        # And sends to the emergency topic, retrying and then dead-lettering a failed delivery
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Ref": emergency}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 900, "MaximumRetryAttempts": 2}
        # And the alert names what changed, who changed it, when, from where, and whether it was refused
        transformer = target["InputTransformer"]
        assert {"detail-eventName": "$.detail.eventName", "detail-userIdentity-arn": "$.detail.userIdentity.arn",
                "detail-eventTime": "$.detail.eventTime", "detail-sourceIPAddress": "$.detail.sourceIPAddress",
                "detail-errorCode": "$.detail.errorCode"}.items() <= transformer["InputPathsMap"].items()
        template = json.dumps(rendered(transformer["InputTemplate"]))
        assert "[SEVERITY 1] Apilados Pipeline Incident - " in template
        assert all(f"<{name}>" in template for name in transformer["InputPathsMap"])
    assert set(KEY_CHANGES) == {"DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy"}
    assert {"PutBucketPolicy", "DeleteBucketPolicy", "PutObjectLockConfiguration", "PutBucketVersioning"} <= set(
        BUCKET_CHANGES)


def test_eventbridge_may_publish_to_the_encrypted_emergency_topic(synth: Synthesized):
    # Given the topics' key and the emergency topic's policy
    topic_key = logical_id(synth.resources, "AWS::KMS::Key",
                           Description="Encrypts the DR controller's alert and emergency topics")
    key_statements = synth.resources[topic_key]["Properties"]["KeyPolicy"]["Statement"]
    # Then EventBridge may encrypt with the key (the SNS target grants it), and publish to the topic
    assert any("events.amazonaws.com" in as_list(statement.get("Principal", {}).get("Service", []))
               and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(statement["Action"]) for statement in key_statements)
    emergency = logical_id(synth.resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
    policies = [r["Properties"] for r in synth.resources.values() if r["Type"] == "AWS::SNS::TopicPolicy"
                and {"Ref": emergency} in r["Properties"]["Topics"]]
    assert any(statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sns:Publish"
               for policy in policies for statement in policy["PolicyDocument"]["Statement"])


KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "apiladosdrcontroller-backupbucket-1a2b3c"


def _concrete(pattern: Any, synth: Synthesized) -> Any:
    """The rule's pattern with the key's and the bucket's deployed names in place of their references."""
    key = logical_id(synth.resources, "AWS::KMS::Key", Description=BACKUP_KEY)
    bucket = logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    names = {json.dumps({"Fn::GetAtt": [key, "Arn"]}): KEY_ARN, json.dumps({"Ref": key}): KEY_ID,
             json.dumps({"Ref": bucket}): BUCKET}
    if isinstance(pattern, dict):
        return names.get(json.dumps(pattern)) or {k: _concrete(v, synth) for k, v in pattern.items()}
    if isinstance(pattern, list):
        return [_concrete(item, synth) for item in pattern]
    return pattern


def _call(source: str, name: str, parameters: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"eventSource": f"{source.split('.')[1]}.amazonaws.com", "eventName": name,
                              "requestParameters": parameters,
                              "userIdentity": {"arn": "arn:aws:sts::123456789012:assumed-role/admin/mallory"}}
    if error:
        detail["errorCode"] = error
    return {"source": source, "detail-type": "AWS API Call via CloudTrail", "detail": detail}


@pytest.mark.parametrize(("source", "event", "alerts"), [
    ("aws.kms", _call("aws.kms", "ScheduleKeyDeletion", {"keyId": KEY_ID, "pendingWindowInDays": 7}), True),
    ("aws.kms", _call("aws.kms", "DisableKey", {"keyId": KEY_ARN}, error="AccessDeniedException"), True),
    ("aws.kms", _call("aws.kms", "PutKeyPolicy", {"keyId": KEY_ID, "policyName": "default"}), True),
    ("aws.kms", _call("aws.kms", "ScheduleKeyDeletion", {"keyId": "another-key"}), False),
    ("aws.kms", _call("aws.kms", "EnableKeyRotation", {"keyId": KEY_ID}), False),
    ("aws.s3", _call("aws.s3", "PutBucketPolicy", {"bucketName": BUCKET}), True),
    ("aws.s3", _call("aws.s3", "PutBucketVersioning", {"bucketName": BUCKET}, error="AccessDenied"), True),
    ("aws.s3", _call("aws.s3", "PutObjectLockConfiguration", {"bucketName": BUCKET}), True),
    ("aws.s3", _call("aws.s3", "DeleteBucketPolicy", {"bucketName": BUCKET}), True),
    ("aws.s3", _call("aws.s3", "PutBucketPolicy", {"bucketName": "apilados-production-data"}), False),
    ("aws.s3", _call("aws.s3", "GetBucketPolicy", {"bucketName": BUCKET}), False),
])
def test_the_rules_match_the_calls_that_change_the_protection_refused_or_not(synth: Synthesized, source: str,
                                                                             event: dict[str, Any], alerts: bool):
    # Given CloudTrail's record of a call, When it is matched against the rule for its service (moto's
    # EventBridge pattern matcher: it does not look into arrays of objects, so the key is named here as callers
    # name it, in requestParameters) / Then only a change to the backup key or bucket alerts
    pattern = _concrete(_rule(synth, source)["EventPattern"], synth)
    assert EventPattern(json.dumps(pattern), pattern).matches_event(event) is alerts
