"""The standby stack in the secondary region, and the replication of the backup bucket into its copy there."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.settings import InvalidSettings, Settings
from tests.infra.support import (
    TOPIC_KEY,
    UNSUBSCRIBED_ACKNOWLEDGED,
    Synthesized,
    as_list,
    logical_id,
    rendered,
    role_statements,
)

HANDLERS = {
    "health_watcher.handler.handler",
    "performance_watcher.handler.handler",
    "backup.handler.handler",
    "recovery.handler.handler",
    "region_watcher.handler.handler",
}
COPY = "apiladosdrstandby-backups-${AWS::AccountId}-us-west-2"
TUNED_COPY = "apiladosdrstandby-backups-${AWS::AccountId}-eu-central-1"
ALIAS = "alias/ApiladosDrStandby-backup-copy"
BACKUP_KEY = "Encrypts the backups of apilados-pipeline-ingest"


def _functions(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Logical id of each function, by handler."""
    return {resource["Properties"]["Handler"]: name for name, resource in resources.items()
            if resource["Type"] == "AWS::Lambda::Function"}


def _environment(resources: dict[str, dict[str, Any]], handler: str) -> dict[str, Any]:
    variables: dict[str, Any] = resources[_functions(resources)[handler]]["Properties"]["Environment"]["Variables"]
    return variables


def _copy_bucket(resources: dict[str, dict[str, Any]]) -> str:
    [bucket] = [name for name, resource in resources.items() if resource["Type"] == "AWS::S3::Bucket"
                and resource["Properties"].get("ObjectLockEnabled")]
    return bucket


def _backup_bucket(synth: Synthesized) -> dict[str, Any]:
    return synth.resources[_copy_bucket(synth.resources)]


def test_the_standby_is_its_own_stack_in_the_secondary_region_deployed_before_the_controller(synth: Synthesized):
    assert synth.standby_stack.stack_name == "ApiladosDrStandby"
    assert synth.standby_stack.region == "us-west-2" and synth.stack.region == "us-east-1"
    # The primary's replication writes into the standby's copy: the copy must exist first
    assert synth.standby_stack in synth.stack.dependencies


def test_the_standby_stack_is_named_from_the_settings(tuned: Synthesized):
    assert tuned.standby_stack.region == "eu-central-1"


def test_the_standby_runs_recovery_watchers_and_backup_from_the_same_asset(synth: Synthesized):
    resources = synth.standby_resources
    assert set(_functions(resources)) == HANDLERS
    primary = {resource["Properties"]["Handler"]: resource["Properties"]["Code"]
               for resource in synth.resources.values() if resource["Type"] == "AWS::Lambda::Function"}
    for name in _functions(resources).values():
        # the same code (asset hash) as the primary's functions (the region watcher runs in the standby only)
        assert resources[name]["Properties"]["Code"]["S3Key"] == primary["recovery.handler.handler"]["S3Key"]


def test_the_standby_recovery_works_on_this_regions_function_the_copy_and_the_replica(synth: Synthesized):
    resources = synth.standby_resources
    variables = _environment(resources, "recovery.handler.handler")
    # Its backup store is the copy; what its restores may write besides the data bucket is the replica
    assert variables["DR_BACKUP_BUCKET_NAME"] == {"Ref": _copy_bucket(resources)}
    assert variables["DR_RESTORE_TARGET_BUCKETS"] == "apilados-production-data-replica"
    assert variables["DR_STATE_TABLE_NAME"] == "apilados-dr-state"
    assert variables["DR_PROTECTED_FUNCTION_NAME"] == "apilados-pipeline-ingest"
    # The same action table and variables as the primary's recovery function: only the values above differ
    primary = _environment(synth.resources, "recovery.handler.handler")
    assert set(variables) == set(primary) | {"DR_STATE_SCOPE"}
    differing = {name for name in primary if rendered(variables[name]) != rendered(primary[name])}
    # (the validation checks its own backup store's key: the copy's; the standby runs no fan-out, of a restore or of
    # its safety snapshot)
    assert differing <= {"DR_BACKUP_BUCKET_NAME", "DR_RESTORE_TARGET_BUCKETS", "DR_ALERT_TOPIC_ARN",
                         "DR_EMERGENCY_TOPIC_ARN", "DR_STATE_TABLE_NAME", "DR_BACKUP_KEY_ARN",
                         "DR_RESTORE_FANOUT_STATE_MACHINE", "DR_SNAPSHOT_FANOUT_STATE_MACHINE"}, differing
    assert variables["DR_RESTORE_FANOUT_STATE_MACHINE"] == variables["DR_SNAPSHOT_FANOUT_STATE_MACHINE"] == ""
    # And its grants name this region's function, the copy and its key
    statements = rendered(role_statements(resources, _functions(resources)["recovery.handler.handler"]))
    recovered = [statement for statement in statements if statement.get("Sid") == "RecoverProtectedFunction"]
    assert [statement["Resource"] for statement in recovered] == [
        "arn:aws:lambda:us-west-2:${AWS::AccountId}:function:apilados-pipeline-ingest"]
    writes = [statement for statement in statements if "s3:PutObject" in as_list(statement["Action"])]
    targets = {resource for statement in writes for resource in as_list(statement["Resource"])}
    assert "arn:aws:s3:::apilados-production-data-replica/*" in targets
    copy = _copy_bucket(resources)
    assert any(resource.startswith(f"${{{copy}.Arn}}/") for resource in targets), targets
    key = [statement for statement in statements if statement.get("Sid") == "UseBackupKey"]
    backup_key = logical_id(resources, "AWS::KMS::Key", Description=BACKUP_KEY)
    assert key and key[0]["Resource"] == f"${{{backup_key}.Arn}}"


