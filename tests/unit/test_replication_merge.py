"""Merging the controller's replication rule into a bucket's configuration (drcore.region.replication_merge), and the
plan's refusals that need no configuration at all: pure, no moto."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from drcore.core.config import RegionSettings
from drcore.core.errors import InvalidRequest
from drcore.region.replication_action import ConfigureReplicationAction
from drcore.region.replication_merge import (
    ReplicationRefused,
    merge_owned_rule,
    readback_differences,
    s3_objections,
)
from drcore.region.replication_rule import OWNED_RULE_ID, KeyFilter, key_filter, owned_rule, owned_rule_problems

ROLE = "arn:aws:iam::123456789012:role/apilados-s3-replication"
REPLICA = "arn:aws:s3:::apilados-production-data-replica"
ANALYTICS = "arn:aws:s3:::apilados-analytics-copy"


def foreign(rule_id: str, priority: int, destination: str = ANALYTICS, **changes: Any) -> dict[str, Any]:
    """A V2 rule somebody else owns, as S3 returns it."""
    return {"ID": rule_id, "Priority": priority, "Status": "Enabled", "Filter": {"Prefix": "reports/"},
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {"Bucket": destination, "StorageClass": "GLACIER_IR"}, **changes}


def spelled(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def test_a_bucket_without_replication_gets_the_rule_and_the_role():
    # Given a bucket with no replication configuration / When the rule is merged
    merged = merge_owned_rule(None, ROLE, REPLICA)
    # Then the configuration is the role and the controller's rule: everything, to the replica, RTC and delete markers
    assert merged.configuration == {"Role": ROLE, "Rules": [owned_rule(REPLICA, 1)]}
    [rule] = merged.configuration["Rules"]
    assert rule["Filter"] == {"Prefix": ""} and rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
    assert rule["Destination"]["ReplicationTime"] == {"Status": "Enabled", "Time": {"Minutes": 15}}
    assert rule["Destination"]["Metrics"]["Status"] == "Enabled"
    assert [change["what"] for change in merged.changes] == ["role", "rule"]
    assert merged.changes[1]["change"] == "added" and not merged.kept_rule_ids


def test_rules_of_others_are_kept_exactly_in_their_places():
    # Given two rules of other owners, in S3's order
    current = {"Role": ROLE, "Rules": [foreign("analytics", 5), foreign("archive", 2, Filter={"Tag": {"Key": "k",
                                                                                                     "Value": "v"}})]}
    before = copy.deepcopy(current)
    # When the rule is merged
    merged = merge_owned_rule(current, ROLE, REPLICA)
    # Then both are there byte for byte, first and in order, and the controller's rule follows them
    rules = merged.configuration["Rules"]
    assert [spelled(rule) for rule in rules[:2]] == [spelled(rule) for rule in before["Rules"]]
    assert rules[2]["ID"] == OWNED_RULE_ID and merged.kept_rule_ids == ("analytics", "archive")
    # And the configuration read from S3 was not altered by merging
    assert current == before


def test_a_second_merge_replaces_the_rule_and_changes_nothing():
    # Given a configuration the rule was merged into already
    first = merge_owned_rule({"Role": ROLE, "Rules": [foreign("analytics", 5)]}, ROLE, REPLICA).configuration
    # When merged again
    again = merge_owned_rule(copy.deepcopy(first), ROLE, REPLICA)
    # Then the configuration is the same, the rule once, and nothing is to change
    assert again.configuration == first and again.up_to_date
    assert [rule["ID"] for rule in again.configuration["Rules"]].count(OWNED_RULE_ID) == 1


def test_a_rule_edited_by_hand_is_put_back_in_its_place_naming_what_changes():
    # Given the controller's rule with its delete markers turned off by hand, between two others
    edited = owned_rule(REPLICA, 3) | {"DeleteMarkerReplication": {"Status": "Disabled"}}
    current = {"Role": ROLE, "Rules": [foreign("analytics", 5), edited, foreign("archive", 2)]}
    # When merged
    merged = merge_owned_rule(current, ROLE, REPLICA)
    # Then it is replaced where it was, with its priority, and the plan names the field
    assert [rule["ID"] for rule in merged.configuration["Rules"]] == ["analytics", OWNED_RULE_ID, "archive"]
    assert merged.configuration["Rules"][1] == owned_rule(REPLICA, 3)
    [change] = merged.changes
    assert change["change"] == "replaced" and change["fields"] == ["DeleteMarkerReplication.Status"]


def test_a_priority_another_rule_took_is_given_up_for_one_above_all():
    # Given the controller's rule at priority 2, which another rule has taken meanwhile
    current = {"Role": ROLE, "Rules": [owned_rule(REPLICA, 2), foreign("analytics", 2), foreign("archive", 7)]}
    # When merged / Then the controller's rule moves above every other priority; the others keep theirs
    merged = merge_owned_rule(current, ROLE, REPLICA)
    priorities = {rule["ID"]: rule["Priority"] for rule in merged.configuration["Rules"]}
    assert priorities == {OWNED_RULE_ID: 8, "analytics": 2, "archive": 7}
    assert not s3_objections(merged.configuration)


def test_a_rule_replicating_everything_elsewhere_stays_beside_ours():
    # Given another owner's rule replicating every key to another bucket (S3 allows several destinations)
    current = {"Role": ROLE, "Rules": [foreign("everything-to-analytics", 1, Filter={"Prefix": ""})]}
    # When merged / Then both replicate, each to its own destination
    merged = merge_owned_rule(current, ROLE, REPLICA)
    assert [rule["ID"] for rule in merged.configuration["Rules"]] == ["everything-to-analytics", OWNED_RULE_ID]


@pytest.mark.parametrize("rule, problem", [
    (foreign("runbook", 1, destination=REPLICA, Filter={"Prefix": ""}), "already replicates keys under ''"),
    (foreign("reports-to-replica", 1, destination=REPLICA), "already replicates keys under 'reports/'"),
    (foreign("tagged-to-replica", 1, destination=REPLICA, Filter={"Tag": {"Key": "k", "Value": "v"}}),
     "already replicates keys under ''"),
])
def test_another_rule_to_the_replica_is_refused_as_one_of_the_two_would_stop_applying(rule, problem):
    # Given another enabled rule replicating some keys to the replica bucket
    # When merged / Then the merge is refused, naming the rule and what to do
    with pytest.raises(ReplicationRefused) as refused:
        merge_owned_rule({"Role": ROLE, "Rules": [rule]}, ROLE, REPLICA)
    assert problem in str(refused.value) and f"remove or disable {rule['ID']!r}" in str(refused.value)


def test_a_disabled_rule_to_the_replica_is_kept():
    current = {"Role": ROLE, "Rules": [foreign("old", 1, destination=REPLICA, Status="Disabled")]}
    merged = merge_owned_rule(current, ROLE, REPLICA)
    assert [rule["ID"] for rule in merged.configuration["Rules"]] == ["old", OWNED_RULE_ID]


def test_a_v1_rule_replicating_everything_elsewhere_is_refused_as_s3_would():
    # Given the runbook's kind of rule: S3's first schema (a rule-level Prefix, no Filter), everything to another bucket
    v1 = {"ID": "ReplicateToSecondaryRegion", "Status": "Enabled", "Prefix": "",
          "Destination": {"Bucket": ANALYTICS, "StorageClass": "STANDARD_IA"}}
    # When merged / Then S3 would refuse a V1 rule beside the V2 rule RTC needs: refused, saying how to fix it
    with pytest.raises(ReplicationRefused) as refused:
        merge_owned_rule({"Role": ROLE, "Rules": [v1]}, ROLE, REPLICA)
    message = str(refused.value)
    assert "S3 would refuse" in message and "'ReplicateToSecondaryRegion'" in message and "V1" in message
    assert "rewrite them with a Filter, a Priority and DeleteMarkerReplication" in message


def test_the_role_of_other_rules_is_not_replaced():
    # Given another owner's rule replicating with another role
    other_role = "arn:aws:iam::123456789012:role/analytics-replication"
    with pytest.raises(ReplicationRefused) as refused:
        merge_owned_rule({"Role": other_role, "Rules": [foreign("analytics", 1)]}, ROLE, REPLICA)
    assert f"set replication.role_arn to {other_role}" in str(refused.value)


def test_the_role_is_replaced_when_only_the_controllers_rule_uses_it():
    old_role = "arn:aws:iam::123456789012:role/old-replication"
    merged = merge_owned_rule({"Role": old_role, "Rules": [owned_rule(REPLICA, 1)]}, ROLE, REPLICA)
    assert merged.configuration["Role"] == ROLE and merged.changes == ({"what": "role", "from": old_role, "to": ROLE},)


def test_what_s3_would_refuse_in_rules_of_others_is_named_before_anything_is_sent():
    # Given rules of others S3 would refuse together: one priority twice, and delete markers under a tag filter
    current = {"Role": ROLE, "Rules": [
        foreign("analytics", 4), foreign("archive", 4),
        foreign("tagged", 5, Filter={"Tag": {"Key": "k", "Value": "v"}}, DeleteMarkerReplication={"Status": "Enabled"}),
    ]}
    with pytest.raises(ReplicationRefused) as refused:
        merge_owned_rule(current, ROLE, REPLICA)
    assert "priority 4 is given to 2 rules" in str(refused.value)
    assert "rule 'tagged' replicates delete markers with a tag filter" in str(refused.value)


@pytest.mark.parametrize("rules, objection", [
    ([foreign("a", 1), foreign("a", 2)], "rule ID 'a' is used 2 times"),
    ([foreign("a", 1, DeleteMarkerReplication=None)], "rule 'a' has a Filter but no DeleteMarkerReplication"),
    ([foreign("a", 1, Destination={"Bucket": ANALYTICS, "ReplicationTime": {"Status": "Enabled"}})],
     "rule 'a' has Replication Time Control without metrics"),
    ([{"ID": "x", "Status": "Enabled", "Prefix": "logs/", "Destination": {"Bucket": ANALYTICS}},
      {"ID": "y", "Status": "Enabled", "Prefix": "logs/2026", "Destination": {"Bucket": ANALYTICS}}],
     "V1 rules 'x' and 'y' have overlapping prefixes"),
])
def test_s3s_objections_are_each_named(rules, objection):
    assert objection in s3_objections({"Role": ROLE, "Rules": rules})


def test_a_valid_configuration_has_no_objection():
    merged = merge_owned_rule({"Role": ROLE, "Rules": [foreign("a", 1)]}, ROLE, REPLICA)
    assert s3_objections(merged.configuration) == []


@pytest.mark.parametrize("first, second, overlap", [
    (KeyFilter(""), KeyFilter("reports/"), True),
    (KeyFilter("reports/"), KeyFilter("uploads/"), False),
    (KeyFilter("a/", (("k", "v"),)), KeyFilter("a/b", (("k", "v"),)), True),
    (KeyFilter("a/", (("k", "v"),)), KeyFilter("a/", (("k", "w"),)), False),
    (KeyFilter("a/", (("k", "v"),)), KeyFilter("a/", (("j", "w"),)), True),
])
def test_filters_overlap_when_some_object_could_match_both(first, second, overlap):
    assert first.overlaps(second) is overlap and second.overlaps(first) is overlap


def test_filters_are_read_in_every_spelling_s3_returns():
    assert key_filter({"Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "v"}]}}}) == KeyFilter(
        "a/", (("k", "v"),))
    assert key_filter({"Filter": {"Tag": {"Key": "k", "Value": "v"}}}) == KeyFilter("", (("k", "v"),))
    assert key_filter({"Filter": {}}) == KeyFilter() == key_filter({"Prefix": ""})


def test_a_read_back_names_every_difference_from_what_was_written():
    # Given the configuration written
    written = merge_owned_rule({"Role": ROLE, "Rules": [foreign("analytics", 5)]}, ROLE, REPLICA).configuration
    # Then the same read back has no difference
    assert readback_differences(written, copy.deepcopy(written)) == []
    # And another rule altered, the controller's rule gone, a rule nobody wrote, a role replaced are each named
    found = copy.deepcopy(written)
    found["Rules"][0]["Destination"]["StorageClass"] = "STANDARD"
    del found["Rules"][1]
    found["Rules"].append(foreign("stranger", 9))
    found["Role"] = "arn:aws:iam::123456789012:role/other"
    assert readback_differences(written, found) == [
        f"the role is arn:aws:iam::123456789012:role/other, not {ROLE}",
        "rule 'analytics' differs in Destination.StorageClass",
        f"rule {OWNED_RULE_ID!r} is missing",
        "rule 'stranger' was not written and is there",
    ]
    assert readback_differences(written, None) == ["the bucket has no replication configuration"]


def test_the_rule_found_on_the_bucket_is_judged_against_the_configured_one():
    assert owned_rule_problems(owned_rule(REPLICA, 1), "apilados-production-data-replica") == []
    assert owned_rule_problems(None, "r") == [
        f"the data bucket has no rule {OWNED_RULE_ID!r}: run configure_replication"]
    drifted = owned_rule(REPLICA, 1) | {"Status": "Disabled", "Filter": {"Prefix": "uploads/"}}
    assert owned_rule_problems(drifted, "elsewhere") == [
        f"rule {OWNED_RULE_ID!r} is not Enabled", f"rule {OWNED_RULE_ID!r} does not replicate to elsewhere",
        f"rule {OWNED_RULE_ID!r} does not replicate every key"]


# The plan's own refusals, against a stand-in for the S3 gateway: they come before any configuration is read


class StandInGateway:
    """Answers versioning and location as told, and records what else it was asked."""

    def __init__(self, versioning: str | None = "Enabled", region: str | None = "us-west-2") -> None:
        self._versioning = versioning
        self._region = region
        self.asked: list[str] = []

    def versioning(self, bucket: str) -> str | None:
        return self._versioning

    def region_of(self, bucket: str) -> str | None:
        return self._region

    def configuration(self, bucket: str) -> None:
        self.asked.append("configuration")

    def put_configuration(self, bucket: str, configuration: Any) -> None:
        self.asked.append("put_configuration")


REGION = RegionSettings(secondary_region="us-west-2", replica_bucket="apilados-production-data-replica",
                        replication_role_arn=ROLE)


@pytest.mark.parametrize("source, replica, problem", [
    (StandInGateway("Suspended"), StandInGateway(), "versioning is Suspended on the data bucket"),
    (StandInGateway(), StandInGateway("Off"), "versioning is Off on the replica bucket"),
    (StandInGateway(), StandInGateway(None), "the replica bucket apilados-production-data-replica does not exist"),
    (StandInGateway(), StandInGateway(region="us-east-1"), "is in us-east-1, not in the secondary region us-west-2"),
])
def test_a_plan_is_refused_before_reading_the_configuration(source, replica, problem):
    action = ConfigureReplicationAction(source, replica, "apilados-production-data", REGION)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest) as refused:
        action.make_plan(None)
    assert problem in str(refused.value)
    assert source.asked == replica.asked == []


@pytest.mark.parametrize("missing", ["replica_bucket", "secondary_region", "replication_role_arn"])
def test_a_plan_needs_the_replica_the_region_and_the_role(missing):
    region = REGION.model_copy(update={missing: None})
    action = ConfigureReplicationAction(StandInGateway(), StandInGateway(), "apilados-production-data",  # type: ignore[arg-type]
                                        region)
    with pytest.raises(InvalidRequest) as refused:
        action.make_plan(None)
    assert "replication is not configured" in str(refused.value)
    assert missing.replace("replication_", "replication.") in str(refused.value)
