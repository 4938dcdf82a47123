"""Stack recovery from a backup through a change set: beside the original ("new") or in place ("update").

moto falls short on change sets and on what a recovery reads of a stack; the moto_gaps fills
(`stack_change_sets_as_aws`) give change sets AWS's contents (replacement, parameter-driven changes,
"didn't contain changes"), let an execution take until the next DescribeStacks, mask NoEcho values,
set LastUpdatedTime, and implement UpdateTerminationProtection. moto never fails a change set or
rolls back a stack: the two tests that need that say how they fake it.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto.cloudformation.models import cloudformation_backends
from moto.core import DEFAULT_ACCOUNT_ID

from drcore.backup.stack_backup import StackBackup
from drcore.core.errors import InvalidRequest
from drcore.restore.stack_plan import (
    ChangeSetFailed,
    PlanNotApplicable,
    StackBackupCorrupt,
    StackBackupNotFound,
    StackChanged,
    StackRecoveryPlan,
    StackRecoveryRefused,
)
from drcore.restore.stack_recovery import POLL_SECONDS, StackRecovery
from drcore.restore.stack_requests import TEMPLATE_BODY_LIMIT
from drcore.state.backup_store import BackupStore, Component, backup_prefix
from embedded.sample_system import PIPELINE_STACK_POLICY, PIPELINE_TEMPLATE, SampleSystem
from tests.support import MUTATING_PREFIXES, CallRecorder, SimulatedClock

BACKUP_BUCKET = "apilados-dr-backups"
RECOVERY_STACK = "ApiladosPipelineStack-recovery"
# ExecuteChangeSet changes a stack too, though no prefix of the shared list names it.
CHANGING = (*MUTATING_PREFIXES, "Execute")

SECRET_TEMPLATE = {
    "Description": "a stack with a NoEcho parameter, which ends up in an SSM parameter's value",
    "Parameters": {"DbPassword": {"Type": "String", "NoEcho": True}, "Stage": {"Type": "String", "Default": "staging"}},
    "Resources": {"DbPasswordParameter": {"Type": "AWS::SSM::Parameter", "Properties": {
        "Type": "String", "Name": {"Fn::Sub": "/${AWS::StackName}/db-password"}, "Value": {"Ref": "DbPassword"}}}},
}


@pytest.fixture
def store(system: SampleSystem) -> BackupStore:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BACKUP_BUCKET)
    return BackupStore(s3, BACKUP_BUCKET)


@pytest.fixture
def cloudformation(system: SampleSystem) -> Any:
    return system.clients["cloudformation"]


@pytest.fixture
def backup_id(system: SampleSystem, store: BackupStore, cloudformation: Any, clock: SimulatedClock) -> str:
    return StackBackup(cloudformation, store, system.stack_name, clock).run().backup_id


@pytest.fixture
def recovery(system: SampleSystem, store: BackupStore, cloudformation: Any, clock: SimulatedClock) -> StackRecovery:
    return StackRecovery(cloudformation, store, system.stack_name, clock=clock, wait=clock.advance)


class CloudFormationRequests:
    """Every CloudFormation request of a client with its parameters: which stack a call changed."""

    def __init__(self, client: Any) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.cloudformation.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.requests.append((model.name, copy.deepcopy(params)))

    def changing(self) -> list[tuple[str, str]]:
        return [(name, params.get("StackName") or params["ChangeSetName"])
                for name, params in self.requests if name.startswith(CHANGING)]

    def first(self, operation: str) -> dict[str, Any]:
        return next(params for name, params in self.requests if name == operation)


def _changing(calls: CallRecorder) -> list[str]:
    return [name for name in calls.calls if name.startswith(CHANGING)]


def _stack_state(cloudformation: Any, stack_name: str) -> dict[str, Any]:
    """Everything a recovery could change about a stack."""
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    resources = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return {
        "stack": stack,
        "template": cloudformation.get_template(StackName=stack_name)["TemplateBody"],
        "policy": cloudformation.get_stack_policy(StackName=stack_name).get("StackPolicyBody"),
        "resources": sorted((r["LogicalResourceId"], r["PhysicalResourceId"], r["ResourceStatus"]) for r in resources),
    }


def _parameters(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {parameter["ParameterKey"]: parameter["ParameterValue"] for parameter in stack["Parameters"]}


def _changed_pipeline_template() -> dict[str, Any]:
    """The pipeline's template as someone changed it after the backup."""
    template = copy.deepcopy(PIPELINE_TEMPLATE)
    template["Resources"]["IngestNotifications"]["Properties"] = {"TopicName": "apilados-ingest-v2"}  # replaces it
    template["Resources"]["IngestQueue"]["Properties"]["VisibilityTimeout"] = 300  # in place
    template["Resources"]["IngestDeadLetters"] = {"Type": "AWS::SQS::Queue"}
    return template


