"""Policy evaluation: is a permission allowed to a role by its identity policies and the resource's policies?

IAM's evaluation logic for one account: an explicit Deny in any applicable policy wins; otherwise an Allow
in the role's policies (or in the resource's policy for that principal) allows; otherwise the request is
implicitly denied. For a KMS key, the role's policies count only where the key policy lets the account's
IAM policies decide (a statement allowing the account root).

Action and Resource matching is moto's (`moto.iam.access_control.IAMPolicyStatement`), given each pattern
in the form its matcher reads (a regular expression in which only "*" is special): IAM's "?" becomes
one any-character, everything else is matched literally, actions case-insensitively. What moto does not
do is done here: NotResource (moto ignores it), conditions (moto knows StringEquals only, and turns an
Allow whose condition fails into a Deny), and principals of resource policies.

Conditions are decided from the request's context. The keys that no request in the embedded world can
show are listed in ASSUMED, each with the value assumed and why; tests/infra/test_iam_conformance.py
asserts how the template uses each of them, so the assumption cannot silently stop holding.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from embedded.iam.actions import Permission

Statement = Mapping[str, Any]

# Condition keys no request in the embedded world decides, the value every request in AWS has, and why.
ASSUMED: dict[str, tuple[str, str]] = {
    "aws:SecureTransport": ("true", "botocore calls AWS endpoints over HTTPS; the embedded server is plain HTTP"),
    "s3:TlsVersion": ("1.2", "AWS endpoints accept TLS 1.2 or later only, so no request arrives with less"),
}

# Condition keys the request context decides, present or absent (actions._context sets them; `evaluate`
# adds the principal's own ARN).
DECIDED = frozenset({"aws:RequestedRegion", "cloudwatch:namespace", "iam:PassedToService", "s3:versionid",
                     "s3:if-none-match", "s3:if-match", "s3:ObjectCreationOperation", "aws:PrincipalArn"})


class UndecidedCondition(Exception):
    """A condition on a key that is neither decided from the request nor listed in ASSUMED."""


class Outcome(Enum):
    ALLOWED = "allowed"
    IMPLICITLY_DENIED = "implicitly denied"
    EXPLICITLY_DENIED = "explicitly denied"


@dataclass(frozen=True)
class Decision:
    permission: Permission
    outcome: Outcome
    assumed: frozenset[str] = field(default_factory=frozenset)  # ASSUMED keys the decision relied on

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


@functools.lru_cache(maxsize=4096)
def _moto_pattern(pattern: str, lower: bool) -> str:
    """An IAM wildcard pattern as moto's matcher reads it: "*" stays, "?" matches one character."""
    text = pattern.lower() if lower else pattern
    return "".join(character if character == "*" else "." if character == "?" else re.escape(character)
                   for character in text)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def covers(statement: Statement, action: str, resource: str) -> bool:
    """Whether the statement's Action/NotAction and Resource/NotResource cover the request (moto decides)."""
    probe: dict[str, Any] = {"Effect": "Allow"}
    for element in ("Action", "NotAction"):
        if element in statement:
            probe[element] = [_moto_pattern(pattern, lower=True) for pattern in _as_list(statement[element])]
    listed = statement.get("Resource", statement.get("NotResource", "*"))
    probe["Resource"] = [_moto_pattern(pattern, lower=False) for pattern in _as_list(listed)]
    covered = IAMPolicyStatement(probe).is_action_permitted(action.lower(), resource) is PermissionResult.PERMITTED
    if "NotResource" not in statement:
        return covered
    # NotResource: the statement covers the action on every resource except those listed.
    action_covered = IAMPolicyStatement({**probe, "Resource": "*"}).is_action_permitted(action.lower(), resource)
    return action_covered is PermissionResult.PERMITTED and not covered


def _like(pattern: str, value: str) -> bool:
    """IAM's condition wildcards: "*" any run of characters, "?" any one character."""
    expression = "".join(".*" if character == "*" else "." if character == "?" else re.escape(character)
                         for character in pattern)
    return re.fullmatch(expression, value, re.DOTALL) is not None


def _compare(operator: str, actual: str, expected: str) -> bool:
    if operator.startswith("String"):
        if "IgnoreCase" in operator:
            return actual.lower() == expected.lower()
        return _like(expected, actual) if "Like" in operator else actual == expected
    if operator.startswith("Arn"):  # ArnEquals matches wildcards as ArnLike does
        return _like(expected, actual)
    if operator.startswith("Numeric"):
        number, limit = float(actual), float(expected)
        return {"NumericEquals": number == limit, "NumericLessThan": number < limit,
                "NumericLessThanEquals": number <= limit, "NumericGreaterThan": number > limit,
                "NumericGreaterThanEquals": number >= limit}[operator]
    if operator == "Bool":
        return actual.lower() == str(expected).lower()
    raise UndecidedCondition(f"condition operator {operator} is not evaluated by the IAM harness")


