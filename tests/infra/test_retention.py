"""The retention function: its schedule, its role (the only one that may hide a backup), its environment, and
the backup bucket's policy that keeps every other principal from hiding or destroying a backup."""

from __future__ import annotations

import pytest

from drcore.core.config import BackupSettings, RetentionEnvVar, RetentionSettings
from tests.infra.support import Synthesized, as_list, failed_events_queue, logical_id, rendered, role_statements

RETENTION = "retention.handler.handler"
ACCOUNT = "${AWS::AccountId}"


def _function(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=RETENTION)


def _backup_bucket(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)


def _grants(synth: Synthesized) -> dict[str, list]:
    """Each action the retention role is granted, with the resources it is granted on."""
    grants: dict[str, list] = {}
    for statement in role_statements(synth.resources, _function(synth)):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            grants[action] = sorted(grants.get(action, []) + [rendered(r) for r in as_list(statement["Resource"])],
                                    key=str)
    return grants


def _bucket_policy(synth: Synthesized) -> dict[str, dict]:
    bucket = _backup_bucket(synth)
    (policy,) = [r for r in synth.resources.values()
                 if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}]
    return {s["Sid"]: s for s in rendered(policy["Properties"]["PolicyDocument"]["Statement"]) if "Sid" in s}


def test_retention_memory_follows_cdk_json(synth: Synthesized, tuned: Synthesized):
    # Given the retention function by default, and with backup.retention_memory_mb at 7,168 (10 million bodies)
    # Then it has 1 GB, and the memory cdk.json asks for
    assert synth.resources[_function(synth)]["Properties"]["MemorySize"] == 1024
    assert tuned.resources[_function(tuned)]["Properties"]["MemorySize"] == 7168


def test_retention_runs_alone_every_hour_and_dead_letters_what_fails(synth: Synthesized):
    # Given the retention function
    resources = synth.resources
    function = _function(synth)
    properties = resources[function]["Properties"]
    arn = {"Fn::GetAtt": [function, "Arn"]}
    (rule,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"
               and any(t["Arn"] == arn for t in r["Properties"]["Targets"])]
    # Then one run at a time (reserved concurrency 1), for up to Lambda's 15 minutes, every hour
    assert properties["ReservedConcurrentExecutions"] == 1 and properties["Timeout"] == 900
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    (target,) = rule["Targets"]
    assert target["Input"] == '{"action":"retention"}'
    # And a failed run is retried, then lands in the failed-events queue, which alarms
    queue = failed_events_queue(resources)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 900, "MaximumRetryAttempts": 2}


def test_retention_may_hide_and_lock_only_backups_and_content_and_never_destroy_them(synth: Synthesized):
    # Given the retention role
    bucket = f"${{{_backup_bucket(synth)}.Arn}}"
    pruned = [f"{bucket}/backups/*", f"{bucket}/content/*", f"{bucket}/snapshots/*"]
    index = f"{bucket}/locks/*"
    key = logical_id(synth.resources, "AWS::KMS::Key", Description="Encrypts the backups of apilados-pipeline-ingest")
    table = logical_id(synth.resources, "AWS::DynamoDB::GlobalTable")
    # Then it lists the bucket, reads, hides (delete markers) and extends the locks of the snapshots, their content
    # and the function, stack and logs backups only, keeps its lock index, uses the backup key, reads the pending
    # plans and appends to the journal: no version deleted, no lock bypassed, no other write, no other prefix
    assert _grants(synth) == {
        "s3:ListBucket": [bucket],
        "s3:GetObject": sorted([*pruned, index]),
        "s3:GetObjectVersion": pruned,
        "s3:GetObjectRetention": pruned,
        "s3:GetObjectLegalHold": pruned,
        "s3:DeleteObject": sorted([*pruned, index]),
        "s3:PutObjectRetention": pruned,
        "s3:PutObject": [index],
        "kms:Decrypt": [f"${{{key}.Arn}}"],
        "kms:GenerateDataKey*": [f"${{{key}.Arn}}"],
        "dynamodb:PutItem": [f"${{{table}.Arn}}"],
        "dynamodb:Query": [f"${{{table}.Arn}}"],
        # The Lambda runtime's own logging
        "logs:CreateLogStream": _grants(synth)["logs:CreateLogStream"],
        "logs:PutLogEvents": _grants(synth)["logs:PutLogEvents"],
        # Lambda sends a failed asynchronous invocation to its on-failure destination
        "sqs:SendMessage": _grants(synth)["sqs:SendMessage"],
        "sqs:GetQueueAttributes": _grants(synth)["sqs:GetQueueAttributes"],
        "sqs:GetQueueUrl": _grants(synth)["sqs:GetQueueUrl"],
    }


def test_no_other_principal_of_the_account_may_hide_a_backup_and_none_may_destroy_one(synth: Synthesized):
    # Given the backup bucket's policy
    bucket = f"${{{_backup_bucket(synth)}.Arn}}"
    role = synth.resources[_function(synth)]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _bucket_policy(synth)
    account = {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    # Then every principal of the account but the retention role is refused a delete marker anywhere in the bucket
    assert statements["OnlyRetentionHidesBackups"] == {
        "Sid": "OnlyRetentionHidesBackups", "Effect": "Deny", "Principal": account, "Action": "s3:DeleteObject",
        "Resource": f"{bucket}/*", "Condition": {"ArnNotEquals": {"aws:PrincipalArn": f"${{{role}.Arn}}"}},
    }
    # And every one, the retention role and administrators included, a version deleted or a lock bypassed
    assert statements["NoOneDestroysBackups"] == {
        "Sid": "NoOneDestroysBackups", "Effect": "Deny", "Principal": account,
        "Action": ["s3:BypassGovernanceRetention", "s3:DeleteObjectVersion"], "Resource": f"{bucket}/*",
    }


@pytest.mark.parametrize(("fixture", "policy"), [
    ("synth", {"keep_last": 24, "hourly": 24, "daily": 14, "weekly": 8, "monthly": 12}),
    ("tuned", {"keep_last": 5, "hourly": 0, "daily": 7, "weekly": 4, "monthly": 0}),
])
def test_the_retention_environment_parses_as_the_policy_in_cdk_json(fixture: str, policy: dict, request):
    lock = {"synth": ("GOVERNANCE", 30), "tuned": ("COMPLIANCE", 90)}[fixture]
    # Given the retention function's environment, deploy-time references stood in for by names
    synth: Synthesized = request.getfixturevalue(fixture)
    variables = synth.resources[_function(synth)]["Properties"]["Environment"]["Variables"]
    environ = {name: value if isinstance(value, str) else f"resolved-{name}" for name, value in variables.items()}
    # When the handler reads it / Then it finds the retention policy cdk.json sets, and the backup store
    assert {name.value for name in RetentionEnvVar} <= set(variables)
    settings = RetentionSettings.from_environ(environ)
    assert settings.policy.model_dump() == policy
    # And the Object Lock mode it extends locks in, and the bucket's default retention
    assert (settings.object_lock_mode, settings.object_lock_days) == lock
    assert BackupSettings.from_environ(environ).backup_bucket == "resolved-DR_BACKUP_BUCKET_NAME"