def _change_the_pipeline_stack(cloudformation: Any, stage: str = "staging") -> None:
    cloudformation.update_stack(StackName="ApiladosPipelineStack",
                                TemplateBody=json.dumps(_changed_pipeline_template()),
                                Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage},
                                            {"ParameterKey": "RetentionDays", "ParameterValue": "30"}],
                                Capabilities=["CAPABILITY_IAM"])


def _resource_types(cloudformation: Any, stack_name: str) -> dict[str, str]:
    resources = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    return {resource["LogicalResourceId"]: resource["ResourceType"] for resource in resources}


def _stack_exists(cloudformation: Any, stack_name: str) -> bool:
    return any(summary["StackName"] == stack_name and summary["StackStatus"] != "DELETE_COMPLETE"
               for summary in cloudformation.list_stacks()["StackSummaries"])


# Mode "new"


def test_new_recreates_the_stack_beside_the_original_from_the_backup(system, cloudformation, backup_id, recovery,
                                                                    clock, monkeypatch):
    # Given a backup of the pipeline's stack, which was changed afterwards, and every AWS call watched
    _change_the_pipeline_stack(cloudformation)
    original = _stack_state(cloudformation, system.stack_name)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    requests = CloudFormationRequests(cloudformation)
    # When a recovery beside it is planned, and the plan, after a trip through JSON, is applied
    plan = recovery.plan(backup_id, "new")
    confirmed = StackRecoveryPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    before_apply = clock()
    result = recovery.apply(confirmed)
    # Then the plan was a change set adding every resource of the backup's template, with its parameters
    assert confirmed == plan
    assert (plan.mode, plan.target_stack, plan.status, plan.fingerprint) == ("new", RECOVERY_STACK, "ready", "absent")
    assert {(change.action, change.logical_id, change.resource_type) for change in plan.changes} == {
        ("Add", "IngestNotifications", "AWS::SNS::Topic"), ("Add", "IngestQueue", "AWS::SQS::Queue"),
        ("Add", "IngestRole", "AWS::IAM::Role")}
    assert [(p.key, p.value, p.source) for p in plan.parameters] == [("Stage", "production", "backup"),
                                                                     ("RetentionDays", "14", "backup")]
    assert plan.capabilities == ("CAPABILITY_IAM",)
    assert plan.tags == {"app": "apilados", "cost-center": "data"}
    assert plan.template["file"] == "template.json" and plan.template["passed_as"] == "body"
    # and applying it created the recovery stack from the backup, not from the changed original
    assert (result.status, result.stack_status) == ("complete", "CREATE_COMPLETE")
    assert clock() - before_apply == timedelta(seconds=POLL_SECONDS)  # the creation was followed until it ended
    assert cloudformation.get_template(StackName=RECOVERY_STACK)["TemplateBody"] == PIPELINE_TEMPLATE
    assert _parameters(cloudformation, RECOVERY_STACK) == {"Stage": "production", "RetentionDays": "14"}
    assert _resource_types(cloudformation, RECOVERY_STACK) == {
        "IngestNotifications": "AWS::SNS::Topic", "IngestQueue": "AWS::SQS::Queue", "IngestRole": "AWS::IAM::Role"}
    # with the capabilities and tags carried, then the stack policy and termination protection applied
    recovered = cloudformation.describe_stacks(StackName=RECOVERY_STACK)["Stacks"][0]
    assert recovered["Capabilities"] == ["CAPABILITY_IAM"]
    assert recovered["Tags"] == [{"Key": "app", "Value": "apilados"}, {"Key": "cost-center", "Value": "data"}]
    policy = cloudformation.get_stack_policy(StackName=RECOVERY_STACK)["StackPolicyBody"]
    assert json.loads(policy) == PIPELINE_STACK_POLICY
    assert recovered["EnableTerminationProtection"] is True
    assert result.stack_policy_applied is True and result.termination_protection is True
    # and the original was not touched: every change named the recovery stack or its change set
    assert requests.changing() == [
        ("CreateChangeSet", RECOVERY_STACK), ("ExecuteChangeSet", plan.change_set_id),
        ("SetStackPolicy", plan.stack_id), ("UpdateTerminationProtection", plan.stack_id)]
    assert plan.stack_id == recovered["StackId"] != original["stack"]["StackId"]
    assert _changing(calls) == ["CreateChangeSet", "ExecuteChangeSet", "SetStackPolicy", "UpdateTerminationProtection"]
    assert _stack_state(cloudformation, system.stack_name) == original


