"""The backup function's role does what a backup needs, on the ARNs it needs, and nothing more."""

from __future__ import annotations

import re

import pytest

from tests.infra.support import Synthesized, as_list, logical_id, rendered, role_statements, statements_granting

BACKUP = "backup.handler.handler"
ACCOUNT = "${AWS::AccountId}"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:apilados-pipeline-ingest"
DATA_BUCKET_ARN = "arn:aws:s3:::apilados-production-data"
LOG_GROUP_ARN = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/apilados-pipeline-ingest"
# Every execution of the snapshot fan-out's state machine (stacks/constructs/snapshot_fanout.py), in any region.
FANOUT_EXECUTIONS = r"arn:aws:states:[a-z0-9-]+:\$\{AWS::AccountId\}:execution:[^:*/]+-snapshot-fanout:\*"

# Actions AWS offers no resource-level permission for; nothing else may be granted on "*".
UNSCOPABLE = {"lambda:ListEventSourceMappings", "logs:DescribeExportTasks", "cloudwatch:PutMetricData"}
MUTATING = {
    "s3:PutObject",
    "s3:PutObjectTagging",  # content/ only: a snapshot's copy brings its object's tags
    "s3:AbortMultipartUpload",
    "kms:GenerateDataKey*",
    "lambda:InvokeFunction",
    "lambda:PublishVersion",
    "logs:CreateExportTask",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "dynamodb:PutItem",
    "sqs:SendMessage",
    "cloudwatch:PutMetricData",
    # A big snapshot's fan-out (stacks/constructs/snapshot_fanout.py): started, and redriven when it failed.
    "states:StartExecution",
    "states:RedriveExecution",
}
READS = {
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:ListMultipartUploadParts",
    "kms:Decrypt",
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:ListVersionsByFunction",
    "lambda:ListAliases",
    "lambda:GetAlias",
    "lambda:GetPolicy",
    "lambda:GetFunctionConcurrency",
    "lambda:ListProvisionedConcurrencyConfigs",
    "lambda:GetProvisionedConcurrencyConfig",
    "lambda:GetFunctionUrlConfig",
    "lambda:GetFunctionEventInvokeConfig",
    "lambda:ListFunctionEventInvokeConfigs",
    "lambda:ListTags",
    "lambda:GetFunctionCodeSigningConfig",
    "lambda:GetFunctionRecursionConfig",
    "lambda:GetRuntimeManagementConfig",
    "lambda:ListEventSourceMappings",
    "lambda:GetLayerVersion",
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplate",
    "cloudformation:GetTemplateSummary",
    "cloudformation:GetStackPolicy",
    "cloudformation:DescribeStackResources",
    "cloudformation:ListStackResources",
    "logs:DescribeExportTasks",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "states:DescribeExecution",
    "states:ListMapRuns",
    "states:DescribeMapRun",
}


def _function(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=BACKUP)


def _statements(synth: Synthesized) -> list[dict]:
    return role_statements(synth.resources, _function(synth))


def _resources(statements: list[dict]) -> list:
    return sorted((rendered(resource) for s in statements for resource in as_list(s["Resource"])), key=str)


def _granted(synth: Synthesized, action: str) -> list:
    return _resources(statements_granting(_statements(synth), action))


def _backup_bucket(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)


def test_only_unscopable_actions_are_granted_on_everything(synth: Synthesized):
    # Given the backup function's policy
    unscoped = [s for s in _statements(synth) if "*" in as_list(s["Resource"])]
    # Then "*" carries only actions without resource-level permissions
    assert {action for s in unscoped for action in as_list(s["Action"])} == UNSCOPABLE
    # And the one mutating action among them is held to the controller's namespace
    (put_metrics,) = statements_granting(unscoped, "cloudwatch:PutMetricData")
    assert as_list(put_metrics["Action"]) == ["cloudwatch:PutMetricData"]
    assert put_metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ApiladosDR"}}


def test_nothing_beyond_what_a_backup_needs(synth: Synthesized):
    # Given the backup function's policy / Then its actions are exactly the backup's calls, plus logging
    granted = {action for s in _statements(synth) for action in as_list(s["Action"])}
    # (PublishVersion only when cdk.json asks for backup versions, which it does not by default)
    assert granted == (MUTATING - {"lambda:PublishVersion"}) | READS
    assert all(s["Effect"] == "Allow" for s in _statements(synth))
    # And nothing that deletes for good, bypasses Object Lock or changes it
    assert not granted & {
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutObjectRetention",
        "s3:PutObjectLegalHold",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutLifecycleConfiguration",
    }


