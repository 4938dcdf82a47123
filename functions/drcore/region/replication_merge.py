"""Merging the controller's rule into a bucket's replication configuration, never touching another rule, and
checking the result as S3 would before anything is sent.

A bucket has one replication configuration, and PutBucketReplication replaces all of it (the runbook's
`put-bucket-replication` dropped whatever was there). The merge keeps every rule the controller does not own
exactly as S3 returned it, in its place, and adds or replaces the one rule it owns (drcore.region.replication_rule).
It refuses, saying why and what to do, where the merged configuration could not work:

- another rule already replicates to the replica bucket keys the controller's rule covers (all of them): S3 would
  replicate those keys by the higher-priority rule only, so one of the two would silently stop applying;
- the configuration's role belongs to other rules: one role replicates for every rule, and replacing it could
  break them;
- S3 would refuse the merged configuration (`s3_objections`): rules in its first (V1) schema beside V2 rules,
  duplicate IDs or priorities, a V2 rule without Priority or DeleteMarkerReplication, delete markers with a tag
  filter, Replication Time Control without metrics, V1 rules whose prefixes overlap, more than 1,000 rules.

Pure: no AWS call here (drcore.region.replication_action reads and writes).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drcore.core.errors import InvalidRequest
from drcore.region.replication_rule import (
    OWNED_RULE_ID,
    KeyFilter,
    Rule,
    bucket_of,
    destination_of,
    is_enabled,
    is_v2,
    key_filter,
    owned_rule,
)

# S3 accepts at most this many rules in one replication configuration.
MAX_RULES = 1000


class ReplicationRefused(InvalidRequest):
    """The controller's rule cannot be merged into the bucket's configuration as it is; nothing was changed."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("configure_replication refused: " + "; ".join(self.problems))


@dataclass(frozen=True)
class MergedConfiguration:
    configuration: dict[str, Any]  # what PutBucketReplication is given
    priority: int  # the owned rule's
    kept_rule_ids: tuple[str, ...]  # the rules of others, unchanged
    changes: tuple[dict[str, Any], ...]  # what differs from the current configuration, for the operator

    @property
    def up_to_date(self) -> bool:
        return not self.changes


def canonical(value: Any) -> str:
    """One spelling of a configuration or a rule, to compare and to fingerprint them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def merge_owned_rule(current: Mapping[str, Any] | None, role_arn: str, replica_bucket_arn: str) -> MergedConfiguration:
    """The current configuration (None: the bucket has none) with the controller's rule added or replaced."""
    rules: list[Rule] = list((current or {}).get("Rules") or [])
    current_role = (current or {}).get("Role")
    foreign = [rule for rule in rules if rule.get("ID") != OWNED_RULE_ID]
    existing = next((rule for rule in rules if rule.get("ID") == OWNED_RULE_ID), None)
    problems = _role_problems(current_role, role_arn, foreign) + _same_destination(foreign, replica_bucket_arn)
    if problems:
        raise ReplicationRefused(problems)

    priority = _priority(existing, foreign)
    ours = owned_rule(replica_bucket_arn, priority)
    merged_rules = [ours if rule is existing else rule for rule in rules] if existing else [*rules, ours]
    merged = {"Role": role_arn, "Rules": merged_rules}
    objections = s3_objections(merged)
    if objections:
        raise ReplicationRefused([f"S3 would refuse the merged configuration: {objection}" for objection in objections])

    changes: list[dict[str, Any]] = []
    if current_role != role_arn:
        changes.append({"what": "role", "from": current_role, "to": role_arn})
    if existing is None:
        changes.append({"what": "rule", "rule_id": OWNED_RULE_ID, "change": "added", "rule": ours})
    elif canonical(existing) != canonical(ours):
        changes.append({"what": "rule", "rule_id": OWNED_RULE_ID, "change": "replaced",
                        "fields": differing_fields(existing, ours), "from": dict(existing), "to": ours})
    return MergedConfiguration(configuration=merged, priority=priority,
                               kept_rule_ids=tuple(str(rule.get("ID")) for rule in foreign), changes=tuple(changes))


def _role_problems(current_role: str | None, role_arn: str, foreign: list[Rule]) -> list[str]:
    if not foreign or current_role in (None, role_arn):
        return []
    return [(f"the configuration's role is {current_role} and replication.role_arn is {role_arn}: one role "
             f"replicates for every rule, so replacing it could break the {len(foreign)} other rule(s); set "
             f"replication.role_arn to {current_role} (it must also be allowed to replicate to the replica bucket)")]


