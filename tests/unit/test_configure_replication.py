"""`configure_replication` through the recovery function, end to end against moto with S3's replication filled in
(embedded/s3_replication.py): plan, confirm, read back; refusals that change nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from drcore.region.replication_rule import OWNED_RULE_ID
from embedded.sample_system import SampleSystem, add_replica
from tests.support import WHO, CallRecorder, act

REQUEST = {"action": "configure_replication", **WHO}
ANALYTICS = "apilados-analytics-copy"


@pytest.fixture
def replicating(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    """The recovery function's world with the replica bucket in the secondary region and the replication role."""
    add_replica(world, boto3.session.Session(region_name="us-east-1"))
    for name, value in world.region_environment().items():
        monkeypatch.setenv(name, value)
    return world


def configuration(world: SampleSystem) -> dict[str, Any]:
    return dict(world.clients["s3"].get_bucket_replication(Bucket=world.data_bucket)["ReplicationConfiguration"])


def analytics_rule(world: SampleSystem) -> dict[str, Any]:
    """Another owner's rule: reports to an analytics bucket, with settings of its own."""
    s3 = world.clients["s3"]
    s3.create_bucket(Bucket=ANALYTICS)
    s3.put_bucket_versioning(Bucket=ANALYTICS, VersioningConfiguration={"Status": "Enabled"})
    return {"ID": "reports-to-analytics", "Priority": 3, "Status": "Enabled",
            "Filter": {"And": {"Prefix": "reports/", "Tags": [{"Key": "team", "Value": "bi"}]}},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{ANALYTICS}", "StorageClass": "GLACIER_IR"}}


def put_configuration(world: SampleSystem, *rules: dict[str, Any]) -> None:
    world.clients["s3"].put_bucket_replication(
        Bucket=world.data_bucket, ReplicationConfiguration={"Role": world.replication_role_arn, "Rules": list(rules)})


def test_a_plan_shows_the_change_and_changes_nothing(replicating, monkeypatch):
    # Given a data bucket without replication
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When configure_replication is planned
    planned = act(REQUEST)["result"]
    # Then the plan adds the rule, names the role, and nothing but the plan's record was written
    plan = planned["plan"]
    assert planned["status"] == "planned" and planned["plan_id"].startswith("rr-")
    assert plan["rule_id"] == OWNED_RULE_ID and plan["role"] == replicating.replication_role_arn
    assert [change["what"] for change in plan["changes"]] == ["role", "rule"] and not plan["up_to_date"]
    assert calls.mutating() == ["PutItem"]
    with pytest.raises(replicating.clients["s3"].exceptions.ClientError):
        configuration(replicating)


def test_confirmed_the_rule_is_merged_beside_anothers_which_reads_back_unchanged(replicating):
    # Given another owner's replication rule on the data bucket
    put_configuration(replicating, analytics_rule(replicating))
    before = copy.deepcopy(configuration(replicating))
    # When planned and confirmed
    planned = act(REQUEST)["result"]
    assert planned["plan"]["kept_rules"] == ["reports-to-analytics"]
    applied = act({**REQUEST, "confirm": planned["plan_id"]})["result"]
    # Then it is applied and verified by reading back
    result = applied["result"]
    assert applied["status"] == "applied" and result["ok"] and result["changed"] and result["verification"]["ok"]
    # And S3 holds the other rule exactly as it was, and the controller's rule after it
    after = configuration(replicating)
    assert json.dumps(after["Rules"][0], sort_keys=True) == json.dumps(before["Rules"][0], sort_keys=True)
    ours = after["Rules"][1]
    assert ours["ID"] == OWNED_RULE_ID and ours["Priority"] == 4
    assert ours["Destination"]["Bucket"] == f"arn:aws:s3:::{replicating.replica_bucket}"
    assert ours["DeleteMarkerReplication"] == {"Status": "Enabled"}
    assert ours["Destination"]["ReplicationTime"]["Status"] == "Enabled"
    # And the action is journaled with who asked and why
    recent = act({"action": "status"})["result"]["recent_actions"]
    [entry] = [entry for entry in recent if entry["action"] == "configure_replication"]
    assert entry["result"] == "applied" and WHO["requested_by"] in entry["cause"]


def test_a_second_run_plans_nothing_and_writes_nothing(replicating, monkeypatch):
    # Given the rule configured once
    first = act(REQUEST)["result"]
    act({**REQUEST, "confirm": first["plan_id"]})
    written = configuration(replicating)
    # When configured again
    again = act(REQUEST)["result"]
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    applied = act({**REQUEST, "confirm": again["plan_id"]})["result"]["result"]
    # Then the plan said it is up to date, nothing was put, and the read-back still verifies the rule once
    assert again["plan"]["up_to_date"] and again["plan"]["changes"] == []
    assert applied["ok"] and not applied["changed"] and "PutBucketReplication" not in calls.calls
    assert configuration(replicating) == written
    assert [rule["ID"] for rule in written["Rules"]] == [OWNED_RULE_ID]


def test_a_configuration_changed_since_the_plan_is_not_overwritten(replicating, monkeypatch):
    # Given a plan, then another owner puts a configuration of their own
    planned = act(REQUEST)["result"]
    put_configuration(replicating, analytics_rule(replicating))
    theirs = configuration(replicating)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When the plan is confirmed
    refused = act({**REQUEST, "confirm": planned["plan_id"]})
    # Then it is refused, nothing is written, and their configuration stands
    assert refused["ok"] is False and "changed since plan" in refused["error"]
    assert "PutBucketReplication" not in calls.calls and configuration(replicating) == theirs


def test_versioning_suspended_since_the_plan_refuses_the_confirmation(replicating):
    planned = act(REQUEST)["result"]
    replicating.clients["s3_secondary"].put_bucket_versioning(
        Bucket=replicating.replica_bucket, VersioningConfiguration={"Status": "Suspended"})
    refused = act({**REQUEST, "confirm": planned["plan_id"]})
    assert refused["ok"] is False and "changed since plan" in refused["error"]


@pytest.mark.parametrize("arrange, problem", [
    (lambda world: world.clients["s3"].put_bucket_versioning(
        Bucket=world.data_bucket, VersioningConfiguration={"Status": "Suspended"}),
     "versioning is Suspended on the data bucket"),
    (lambda world: world.clients["s3_secondary"].put_bucket_versioning(
        Bucket=world.replica_bucket, VersioningConfiguration={"Status": "Suspended"}),
     "versioning is Suspended on the replica bucket"),
    (lambda world: put_configuration(world, {
        "ID": "ReplicateToSecondaryRegion", "Status": "Enabled", "Prefix": "",
        "Destination": {"Bucket": f"arn:aws:s3:::{world.replica_bucket}", "StorageClass": "STANDARD_IA"}}),
     "'ReplicateToSecondaryRegion' already replicates keys under '' to apilados-production-data-replica"),
])
def test_what_cannot_work_is_refused_with_no_mutating_call(replicating, monkeypatch, arrange, problem):
    # Given a world replication cannot be configured in as it is
    arrange(replicating)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When planned / Then refused, saying why, and no call changed anything (not even a plan was recorded)
    refused = act(REQUEST)
    assert refused["ok"] is False and problem in refused["error"]
    assert calls.mutating() == []


def test_without_a_replication_role_it_is_refused_naming_the_setting(replicating, monkeypatch):
    monkeypatch.setenv("DR_REPLICATION_ROLE_ARN", "")
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(REQUEST)
    assert refused["ok"] is False and "set replication.role_arn" in refused["error"] and calls.mutating() == []


def test_a_replica_in_the_primary_region_is_refused(world, monkeypatch):
    # Given a "replica" bucket beside the data bucket, in the primary region
    s3 = world.clients["s3"]
    s3.create_bucket(Bucket="apilados-same-region-copy")
    s3.put_bucket_versioning(Bucket="apilados-same-region-copy", VersioningConfiguration={"Status": "Enabled"})
    environment = {"DR_SECONDARY_REGION": "us-west-2", "DR_REPLICA_BUCKET_NAME": "apilados-same-region-copy",
                   "DR_REPLICATION_ROLE_ARN": "arn:aws:iam::123456789012:role/apilados-s3-replication"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    refused = act(REQUEST)
    assert refused["ok"] is False and "is in us-east-1, not in the secondary region us-west-2" in refused["error"]


BAD_EVENTS = [
    ({"action": "configure_replication"}, "requested_by: Field required"),
    ({"action": "configure_replication", "requested_by": "alice"}, "reason: Field required"),
    ({"action": "configure_replication", **WHO, "replica_bucket": "elsewhere"}, "replica_bucket: Extra inputs"),
    ({"action": "configure_replication", **WHO, "role_arn": "arn:aws:iam::1:role/x"}, "role_arn: Extra inputs"),
    ({"action": "configure_replication", **WHO, "confirm": "not a plan"}, "confirm"),
    ({"action": "configure_replication", **WHO, "confirm": 7}, "confirm"),
    ({"action": "configure_replication", **WHO, "confirm": "rr-0123456789"}, "no plan 'rr-0123456789'"),
    ({"action": "configure_replication", **WHO, "resume": "rr-0123456789"}, "no plan 'rr-0123456789'"),
    ({"action": "configure_replication", **WHO, "confirm": "rp-0123456789"}, "no plan 'rp-0123456789'"),
    ({"action": "Configure_Replication", **WHO}, "unknown action"),
]


@pytest.mark.parametrize("event, problem", BAD_EVENTS, ids=[str(i) for i in range(len(BAD_EVENTS))])
def test_a_malformed_request_is_refused_with_no_mutating_call(replicating, monkeypatch, event, problem):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    refused = act(event)
    assert refused["ok"] is False and problem in refused["error"]
    assert calls.mutating() == []


def test_a_plan_of_another_action_is_not_confirmed_as_this_one(replicating):
    # Given a restore plan id, and a replication plan
    planned = act(REQUEST)["result"]
    # When a restore confirms the replication plan / Then it is refused as another action's plan
    refused = act({"action": "restore_s3", "at": "2026-01-01T00:00:00Z", **WHO, "confirm": planned["plan_id"]})
    assert refused["ok"] is False and f"plan {planned['plan_id']} is a configure_replication plan" in refused["error"]
