"""The recovery role's grants for a region switch, in the primary stack and in the standby: what failover and failback
both call (stacks/constructs/region_switch.py), what each alone calls (failover.py, failback.py) and the validation's
own reads (validation_grants.py), statement by statement; and, in the standby, the switch's calls that other grants
of the role hold already (this region's function, the replica as a restore target)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.support import (
    Synthesized,
    as_list,
    logical_id,
    rendered,
    role_statements,
    statements_granting,
)

RECOVERY = "recovery.handler.handler"
ACCOUNT = "${AWS::AccountId}"
ALARM_KINDS = ("errors", "throttles", "health-probe", "avg-duration", "p99-duration")
NOTIFICATIONS = ["s3:GetBucketNotification", "s3:PutBucketNotification"]
# What the default settings (cdk.json) and TUNED (tests/infra/support.py) name.
SYSTEMS = {
    "synth": {"function": "apilados-pipeline-ingest", "data": "apilados-production-data",
              "replica": "apilados-production-data-replica", "primary": "us-east-1", "secondary": "us-west-2",
              "namespace": "ApiladosDR", "stakeholders": None},
    "tuned": {"function": "orders-api", "data": "orders.data.example", "replica": "orders-data-replica",
              "primary": "eu-west-1", "secondary": "eu-central-1", "namespace": "OrdersDR",
              "stakeholders": "arn:aws:sns:eu-central-1:123456789012:orders-stakeholders"},
}


def _function(system: dict[str, Any], region: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{system['function']}"
    return arn if qualifier is None else f"{arn}:{qualifier}"


def _alarms(system: dict[str, Any], region: str) -> list[str]:
    return sorted(f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{system['function']}-LIVE-{kind}"
                  for kind in ALARM_KINDS)


def _resources_of(synth: Synthesized, stack: str) -> dict[str, dict[str, Any]]:
    return synth.resources if stack == "primary" else synth.standby_resources


def _policy(synth: Synthesized, stack: str, name: str) -> dict[str, tuple[list[str], list[Any], Any]]:
    """The managed policy `name` of the recovery function: Sid -> (actions, resources, condition), sorted."""
    resources = _resources_of(synth, stack)
    [policy] = [resource for logical, resource in resources.items()
                if resource["Type"] == "AWS::IAM::ManagedPolicy" and logical.startswith(f"FunctionsRecovery{name}")]
    return {statement["Sid"]: (sorted(as_list(statement["Action"])),
                               sorted((rendered(resource) for resource in as_list(statement["Resource"])), key=str),
                               statement.get("Condition"))
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]}


def _other_region(system: dict[str, Any], stack: str) -> str:
    """The region of the two that `stack` is not deployed in."""
    return system["secondary"] if stack == "primary" else system["primary"]


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_the_region_switch_grants_what_both_switches_call_once(fixture: str, stack: str, request):
    # Given the recovery function of either stack
    synth: Synthesized = request.getfixturevalue(fixture)
    system = SYSTEMS[fixture]
    other = _other_region(system, stack)
    data, replica = (f"arn:aws:s3:::{system[bucket]}" for bucket in ("data", "replica"))
    expected = {
        # Both buckets' pipeline entry moved: read, merged, read back
        "SwitchPipelineNotifications": (NOTIFICATIONS, sorted([data, replica]), None),
        # The other region's LIVE: its alias read, its versions invoked by number, its alarms read
        "ReadOtherRegionLive": (["lambda:GetAlias"], [_function(system, other)], None),
        "InvokeOtherRegionLiveVersions": (["lambda:InvokeFunction"], [_function(system, other, "*")], None),
        "ReadOtherRegionAlarms": (["cloudwatch:DescribeAlarms"], _alarms(system, other), None),
    }
    if stack == "primary":
        # The replica's versions listed (catch-up, divergence), the secondary function's environment merged
        expected["ListReplicaVersions"] = (["s3:ListBucketVersions"], [replica], None)
        expected["MergeSecondaryEnvironment"] = (
            ["lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"],
            [_function(system, system["secondary"])], None)
    # Then the region switch's policy holds exactly these statements
    assert _policy(synth, stack, "RegionSwitchGrants") == expected


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_failover_alone_reads_the_secondary_lives_policy_and_stables_version(fixture: str, stack: str, request):
    synth: Synthesized = request.getfixturevalue(fixture)
    system = SYSTEMS[fixture]
    expected: dict[str, Any] = {
        # GetPolicy with LIVE as qualifier: S3 may invoke it from the replica (the readiness check)
        "ReadSecondaryLivePolicy": (["lambda:GetPolicy"], [_function(system, system["secondary"], "LIVE")], None),
    }
    if stack == "primary":
        # STABLE's version read by number (its CodeSha256); the standby reads its own under alias control
        expected["ReadSecondaryVersions"] = (["lambda:GetFunctionConfiguration"],
                                             [_function(system, system["secondary"], "*")], None)
    if system["stakeholders"]:
        expected["NotifyStakeholders"] = (["sns:Publish"], [system["stakeholders"]], None)
    assert _policy(synth, stack, "FailoverGrants") == expected


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_failback_alone_copies_back_tags_and_publishes_its_probe(fixture: str, stack: str, request):
    synth: Synthesized = request.getfixturevalue(fixture)
    system = SYSTEMS[fixture]
    expected: dict[str, Any] = {
        "PublishPrimaryProbeMetrics": (["cloudwatch:PutMetricData"], ["*"],
                                       {"StringEquals": {"cloudwatch:namespace": system["namespace"]}}),
    }
    if stack == "primary":
        # The standby's restores read the replica's objects with their tags already (a restore target there)
        expected["CopyBackReplicaVersions"] = (["s3:GetObjectVersionTagging"],
                                               [f"arn:aws:s3:::{system['replica']}/*"], None)
    assert _policy(synth, stack, "FailbackGrants") == expected


@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_the_validation_reads_only_the_controls_no_other_grant_holds(synth: Synthesized, stack: str):
    resources = _resources_of(synth, stack)
    bucket = logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True)
    topics = sorted((f"${{{name}}}" for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"), key=str)
    assert _policy(synth, stack, "ValidationGrants") == {
        "ReadBackupBucketControls": (["s3:GetBucketPolicy", "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration"],
                                     [f"${{{bucket}.Arn}}"], None),
        "ReadAlertTopicEncryption": (["sns:GetTopicAttributes"], topics, None),
    }


@pytest.mark.parametrize("fixture", ["synth", "tuned"])
def test_the_standby_holds_the_switchs_calls_on_its_own_function_and_replica_by_its_other_grants(fixture: str,
                                                                                                 request):
    # Given the standby's recovery role, where the secondary function is this region's and the replica a restore target
    synth: Synthesized = request.getfixturevalue(fixture)
    system = SYSTEMS[fixture]
    resources = synth.standby_resources
    statements = role_statements(resources, logical_id(resources, "AWS::Lambda::Function", Handler=RECOVERY))
    secondary, replica = _function(system, system["secondary"]), f"arn:aws:s3:::{system['replica']}"

    def granted_by(action: str, resource: str) -> list[str]:
        return [statement.get("Sid", "") for statement in statements_granting(statements, action)
                if resource in [rendered(item) for item in as_list(statement["Resource"])]]

    # Then each call the region switch makes there is granted once, by the grant that holds it for other actions
    assert granted_by("lambda:GetFunctionConfiguration", secondary) == ["ReadProtectedFunction"]
    assert granted_by("lambda:GetFunctionConfiguration", f"{secondary}:*") == ["ReadProtectedFunction"]
    assert granted_by("lambda:GetAlias", secondary) == ["ReadProtectedFunction"]
    assert granted_by("lambda:UpdateFunctionConfiguration", secondary) == ["RecoverProtectedFunction"]
    assert granted_by("lambda:InvokeFunction", f"{secondary}:*") == ["ProbeLiveVersions"]
    assert granted_by("cloudwatch:DescribeAlarms", _alarms(system, system["secondary"])[0]) == ["ReadAlarmStates"]
    assert granted_by("s3:ListBucketVersions", replica) == ["ListRestoreTargets"]
    assert granted_by("s3:GetObjectVersionTagging", f"{replica}/*") == ["ReadRestoreTargetObjects"]
    assert granted_by("s3:GetObjectVersion", f"{replica}/*") == ["ReadRestoreTargetObjects"]
