"""Replication to the secondary region in the synthesized stack: the alarms on the controller's rule, the recovery
function's replication settings and exactly the grants its calls need, and the `replication` settings."""

from __future__ import annotations

import pytest

from app import build_app
from drcore.core.config import RegionSettings
from drcore.region.replication_rule import OWNED_RULE_ID
from stacks.settings import InvalidSettings
from tests.infra.support import (
    Synthesized,
    as_list,
    default_settings,
    logical_id,
    rendered,
    role_statements,
    statements_granting,
)

RECOVERY = "recovery.handler.handler"


def _alarms(synth: Synthesized) -> dict[str, dict]:
    return {resource["Properties"]["AlarmName"]: resource["Properties"] for resource in synth.resources.values()
            if resource["Type"] == "AWS::CloudWatch::Alarm"
            and "-replication-" in resource["Properties"].get("AlarmName", "")}


def _dimensions(alarm: dict) -> dict[str, str]:
    return {dimension["Name"]: dimension["Value"] for dimension in alarm["Dimensions"]}


def _recovery(synth: Synthesized) -> str:
    return logical_id(synth.resources, "AWS::Lambda::Function", Handler=RECOVERY)


def _granted(synth: Synthesized, action: str) -> list:
    statements = statements_granting(role_statements(synth.resources, _recovery(synth)), action)
    return sorted(rendered(resource) for statement in statements for resource in as_list(statement["Resource"]))


