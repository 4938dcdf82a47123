"""The IAM conformance harness's parts, on hand-written calls and policies: the map from a recorded call to
the actions and resources IAM checks, the policy evaluator, the template resolver and the recorder."""

from __future__ import annotations

import sys
import types
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from embedded.iam.actions import Permission, UnmappedCall, WorldFacts, learned_change_sets, permissions_of
from embedded.iam.conformance import check_conformance, names_in
from embedded.iam.evaluator import Outcome, UndecidedCondition, evaluate
from embedded.iam.recorder import CallRecording, RecordedCall, record_calls
from embedded.iam.template_roles import EmbeddedNames, UnresolvableTemplate, resolve_template

ACCOUNT = "123456789012"
BACKUP_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/backup-key"
TOPIC_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/topic-key"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"
FACTS = WorldFacts(account=ACCOUNT, bucket_keys={"backups": BACKUP_KEY}, topic_keys={TOPIC: TOPIC_KEY})


def call(service: str, operation: str, error_code: str | None = None, **params: Any) -> RecordedCall:
    return RecordedCall(handler="recovery.handler.handler", invoked_as="apilados-dr-recovery", service=service,
                        operation=operation, params=params, region="us-east-1", error_code=error_code)


def needs(recorded: RecordedCall, change_sets: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [(permission.action, permission.resource) for permission in permissions_of(recorded, FACTS, change_sets)]


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def outcome(permission: Permission, statements: list[dict[str, Any]], **kwargs: Any) -> Outcome:
    return evaluate(permission, statements, **kwargs).outcome


# The map: which actions and resources a call needs -----------------------------------------------------

@pytest.mark.parametrize(("operation", "params", "expected"), [
    ("ListObjectVersions", {"Bucket": "data"}, [("s3:ListBucketVersions", "arn:aws:s3:::data")]),
    ("ListObjectsV2", {"Bucket": "data", "Prefix": "uploads/"}, [("s3:ListBucket", "arn:aws:s3:::data")]),
    ("HeadObject", {"Bucket": "data", "Key": "a.csv"}, [("s3:GetObject", "arn:aws:s3:::data/a.csv")]),
    ("HeadObject", {"Bucket": "data", "Key": "a.csv", "VersionId": "v1"},
     [("s3:GetObjectVersion", "arn:aws:s3:::data/a.csv")]),
    ("GetObjectTagging", {"Bucket": "data", "Key": "a.csv", "VersionId": "v1"},
     [("s3:GetObjectVersionTagging", "arn:aws:s3:::data/a.csv")]),
    ("DeleteObject", {"Bucket": "data", "Key": "a.csv", "VersionId": "v1"},
     [("s3:DeleteObjectVersion", "arn:aws:s3:::data/a.csv")]),
    ("PutObject", {"Bucket": "data", "Key": "a.csv", "Tagging": "k=v"},
     [("s3:PutObject", "arn:aws:s3:::data/a.csv"), ("s3:PutObjectTagging", "arn:aws:s3:::data/a.csv")]),
    ("DeleteObjects", {"Bucket": "data", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": "v"}]}},
     [("s3:DeleteObject", "arn:aws:s3:::data/a"), ("s3:DeleteObjectVersion", "arn:aws:s3:::data/b")]),
])
def test_s3_operations_need_the_actions_iam_checks_for_them(operation: str, params: dict[str, Any],
                                                            expected: list[tuple[str, str]]) -> None:
    # Given an S3 call as botocore received it, When the map reads it, Then it names what IAM checks
    assert needs(call("s3", operation, **params)) == expected


def test_a_copy_needs_a_read_of_its_source_and_a_write_of_its_destination() -> None:
    # Given copies pinned to a source version (the string form) and unpinned (the dict form)
    pinned = call("s3", "CopyObject", Bucket="data", Key="restored.csv", CopySource="backups/content/x?versionId=v1")
    unpinned = call("s3", "UploadPartCopy", Bucket="data", Key="big.csv", UploadId="u", PartNumber=1,
                    CopySource={"Bucket": "other", "Key": "big.csv"})
    # Then each needs the destination's write and the source's read, of the pinned version where there is one,
    # and a CopyObject that copies the source's tags (S3's default) needs to read them and write them
    assert needs(pinned) == [("s3:PutObject", "arn:aws:s3:::data/restored.csv"),
                             ("s3:GetObjectVersion", "arn:aws:s3:::backups/content/x"),
                             ("kms:Decrypt", BACKUP_KEY),
                             ("s3:GetObjectVersionTagging", "arn:aws:s3:::backups/content/x"),
                             ("s3:PutObjectTagging", "arn:aws:s3:::data/restored.csv")]
    assert needs(unpinned) == [("s3:PutObject", "arn:aws:s3:::data/big.csv"),
                               ("s3:GetObject", "arn:aws:s3:::other/big.csv")]
    # And one that replaces the tags needs no read of the source's, and writes tags only where it sets some
    replacing = call("s3", "CopyObject", Bucket="data", Key="restored.csv", CopySource="backups/content/x?versionId=v1",
                     MetadataDirective="REPLACE", TaggingDirective="REPLACE", Tagging="")
    assert needs(replacing) == [("s3:PutObject", "arn:aws:s3:::data/restored.csv"),
                                ("s3:GetObjectVersion", "arn:aws:s3:::backups/content/x"),
                                ("kms:Decrypt", BACKUP_KEY)]


def test_a_qualified_lambda_request_is_authorized_against_the_qualified_arn() -> None:
    function = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:ingest"
    assert needs(call("lambda", "GetFunctionConfiguration", FunctionName="ingest", Qualifier="1")) == [
        ("lambda:GetFunctionConfiguration", f"{function}:1")]
    assert needs(call("lambda", "Invoke", FunctionName="ingest:LIVE")) == [
        ("lambda:InvokeFunction", f"{function}:LIVE")]
    # an alias is changed through its function: UpdateAlias names the function, not the alias
    assert needs(call("lambda", "UpdateAlias", FunctionName="ingest", Name="LIVE", FunctionVersion="1")) == [
        ("lambda:UpdateAlias", function)]
    assert needs(call("lambda", "ListTags", Resource=function)) == [("lambda:ListTags", function)]


def test_passing_a_role_to_a_service_needs_iam_passrole_for_that_service() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/ingest-role"
    created = permissions_of(call("lambda", "CreateFunction", FunctionName="ingest-drill", Role=role,
                                  Layers=[f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:deps:1"]), FACTS)
    assert [(p.action, p.resource) for p in created] == [
        ("lambda:CreateFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:ingest-drill"),
        ("iam:PassRole", role), ("lambda:GetLayerVersion", f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:deps:1")]
    assert created[1].context["iam:PassedToService"] == "lambda.amazonaws.com"
    change_set = permissions_of(call("cloudformation", "CreateChangeSet", StackName="Pipeline", ChangeSetName="c",
                                     RoleARN=role), FACTS)
    assert change_set[-1].action == "iam:PassRole"
    assert change_set[-1].context["iam:PassedToService"] == "cloudformation.amazonaws.com"


def test_encrypted_buckets_and_topics_need_their_keys_where_data_is_encrypted_or_decrypted() -> None:
    assert ("kms:GenerateDataKey", BACKUP_KEY) in needs(call("s3", "PutObject", Bucket="backups", Key="k"))
    assert ("kms:Decrypt", BACKUP_KEY) in needs(call("s3", "GetObject", Bucket="backups", Key="k"))
    assert needs(call("s3", "HeadObject", Bucket="backups", Key="k")) == [("s3:GetObject", "arn:aws:s3:::backups/k")]
    assert needs(call("sns", "Publish", TopicArn=TOPIC, Message="m"))[1:] == [("kms:GenerateDataKey", TOPIC_KEY),
                                                                               ("kms:Decrypt", TOPIC_KEY)]


def test_a_missing_key_answered_404_needs_list_bucket_or_s3_would_answer_403() -> None:
    assert needs(call("s3", "HeadObject", error_code="404", Bucket="data", Key="gone")) == [
        ("s3:GetObject", "arn:aws:s3:::data/gone"), ("s3:ListBucket", "arn:aws:s3:::data")]


def test_a_change_set_named_by_its_arn_is_authorized_against_its_stack() -> None:
    stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/Pipeline-recovery/abc"
    change_set = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:changeSet/dr-recovery/def"
    created = RecordedCall(handler="recovery.handler.handler", invoked_as="r", service="cloudformation",
                           operation="CreateChangeSet", params={"StackName": "Pipeline-recovery"}, region="us-east-1",
                           answer={"Id": change_set, "StackId": stack})
    known = learned_change_sets([created])
    assert needs(call("cloudformation", "DescribeChangeSet", ChangeSetName=change_set), known) == [
        ("cloudformation:DescribeChangeSet", stack)]
    # a stack by name is any stack of that name
    assert needs(call("cloudformation", "DeleteStack", StackName="Pipeline-recovery")) == [
        ("cloudformation:DeleteStack", f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/Pipeline-recovery/*")]


def test_a_call_the_map_cannot_place_fails_loudly() -> None:
    with pytest.raises(UnmappedCall, match="FrobnicateObject"):
        permissions_of(call("s3", "FrobnicateObject", Bucket="data"), FACTS)
    with pytest.raises(UnmappedCall, match="function"):  # a required resource the request does not name
        permissions_of(call("lambda", "GetFunction"), FACTS)


# The evaluator ------------------------------------------------------------------------------------------

READ = Permission("s3:GetObject", "arn:aws:s3:::data/uploads/a.csv")


def test_an_allow_on_the_resource_allows() -> None:
    assert outcome(READ, [allow("s3:GetObject", "arn:aws:s3:::data/*")]) is Outcome.ALLOWED


def test_a_resource_outside_the_grant_is_denied() -> None:
    assert outcome(READ, [allow("s3:GetObject", "arn:aws:s3:::data/reports/*")]) is Outcome.IMPLICITLY_DENIED
    assert outcome(READ, [allow("s3:PutObject", "arn:aws:s3:::data/*")]) is Outcome.IMPLICITLY_DENIED


def test_an_explicit_deny_wins_over_every_allow() -> None:
    statements = [allow("s3:*", "*"),
                  {"Effect": "Deny", "Action": "s3:Get*", "Resource": "arn:aws:s3:::data/uploads/*"}]
    assert outcome(READ, statements) is Outcome.EXPLICITLY_DENIED


def test_a_copy_whose_source_is_not_readable_is_denied_though_its_destination_is_writable() -> None:
    # Given a role that may write the destination but not read the source
    statements = [allow("s3:PutObject", "arn:aws:s3:::data/*"), allow("s3:GetObject", "arn:aws:s3:::backups/content/*")]
    copy = call("s3", "CopyObject", Bucket="data", Key="a.csv", CopySource="backups/content/a?versionId=v1")
    # When each permission of the copy is evaluated
    decisions = {p.action: outcome(p, statements) for p in permissions_of(copy, WorldFacts(account=ACCOUNT))}
    # Then the write is allowed and the versioned read of the source is not, nor are the tags it copies
    assert decisions == {"s3:PutObject": Outcome.ALLOWED, "s3:GetObjectVersion": Outcome.IMPLICITLY_DENIED,
                         "s3:GetObjectVersionTagging": Outcome.IMPLICITLY_DENIED,
                         "s3:PutObjectTagging": Outcome.IMPLICITLY_DENIED}


def test_a_missing_passrole_is_denied_and_a_passrole_for_another_service_does_not_help() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/ingest-role"
    passing = permissions_of(call("lambda", "CreateFunction", FunctionName="f", Role=role), FACTS)[1]
    create = allow("lambda:CreateFunction", "*")
    assert outcome(passing, [create]) is Outcome.IMPLICITLY_DENIED
    for_stacks = allow("iam:PassRole", role,
                       Condition={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}})
    assert outcome(passing, [create, for_stacks]) is Outcome.IMPLICITLY_DENIED
    for_lambda = allow("iam:PassRole", role,
                       Condition={"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})
    assert outcome(passing, [create, for_lambda]) is Outcome.ALLOWED


def test_wildcards_match_as_iam_matches_them() -> None:
    assert outcome(READ, [allow("S3:get*", "arn:aws:s3:::dat?/*")]) is Outcome.ALLOWED  # actions ignore case
    assert outcome(READ, [allow("s3:GetObject", "arn:aws:s3:::Data/*")]) is Outcome.IMPLICITLY_DENIED  # resources don't
    dotted = Permission("s3:GetObject", "arn:aws:s3:::dataXbackup/k")
    assert outcome(dotted, [allow("s3:GetObject", "arn:aws:s3:::data.backup/*")]) is Outcome.IMPLICITLY_DENIED


def test_not_action_and_not_resource_allow_everything_but_what_they_list() -> None:
    everything_but_deletes = {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}
    assert outcome(READ, [everything_but_deletes]) is Outcome.ALLOWED
    delete = Permission("s3:DeleteObject", READ.resource)
    assert outcome(delete, [everything_but_deletes]) is Outcome.IMPLICITLY_DENIED
    outside_uploads = {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::data/uploads/*"}
    assert outcome(READ, [outside_uploads]) is Outcome.IMPLICITLY_DENIED
    assert outcome(Permission("s3:GetObject", "arn:aws:s3:::data/reports/r"), [outside_uploads]) is Outcome.ALLOWED


def test_conditions_are_decided_from_the_request_and_a_failed_one_does_not_deny() -> None:
    metrics = call("cloudwatch", "PutMetricData", Namespace="Other", MetricData=[])
    [permission] = permissions_of(metrics, FACTS)
    in_namespace = allow("cloudwatch:PutMetricData", "*",
                         Condition={"StringEquals": {"cloudwatch:namespace": "ApiladosDR"}})
    assert outcome(permission, [in_namespace]) is Outcome.IMPLICITLY_DENIED
    # an Allow whose condition fails only does not apply (moto's own check would turn it into a Deny)
    assert outcome(permission, [in_namespace, allow("cloudwatch:PutMetricData", "*")]) is Outcome.ALLOWED
    create_only = allow("s3:PutObject", "*", Condition={"Null": {"s3:if-none-match": "false"}})
    assert outcome(Permission("s3:PutObject", "arn:aws:s3:::b/k"), [create_only]) is Outcome.IMPLICITLY_DENIED
    guarded = Permission("s3:PutObject", "arn:aws:s3:::b/k", {"s3:if-none-match": "*"})
    assert outcome(guarded, [create_only]) is Outcome.ALLOWED
    if_exists = allow("s3:GetObject", "*", Condition={"StringEqualsIfExists": {"s3:versionid": "v1"}})
    assert outcome(READ, [if_exists]) is Outcome.ALLOWED


def test_a_condition_the_harness_cannot_decide_is_refused_not_guessed() -> None:
    tagged = allow("s3:GetObject", "*", Condition={"StringEquals": {"aws:PrincipalTag/team": "dr"}})
    with pytest.raises(UndecidedCondition, match="aws:PrincipalTag/team"):
        evaluate(READ, [tagged])


def test_a_resource_policy_deny_applies_and_an_assumed_key_is_reported() -> None:
    plain_http = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "arn:aws:s3:::data/*",
                  "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    everyone = {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}
    decision = evaluate(READ, [allow("s3:GetObject", "*")], [plain_http])
    assert decision.outcome is Outcome.ALLOWED and decision.assumed == {"aws:SecureTransport"}
    assert outcome(READ, [allow("s3:GetObject", "*")], resource_policies=[everyone]) is Outcome.EXPLICITLY_DENIED


# The backup bucket's policy (stacks/constructs/backup_bucket.py): object creation only with If-None-Match.
WRITE_ONCE = {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "s3:PutObject",
              "Resource": "arn:aws:s3:::backups/*",
              "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}}


@pytest.mark.parametrize(("operation", "params", "expected"), [
    ("PutObject", {}, Outcome.EXPLICITLY_DENIED),
    ("PutObject", {"IfMatch": '"etag"'}, Outcome.EXPLICITLY_DENIED),  # a conditional overwrite is an overwrite
    ("PutObject", {"IfNoneMatch": "*"}, Outcome.ALLOWED),
    ("CopyObject", {"CopySource": "data/a.csv?versionId=v1"}, Outcome.EXPLICITLY_DENIED),
    ("CopyObject", {"CopySource": "data/a.csv?versionId=v1", "IfNoneMatch": "*"}, Outcome.ALLOWED),
    ("CreateMultipartUpload", {}, Outcome.ALLOWED),  # takes no conditional header: its completion does
    ("UploadPartCopy", {"UploadId": "u", "PartNumber": 1, "CopySource": "data/a.csv?versionId=v1"}, Outcome.ALLOWED),
    ("CompleteMultipartUpload", {"UploadId": "u"}, Outcome.EXPLICITLY_DENIED),
    ("CompleteMultipartUpload", {"UploadId": "u", "IfNoneMatch": "*"}, Outcome.ALLOWED),
])
def test_the_backup_buckets_policy_refuses_every_object_creation_without_if_none_match(
        operation: str, params: dict[str, Any], expected: Outcome) -> None:
    # Given a role that may read and write the backup bucket, under the bucket's write-once policy
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/backup"
    role = [allow(["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"], "*")]
    write = call("s3", operation, Bucket="backups", Key="content/sha256/ab", **params)
    # When its write to the bucket is evaluated / Then only a create-only write is allowed
    [permission] = [p for p in permissions_of(write, WorldFacts(account=ACCOUNT)) if p.action == "s3:PutObject"]
    assert outcome(permission, role, resource_policies=[WRITE_ONCE], role_arn=role_arn, account=ACCOUNT) is expected


def test_a_deny_that_spares_one_role_by_its_arn_refuses_every_other_role() -> None:
    # Given the backup bucket's policy: only the retention role may place a delete marker
    retention = f"arn:aws:iam::{ACCOUNT}:role/retention"
    only_retention = {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                      "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::backups/*",
                      "Condition": {"ArnNotEquals": {"aws:PrincipalArn": retention}}}
    [hide] = permissions_of(call("s3", "DeleteObject", Bucket="backups", Key="content/sha256/ab"), FACTS)
    role = [allow("s3:DeleteObject", "*")]
    # Then the retention role may, and another role with the same grant may not
    assert outcome(hide, role, resource_policies=[only_retention], role_arn=retention,
                   account=ACCOUNT) is Outcome.ALLOWED
    assert outcome(hide, role, resource_policies=[only_retention], role_arn=f"arn:aws:iam::{ACCOUNT}:role/backup",
                   account=ACCOUNT) is Outcome.EXPLICITLY_DENIED


def test_bypassing_governance_retention_needs_its_own_permission() -> None:
    shorten = call("s3", "PutObjectRetention", Bucket="backups", Key="content/a", BypassGovernanceRetention=True,
                   Retention={"Mode": "GOVERNANCE"})
    purge = call("s3", "DeleteObjects", Bucket="backups", BypassGovernanceRetention=True,
                 Delete={"Objects": [{"Key": "content/a", "VersionId": "v1"}]})
    assert needs(shorten) == [("s3:PutObjectRetention", "arn:aws:s3:::backups/content/a"),
                              ("s3:BypassGovernanceRetention", "arn:aws:s3:::backups/content/a")]
    assert needs(purge) == [("s3:DeleteObjectVersion", "arn:aws:s3:::backups/content/a"),
                            ("s3:BypassGovernanceRetention", "arn:aws:s3:::backups/content/a")]


def test_a_kms_key_counts_the_role_policy_only_where_its_key_policy_delegates_to_the_account() -> None:
    decrypt = Permission("kms:Decrypt", BACKUP_KEY)
    role_policy = [allow("kms:Decrypt", BACKUP_KEY)]
    delegating = [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
                   "Resource": "*"}]
    assert outcome(decrypt, role_policy, key_policies={BACKUP_KEY: delegating}, account=ACCOUNT) is Outcome.ALLOWED
    service_only = [{"Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"}, "Action": "kms:*",
                     "Resource": "*"}]
    assert outcome(decrypt, role_policy, key_policies={BACKUP_KEY: service_only},
                   account=ACCOUNT) is Outcome.IMPLICITLY_DENIED


# The template resolver and the whole check ------------------------------------------------------------

ROLE = "FunctionRole"
TEMPLATE: dict[str, Any] = {"Resources": {
    "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": [
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*",
         "Principal": {"AWS": {"Fn::Join": ["", ["arn:aws:iam::", {"Ref": "AWS::AccountId"}, ":root"]]}}}]}}},
    "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketEncryption": {"ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                           "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]}}}]}}},
    ROLE: {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
    "Policy": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": ROLE}], "PolicyDocument": {"Statement": [
        allow(["s3:PutObject", "s3:DeleteObject"],
              {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/backups/*"]]}),
        allow("kms:GenerateDataKey", {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/"
                                                 "${Key}"}),
        allow("lambda:InvokeFunction", {"Fn::Select": [0, {"Fn::Split": [",", {"Fn::Sub": "${Function.Arn},x"}]}]}),
    ]}}},
    "Function": {"Type": "AWS::Lambda::Function", "Properties": {
        "Handler": "backup.handler.handler", "Role": {"Fn::GetAtt": [ROLE, "Arn"]},
        "Environment": {"Variables": {"DR_BACKUP_BUCKET_NAME": {"Ref": "Bucket"}}}}},
}}
NAMES = EmbeddedNames(account=ACCOUNT, region="us-east-1",
                      environments={"backup.handler.handler": {"DR_BACKUP_BUCKET_NAME": "apilados-dr-backups"}},
                      function_names={"backup.handler.handler": "apilados-dr-backup"})


def test_the_template_resolves_to_the_names_the_handlers_ran_with() -> None:
    resolved = resolve_template(TEMPLATE, NAMES)
    [write, data_key, invoke] = resolved.roles["backup.handler.handler"].statements
    assert write["Resource"] == "arn:aws:s3:::apilados-dr-backups/backups/*"
    key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/key"
    assert data_key["Resource"] == key and resolved.facts.bucket_keys == {"apilados-dr-backups": key}
    assert invoke["Resource"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:apilados-dr-backup"
    assert resolved.key_policies[key][0]["Principal"]["AWS"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_an_intrinsic_the_resolver_does_not_know_is_refused() -> None:
    template = {"Resources": {**TEMPLATE["Resources"], "Policy": {"Type": "AWS::IAM::Policy", "Properties": {
        "Roles": [{"Ref": ROLE}], "PolicyDocument": {"Statement": [allow("s3:*", {"Fn::ImportValue": "x"})]}}}}}
    with pytest.raises(UnresolvableTemplate, match="Fn::ImportValue"):
        resolve_template(template, NAMES)


def test_the_check_lists_each_denied_action_and_each_unused_mutating_grant() -> None:
    # Given a backup function that wrote a backup (allowed, with its bucket's key) and read one (not granted)
    def backup_call(operation: str, key: str) -> RecordedCall:
        return RecordedCall(handler="backup.handler.handler", invoked_as="apilados-dr-backup", service="s3",
                            operation=operation, params={"Bucket": "apilados-dr-backups", "Key": key},
                            region="us-east-1")

    recording = CallRecording(calls=[backup_call("PutObject", "backups/x/manifest.json"),
                                     backup_call("GetObject", "backups/x/manifest.json")])
    # When the recording is checked against the template
    report = check_conformance(TEMPLATE, recording, NAMES)
    # Then the read and its decryption are denied, and the delete and the invoke were granted but unused
    assert [(denied.action, denied.calls) for denied in report.denied] == [("kms:Decrypt", 1), ("s3:GetObject", 1)]
    assert [(grant.action, grant.resource) for grant in report.unused_grants] == [
        ("s3:DeleteObject", "arn:aws:s3:::apilados-dr-backups/backups/*"),
        ("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:apilados-dr-backup")]


# The recorder ------------------------------------------------------------------------------------------

def test_the_recorder_keys_each_call_by_the_handler_that_made_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a function package whose handler calls S3, one call failing
    module = types.ModuleType("fake_function.handler")

    def handler(event: dict[str, Any], context: Any) -> None:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.put_object(Bucket="data", Key="a.csv", Body=b"1")
        with pytest.raises(ClientError):
            s3.head_object(Bucket="data", Key="missing.csv")

    module.handler = handler
    monkeypatch.setitem(sys.modules, "fake_function.handler", module)
    context = types.SimpleNamespace(function_name="fake-function")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="data")
        # When it runs under the recorder, after a call no handler made
        with record_calls(["fake_function.handler.handler"]) as recording:
            boto3.client("s3", region_name="us-east-1").list_buckets()
            module.handler({}, context)
    # Then only the handler's calls are recorded, with their outcome, and the handler is restored afterwards
    assert [(c.handler, c.operation, c.error_code) for c in recording.calls] == [
        ("fake_function.handler.handler", "PutObject", None), ("fake_function.handler.handler", "HeadObject", "404")]
    assert recording.calls[0].params["Body"] == "<payload>" and recording.invoked_as == {
        "fake_function.handler.handler": "fake-function"}
    assert module.handler is handler


def test_the_recorder_notes_the_region_each_function_ran_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given one handler run in the primary region, then in the secondary (as Lambda sets AWS_REGION), each
    # calling the other region's S3
    module = types.ModuleType("fake_function.handler")

    def handler(event: dict[str, Any], context: Any) -> None:
        boto3.client("s3", region_name=event["calls"]).list_buckets()

    module.handler = handler
    monkeypatch.setitem(sys.modules, "fake_function.handler", module)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with mock_aws(), record_calls(["fake_function.handler.handler"]) as recording:
        module.handler({"calls": "us-west-2"}, types.SimpleNamespace(function_name="primary-fn"))
        monkeypatch.setenv("AWS_REGION", "us-west-2")
        module.handler({"calls": "us-east-1"}, types.SimpleNamespace(function_name="standby-fn"))
    # Then each call carries where its function ran (whose stack's role it has), apart from where the call went
    assert [(call.function_region, call.region) for call in recording.calls] == [
        ("us-east-1", "us-west-2"), ("us-west-2", "us-east-1")]
    # And the names and environments are kept per region, so each stack's template resolves against its own
    names = names_in(recording, ACCOUNT, "us-west-2")
    assert names.region == "us-west-2" and names.function_names == {"fake_function.handler.handler": "standby-fn"}
    assert names.environments["fake_function.handler.handler"]["AWS_REGION"] == "us-west-2"
    assert recording.invoked_as == {"fake_function.handler.handler": "primary-fn"}