def test_the_standby_keeps_its_controller_items_apart_from_the_primarys_in_the_global_table(synth: Synthesized):
    # Every standby function scopes its items to its region; no primary function does (its items stay where they
    # were), so the two regions' watchers never write one controller record
    for handler in _functions(synth.standby_resources):
        assert _environment(synth.standby_resources, handler)["DR_STATE_SCOPE"] == "us-west-2", handler
    for handler in _functions(synth.resources):
        assert "DR_STATE_SCOPE" not in _environment(synth.resources, handler), handler


def test_every_standby_alarm_has_an_action(synth: Synthesized):
    alarms = {name: resource["Properties"] for name, resource in synth.standby_resources.items()
              if resource["Type"] == "AWS::CloudWatch::Alarm"}
    # LIVE's five alarms, the three watchers' heartbeats (the region watcher's too), the function backup's RPO, the
    # failed-events queue
    assert len(alarms) == 10
    assert all(properties.get("AlarmActions") for properties in alarms.values())
    names = {properties.get("AlarmName") for properties in alarms.values()}
    assert {"apilados-pipeline-ingest-LIVE-errors", "apilados-pipeline-ingest-LIVE-health-probe",
            "apilados-pipeline-ingest-health_watcher-heartbeat", "apilados-pipeline-ingest-backup-lambda-rpo",
            "apilados-pipeline-ingest-region_watcher-heartbeat"} <= names


def test_the_standby_ticks_its_watchers_and_backs_up_its_function_only(synth: Synthesized):
    resources = synth.standby_resources
    functions = _functions(resources)
    schedules: dict[str, list[dict[str, Any]]] = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in resource["Properties"]:
            schedules.setdefault(resource["Properties"]["ScheduleExpression"], []).extend(
                resource["Properties"]["Targets"])
    assert set(schedules) == {"rate(1 minute)", "rate(5 minutes)"}
    ticked = {target["Arn"]["Fn::GetAtt"][0] for target in schedules["rate(1 minute)"]}
    assert ticked == {functions[handler] for handler in (
        "health_watcher.handler.handler", "performance_watcher.handler.handler", "region_watcher.handler.handler")}
    [backup] = schedules["rate(5 minutes)"]
    assert backup["Arn"]["Fn::GetAtt"][0] == functions["backup.handler.handler"]
    assert json.loads(backup["Input"]) == {"component": "lambda"}
    # The backup role reads this region's function and not the data bucket, the stack or the logs
    statements = rendered(role_statements(resources, functions["backup.handler.handler"]))
    sids = {statement.get("Sid") for statement in statements}
    assert "ReadProtectedFunction" in sids
    assert not sids & {"ReadDataObjects", "ReadPipelineStack", "ExportFunctionLogs", "AbortFailedContentCopies"}


def test_the_standby_topics_are_encrypted_with_its_own_key(synth: Synthesized):
    resources = synth.standby_resources
    key = logical_id(resources, "AWS::KMS::Key", Description=TOPIC_KEY)
    topics = [resource for resource in resources.values() if resource["Type"] == "AWS::SNS::Topic"]
    assert len(topics) == 2
    assert all(topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]} for topic in topics)