def test_the_data_bucket_is_only_read(synth: Synthesized):
    # Given the statements that name the data bucket
    statements = _statements(synth)
    on_data = [s for s in statements if any("apilados-production-data" in str(r) for r in as_list(s["Resource"]))]
    # Then they list it and read its objects, and nothing else
    assert sorted(a for s in on_data for a in as_list(s["Action"])) == sorted(
        [
            "s3:ListBucket",
            "s3:ListBucketVersions",
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:GetObjectAttributes",
            "s3:GetObjectVersionAttributes",
            "s3:GetObjectTagging",
            "s3:GetObjectVersionTagging",
        ]
    )
    # (its versions are listed and read; the backup bucket's too, below)
    bucket = _backup_bucket(synth)
    assert _granted(synth, "s3:ListBucketVersions") == sorted([DATA_BUCKET_ARN, f"${{{bucket}.Arn}}"])
    assert _granted(synth, "s3:GetObjectVersion") == sorted(
        [f"{DATA_BUCKET_ARN}/*", *(f"${{{bucket}.Arn}}/{prefix}/*" for prefix in ("backups", "content", "snapshots"))])


def test_backups_are_written_only_under_the_backup_stores_prefixes_and_never_removed(synth: Synthesized):
    # Given the backup bucket
    bucket = _backup_bucket(synth)
    prefixes = sorted(f"${{{bucket}.Arn}}/{prefix}/*" for prefix in ("backups", "content", "snapshots"))
    # Then objects are written and read under content/, snapshots/ and backups/
    for action in ("s3:PutObject", "s3:ListMultipartUploadParts"):
        assert _granted(synth, action) == prefixes, action
    # And nothing is deleted or hidden: pruning is the retention function's (stacks/constructs/retention.py)
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
                   "s3:BypassGovernanceRetention"):
        assert _granted(synth, action) == [], action
    # And a failed copy in parts is aborted only under content/, the only prefix written in parts
    assert _granted(synth, "s3:AbortMultipartUpload") == [f"${{{bucket}.Arn}}/content/*"]
    # And the bucket itself is listed, its keys and (the content's, with the version of each) its versions
    assert _granted(synth, "s3:ListBucket") == sorted([DATA_BUCKET_ARN, f"${{{bucket}.Arn}}"])
    assert _granted(synth, "s3:ListBucketVersions") == sorted([DATA_BUCKET_ARN, f"${{{bucket}.Arn}}"])
    # And its default Object Lock retention read: a snapshot records how long what it stores is locked
    assert _granted(synth, "s3:GetBucketObjectLockConfiguration") == [f"${{{bucket}.Arn}}"]
    # And a stored backup is read as the version written (or, written before versions were recorded, by key)
    assert _granted(synth, "s3:GetObjectVersion") == sorted([f"{DATA_BUCKET_ARN}/*", *prefixes])
    # And read both there and in the data bucket
    assert _granted(synth, "s3:GetObject") == sorted([f"{DATA_BUCKET_ARN}/*", *prefixes])


def test_only_the_backup_key_encrypts(synth: Synthesized):
    # Given the backup bucket's key
    key = logical_id(synth.resources, "AWS::KMS::Key", Description="Encrypts the backups of apilados-pipeline-ingest")
    # Then the function has S3 encrypt (a data key) and decrypt with it, and with no other key
    for action in ("kms:Decrypt", "kms:GenerateDataKey*"):
        assert _granted(synth, action) == [f"${{{key}.Arn}}"]
    # And no kms:Encrypt: S3 never asks a writer of SSE-KMS objects for it
    assert _granted(synth, "kms:Encrypt") == []


def test_the_protected_function_and_its_qualifiers_are_only_read(synth: Synthesized):
    # Given the function's Lambda reads
    statements = _statements(synth)
    elsewhere = {"lambda:ListEventSourceMappings", "lambda:GetLayerVersion"}
    reads = [a for a in READS if a.startswith("lambda:") and a not in elsewhere]
    # Then they name the protected function and its versions and aliases
    for action in reads:
        assert _resources(statements_granting(statements, action)) == sorted([FUNCTION_ARN, f"{FUNCTION_ARN}:*"])
    # And layers are read wherever they were published (read-only, AWS's and vendors' layers)
    assert _granted(synth, "lambda:GetLayerVersion") == ["arn:aws:lambda:*:*:layer:*:*"]
    assert statements_granting(statements, "lambda:UpdateFunctionConfiguration") == []