def test_an_existing_recovery_stack_is_refused_and_nothing_changes(system, cloudformation, backup_id, recovery,
                                                                   monkeypatch):
    # Given a stack already named as the recovery stack would be
    cloudformation.create_stack(StackName=RECOVERY_STACK, TemplateBody=json.dumps(PIPELINE_TEMPLATE),
                                Capabilities=["CAPABILITY_IAM"])
    before = _stack_state(cloudformation, RECOVERY_STACK)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a recovery beside the original is planned, Then it is refused, naming that stack and its state
    with pytest.raises(StackRecoveryRefused, match=f"stack {RECOVERY_STACK} already exists \\(CREATE_COMPLETE\\)"):
        recovery.plan(backup_id, "new")
    # and nothing changed
    assert _changing(calls) == []
    assert _stack_state(cloudformation, RECOVERY_STACK) == before


def test_a_failed_earlier_recovery_is_deleted_to_make_room(system, cloudformation, backup_id, recovery):
    # Given an earlier recovery stack whose creation failed and was rolled back (moto never rolls back:
    # its state is set in moto's backend, as CloudFormation would have left it)
    cloudformation.create_stack(StackName=RECOVERY_STACK, TemplateBody=json.dumps({"Resources": {}}))
    failed = cloudformation_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_stack(RECOVERY_STACK)
    failed.status, failed.stack_status_reason = "ROLLBACK_COMPLETE", "The following resource(s) failed to create: [X]."
    # When a recovery beside the original is planned and applied
    plan = recovery.plan(backup_id, "new")
    result = recovery.apply(plan)
    # Then the failed one was deleted first, the plan says so and why it had failed, and the recovery completes
    assert cloudformation.describe_stacks(StackName=failed.stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    assert any("ROLLBACK_COMPLETE" in note and "failed to create: [X]" in note for note in plan.notes)
    assert plan.stack_id != failed.stack_id and plan.fingerprint == "absent"
    assert (result.status, result.stack_status) == ("complete", "CREATE_COMPLETE")


def test_an_apply_that_stops_waiting_reports_in_progress_and_status_completes_it(system, cloudformation, backup_id,
                                                                              recovery, monkeypatch):
    # Given a plan to recover beside the original
    plan = recovery.plan(backup_id, "new")
    assert recovery.status(plan).status == "planned"
    # When it is applied without waiting for the stack (a stack operation takes minutes in AWS)
    started = recovery.apply(plan, max_wait_seconds=0)
    # Then it is in progress, without the stack policy and termination protection that come after creation
    assert (started.status, started.stack_status, started.stack_policy_applied) == ("in_progress", "CREATE_IN_PROGRESS",
                                                                                    False)
    assert cloudformation.get_stack_policy(StackName=RECOVERY_STACK).get("StackPolicyBody") is None
    # When its status is asked later, Then it is complete, and the policy and protection are applied then
    later = recovery.status(plan)
    assert (later.status, later.stack_status, later.stack_policy_applied, later.termination_protection) == (
        "complete", "CREATE_COMPLETE", True, True)
    recovered = cloudformation.describe_stacks(StackName=RECOVERY_STACK)["Stacks"][0]
    assert recovered["EnableTerminationProtection"] is True
    policy = cloudformation.get_stack_policy(StackName=RECOVERY_STACK)["StackPolicyBody"]
    assert json.loads(policy) == PIPELINE_STACK_POLICY
    # and asking again, or applying the plan again (a retried invocation), changes nothing more
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    assert recovery.status(plan).status == "complete"
    assert recovery.apply(plan).status == "complete"
    assert _changing(calls) == []


# Mode "update"


def test_update_returns_a_changed_stack_to_the_backup(system, cloudformation, backup_id, recovery):
    # Given the pipeline's stack changed after its backup: template and parameters
    stack_id = cloudformation.describe_stacks(StackName=system.stack_name)["Stacks"][0]["StackId"]
    _change_the_pipeline_stack(cloudformation)
    assert _parameters(cloudformation, system.stack_name) == {"Stage": "staging", "RetentionDays": "30"}
    physical_ids = {resource["LogicalResourceId"]: resource["PhysicalResourceId"] for resource in
                    cloudformation.list_stack_resources(StackName=system.stack_name)["StackResourceSummaries"]}
    # When an update in place is planned
    plan = recovery.plan(backup_id, "update")
    # Then the plan shows what returning to the backup changes, and which change replaces a resource
    assert (plan.mode, plan.target_stack, plan.stack_id, plan.status) == (
        "update", system.stack_name, stack_id, "ready")
    assert {(change.action, change.logical_id, change.replacement) for change in plan.changes} == {
        ("Modify", "IngestNotifications", "True"), ("Modify", "IngestQueue", "False"),
        ("Remove", "IngestDeadLetters", None)}
    modified = {change.logical_id: (change.physical_id, change.scope) for change in plan.changes
                if change.action == "Modify"}
    assert modified == {name: (physical_ids[name], ("Properties",)) for name in ("IngestNotifications", "IngestQueue")}
    assert plan.fingerprint.startswith("UPDATE_COMPLETE@") and plan.fingerprint == recovery.fingerprint(plan)
    assert plan.stack_policy is None and plan.termination_protection is False  # an update keeps the stack's own
    # When it is applied
    result = recovery.apply(plan)
    # Then the stack, the same one, has the backup's template, parameters and resources again
    assert (result.status, result.stack_status) == ("complete", "UPDATE_COMPLETE")
    assert cloudformation.get_template(StackName=system.stack_name)["TemplateBody"] == PIPELINE_TEMPLATE
    assert _parameters(cloudformation, system.stack_name) == {"Stage": "production", "RetentionDays": "14"}
    assert set(_resource_types(cloudformation, system.stack_name)) == {"IngestNotifications", "IngestQueue",
                                                                       "IngestRole"}
    assert cloudformation.describe_stacks(StackName=system.stack_name)["Stacks"][0]["StackId"] == stack_id


def test_a_backup_with_nothing_to_change_is_nothing_to_change(system, cloudformation, backup_id, recovery,
                                                              monkeypatch):
    # Given the stack is as its backup has it
    before = _stack_state(cloudformation, system.stack_name)
    # When an update in place is planned
    plan = recovery.plan(backup_id, "update")
    # Then the plan says there is nothing to change, and its change set (which cannot be executed) is gone
    assert (plan.status, plan.changes) == ("nothing_to_change", ())
    summaries = cloudformation.list_change_sets(StackName=system.stack_name)["Summaries"]
    assert plan.change_set_id not in [summary["ChangeSetId"] for summary in summaries]
    # and applying it changes nothing
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    assert recovery.apply(plan).status == "nothing_to_change"
    assert recovery.status(plan).status == "nothing_to_change"
    assert recovery.discard(plan) is False
    assert calls.calls == []
    assert _stack_state(cloudformation, system.stack_name) == before


# The world changes between plan and apply


def test_a_stack_changed_after_the_plan_is_refused(system, cloudformation, backup_id, recovery, monkeypatch):
    # Given a plan to return the changed stack to its backup
    _change_the_pipeline_stack(cloudformation)
    plan = recovery.plan(backup_id, "update")
    # When someone updates the stack again before the plan is applied
    _change_the_pipeline_stack(cloudformation, stage="production")
    changed = _stack_state(cloudformation, system.stack_name)
    # Then its fingerprint differs from the plan's
    assert recovery.fingerprint(plan) != plan.fingerprint
    # and applying the plan is refused without executing anything
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    with pytest.raises(StackChanged, match=f"stack {system.stack_name} changed since plan {plan.plan_id}"):
        recovery.apply(plan)
    assert _changing(calls) == []
    assert _stack_state(cloudformation, system.stack_name) == changed


def test_two_plans_for_a_new_stack_and_only_the_first_applied(system, cloudformation, backup_id, recovery):
    # Given two plans to recover beside the original, both made before either is applied
    first = recovery.plan(backup_id, "new")
    second = recovery.plan(backup_id, "new")
    assert first.stack_id == second.stack_id and first.fingerprint == second.fingerprint == "absent"
    # When the first is applied
    assert recovery.apply(first).status == "complete"
    # Then the second no longer matches the stack, and is refused
    assert recovery.fingerprint(second) != second.fingerprint
    with pytest.raises(StackChanged):
        recovery.apply(second)


def test_a_discarded_plan_leaves_nothing_behind(system, cloudformation, backup_id, recovery):
    # Given plans for both modes, on a stack changed after its backup
    _change_the_pipeline_stack(cloudformation)
    original = _stack_state(cloudformation, system.stack_name)
    new, update = recovery.plan(backup_id, "new"), recovery.plan(backup_id, "update")
    requests = CloudFormationRequests(cloudformation)
    # When both are discarded
    assert recovery.discard(new) is True and recovery.discard(update) is True
    # Then their change sets are gone, and so is the empty stack that held the new one's; the original is as it was
    assert cloudformation.list_change_sets(StackName=system.stack_name)["Summaries"] == []
    assert not _stack_exists(cloudformation, RECOVERY_STACK)
    assert requests.changing() == [("DeleteChangeSet", new.change_set_id), ("DeleteStack", new.stack_id),
                                   ("DeleteChangeSet", update.change_set_id)]
    assert _stack_state(cloudformation, system.stack_name) == original
    # and a discarded plan can be neither discarded again nor applied
    assert recovery.discard(update) is False
    with pytest.raises(PlanNotApplicable, match="no longer exists"):
        recovery.apply(update)


# Roles and deletions: what the recovery role's IAM grants allow (stacks/constructs/recovery.py)

STACK_ROLE = "arn:aws:iam::123456789012:role/apilados-cfn-deployer"
BACKED_UP_ROLE = "arn:aws:iam::123456789012:role/someone-elses-deployer"


@pytest.fixture
def stack_with_a_role(system: SampleSystem, cloudformation: Any) -> str:
    """A stack deployed with a CloudFormation service role of its own, other than the configured one."""
    cloudformation.create_stack(StackName="RoleStack", TemplateBody=json.dumps(
        {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}), RoleARN=BACKED_UP_ROLE)
    return "RoleStack"


def test_a_change_set_runs_as_the_configured_stack_role_never_the_backups(system, store, cloudformation, clock,
                                                                          stack_with_a_role):
    # Given a backup of a stack that ran as a role of its own, and the recovery's configured stack role
    backup = StackBackup(cloudformation, store, stack_with_a_role, clock).run().backup_id
    recovery = StackRecovery(cloudformation, store, stack_with_a_role, stack_role_arn=STACK_ROLE, clock=clock,
                             wait=clock.advance)
    requests = CloudFormationRequests(cloudformation)
    # When a recovery beside it is planned
    plan = recovery.plan(backup, "new")
    # Then the change set is made to run as the configured role, the only one the recovery role may pass,
    # and the plan says so, naming the role the backed-up stack ran as
    assert requests.first("CreateChangeSet")["RoleARN"] == STACK_ROLE == plan.role_arn
    assert any(STACK_ROLE in note and BACKED_UP_ROLE in note for note in plan.notes)


@pytest.mark.parametrize("mode, consequence", [
    ("new", "with the recovery function's own permissions"),
    ("update", "as the role the stack has now"),
])
def test_without_a_configured_stack_role_no_role_is_passed_and_the_plan_says_so(system, store, cloudformation, clock,
                                                                               stack_with_a_role, mode, consequence):
    # Given a backup of a stack that ran as a role of its own, and no stack role configured
    backup = StackBackup(cloudformation, store, stack_with_a_role, clock).run().backup_id
    recovery = StackRecovery(cloudformation, store, stack_with_a_role, clock=clock, wait=clock.advance)
    requests = CloudFormationRequests(cloudformation)
    # When a recovery is planned
    plan = recovery.plan(backup, mode)
    # Then the change set passes no role (the recovery role may pass none), and the plan says what runs it
    assert "RoleARN" not in requests.first("CreateChangeSet") and plan.role_arn is None
    assert any(BACKED_UP_ROLE in note and consequence in note for note in plan.notes)


def test_a_backup_without_a_role_needs_no_note_about_it(system, cloudformation, backup_id, recovery):
    plan = recovery.plan(backup_id, "new")
    assert plan.role_arn is None and not any("role" in note for note in plan.notes)


def test_discarding_never_deletes_a_stack_but_the_recovery_copy(system, cloudformation, backup_id, recovery):
    # Given an empty stack of another name, waiting for a change set of someone else's (REVIEW_IN_PROGRESS),
    # and a plan beside the original that names it (a plan names its stack by id)
    other = cloudformation.create_change_set(StackName="OtherStack", ChangeSetName="theirs", ChangeSetType="CREATE",
                                             TemplateBody=json.dumps({"Resources": {}}))
    cloudformation.delete_change_set(ChangeSetName=other["Id"])
    plan = recovery.plan(backup_id, "new")
    misdirected = StackRecoveryPlan.from_dict({**plan.to_dict(), "stack_id": other["StackId"]})
    requests = CloudFormationRequests(cloudformation)
    # When the plan is discarded
    assert recovery.discard(misdirected) is True
    # Then its change set is deleted, and no stack: not the one it names, which a recovery did not create
    assert requests.changing() == [("DeleteChangeSet", plan.change_set_id)]
    assert _stack_exists(cloudformation, "OtherStack")


# NoEcho parameters


@pytest.fixture
def secret_stack(system: SampleSystem, cloudformation: Any) -> str:
    cloudformation.create_stack(StackName="SecretStack", TemplateBody=json.dumps(SECRET_TEMPLATE),
                                Parameters=[{"ParameterKey": "DbPassword", "ParameterValue": "first-secret"}])
    return "SecretStack"


def _secret(system: SampleSystem, stack_name: str) -> str:
    ssm = boto3.client("ssm", region_name=system.region)
    return ssm.get_parameter(Name=f"/{stack_name}/db-password")["Parameter"]["Value"]


def test_a_no_echo_parameter_must_be_given_to_recover_beside_the_original(system, store, cloudformation, clock,
                                                                          secret_stack, monkeypatch):
    # Given a backup of a stack with a NoEcho parameter, which the backup holds masked
    backup = StackBackup(cloudformation, store, secret_stack, clock).run().backup_id
    recovery = StackRecovery(cloudformation, store, secret_stack, clock=clock, wait=clock.advance)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a recovery beside it is planned without the parameter's value
    # Then it is refused, naming the parameter, and nothing changed
    with pytest.raises(StackRecoveryRefused, match="NoEcho parameters DbPassword need values"):
        recovery.plan(backup, "new")
    assert _changing(calls) == []
    assert not _stack_exists(cloudformation, f"{secret_stack}-recovery")
    # When it is given, Then the recovery stack gets that value, which the plan does not show
    plan = recovery.plan(backup, "new", {"DbPassword": "given-secret"})
    assert [(p.key, p.value, p.source, p.no_echo) for p in plan.parameters] == [
        ("DbPassword", None, "given", True), ("Stage", "staging", "backup", False)]
    assert "given-secret" not in json.dumps(plan.to_dict())
    assert recovery.apply(plan).status == "complete"
    assert _secret(system, f"{secret_stack}-recovery") == "given-secret"


def test_a_no_echo_parameter_keeps_its_previous_value_in_an_update(system, store, cloudformation, clock, secret_stack):
    # Given a backup of a stack with a NoEcho parameter, and the stack changed afterwards (its secret kept)
    backup = StackBackup(cloudformation, store, secret_stack, clock).run().backup_id
    cloudformation.update_stack(StackName=secret_stack, TemplateBody=json.dumps(SECRET_TEMPLATE),
                                Parameters=[{"ParameterKey": "DbPassword", "UsePreviousValue": True},
                                            {"ParameterKey": "Stage", "ParameterValue": "production"}])
    recovery = StackRecovery(cloudformation, store, secret_stack, clock=clock, wait=clock.advance)
    requests = CloudFormationRequests(cloudformation)
    # When an update in place is planned without the parameter's value and applied
    plan = recovery.plan(backup, "update")
    result = recovery.apply(plan)
    # Then the stack's previous value was kept, not the backup's mask, and the rest came back from the backup
    assert [(p.key, p.value, p.source) for p in plan.parameters] == [("DbPassword", None, "previous_value"),
                                                                     ("Stage", "staging", "backup")]
    assert requests.first("CreateChangeSet")["Parameters"][0] == {"ParameterKey": "DbPassword",
                                                                   "UsePreviousValue": True}
    assert result.status == "complete"
    assert _secret(system, secret_stack) == "first-secret"
    assert _parameters(cloudformation, secret_stack) == {"DbPassword": "****", "Stage": "staging"}
    # When a value is given, Then the update sets it
    cloudformation.update_stack(StackName=secret_stack, TemplateBody=json.dumps(SECRET_TEMPLATE),
                                Parameters=[{"ParameterKey": "DbPassword", "UsePreviousValue": True},
                                            {"ParameterKey": "Stage", "ParameterValue": "production"}])
    assert recovery.apply(recovery.plan(backup, "update", {"DbPassword": "rotated-secret"})).status == "complete"
    assert _secret(system, secret_stack) == "rotated-secret"


def test_a_no_echo_parameter_the_stack_no_longer_has_must_be_given(system, store, cloudformation, clock, secret_stack,
                                                                   monkeypatch):
    # Given a backup of a stack with a NoEcho parameter, and the stack now without it (recreated: moto
    # cannot update a stack to a template that drops a parameter)
    backup = StackBackup(cloudformation, store, secret_stack, clock).run().backup_id
    cloudformation.delete_stack(StackName=secret_stack)
    cloudformation.create_stack(StackName=secret_stack, TemplateBody=json.dumps(
        {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}))
    recovery = StackRecovery(cloudformation, store, secret_stack, clock=clock, wait=clock.advance)
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When an update in place is planned without its value, Then it is refused: there is no previous value to keep
    with pytest.raises(StackRecoveryRefused, match=r"DbPassword need values.*no longer has a previous value"):
        recovery.plan(backup, "update")
    assert _changing(calls) == []


# Bad requests


def test_an_unknown_or_incomplete_backup_is_refused_naming_the_newest_complete_ones(system, store, cloudformation,
                                                                                    clock, recovery, monkeypatch):
    # Given three complete backups, an hour apart, and a newer one that never got its manifest
    complete = []
    for _ in range(3):
        complete.append(StackBackup(cloudformation, store, system.stack_name, clock).run().backup_id)
        clock.advance(3600)
    incomplete = "20261126T160000Z-0badc0"
    store.put_once(backup_prefix(Component.STACK, system.stack_name, incomplete) + "template.json", b"{}")
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    newest_first = ", ".join(reversed(complete))
    # When recoveries from an unknown id and from the incomplete one are planned
    # Then each is refused, saying why, and naming the newest complete backups, newest first
    newest_named = f"the newest complete ones: {newest_first}$"
    with pytest.raises(StackBackupNotFound, match=f"there is no such backup; {newest_named}"):
        recovery.plan("20261126T000000Z-000000", "new")
    with pytest.raises(StackBackupNotFound, match=f"{incomplete}.*incomplete.*{newest_named}"):
        recovery.plan(incomplete, "update")
    # and nothing was changed anywhere
    assert _changing(calls) == []
    assert not _stack_exists(cloudformation, RECOVERY_STACK)


def test_a_stack_without_backups_says_so(system, store, cloudformation, clock):
    recovery = StackRecovery(cloudformation, store, "NeverBackedUp", clock=clock, wait=clock.advance)
    with pytest.raises(StackBackupNotFound, match=r"stack NeverBackedUp cannot .*it has no complete backup"):
        recovery.plan("20261126T000000Z-000000", "new")


@pytest.mark.parametrize("not_an_id", ["../../snapshots/s3", "", "20261126T000000Z"])
def test_an_id_that_is_not_a_backup_id_is_refused_before_anything_is_read(system, backup_id, recovery, monkeypatch,
                                                                          not_an_id):
    # Given a complete backup, When an id that is not a backup id is named, Then it is refused as such,
    # naming the complete one, and no key is made of it
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    with pytest.raises(StackBackupNotFound, match=f"it is not a backup id .*the newest complete ones: {backup_id}$"):
        recovery.validate(not_an_id)
    assert "GetObject" not in calls.calls and _changing(calls) == []


def test_a_backup_that_does_not_match_its_manifest_is_refused(system, store, cloudformation, backup_id, recovery,
                                                              monkeypatch):
    # Given a backup whose template was altered after its manifest was written (outside the write-once store)
    key = backup_prefix(Component.STACK, system.stack_name, backup_id) + "template.json"
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=json.dumps({"Resources": {}}).encode())
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    # When a recovery from it is planned, Then it is refused, and nothing changed
    with pytest.raises(StackBackupCorrupt, match=r"template.json does not match the SHA-256 its manifest recorded"):
        recovery.plan(backup_id, "new")
    assert [name for name in calls.calls if not name.startswith(("Get", "Head", "List"))] == []


