"""The translation of a stack backup into CreateChangeSet's parameters, without AWS. No moto: these are pure
functions (tests/unit/test_stack_recovery.py runs them against moto's CloudFormation)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from drcore.restore.stack_plan import PlannedParameter, StackRecoveryRefused
from drcore.restore.stack_requests import (
    ABSENT,
    TEMPLATE_BODY_LIMIT,
    VerifiedStackBackup,
    change_set_request,
    fingerprint_of,
    plan_notes,
    planned_parameters,
    role_notes,
    template_argument,
)

STACK = "ApiladosPipelineStack"


def _document(**overrides: Any) -> dict[str, Any]:
    """A backup's stack.json, as drcore.backup.stack_backup writes it."""
    return {"captured_at": "2026-11-26T13:25:00Z", "stack_name": STACK,
            "parameters": [{"ParameterKey": "Stage", "ParameterValue": "production"},
                           {"ParameterKey": "DbPassword", "ParameterValue": "****"}],
            "no_echo_parameters": ["DbPassword"], "capabilities": ["CAPABILITY_IAM"],
            "required_capabilities": ["CAPABILITY_NAMED_IAM"], "tags": [{"Key": "team", "Value": "data"}],
            "notification_arns": [], "role_arn": None, "rollback_configuration": {}, "stack_policy": None,
            "termination_protection": False, "timeout_in_minutes": None, **overrides}


def _backup(template: str = "{}", **overrides: Any) -> VerifiedStackBackup:
    return VerifiedStackBackup("20261126T132500Z-3f9a1c", _document(**overrides), "template.json", template, "ab12")


def test_a_new_stack_needs_every_noecho_value_and_never_shows_it():
    document = _document()
    with pytest.raises(StackRecoveryRefused, match="NoEcho parameters DbPassword need values"):
        planned_parameters(document, "new", {}, None, STACK)
    shown, request = planned_parameters(document, "new", {"DbPassword": "given-secret"}, None, STACK)
    assert shown == [PlannedParameter("Stage", "production", "backup"),
                     PlannedParameter("DbPassword", None, "given", no_echo=True)]
    assert request == [{"ParameterKey": "Stage", "ParameterValue": "production"},
                       {"ParameterKey": "DbPassword", "ParameterValue": "given-secret"}]


def test_an_update_keeps_a_noecho_value_the_stack_still_has():
    current = {"Parameters": [{"ParameterKey": "DbPassword", "ParameterValue": "****"}]}
    _, request = planned_parameters(_document(), "update", {}, current, STACK)
    assert request[1] == {"ParameterKey": "DbPassword", "UsePreviousValue": True}
    with pytest.raises(StackRecoveryRefused, match="no longer has a previous value"):
        planned_parameters(_document(), "update", {}, {"Parameters": []}, STACK)


def test_a_parameter_the_template_does_not_declare_is_refused():
    with pytest.raises(StackRecoveryRefused, match=r"parameter_values names Stag,.*it declares: Stage, DbPassword"):
        planned_parameters(_document(), "update", {"Stag": "x"}, None, STACK)


def test_the_change_set_carries_what_the_backup_had_run_as_the_configured_role():
    # Given a backup with a role and a rollback trigger, and the configured stack role
    trigger = {"RollbackTriggers": [{"Arn": "arn:aws:cloudwatch:...:alarm:x", "Type": "AWS::CloudWatch::Alarm"}]}
    backup = _backup(role_arn="arn:aws:iam::123456789012:role/cfn", rollback_configuration=trigger)
    # When its change set request is made for a recovery beside the stack
    request = change_set_request(plan_id="sr-1", source_stack=STACK, target=f"{STACK}-recovery", mode="new",
                                 backup=backup, parameters=[], template={"TemplateBody": "{}"},
                                 stack_role_arn="arn:aws:iam::123456789012:role/deployer")
    # Then it creates the stack with the granted and required capabilities, tags and rollback triggers, run as
    # the configured role (the only one the recovery role may pass), not the backup's
    assert request["ChangeSetType"] == "CREATE" and request["ChangeSetName"] == "dr-recovery-sr-1"
    assert request["ClientToken"] == "sr-1" and request["StackName"] == f"{STACK}-recovery"
    assert request["Capabilities"] == ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
    assert request["Tags"] == [{"Key": "team", "Value": "data"}] and request["TemplateBody"] == "{}"
    assert request["RoleARN"] == "arn:aws:iam::123456789012:role/deployer"
    assert request["RollbackConfiguration"] == trigger
    # and without a configured role, it passes none, whatever the backup had
    assert "RoleARN" not in change_set_request(plan_id="sr-2", source_stack=STACK, target=STACK, mode="update",
                                               backup=backup, parameters=[], template={}, stack_role_arn=None)


@pytest.mark.parametrize(("backed_up", "configured", "notes"), [
    (None, None, 0),
    ("arn:aws:iam::123456789012:role/cfn", "arn:aws:iam::123456789012:role/cfn", 0),
    ("arn:aws:iam::123456789012:role/cfn", None, 1),
    (None, "arn:aws:iam::123456789012:role/deployer", 1),
    ("arn:aws:iam::123456789012:role/cfn", "arn:aws:iam::123456789012:role/deployer", 1),
])
def test_a_role_other_than_the_backups_is_noted(backed_up, configured, notes):
    assert len(role_notes(_document(role_arn=backed_up), "new", configured)) == notes


def test_a_template_over_the_inline_limit_is_passed_by_url():
    assert template_argument(_backup("{}"), "https://b/t") == ({"TemplateBody": "{}"}, "body")
    large = _backup(" " * (TEMPLATE_BODY_LIMIT + 1))
    assert template_argument(large, "https://b/t") == ({"TemplateURL": "https://b/t"}, "url")


def test_what_a_change_set_cannot_carry_is_noted():
    document = _document(stack_policy={"Statement": []}, timeout_in_minutes=30)
    assert len(plan_notes(document, "new")) == 2 and len(plan_notes(document, "update")) == 1


def test_the_fingerprint_is_the_status_at_the_last_change():
    created = datetime(2026, 11, 26, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    stack = {"StackStatus": "CREATE_COMPLETE", "CreationTime": created}
    assert fingerprint_of(None) == ABSENT == fingerprint_of({"StackStatus": "REVIEW_IN_PROGRESS"})
    assert fingerprint_of(stack) == "CREATE_COMPLETE@2026-11-26T12:00:00+00:00"
    assert fingerprint_of({**stack, "LastUpdatedTime": created + timedelta(minutes=5)}).endswith("12:05:00+00:00")