def test_the_standby_topics_are_subscribed_as_the_primarys(tuned: Synthesized):
    def subscriptions(resources: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((resource["Properties"]["Protocol"], resource["Properties"]["Endpoint"])
                      for resource in resources.values() if resource["Type"] == "AWS::SNS::Subscription")

    assert subscriptions(tuned.standby_resources) == subscriptions(tuned.resources) != []


@pytest.mark.parametrize(("fixture", "mode", "days"), [("synth", "GOVERNANCE", 30), ("tuned", "COMPLIANCE", 90)])
def test_the_copy_is_versioned_locked_as_the_backups_and_encrypted_with_its_own_key(fixture: str, mode: str,
                                                                                    days: int, request):
    synth: Synthesized = request.getfixturevalue(fixture)
    resources = synth.standby_resources
    copy = resources[_copy_bucket(resources)]["Properties"]
    assert copy["VersioningConfiguration"] == {"Status": "Enabled"}
    assert copy["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled",
                                               "Rule": {"DefaultRetention": {"Days": days, "Mode": mode}}}
    assert copy["ObjectLockConfiguration"] == _backup_bucket(synth)["Properties"]["ObjectLockConfiguration"]
    [encryption] = copy["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    key = encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    assert resources[key]["Type"] == "AWS::KMS::Key" and resources[key]["Properties"]["EnableKeyRotation"]
    # The key has the alias the primary's replication names it by, and the backup key's policy (no one destroys it)
    [alias] = [resource["Properties"] for resource in resources.values() if resource["Type"] == "AWS::KMS::Alias"]
    assert alias == {"AliasName": ALIAS, "TargetKeyId": {"Fn::GetAtt": [key, "Arn"]}}
    sids = {statement.get("Sid") for statement in resources[key]["Properties"]["KeyPolicy"]["Statement"]}
    assert "NoOneDestroysTheBackupKey" in sids
    assert resources[key]["DeletionPolicy"] == resources[_copy_bucket(resources)]["DeletionPolicy"] == "Retain"


def test_no_principal_of_the_account_can_overwrite_hide_or_delete_a_copied_backup(synth: Synthesized):
    resources = synth.standby_resources
    copy = _copy_bucket(resources)
    [policy] = [resource["Properties"]["PolicyDocument"]["Statement"] for resource in resources.values()
                if resource["Type"] == "AWS::S3::BucketPolicy" and resource["Properties"]["Bucket"] == {"Ref": copy}]
    statements = {statement.get("Sid"): rendered(statement) for statement in policy}
    account = "arn:aws:iam::${AWS::AccountId}:root"
    objects = f"${{{copy}.Arn}}/*"
    assert statements["BackupsAreWrittenOnce"] == {
        "Action": "s3:PutObject", "Effect": "Deny", "Principal": {"AWS": account}, "Resource": objects,
        "Sid": "BackupsAreWrittenOnce",
        "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}}
    # No exception for any role: no retention runs on the copy, and no delete marker is replicated into it
    assert statements["NoOneHidesBackups"] == {
        "Action": ["s3:DeleteObject", "s3:ReplicateDelete"], "Effect": "Deny", "Principal": {"AWS": account},
        "Resource": objects, "Sid": "NoOneHidesBackups"}
    assert statements["NoOneDestroysBackups"]["Effect"] == "Deny"
    assert set(statements["NoOneDestroysBackups"]["Action"]) == {"s3:DeleteObjectVersion",
                                                                  "s3:BypassGovernanceRetention"}
    assert "Condition" not in statements["NoOneDestroysBackups"]
    # And changes to its protection raise the severity-1 alert there
    guarded = [rendered(resource["Properties"]["EventPattern"]) for resource in resources.values()
               if resource["Type"] == "AWS::Events::Rule" and "EventPattern" in resource["Properties"]
               and resource["Properties"]["EventPattern"].get("source") == ["aws.s3"]]
    assert [pattern["detail"]["requestParameters"]["bucketName"] for pattern in guarded] == [[f"${{{copy}}}"]]


def _replication(synth: Synthesized) -> dict[str, Any]:
    configuration: dict[str, Any] = rendered(_backup_bucket(synth)["Properties"]["ReplicationConfiguration"])
    return configuration


@pytest.mark.parametrize(("fixture", "copy", "region"), [("synth", COPY, "us-west-2"),
                                                          ("tuned", TUNED_COPY, "eu-central-1")])
def test_the_backup_bucket_replicates_everything_but_delete_markers_to_the_copy(fixture: str, copy: str,
                                                                                region: str, request):
    synth: Synthesized = request.getfixturevalue(fixture)
    [rule] = _replication(synth)["Rules"]
    assert rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": ""}
    assert rule["DeleteMarkerReplication"] == {"Status": "Disabled"}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    destination = rule["Destination"]
    assert destination["Bucket"] == f"arn:aws:s3:::{copy}"
    assert destination["EncryptionConfiguration"] == {
        "ReplicaKmsKeyID": f"arn:aws:kms:{region}:${{AWS::AccountId}}:{ALIAS}"}
    assert destination["ReplicationTime"] == {"Status": "Enabled", "Time": {"Minutes": 15}}
    assert destination["Metrics"]["Status"] == "Enabled"
    # The name and the alias the primary uses are the ones the standby creates (no cross-region reference)
    standby = synth.standby_resources
    assert rendered(standby[_copy_bucket(standby)]["Properties"]["BucketName"]) == copy
    assert [resource["Properties"]["AliasName"] for resource in standby.values()
            if resource["Type"] == "AWS::KMS::Alias"] == [ALIAS]


def test_the_replication_role_does_nothing_but_replicate_the_backups(synth: Synthesized):
    resources = synth.resources
    role = _backup_bucket(synth)["Properties"]["ReplicationConfiguration"]["Role"]["Fn::GetAtt"][0]
    assert resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}}]
    assert "ManagedPolicyArns" not in resources[role]["Properties"]
    [document] = [rendered(resource["Properties"]["PolicyDocument"]) for resource in resources.values()
                  if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                  and {"Ref": role} in resource["Properties"].get("Roles", [])]
    bucket = _copy_bucket(resources)
    backup_key = logical_id(resources, "AWS::KMS::Key", Description=BACKUP_KEY)
    granted = {(statement["Sid"], action, json.dumps(statement["Resource"]), json.dumps(statement.get("Condition")))
               for statement in document["Statement"] for action in as_list(statement["Action"])}
    source_objects = f'"${{{bucket}.Arn}}/*"'
    assert granted == {
        ("ReadReplicationSource", "s3:GetReplicationConfiguration", f'"${{{bucket}.Arn}}"', "null"),
        ("ReadReplicationSource", "s3:ListBucket", f'"${{{bucket}.Arn}}"', "null"),
        *{("ReadVersionsToReplicate", action, source_objects, "null") for action in (
            "s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
            "s3:GetObjectRetention", "s3:GetObjectLegalHold")},
        *{("WriteReplicas", action, f'"arn:aws:s3:::{COPY}/*"', "null")
          for action in ("s3:ReplicateObject", "s3:ReplicateTags")},
        ("DecryptBackupsThroughS3", "kms:Decrypt", f'"${{{backup_key}.Arn}}"',
         json.dumps({"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}})),
        *{("EncryptReplicasWithCopyKey", action, '"arn:aws:kms:us-west-2:${AWS::AccountId}:key/*"',
           json.dumps({"StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com"},
                       "ForAnyValue:StringEquals": {"kms:ResourceAliases": ALIAS}}))
          for action in ("kms:Encrypt", "kms:GenerateDataKey")},
    }


def test_the_standby_outputs_name_what_an_operator_invokes_and_reads(synth: Synthesized):
    outputs = synth.standby.to_json()["Outputs"]
    assert {"RecoveryFunctionName", "RecoveryFunctionArn", "HealthWatcherName", "PerformanceWatcherName",
            "BackupFunctionName", "StateTableName", "BackupCopyBucketName", "ReplicaBucketName", "AlertTopicArn",
            "EmergencyTopicArn", "FailedEventsQueueUrl", "RegionWatcherName"} == set(outputs)
    assert outputs["StateTableName"]["Value"] == "apilados-dr-state"


# Settings ------------------------------------------------------------------------------------------------

def test_the_standby_stack_must_differ_from_the_controller():
    with pytest.raises(InvalidSettings, match=r"dr\.standby_stack: Value error, must differ from controller_stack"):
        Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "standby_stack": "ApiladosDrController"})


def test_the_standby_stack_is_not_named_like_a_function_a_recovery_may_rewrite():
    # The recovery function may create and rewrite "<protected_function>-*"; the standby's functions are named
    # after its stack
    with pytest.raises(InvalidSettings, match=r"standby_stack 'apilados-pipeline-ingest-standby' starts with"):
        Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "standby_stack": "apilados-pipeline-ingest-standby"})


def test_a_default_copy_name_too_long_for_s3_must_be_given():
    long_name = "ApiladosDrStandby" + "X" * 30
    with pytest.raises(InvalidSettings, match=r"standby.backup_copy_bucket: the default name .* \(S3 allows 63\)"):
        Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "standby_stack": long_name})
    named = Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "standby_stack": long_name,
                                   "standby": {"backup_copy_bucket": "orders-backup-copy"}})
    assert named.backup_copy_bucket("123456789012") == "orders-backup-copy"


def test_the_copy_name_is_refused_when_it_is_no_bucket_name():
    with pytest.raises(InvalidSettings, match=r"dr\.standby\.backup_copy_bucket"):
        Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "standby": {"backup_copy_bucket": "Not_A_Bucket"}})