@pytest.mark.parametrize("mode, values, message", [
    ("replace", None, "mode 'replace' is not one of new, update"),
    ("new", {"Stag": "production"}, "parameter_values names Stag.*it declares: Stage, RetentionDays"),
])
def test_a_bad_request_is_refused_and_changes_nothing(system, cloudformation, backup_id, recovery, monkeypatch, mode,
                                                      values, message):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    with pytest.raises(StackRecoveryRefused, match=message):
        recovery.plan(backup_id, mode, values)
    assert _changing(calls) == []


def test_an_update_of_a_stack_that_is_gone_is_refused(system, store, cloudformation, clock):
    # Given a backup of a stack that was deleted since
    cloudformation.create_stack(StackName="GoneStack", TemplateBody=json.dumps(
        {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}))
    backup = StackBackup(cloudformation, store, "GoneStack", clock).run().backup_id
    cloudformation.delete_stack(StackName="GoneStack")
    recovery = StackRecovery(cloudformation, store, "GoneStack", clock=clock, wait=clock.advance)
    # When it is to be updated in place, Then that is refused, pointing at recovery beside its name
    with pytest.raises(StackRecoveryRefused, match=r"stack GoneStack does not exist: .*mode 'new'"):
        recovery.plan(backup, "update")
    # and a recovery beside its name works
    assert recovery.apply(recovery.plan(backup, "new")).status == "complete"
    assert set(_resource_types(cloudformation, "GoneStack-recovery")) == {"Queue"}