def test_the_backup_function_invokes_only_itself_without_a_dependency_cycle(synth: Synthesized):
    # Given the function's invoke permission
    resources = synth.resources
    function = _function(synth)
    (statement,) = statements_granting(_statements(synth), "lambda:InvokeFunction")
    # Then it names the function's own ARN...
    assert statement["Resource"] == {"Fn::GetAtt": [function, "Arn"]}
    # ...in a policy of its own, which the function does not wait for (the default policy would)
    (policy,) = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::IAM::Policy" and statement in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert policy not in resources[function].get("DependsOn", [])
    assert any(d.startswith("FunctionsBackupRoleDefaultPolicy") for d in resources[function]["DependsOn"])


def test_the_pipeline_stack_is_only_read(synth: Synthesized):
    # Given the CloudFormation statements / Then they read the pipeline stack, whatever id it was given
    for action in (
        "cloudformation:DescribeStacks",
        "cloudformation:GetTemplate",
        "cloudformation:GetTemplateSummary",
        "cloudformation:GetStackPolicy",
        "cloudformation:DescribeStackResources",
        "cloudformation:ListStackResources",
    ):
        assert _granted(synth, action) == [f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/ApiladosPipelineStack/*"]


def test_logs_are_exported_from_the_protected_functions_log_group_only(synth: Synthesized):
    # Given the logs statements / Then the export task is created on that log group only
    assert _granted(synth, "logs:CreateExportTask") == sorted([LOG_GROUP_ARN, f"{LOG_GROUP_ARN}:*"])


def test_the_journal_is_only_appended_to(synth: Synthesized):
    # Given the DynamoDB statements
    table = logical_id(synth.resources, "AWS::DynamoDB::GlobalTable")
    dynamodb = [s for s in _statements(synth) if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    # Then journal entries are put into the state table, and nothing else is read or changed there
    assert [as_list(s["Action"]) for s in dynamodb] == [["dynamodb:PutItem"]]
    assert _resources(dynamodb) == [f"${{{table}.Arn}}"]


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
def test_no_mutating_action_is_granted_on_a_broader_resource_than_needed(fixture: str, request):
    # Given the statements that change something (PutMetricData aside, held by its condition)
    synth: Synthesized = request.getfixturevalue(fixture)
    changing = [
        s
        for s in _statements(synth)
        if set(as_list(s["Action"])) & MUTATING and "cloudwatch:PutMetricData" not in as_list(s["Action"])
    ]
    bucket = _backup_bucket(synth)
    # Then a wildcard appears only as the object keys under the backup store's prefixes, as the ":*" by which
    # CloudWatch Logs names a log group in IAM, or as the executions (named after snapshots) of the snapshot fan-out
    assert changing
    for resource in _resources(changing):
        if "*" in resource:
            assert (resource.count("*") == 1 and resource.endswith("/*")) or resource.endswith(":*"), resource
            in_backup_store = resource.startswith(f"${{{bucket}.Arn}}/") and resource.endswith("/*")
            log_group = ":log-group:/aws/lambda/" in resource and resource.endswith(":*")
            fan_out = re.fullmatch(FANOUT_EXECUTIONS, resource)
            assert in_backup_store or log_group or fan_out, resource


def test_versions_are_published_only_when_asked_and_only_of_the_protected_function(tuned: Synthesized):
    # Given cdk.json asks for a published version at each function backup
    # Then PublishVersion is granted on the unqualified function, and nothing wider
    assert _granted(tuned, "lambda:PublishVersion") == [f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders-api"]


def test_permissions_follow_the_settings(tuned: Synthesized):
    # Given another function, data bucket, stack and namespace / Then the policy names them
    assert "arn:aws:s3:::orders.data.example" in _granted(tuned, "s3:ListBucketVersions")
    assert _granted(tuned, "cloudformation:GetTemplate") == [
        f"arn:aws:cloudformation:eu-west-1:{ACCOUNT}:stack/OrdersStack/*"
    ]
    log_group = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/orders-api"
    assert _granted(tuned, "logs:CreateExportTask") == sorted([log_group, f"{log_group}:*"])
    (put_metrics,) = statements_granting(_statements(tuned), "cloudwatch:PutMetricData")
    assert put_metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "OrdersDR"}}