def _same_destination(foreign: list[Rule], replica_bucket_arn: str) -> list[str]:
    replica = bucket_of(replica_bucket_arn)
    clashing = [rule for rule in foreign if is_enabled(rule) and bucket_of(destination_of(rule)) == replica
                and key_filter(rule).overlaps(KeyFilter())]
    return [f"rule {rule.get('ID')!r} already replicates keys under {key_filter(rule).prefix!r} to {replica}: S3 "
            f"replicates keys two rules share with one destination by the higher-priority rule only, so one of the two "
            f"would stop applying; remove or disable {rule.get('ID')!r} ({OWNED_RULE_ID!r} replicates every key, "
            "with Replication Time Control and delete markers), then plan again" for rule in clashing]


def _priority(existing: Rule | None, foreign: list[Rule]) -> int:
    """The owned rule's priority: its own while no other rule has it (a second run changes nothing), otherwise
    one above every other rule's, so it never collides."""
    taken = {int(rule["Priority"]) for rule in foreign if rule.get("Priority") is not None}
    if existing is not None and existing.get("Priority") is not None and int(existing["Priority"]) not in taken:
        return int(existing["Priority"])
    return max(taken, default=0) + 1


def s3_objections(configuration: Mapping[str, Any]) -> list[str]:
    """What S3 would refuse in a replication configuration, each naming the rules concerned."""
    rules: list[Rule] = list(configuration.get("Rules") or [])
    objections: list[str] = []
    if len(rules) > MAX_RULES:
        objections.append(f"{len(rules)} rules, more than S3's {MAX_RULES}")
    ids = Counter(str(rule.get("ID")) for rule in rules if rule.get("ID") is not None)
    objections += [f"rule ID {rule_id!r} is used {count} times" for rule_id, count in ids.items() if count > 1]
    v1 = [rule for rule in rules if not is_v2(rule)]
    v2 = [rule for rule in rules if is_v2(rule)]
    if v1 and v2:
        objections.append(
            f"rule(s) {_names(v1)} use S3's first (V1) schema (a rule-level Prefix, no Filter), and S3 refuses them "
            f"beside V2 rules such as {_names(v2)}; Replication Time Control and delete-marker replication need V2: "
            "rewrite them with a Filter, a Priority and DeleteMarkerReplication")
    for rule in v2:
        missing = [field for field in ("Priority", "DeleteMarkerReplication") if rule.get(field) is None]
        if missing:
            objections.append(f"rule {rule.get('ID')!r} has a Filter but no {' or '.join(missing)}")
        dmr = (rule.get("DeleteMarkerReplication") or {}).get("Status")
        if dmr == "Enabled" and key_filter(rule).tags:
            objections.append(f"rule {rule.get('ID')!r} replicates delete markers with a tag filter")
    priorities = Counter(int(rule["Priority"]) for rule in v2 if rule.get("Priority") is not None)
    objections += [f"priority {priority} is given to {count} rules" for priority, count in priorities.items()
                   if count > 1]
    for rule in rules:
        destination = rule.get("Destination") or {}
        timed = (destination.get("ReplicationTime") or {}).get("Status") == "Enabled"
        if timed and (destination.get("Metrics") or {}).get("Status") != "Enabled":
            objections.append(f"rule {rule.get('ID')!r} has Replication Time Control without metrics")
    objections += [f"V1 rules {first.get('ID')!r} and {second.get('ID')!r} have overlapping prefixes"
                   for index, first in enumerate(v1) for second in v1[index + 1:]
                   if key_filter(first).overlaps(key_filter(second))]
    return objections


def _names(rules: list[Rule]) -> str:
    return ", ".join(repr(rule.get("ID")) for rule in rules)


def differing_fields(before: Any, after: Any, path: str = "") -> list[str]:
    """The dotted paths at which two rules differ (`Destination.ReplicationTime`)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            found += differing_fields(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return found
    return [] if canonical(before) == canonical(after) else [path or "(whole)"]


def readback_differences(planned: Mapping[str, Any], found: Mapping[str, Any] | None) -> list[str]:
    """How the configuration read back after the write differs from the one written: the owned rule missing or
    altered, another rule changed, removed or added, the role replaced. Empty when they are the same."""
    if found is None:
        return ["the bucket has no replication configuration"]
    differences = [] if found.get("Role") == planned.get("Role") else [
        f"the role is {found.get('Role')}, not {planned.get('Role')}"]
    written = {str(rule.get("ID")): rule for rule in planned.get("Rules") or []}
    read = {str(rule.get("ID")): rule for rule in found.get("Rules") or []}
    for rule_id, rule in written.items():
        if rule_id not in read:
            differences.append(f"rule {rule_id!r} is missing")
        elif canonical(read[rule_id]) != canonical(rule):
            differences.append(f"rule {rule_id!r} differs in {', '.join(differing_fields(rule, read[rule_id]))}")
    differences += [f"rule {rule_id!r} was not written and is there" for rule_id in read if rule_id not in written]
    return differences