class _FailingChangeSets:
    """The moto client, except that change sets end FAILED for a reason other than no changes.

    moto validates neither capabilities nor templates, so it never fails a change set; CloudFormation
    does, with a reason such as this one.
    """

    REASON = "Requires capabilities : [CAPABILITY_NAMED_IAM]"

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_change_set(self, **request: Any) -> dict[str, Any]:
        return {**self._client.describe_change_set(**request), "Status": "FAILED", "ExecutionStatus": "UNAVAILABLE",
                "StatusReason": self.REASON}


def test_a_change_set_cloudformation_refuses_is_reported_and_removed(system, store, cloudformation, backup_id, clock):
    # Given CloudFormation fails the recovery's change set
    recovery = StackRecovery(_FailingChangeSets(cloudformation), store, system.stack_name, clock=clock,
                             wait=clock.advance)
    requests = CloudFormationRequests(cloudformation)
    # When a recovery beside the original is planned, Then the reason is reported
    with pytest.raises(ChangeSetFailed, match=r"Requires capabilities : \[CAPABILITY_NAMED_IAM\]"):
        recovery.plan(backup_id, "new")
    # and neither the change set nor the empty stack made to hold it is left behind
    created = [name for name, _ in requests.changing()]
    assert created == ["CreateChangeSet", "DeleteChangeSet", "DeleteStack"]
    assert not _stack_exists(cloudformation, RECOVERY_STACK)


