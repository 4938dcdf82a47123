"""The recovery function's role does what the recovery actions need, on the ARNs they need, and nothing more:
above all, it cannot delete data for good (invariant 5) and hands roles only to the service named."""

from __future__ import annotations

import fnmatch

import pytest

from tests.infra.support import (
    TOPIC_KEY,
    Synthesized,
    as_list,
    logical_id,
    rendered,
    role_statements,
    statements_granting,
    synthesize,
)

RECOVERY = "recovery.handler.handler"
ACCOUNT = "${AWS::AccountId}"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:apilados-pipeline-ingest"
BESIDE_ARN = f"{FUNCTION_ARN}-*"
DATA_BUCKET_ARN = "arn:aws:s3:::apilados-production-data"
# Read for configure_replication and the replication part of status (tests/infra/test_replication.py).
REPLICA_BUCKET_ARN = "arn:aws:s3:::apilados-production-data-replica"
STACK_ARNS = sorted(
    f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{name}/*"
    for name in ("ApiladosPipelineStack", "ApiladosPipelineStack-recovery")
)
ALARM_ARN = f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:apilados-pipeline-ingest-LIVE-"
RECOVERY_STACK_ARN = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/ApiladosPipelineStack-recovery/*"
# The roles the pipeline stack creates: what a restored function may be given by default.
PIPELINE_STACK_ROLES = f"arn:aws:iam::{ACCOUNT}:role/ApiladosPipelineStack-*"

# The protected function in the secondary region: a region switch merges its environment, reads its LIVE and invokes
# the versions LIVE routes to (tests/infra/test_region_switch_grants.py).
SECONDARY_FUNCTION_ARN = f"arn:aws:lambda:us-west-2:{ACCOUNT}:function:apilados-pipeline-ingest"
SECONDARY_ALARM_ARN = f"arn:aws:cloudwatch:us-west-2:{ACCOUNT}:alarm:apilados-pipeline-ingest-LIVE-"
ALARM_KINDS = ("errors", "throttles", "health-probe", "avg-duration", "p99-duration")

# Actions AWS offers no resource-level permission for; nothing else may be granted on "*".
UNSCOPABLE = {"cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics",
              "cloudtrail:DescribeTrails",  # for the preflight (stacks/constructs/preflight_grants.py)
              "cloudwatch:PutMetricData"}  # the failback's probe of the primary (held to the controller's namespace)
FUNCTION_RECOVERY = {
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:PublishVersion",
    "lambda:TagResource",
    "lambda:UntagResource",
    "lambda:ListTags",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
    "lambda:GetFunctionConcurrency",
    "lambda:PutFunctionEventInvokeConfig",
    "lambda:GetFunctionEventInvokeConfig",
    "lambda:UpdateFunctionEventInvokeConfig",
    "lambda:DeleteFunctionEventInvokeConfig",
}
STACK_RECOVERY = {
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:GetTemplate",
    "cloudformation:ListChangeSets",
    "cloudformation:GetStackPolicy",
}
# On the '-recovery' copy only: its policy and protection once created, its deletion when empty or failed.
RECOVERY_STACK_ONLY = {
    "cloudformation:SetStackPolicy",
    "cloudformation:UpdateTerminationProtection",
    "cloudformation:DeleteStack",
}
MUTATING = {
    # alias control, alerts, journal, logging, dead letters, continuing in a new invocation
    "lambda:UpdateAlias",
    "lambda:InvokeFunction",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "sns:Publish",
    "kms:GenerateDataKey*",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "sqs:SendMessage",
    # restores
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    # function recovery
    "lambda:CreateFunction",
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:PublishVersion",
    "lambda:TagResource",
    "lambda:UntagResource",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
    "lambda:PutFunctionEventInvokeConfig",
    "lambda:UpdateFunctionEventInvokeConfig",
    "lambda:DeleteFunctionEventInvokeConfig",
    "lambda:PublishLayerVersion",
    "iam:PassRole",
    # replication to the secondary region
    "s3:PutReplicationConfiguration",
    # failover and failback: the pipeline's notification entry of the data bucket and the replica, merged in or
    # removed (stacks/constructs/failover.py, failback.py)
    "s3:PutBucketNotification",
    # the switch gates of both regions drained of what a switch recorded (stacks/constructs/switch_gate.py)
    "sqs:DeleteMessage",
    # stack recovery
    "cloudformation:CreateChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:SetStackPolicy",
    "cloudformation:UpdateTerminationProtection",
    "cloudformation:DeleteStack",
    # a big restore's fan-out (stacks/constructs/restore_fanout.py): started, and redriven when it failed
    "states:StartExecution",
    "states:RedriveExecution",
}
# What no statement of the recovery role may ever grant: permanent deletion, or a way around Object Lock
# and versioning.
FORBIDDEN = {
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutBucketPolicy",
    "s3:DeleteBucket",
    "lambda:DeleteFunction",
    "lambda:DeleteAlias",
    "lambda:DeleteLayerVersion",
}


def _function(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=RECOVERY)


def _statements(synth: Synthesized) -> list[dict]:
    return role_statements(synth.resources, _function(synth))


def _resources(statements: list[dict]) -> list:
    return sorted((rendered(resource) for s in statements for resource in as_list(s["Resource"])), key=str)


def _granted(synth: Synthesized, action: str) -> list:
    return _resources(statements_granting(_statements(synth), action))


def _in_this_region(resources: list) -> list:
    """The resources of the stack's own region (a failover also reaches the secondary's: test_failover_stack)."""
    return [resource for resource in resources if ":us-west-2:" not in str(resource)]


def _backup_objects(synth: Synthesized, *prefixes: str) -> list[str]:
    bucket = logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    return sorted(f"${{{bucket}.Arn}}/{prefix}/*" for prefix in prefixes)


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
def test_no_statement_grants_delete_object_version_or_a_way_around_object_lock(fixture: str, request):
    # Given the recovery role's statements, with the defaults and with every recovery setting used
    synth: Synthesized = request.getfixturevalue(fixture)
    granted = {action for s in _statements(synth) for action in as_list(s["Action"])}
    # Then a restore can remove objects only as delete markers: no permanent deletion, nothing that changes
    # or bypasses Object Lock, versioning or lifecycle, no deletion of functions (nor of stacks: see
    # test_the_only_stack_it_may_delete_is_its_own_recovery_copy)
    assert not granted & FORBIDDEN
    # And no action wildcard could grant any of them
    assert not [action for action in granted if action.endswith("*") and action != "kms:GenerateDataKey*"]
    assert all(s["Effect"] == "Allow" for s in _statements(synth))


def test_only_unscopable_actions_are_granted_on_everything(synth: Synthesized):
    # Given the statements on "*"
    unscoped = [s for s in _statements(synth) if "*" in as_list(s["Resource"])]
    # Then they carry only metric reads without resource-level permissions, and the failback probe's metrics
    assert {action for s in unscoped for action in as_list(s["Action"])} == UNSCOPABLE


def test_nothing_beyond_what_the_recovery_actions_need(synth: Synthesized):
    # Given the default settings / Then the actions are exactly the recovery's calls, plus logging and dead
    # letters
    reads = {
        "lambda:GetAlias",
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:ListVersionsByFunction",
        "lambda:ListAliases",
        "lambda:ListTags",
        "lambda:GetFunctionConcurrency",
        "lambda:GetFunctionEventInvokeConfig",
        "lambda:GetLayerVersion",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:GetMetricData",
        "cloudwatch:GetMetricStatistics",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "kms:Decrypt",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketVersioning",
        "s3:GetLifecycleConfiguration",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectAttributes",
        "s3:GetObjectVersionAttributes",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        "cloudformation:DescribeChangeSet",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
        "cloudformation:GetTemplate",
        "cloudformation:ListChangeSets",
        "cloudformation:GetStackPolicy",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        # the preflight's own reads (stacks/constructs/preflight_grants.py)
        "ssm:GetParameter",
        "cloudtrail:DescribeTrails",
        "cloudtrail:GetTrailStatus",
        "cloudtrail:GetEventSelectors",
        "sns:ListSubscriptionsByTopic",
        # replication's reads (stacks/constructs/replication.py)
        "s3:GetReplicationConfiguration",
        "s3:GetBucketLocation",
        # failback's (stacks/constructs/failback.py): the notifications read before a merge, the primary probe's
        # metrics published (held to the controller's namespace); the post-recovery validation's own reads
        # (stacks/constructs/validation_grants.py)
        "s3:GetBucketNotification",
        "cloudwatch:PutMetricData",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketPolicy",
        "sns:GetTopicAttributes",
        # the failover's reads (stacks/constructs/failover.py)
        "lambda:GetPolicy",
        # the switch gates' messages received (IAM counts it a read; deleting them is in MUTATING)
        "sqs:ReceiveMessage",
        # a big restore's fan-out followed, its shards counted, the running ones listed for `status`
        # (stacks/constructs/restore_fanout.py)
        "states:DescribeExecution",
        "states:ListMapRuns",
        "states:DescribeMapRun",
        "states:ListExecutions",
    }
    granted = {action for s in _statements(synth) for action in as_list(s["Action"])}
    assert granted == MUTATING | reads


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
def test_no_mutating_action_is_granted_on_a_broader_resource_than_needed(fixture: str, request):
    # Given the statements that change something
    synth: Synthesized = request.getfixturevalue(fixture)
    settings = synth.stack.node.try_get_context("dr") or {}
    changing = [s for s in _statements(synth) if set(as_list(s["Action"])) & MUTATING]
    function = settings.get("protected_function", "apilados-pipeline-ingest")
    region = settings.get("primary_region", "us-east-1")
    other = settings.get("secondary_region", "us-west-2")
    buckets = [settings.get("data_bucket", "apilados-production-data"), *_restore_targets(settings)]
    stack = settings.get("pipeline_stack", "ApiladosPipelineStack")
    roles = settings.get("recovery", {}).get("function_role_arns")
    allowed = {
        *(f"arn:aws:s3:::{bucket}/*" for bucket in buckets),
        *_backup_objects(synth, "content", "snapshots", "restores"),
        f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function}-*",
        # the validation's health check invokes the versions LIVE routes to, by number, as the watchers' probe does,
        # in this region and (a region switch, and the validation of the region it made active) in the other
        f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function}:*",
        f"arn:aws:lambda:{other}:{ACCOUNT}:function:{function}:*",
        f"arn:aws:lambda:{region}:{ACCOUNT}:layer:*",
        f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{stack}/*",
        f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{stack}-recovery/*",
        *(roles if roles is not None else [f"arn:aws:iam::{ACCOUNT}:role/{stack}-*"]),
        # the restore fan-out's executions, named after restore plans, and the snapshot fan-out's, named after
        # snapshots (a restore's safety snapshot of the data bucket)
        f"arn:aws:states:{region}:{ACCOUNT}:execution:{function}-restore-fanout:*",
        f"arn:aws:states:{region}:{ACCOUNT}:execution:{function}-snapshot-fanout:*",
    }
    # Then no resource is "*", and a wildcard appears only where a name is chosen at run time: object keys of
    # the restore targets, the backup store's prefixes, functions restored beside the protected one, layers
    # of this account, the stack ids, the role patterns cdk.json names (or the pipeline stack's roles), and the
    # executions of the two fan-outs
    assert changing
    for resource in _resources(changing):
        assert resource != "*"
        if isinstance(resource, str) and "*" in resource:
            assert resource in allowed, resource


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_no_action_is_granted_twice_on_a_resource(fixture: str, stack: str, request):
    # Given the recovery role's statements in either stack (its inline policy and the managed policies of
    # replication, the region switch, failover, failback and the validation)
    synth: Synthesized = request.getfixturevalue(fixture)
    resources = synth.resources if stack == "primary" else synth.standby_resources
    statements = role_statements(resources, logical_id(resources, "AWS::Lambda::Function", Handler=RECOVERY))
    grants = [(action, str(rendered(resource)), str(statement.get("Condition")))
              for statement in statements for action in as_list(statement["Action"])
              for resource in as_list(statement["Resource"])]
    # Then no action is granted on one resource by two statements...
    assert sorted(grant for grant in grants if grants.count(grant) > 1) == []
    # ...nor on a resource that a wildcard of the same action (under the same conditions) covers already
    covered = [(action, resource, wider) for action, resource, condition in grants
               for other_action, wider, other_condition in grants
               if (other_action, other_condition) == (action, condition) and wider != resource and "*" in wider
               and fnmatch.fnmatchcase(resource, wider)]
    assert covered == []


def _restore_targets(settings: dict) -> list[str]:
    return settings.get("recovery", {}).get("restore_target_buckets", [])


# Alias control, alerts, journal


def test_aliases_move_as_the_watchers_move_them(synth: Synthesized):
    # Given the recovery role / Then it moves aliases of the protected function only (Lambda authorizes
    # UpdateAlias against the unqualified function)
    assert _granted(synth, "lambda:UpdateAlias") == [FUNCTION_ARN]
    # And reads the function, its versions and aliases
    # (a failover reads the secondary region's function too: tests/infra/test_failover_stack.py)
    for action in ("lambda:GetAlias", "lambda:ListVersionsByFunction", "lambda:ListAliases"):
        assert _in_this_region(_granted(synth, action)) == sorted([FUNCTION_ARN, f"{FUNCTION_ARN}:*"]), action
    # And reads the five alarms on LIVE, here and (a region switch: test_region_switch_grants) in the other region
    assert _granted(synth, "cloudwatch:DescribeAlarms") == sorted(
        f"{arn}{suffix}" for arn in (ALARM_ARN, SECONDARY_ALARM_ARN) for suffix in ALARM_KINDS
    )


def test_it_invokes_only_itself_without_a_dependency_cycle(synth: Synthesized):
    # Given the invoke statements
    resources = synth.resources
    function = _function(synth)
    statements = statements_granting(_statements(synth), "lambda:InvokeFunction")
    # Then it continues a long restore by invoking its own ARN, and invokes nothing else but the protected function's
    # versions LIVE routes to, by number, in either region (the validation's health check, here and in the region a
    # switch made active; the failover's probe of the primary LIVE and its catch-up through the secondary's)
    assert _resources(statements) == sorted(
        [f"${{{function}.Arn}}", f"{FUNCTION_ARN}:*", f"{SECONDARY_FUNCTION_ARN}:*"], key=str)
    (own,) = [statement for statement in statements if _resources([statement]) == [f"${{{function}.Arn}}"]]
    # ...in a policy of its own, which the function does not wait for (its default policy would)
    (policy,) = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::IAM::Policy" and own in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert policy not in resources[function].get("DependsOn", [])
    assert any(d.startswith("FunctionsRecoveryRoleDefaultPolicy") for d in resources[function]["DependsOn"])


def test_journal_alerts_and_their_key(synth: Synthesized):
    # Given the recovery role
    resources = synth.resources
    table = logical_id(resources, "AWS::DynamoDB::GlobalTable")
    topics = sorted((f"${{{name}}}" for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"), key=str)
    topic_key = logical_id(resources, "AWS::KMS::Key", Description=TOPIC_KEY)
    backup_key = logical_id(resources, "AWS::KMS::Key", Description="Encrypts the backups of apilados-pipeline-ingest")
    # Then it reads and writes items of the state table only
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"):
        assert _granted(synth, action) == [f"${{{table}.Arn}}"], action
    # And publishes to both topics
    assert _granted(synth, "sns:Publish") == topics
    # And uses the topics' key and the backup key, and no other
    assert _granted(synth, "kms:GenerateDataKey*") == sorted([f"${{{topic_key}.Arn}}", f"${{{backup_key}.Arn}}"])
    assert _granted(synth, "kms:Decrypt") == sorted([f"${{{topic_key}.Arn}}", f"${{{backup_key}.Arn}}"])
    # And never kms:Encrypt: S3 and SNS ask a writer for a data key
    assert _granted(synth, "kms:Encrypt") == []


# Restores


def test_restores_write_the_data_bucket_by_versions_and_delete_markers(synth: Synthesized):
    # Given no allow-listed target bucket / Then the data bucket is the only restore target
    for action in ("s3:GetLifecycleConfiguration",):
        assert _granted(synth, action) == [DATA_BUCKET_ARN], action
    for action in ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"):
        assert _granted(synth, action) == [f"{DATA_BUCKET_ARN}/*"], action
    # (the replica's versioning and object versions are read too, for replication: not written; versions are
    # listed and read in the backup bucket as well: below; its versioning is one of the controls the post-recovery
    # validation reads)
    backup_bucket = logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    assert _granted(synth, "s3:GetBucketVersioning") == sorted(
        [f"${{{backup_bucket}.Arn}}", DATA_BUCKET_ARN, REPLICA_BUCKET_ARN])
    # (the replica's versions are listed by a failback, which copies back what the secondary wrote: not written)
    assert _target_buckets(_granted(synth, "s3:ListBucketVersions")) == [DATA_BUCKET_ARN, REPLICA_BUCKET_ARN]
    assert _target_buckets(_granted(synth, "s3:GetObjectVersion")) == sorted(
        [f"{DATA_BUCKET_ARN}/*", f"{REPLICA_BUCKET_ARN}/*"])
    # And its objects are written and removed (a DeleteObject without version id is a delete marker)
    assert _granted(synth, "s3:DeleteObject") == [f"{DATA_BUCKET_ARN}/*"]
    # (and tagged: a copy brings its source's tags; a safety snapshot's copies tag the stored content too)
    assert _granted(synth, "s3:PutObjectTagging") == sorted(["${BackupBucket49765389.Arn}/content/*",
                                                             f"{DATA_BUCKET_ARN}/*"])


def test_restores_may_target_exactly_the_allow_listed_buckets(tuned: Synthesized):
    # Given two allow-listed target buckets besides the data bucket
    targets = sorted(
        f"arn:aws:s3:::{name}" for name in ("orders.data.example", "orders-restore-scratch", "orders.drill.example")
    )
    # Then each is listed, read and restored into, and no other bucket is written
    # (and the replica's, which a failback lists: read only)
    assert _target_buckets(_granted(tuned, "s3:ListBucketVersions")) == sorted(
        [*targets, "arn:aws:s3:::orders-data-replica"])
    # (and the replica's object versions, for replication's status: read only)
    assert _target_buckets(_granted(tuned, "s3:GetObjectVersion")) == sorted(
        f"{arn}/*" for arn in [*targets, "arn:aws:s3:::orders-data-replica"])
    assert _granted(tuned, "s3:DeleteObject") == [f"{arn}/*" for arn in targets]
    written = [r for r in _granted(tuned, "s3:PutObject") if r.startswith("arn:aws:s3:::")]
    assert written == [f"{arn}/*" for arn in targets]


def _target_buckets(resources: list) -> list:
    """The restore targets among granted resources (the backup bucket's are named by its logical id)."""
    return [resource for resource in resources if str(resource).startswith("arn:aws:s3:::")]


def test_the_backup_bucket_is_read_and_added_to_but_never_deleted_from(synth: Synthesized):
    # Given the backup bucket
    bucket = logical_id(synth.resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    # Then backups, snapshots, their content and restore records are read, as the version written (or, written
    # before versions were recorded, by key), and the bucket's versions listed
    backup_reads = _backup_objects(synth, "backups", "content", "restores", "snapshots")
    assert _granted(synth, "s3:GetObject") == sorted([f"{DATA_BUCKET_ARN}/*", *backup_reads])
    # (object versions of the replica are read too, for replication's status)
    assert _granted(synth, "s3:GetObjectVersion") == sorted(
        [f"{DATA_BUCKET_ARN}/*", f"{REPLICA_BUCKET_ARN}/*", *backup_reads])
    assert _granted(synth, "s3:ListBucketVersions") == sorted(
        [DATA_BUCKET_ARN, REPLICA_BUCKET_ARN, f"${{{bucket}.Arn}}"])
    # And its default Object Lock retention read (a safety snapshot records how long what it stores is locked)
    assert _granted(synth, "s3:GetBucketObjectLockConfiguration") == [f"${{{bucket}.Arn}}"]
    # And safety snapshots, their content and restore records are written, under those prefixes only
    assert _granted(synth, "s3:PutObject") == sorted(
        [f"{DATA_BUCKET_ARN}/*", *_backup_objects(synth, "content", "restores", "snapshots")]
    )
    # And a copy in parts (restored objects, a safety snapshot's content) is aborted only where one is made
    assert _granted(synth, "s3:AbortMultipartUpload") == sorted([f"{DATA_BUCKET_ARN}/*",
                                                                 *_backup_objects(synth, "content")])
    # And the bucket is listed; nothing in it is ever deleted
    assert _granted(synth, "s3:ListBucket") == sorted([DATA_BUCKET_ARN, f"${{{bucket}.Arn}}", REPLICA_BUCKET_ARN])
    assert not [r for r in _granted(synth, "s3:DeleteObject") if str(r).startswith(f"${{{bucket}")]


# Function recovery


def test_the_protected_function_is_rebuilt_in_place_or_beside_it(synth: Synthesized):
    # Given the function-recovery actions / Then each acts on the protected function (unqualified: aliases and
    # versions keep their own settings) or on a function named "<protected function>-<suffix>"
    for action in FUNCTION_RECOVERY:
        assert _in_this_region(_granted(synth, action)) == sorted([FUNCTION_ARN, BESIDE_ARN]), action
    # (a failover merges variables into the secondary region's function: test_failover_stack)
    assert [resource for resource in _granted(synth, "lambda:UpdateFunctionConfiguration")
            if ":us-west-2:" in str(resource)] == [SECONDARY_FUNCTION_ARN]
    # And only such a function can be created
    assert _granted(synth, "lambda:CreateFunction") == [BESIDE_ARN]


def test_layers_are_republished_in_this_account_and_read_wherever_they_are(synth: Synthesized):
    assert _granted(synth, "lambda:PublishLayerVersion") == [f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:*"]
    assert _granted(synth, "lambda:GetLayerVersion") == ["arn:aws:lambda:*:*:layer:*:*"]


def test_by_default_the_pipeline_stacks_roles_are_passed_to_lambda_only(synth: Synthesized):
    # Given no function roles and no stack role in cdk.json
    statements = statements_granting(_statements(synth), "iam:PassRole")
    # Then a restored function may be given a role the pipeline stack created (CloudFormation names them after
    # the stack), to Lambda only, and no role may be passed to CloudFormation
    assert [(_resources([s]), s["Condition"]) for s in statements] == [
        ([PIPELINE_STACK_ROLES], {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})
    ]
    assert as_list(statements[0]["Action"]) == ["iam:PassRole"]


def test_an_empty_list_of_function_roles_passes_none():
    synth = synthesize({"dr": {"recovery": {"function_role_arns": []}}})
    assert statements_granting(_statements(synth), "iam:PassRole") == []


def test_roles_are_passed_only_to_the_service_they_are_for(tuned: Synthesized):
    # Given function role patterns, a stack role and a replication role in cdk.json
    statements = statements_granting(_statements(tuned), "iam:PassRole")
    by_service = {
        s["Condition"]["StringEquals"]["iam:PassedToService"]: sorted(as_list(s["Resource"])) for s in statements
    }
    # Then the function roles go to Lambda only, the stack role to CloudFormation only, the replication role to S3
    assert by_service == {
        "lambda.amazonaws.com": [
            "arn:aws:iam::123456789012:role/orders-api-*",
            "arn:aws:iam::123456789012:role/service-role/orders-api-exec",
        ],
        "cloudformation.amazonaws.com": ["arn:aws:iam::123456789012:role/orders-cfn-deployer"],
        "s3.amazonaws.com": ["arn:aws:iam::123456789012:role/orders-s3-replication"],
    }
    # And each statement passes roles and does nothing else, under that condition alone
    for statement in statements:
        assert as_list(statement["Action"]) == ["iam:PassRole"]
        assert list(statement["Condition"]) == ["StringEquals"]


# Stack recovery


def test_change_sets_only_on_the_pipeline_stack_and_its_recovery_copy(synth: Synthesized):
    for action in STACK_RECOVERY:
        assert _granted(synth, action) == STACK_ARNS, action


def test_the_only_stack_it_may_delete_is_its_own_recovery_copy(synth: Synthesized):
    # Given the recovery role / Then DeleteStack, and the stack policy and termination protection a recovered
    # copy gets once created, name the '-recovery' copy only, never the pipeline stack
    for action in RECOVERY_STACK_ONLY:
        assert _granted(synth, action) == [RECOVERY_STACK_ARN], action
    (statement,) = statements_granting(_statements(synth), "cloudformation:DeleteStack")
    assert set(as_list(statement["Action"])) == RECOVERY_STACK_ONLY and "Condition" not in statement


def test_permissions_follow_the_settings(tuned: Synthesized):
    # Given another function, stack and region / Then the function and stack statements name them
    function = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders-api"
    assert _granted(tuned, "lambda:CreateFunction") == [f"{function}-*"]
    assert _granted(tuned, "lambda:UpdateFunctionCode") == sorted([function, f"{function}-*"])
    assert _granted(tuned, "cloudformation:ExecuteChangeSet") == sorted(
        f"arn:aws:cloudformation:eu-west-1:{ACCOUNT}:stack/{name}/*" for name in ("OrdersStack", "OrdersStack-recovery")
    )