def _key_value(key: str, context: Mapping[str, str], assumed: set[str]) -> str | None:
    if key in context:
        return context[key]
    if key in ASSUMED:
        assumed.add(key)
        return ASSUMED[key][0]
    if key in DECIDED:
        return None
    raise UndecidedCondition(f"condition key {key} is neither decided from the request nor assumed "
                             "(embedded.iam.evaluator.ASSUMED)")


def conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str],
                    assumed: set[str]) -> bool:
    """IAM's condition semantics: every operator and key must hold; a key holds when it matches any listed
    value (negated operators: none); an absent key fails all but negated and ...IfExists operators."""
    for full_operator, keys in conditions.items():
        operator = full_operator.split(":", 1)[-1]  # ForAnyValue:/ForAllValues: over single-valued keys
        if_exists = operator.endswith("IfExists")
        operator = operator.removesuffix("IfExists")
        for key, expected in keys.items():
            actual = _key_value(key, context, assumed)
            if actual is None and full_operator.startswith("ForAllValues:"):
                continue  # no value at all: every value (of none) matches
            if operator == "Null":
                if (actual is None) != (str(expected).lower() == "true"):
                    return False
                continue
            negated = "Not" in operator
            if actual is None:
                if not (negated or if_exists):
                    return False
                continue
            base = operator.replace("Not", "")
            matched = any(_compare(base, actual, str(value)) for value in _as_list(expected))
            if matched == negated:
                return False
    return True


def _applies_to_role(statement: Statement, role_arn: str, account: str) -> bool:
    """A resource policy statement names its principals: it applies to the role when it names the role or
    everyone; a Deny naming the account applies to every principal of the account (an Allow naming it only
    lets the account's IAM policies decide)."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping) or "AWS" not in principal:
        return False
    names = {"*", role_arn}
    if statement.get("Effect") == "Deny":
        names |= {account, f"arn:aws:iam::{account}:root"}
    return any(name in names for name in _as_list(principal["AWS"]))


def _iam_decides_key(key_policy: Sequence[Statement], action: str, key_arn: str, account: str) -> bool:
    root = f"arn:aws:iam::{account}:root"
    return any(statement.get("Effect") == "Allow" and isinstance(statement.get("Principal"), Mapping)
               and any(name in (root, account) for name in _as_list(statement["Principal"].get("AWS", [])))
               and covers(statement, action, key_arn) for statement in key_policy)


def evaluate(permission: Permission, identity: Iterable[Statement], resource_policies: Iterable[Statement] = (),
             key_policies: Mapping[str, Sequence[Statement]] | None = None, *, role_arn: str = "",
             account: str = "") -> Decision:
    """Whether the role may perform `permission`, by IAM's evaluation logic."""
    assumed: set[str] = set()
    action, resource = permission.action, permission.resource
    # A role's session is known by its role's ARN (aws:PrincipalArn), whatever the session is named.
    context = {**permission.context, **({"aws:PrincipalArn": role_arn} if role_arn else {})}

    def applying(statements: Iterable[Statement]) -> list[Statement]:
        return [statement for statement in statements if covers(statement, action, resource)
                and conditions_hold(statement.get("Condition", {}), context, assumed)]

    identity_statements = applying(identity)
    resource_statements = applying(statement for statement in resource_policies
                                   if _applies_to_role(statement, role_arn, account))
    key_policy = (key_policies or {}).get(resource)
    if key_policy is not None:
        resource_statements += applying(statement for statement in key_policy
                                        if _applies_to_role(statement, role_arn, account))
        if not _iam_decides_key(key_policy, action, resource, account):
            identity_statements = [statement for statement in identity_statements if statement["Effect"] == "Deny"]
    applicable = identity_statements + resource_statements
    if any(statement["Effect"] == "Deny" for statement in applicable):
        outcome = Outcome.EXPLICITLY_DENIED
    elif any(statement["Effect"] == "Allow" for statement in applicable):
        outcome = Outcome.ALLOWED
    else:
        outcome = Outcome.IMPLICITLY_DENIED
    return Decision(permission, outcome, frozenset(assumed))