# Large templates


def test_a_template_over_the_inline_limit_is_passed_by_its_backup_url(system, store, cloudformation, clock):
    # Given a backup of a stack whose template is larger than CreateChangeSet takes inline
    template = {"Metadata": {"Notes": "n" * TEMPLATE_BODY_LIMIT}, "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    cloudformation.create_stack(StackName="LargeStack", TemplateBody=json.dumps(template))
    backup = StackBackup(cloudformation, store, "LargeStack", clock).run().backup_id
    recovery = StackRecovery(cloudformation, store, "LargeStack", clock=clock, wait=clock.advance)
    requests = CloudFormationRequests(cloudformation)
    # When it is recovered beside the original
    plan = recovery.plan(backup, "new")
    assert recovery.apply(plan).status == "complete"
    # Then the change set read the template from the backup's own file, and the stack has it
    request = requests.first("CreateChangeSet")
    key = backup_prefix(Component.STACK, "LargeStack", backup) + "template.json"
    assert "TemplateBody" not in request
    assert request["TemplateURL"] == f"https://{BACKUP_BUCKET}.s3.us-east-1.amazonaws.com/{key}"
    assert plan.template["passed_as"] == "url" and plan.template["bytes"] > TEMPLATE_BODY_LIMIT
    assert cloudformation.get_template(StackName="LargeStack-recovery")["TemplateBody"] == template


def test_a_plan_of_another_format_is_refused():
    with pytest.raises(InvalidRequest, match="not a stack-recovery-plan/1 plan"):
        StackRecoveryPlan.from_dict({"format": "s3-restore-plan/1"})


# Rehearsal (the drill's validate_stack)


def test_validate_checks_a_backup_and_changes_nothing(system, cloudformation, backup_id, recovery, monkeypatch):
    calls = CallRecorder().spy_on_every_client(monkeypatch)
    checked = recovery.validate(backup_id)
    assert checked["recoverable"] is True and checked["template_valid"] is True
    assert checked["parameters_declared"] == 2 and checked["parameters_unresolved"] == []
    assert checked["capabilities_missing"] == []
    assert "ValidateTemplate" in calls.calls and _changing(calls) == []
    assert not _stack_exists(cloudformation, RECOVERY_STACK)


def test_validate_names_the_no_echo_values_a_recovery_must_be_given(system, store, cloudformation, clock, secret_stack):
    backup = StackBackup(cloudformation, store, secret_stack, clock).run().backup_id
    checked = StackRecovery(cloudformation, store, secret_stack, clock=clock).validate(backup)
    assert checked["no_echo_parameters_to_supply"] == ["DbPassword"] and checked["recoverable"] is True


def test_validate_reports_a_template_cloudformation_rejects(system, store, cloudformation, clock):
    # Given a backup of a stack whose template fails validation (an unknown property; moto created it anyway)
    broken = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"Colour": "red"}}}}
    cloudformation.create_stack(StackName="BrokenStack", TemplateBody=json.dumps(broken))
    backup = StackBackup(cloudformation, store, "BrokenStack", clock).run().backup_id
    with pytest.raises(ChangeSetFailed, match=r"CloudFormation rejects the template of backup .* of BrokenStack"):
        StackRecovery(cloudformation, store, "BrokenStack", clock=clock).validate(backup)


def test_validate_refuses_a_backup_that_does_not_match_its_manifest(system, store, backup_id, recovery):
    key = backup_prefix(Component.STACK, system.stack_name, backup_id) + "template.json"
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=json.dumps({"Resources": {}}).encode())
    with pytest.raises(StackBackupCorrupt, match="does not match the SHA-256"):
        recovery.validate(backup_id)