def test_three_alarms_watch_the_controllers_rule_and_alert_the_alert_topic(synth: Synthesized):
    # Given the default settings / Then latency, pending and failed operations of the rule are alarmed on
    alarms = _alarms(synth)
    assert set(alarms) == {f"apilados-production-data-replication-{kind}" for kind in ("latency", "pending", "failed")}
    topic = logical_id(synth.resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    for alarm in alarms.values():
        # S3's metrics of exactly that rule, between exactly those buckets
        assert alarm["Namespace"] == "AWS/S3"
        assert _dimensions(alarm) == {"SourceBucket": "apilados-production-data",
                                      "DestinationBucket": "apilados-production-data-replica", "RuleId": OWNED_RULE_ID}
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": topic}]
    latency = alarms["apilados-production-data-replication-latency"]
    assert (latency["MetricName"], latency["Statistic"], latency["Threshold"]) == ("ReplicationLatency", "Maximum", 900)
    assert (latency["Period"], latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (300, 3, 3)
    pending = alarms["apilados-production-data-replication-pending"]
    assert (pending["MetricName"], pending["Statistic"], pending["Threshold"]) == (
        "OperationsPendingReplication", "Maximum", 1000)
    # And a single failed operation alarms at once
    failed = alarms["apilados-production-data-replication-failed"]
    assert (failed["MetricName"], failed["Statistic"], failed["Threshold"]) == ("OperationsFailedReplication", "Sum", 0)
    assert (failed["EvaluationPeriods"], failed["DatapointsToAlarm"]) == (1, 1)


def test_the_alarms_follow_the_settings(tuned: Synthesized):
    alarms = _alarms(tuned)
    latency = alarms["orders.data.example-replication-latency"]
    pending = alarms["orders.data.example-replication-pending"]
    assert (latency["Threshold"], pending["Threshold"]) == (600, 50)
    assert (latency["Period"], latency["EvaluationPeriods"], latency["DatapointsToAlarm"]) == (60, 10, 5)
    assert _dimensions(latency)["DestinationBucket"] == "orders-data-replica"


def test_the_recovery_function_gets_every_replication_setting(tuned: Synthesized):
    variables = tuned.resources[_recovery(tuned)]["Properties"]["Environment"]["Variables"]
    region = RegionSettings.from_environ(variables)
    assert region == RegionSettings(secondary_region="eu-central-1", replica_bucket="orders-data-replica",
                                    replication_role_arn="arn:aws:iam::123456789012:role/orders-s3-replication",
                                    replication_sample_size=50, replication_max_latency_seconds=600,
                                    replication_max_pending_operations=50)


def test_the_role_reads_and_writes_only_the_data_buckets_replication_configuration(synth: Synthesized):
    for action in ("s3:GetReplicationConfiguration", "s3:PutReplicationConfiguration"):
        assert _granted(synth, action) == ["arn:aws:s3:::apilados-production-data"], action
    # And reads the replica bucket, changing nothing there but the pipeline's notification entry, which a failback
    # removes (stacks/constructs/failback.py; its listing and tag reads are the copy-back's)
    assert _granted(synth, "s3:GetBucketLocation") == ["arn:aws:s3:::apilados-production-data-replica"]
    replica_statements = [statement for statement in role_statements(synth.resources, _recovery(synth))
                          if any("replica" in str(resource) for resource in as_list(statement["Resource"]))]
    # (its notification is read by the post-recovery validation: which region processes uploads; a failover moves the
    # pipeline's notification there and lists its versions, a failback reads their tags: test_failover_stack)
    assert {action for statement in replica_statements for action in as_list(statement["Action"])} == {
        "s3:GetBucketVersioning", "s3:GetBucketLocation", "s3:ListBucket", "s3:GetObjectVersion",
        "s3:GetBucketNotification", "s3:PutBucketNotification", "s3:ListBucketVersions", "s3:GetObjectVersionTagging"}


def test_without_a_replication_role_none_is_passed_to_s3(synth: Synthesized):
    passed = statements_granting(role_statements(synth.resources, _recovery(synth)), "iam:PassRole")
    assert not [statement for statement in passed
                if statement["Condition"]["StringEquals"]["iam:PassedToService"] == "s3.amazonaws.com"]
    variables = synth.resources[_recovery(synth)]["Properties"]["Environment"]["Variables"]
    assert variables["DR_REPLICATION_ROLE_ARN"] == ""
    assert RegionSettings.from_environ(variables).replication_role_arn is None


def test_the_replication_role_is_passed_to_s3_only(tuned: Synthesized):
    [statement] = [statement for statement in statements_granting(role_statements(tuned.resources, _recovery(tuned)),
                                                                   "iam:PassRole")
                   if statement["Condition"]["StringEquals"]["iam:PassedToService"] == "s3.amazonaws.com"]
    assert statement["Resource"] == "arn:aws:iam::123456789012:role/orders-s3-replication"
    assert as_list(statement["Action"]) == ["iam:PassRole"]


def test_replication_defaults_are_the_recovery_functions_own():
    options, runtime = default_settings().replication, RegionSettings.model_fields
    assert options.role_arn is None
    assert options.sample_size == runtime["replication_sample_size"].default
    assert options.max_latency_seconds == runtime["replication_max_latency_seconds"].default == 15 * 60
    assert options.max_pending_operations == runtime["replication_max_pending_operations"].default


@pytest.mark.parametrize("replication, expected", [
    ({"role_arn": "replication-role"}, "dr.replication.role_arn: Value error, 'replication-role' is not the ARN"),
    ({"sample_size": 0}, "dr.replication.sample_size: Input should be greater than or equal to 1"),
    ({"sample_size": 101}, "dr.replication.sample_size: Input should be less than or equal to 100"),
    ({"max_latency_seconds": 30}, "dr.replication.max_latency_seconds: Input should be greater than or equal to 60"),
    ({"max_pending_operations": -1}, "dr.replication.max_pending_operations: Input should be greater than or equal"),
    ({"alarm_window": {"evaluation_periods": 2, "datapoints_to_alarm": 3}},
     "dr.replication.alarm_window.datapoints_to_alarm: Value error, must not exceed evaluation_periods (2)"),
    ({"storage_class": "GLACIER"}, "dr.replication.storage_class: Extra inputs are not permitted"),
])
def test_a_bad_replication_setting_fails_synth_naming_the_key(replication, expected):
    with pytest.raises(InvalidSettings) as raised:
        build_app({"dr": {"replication": replication}})
    assert expected in str(raised.value)
