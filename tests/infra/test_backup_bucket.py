"""The backup bucket: encrypted, versioned, locked, private, TLS only, logged, retained, and open to
CloudWatch Logs' export of the protected function's logs only."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.support import Synthesized, logical_id, rendered

ACCOUNT = "${AWS::AccountId}"
BACKUP_KEY = "Encrypts the backups of apilados-pipeline-ingest"


def _bucket(synth: Synthesized) -> tuple[str, dict]:
    name = logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    return name, synth.resources[name]


def _policy_statements(synth: Synthesized, bucket: str) -> list[dict]:
    (policy,) = [
        r
        for r in synth.resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    return rendered(policy["Properties"]["PolicyDocument"]["Statement"])


def test_backups_are_encrypted_with_their_own_rotating_key(synth: Synthesized):
    # Given the backup bucket and its key
    _, bucket = _bucket(synth)
    key = logical_id(synth.resources, "AWS::KMS::Key", Description=BACKUP_KEY)
    # Then objects are encrypted with that customer-managed key, through an S3 bucket key
    assert bucket["Properties"]["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "KMSMasterKeyID": {"Fn::GetAtt": [key, "Arn"]},
                    "SSEAlgorithm": "aws:kms",
                },
            }
        ]
    }
    # And the key rotates and outlives the stack, or the backups could never be read again
    assert synth.resources[key]["Properties"]["EnableKeyRotation"] is True
    assert synth.resources[key]["DeletionPolicy"] == "Retain"


def test_backups_are_versioned_and_locked_in_governance_mode(synth: Synthesized):
    # Given the backup bucket / Then every object version is locked for the configured 30 days
    _, bucket = _bucket(synth)
    properties = bucket["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Days": 30, "Mode": "GOVERNANCE"}},
    }


def test_pruned_backups_are_removed_only_after_the_noncurrent_expiry(synth: Synthesized):
    # Given the backup bucket's lifecycle / Then a pruned (noncurrent) version goes 30 days later, leftover
    # delete markers and abandoned uploads are cleaned up, and nothing current ever expires
    _, bucket = _bucket(synth)
    assert bucket["Properties"]["LifecycleConfiguration"] == {
        "Rules": [
            {
                "Id": "RemovePrunedBackups",
                "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "ExpiredObjectDeleteMarker": True,
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
            }
        ]
    }


def test_lock_and_expiry_follow_the_settings(tuned: Synthesized):
    # Given 90 days of Object Lock in COMPLIANCE mode and a 7-day noncurrent expiry in cdk.json
    _, bucket = _bucket(tuned)
    properties = bucket["Properties"]
    # Then the bucket follows
    assert properties["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {"Days": 90, "Mode": "COMPLIANCE"}
    assert properties["LifecycleConfiguration"]["Rules"][0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}


def test_backup_bucket_is_private_tls_only_and_retained(synth: Synthesized):
    # Given the backup bucket
    name, bucket = _bucket(synth)
    properties = bucket["Properties"]
    # Then public access is blocked, ACLs are disabled, and it outlives the stack
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    # And its policy refuses plain HTTP and TLS older than 1.2, to everyone
    denials = [s for s in _policy_statements(synth, name) if s["Effect"] == "Deny" and s["Principal"] == {"AWS": "*"}]
    assert {str(s["Condition"]) for s in denials} == {
        str({"Bool": {"aws:SecureTransport": "false"}}),
        str({"NumericLessThan": {"s3:TlsVersion": 1.2}}),
    }


def test_no_principal_of_the_account_can_write_over_a_backup(synth: Synthesized):
    # Given the backup bucket's policy
    name, _ = _bucket(synth)
    (write_once,) = [s for s in _policy_statements(synth, name) if s.get("Sid") == "BackupsAreWrittenOnce"]
    # Then every principal of the account (every role of the stack included) is refused any request that creates
    # an object anywhere in the bucket (PutObject, CopyObject, CompleteMultipartUpload) without If-None-Match;
    # the parts of a multipart upload, which carry no conditional header, are not refused
    assert write_once == {
        "Sid": "BackupsAreWrittenOnce",
        "Effect": "Deny",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "s3:PutObject",
        "Resource": f"${{{name}.Arn}}/*",
        "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}},
    }


def test_access_to_backups_is_logged_to_a_retained_bucket(synth: Synthesized):
    # Given the backup bucket's server access logging
    _, bucket = _bucket(synth)
    logging = bucket["Properties"]["LoggingConfiguration"]
    logs_bucket = synth.resources[logging["DestinationBucketName"]["Ref"]]
    # Then logs go to a private, S3-encrypted (the only encryption log delivery supports) bucket, kept a year
    assert logging["LogFilePrefix"] == "backup-bucket/"
    assert logs_bucket["Properties"]["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert logs_bucket["Properties"]["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    assert logs_bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 365
    assert logs_bucket["DeletionPolicy"] == "Retain"


def test_cloudwatch_logs_may_export_the_protected_functions_logs_and_nothing_else(synth: Synthesized):
    # Given the backup bucket's policy
    name, _ = _bucket(synth)
    allowed = [s for s in _policy_statements(synth, name) if s["Effect"] == "Allow"]
    log_group = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/apilados-pipeline-ingest"
    source = {
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
        "ArnLike": {"aws:SourceArn": [log_group, f"{log_group}:*"]},
    }
    # Then the regional logs service, exporting that log group from this account, may check the bucket's ACL
    # and write objects under the function's logs prefix of the backup store, and that is all it may do
    assert allowed == [
        {
            "Sid": "LogsExportChecksBucketAcl",
            "Effect": "Allow",
            "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": f"${{{name}.Arn}}",
            "Condition": source,
        },
        {
            "Sid": "LogsExportWritesFunctionLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"${{{name}.Arn}}/backups/logs/apilados-pipeline-ingest/*",
            "Condition": {
                "StringEquals": {
                    "aws:SourceAccount": "${AWS::AccountId}",
                    "s3:x-amz-acl": "bucket-owner-full-control",
                },
                "ArnLike": source["ArnLike"],
            },
        },
    ]


def test_cloudwatch_logs_may_encrypt_its_export_with_the_backup_key(synth: Synthesized):
    # Given the backup bucket is SSE-KMS / Then the key policy lets the regional logs service use the key
    synth.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "Description": BACKUP_KEY,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "LogsExportEncryptsWithBackupKey",
                            "Effect": "Allow",
                            "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                            "Resource": "*",
                        }
                    ]
                )
            },
        },
    )


def test_the_logs_export_follows_the_region_and_function(tuned: Synthesized):
    # Given another region and function / Then the logs service and the log group follow
    name, _ = _bucket(tuned)
    (write,) = [s for s in _policy_statements(tuned, name) if s.get("Sid") == "LogsExportWritesFunctionLogs"]
    assert write["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert write["Resource"] == f"${{{name}.Arn}}/backups/logs/orders-api/*"
    assert write["Condition"]["ArnLike"]["aws:SourceArn"][0] == (
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/orders-api"
    )
