"""IAM conformance (DESIGN.md section 6, invariant 11): every AWS call the drill and the scenarios beyond it
make is allowed by its own function's synthesized role, and every mutating grant of those roles is used by
some call or allow-listed here with its reason.

moto checks no permission, so the calls are recorded and evaluated against the synthesized policies
(embedded/iam). What is known to be wrong at a given time is listed below (KNOWN_GAPS, KNOWN_EXCESS, empty
today: issue 11's gaps and excess grants are fixed), each entry with its reason; an entry whose call is
allowed, or whose grant is gone, fails the build until it is removed.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from embedded.aws_events import ACCOUNT
from embedded.iam.actions import permissions_of
from embedded.iam.conformance import ConformanceReport, DeployedStack, Grant, check_conformance, names_in
from embedded.iam.evaluator import ASSUMED, evaluate
from embedded.iam.recorder import CallRecording, RecordedCall
from embedded.iam.scenarios import record_scenarios
from embedded.iam.template_roles import (
    EmbeddedNames,
    ResolvedTemplate,
    Resolver,
    UnresolvableTemplate,
    resolve_template,
)
from embedded.sample_system import REPLICATION_ROLE
from embedded.world import REGION
from tests.infra.support import Synthesized, synthesize

pytestmark = pytest.mark.e2e

# The secondary region, where the standby stack deploys its functions.
SECONDARY = "us-west-2"
FUNCTIONS = {"health_watcher", "performance_watcher", "backup", "recovery", "restore_shard", "drill", "retention",
             f"region_watcher@{SECONDARY}"}

# Calls a role does not allow today, by (function, action), each with its reason: deployments that fail in AWS.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def _each(function: str, actions: Iterable[str], resource: str, reason: str) -> dict[tuple[str, str, str], str]:
    return {(function, action, resource): reason for action in actions}


BACKUPS = "arn:aws:s3:::apilados-dr-backups"
INGEST_NAME = "apilados-pipeline-ingest"
INGEST = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{INGEST_NAME}"
DATA_BUCKET = "apilados-production-data"
PIPELINE_STACK = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ApiladosPipelineStack"
SNAPSHOT_FANOUT = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{INGEST_NAME}-snapshot-fanout"
RESTORE_FANOUT = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{INGEST_NAME}-restore-fanout"
# What a function restore changes only where the backup differs from the function: its code, tags, reserved
# concurrency and event invoke config (the scenarios' backups differ from the function in the environment only).
CODE_AND_TAGS = ["lambda:UpdateFunctionCode", "lambda:TagResource", "lambda:UntagResource"]
INVOKE_CONFIG = ["lambda:DeleteFunctionEventInvokeConfig", "lambda:UpdateFunctionEventInvokeConfig"]
CONCURRENCY = ["lambda:DeleteFunctionConcurrency", "lambda:PutFunctionConcurrency"]

# Mutating grants no scenario uses, by (function, action, resource) as fnmatch patterns over the resolved
# grant, each with the path that uses it.
ALLOWED_UNUSED: dict[tuple[str, str, str], str] = {
    (f"region_watcher@{SECONDARY}", "sns:Publish", f"arn:aws:sns:{SECONDARY}:{ACCOUNT}:*alerts"):
        "the region watcher's only severity 2-4 alert is its notice that the primary answers again after a ready "
        "plan was alerted; the embedded world runs no recovery function in the secondary to plan, so the scenario's "
        "alert is a refusal (severity 1), after which no recovery is announced",
    # Of either stack: the region watcher runs in the secondary region.
    **_each("*", ["logs:CreateLogStream", "logs:PutLogEvents"], f"arn:aws:logs:*:{ACCOUNT}:log-group:functions*",
            "the Lambda runtime writes each function's own log group with the function's role"),
    ("*", "sqs:SendMessage", f"arn:aws:sqs:*:{ACCOUNT}:functionsfailedevents*"):
        "Lambda sends an asynchronous invocation that failed to its on-failure destination with the function's role",
    ("*", "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:apilados-dr-*"):
        "work that outlasts one invocation continues in a new one of the same function "
        "(aws.continuations.self_invoker); the scenarios' backups, restores and drills fit in one",
    ("*", "lambda:PublishLayerVersion", f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:*"):
        "a function restore republishes a layer version that no longer exists; the sample's layer still exists",
    ("backup", "logs:CreateExportTask", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{INGEST_NAME}:*"):
        "the log group's ARN in its ':*' form, granted beside the plain form that the Service Authorization "
        "Reference names and the harness checks",
    ("backup", "s3:AbortMultipartUpload", f"{BACKUPS}/content/*"):
        "a snapshot aborts a failed multipart copy of an object above the multipart threshold (bucket_snapshots); "
        "the sample's objects are small",
    ("backup", "states:RedriveExecution", SNAPSHOT_FANOUT.replace(":stateMachine:", ":execution:") + ":*"):
        "resuming a fanned-out snapshot whose execution failed redrives it (drcore.aws.state_machines); moto has no "
        "RedriveExecution, so the fan-out scenario resumes a running execution only "
        "(tests/unit/test_snapshot_fanout.py fakes the redrive's answer)",
    ("recovery", "states:RedriveExecution", SNAPSHOT_FANOUT.replace(":stateMachine:", ":execution:") + ":*"):
        "resuming a restore whose safety snapshot's fan-out failed redrives it (drcore.aws.state_machines, through "
        "the snapshot's own continuation); moto has no RedriveExecution, so the scenario resumes the restore once the "
        "snapshot is merged (tests/unit/test_snapshot_fanout.py fakes the redrive's answer)",
    ("recovery", "states:RedriveExecution", RESTORE_FANOUT.replace(":stateMachine:", ":execution:") + ":*"):
        "resuming a fanned-out restore whose execution failed redrives it (drcore.aws.state_machines); moto has no "
        "RedriveExecution, so the restore fan-out scenario resumes a finished one only "
        "(tests/unit/test_restore_fanout.py fakes the redrive's answer)",
    ("restore_shard", "s3:AbortMultipartUpload", "arn:aws:s3:::apilados-production-data/*"):
        "a shard aborts a failed multipart copy of an object above the multipart threshold (bucket_restore)",
    ("recovery", "s3:AbortMultipartUpload", f"{BACKUPS}/content/*"):
        "the safety snapshot before a restore aborts a failed multipart copy (bucket_snapshots)",
    **_each("recovery", ["s3:AbortMultipartUpload"], "arn:aws:s3:::apilados-production-data/*",
            "a restore aborts a failed multipart copy of an object above the multipart threshold (bucket_restore)"),
    **_each("drill", ["s3:AbortMultipartUpload"], "arn:aws:s3:::apilados-dr-drill-scratch/*",
            "a restore aborts a failed multipart copy of an object above the multipart threshold (bucket_restore)"),
    ("performance_watcher", "sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:apilados-dr-emergency"):
        "severity-1 alerts (STABLE itself failing, automation frozen: invariant 4) go to the emergency topic; no "
        "scenario breaks STABLE (the health watcher's fence alerts there in the failover scenario)",
    ("drill", "sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:apilados-dr-alerts"):
        "a failed drill is alerted (drcore.drill.runner); every scenario's drill passes",
    **_each("drill", ["kms:Decrypt", "kms:GenerateDataKey*"], f"arn:aws:kms:{REGION}:{ACCOUNT}:key/alertingtopickey*",
            "the alert topic's key, for the alert of a failed drill"),
    **_each("drill", CODE_AND_TAGS + INVOKE_CONFIG, f"{INGEST}-drill",
            "a drill restoring a backup whose code, tags or event invoke config differ from the scratch function's "
            "updates them"),
    **_each("recovery", CODE_AND_TAGS + INVOKE_CONFIG + CONCURRENCY + ["lambda:PutFunctionEventInvokeConfig"], INGEST,
            "a recovery in place from a backup whose code, tags, concurrency or event invoke config differ from the "
            "function's"),
    **_each("recovery", CODE_AND_TAGS + INVOKE_CONFIG + ["lambda:DeleteFunctionConcurrency",
                                                         "lambda:UpdateFunctionConfiguration"], f"{INGEST}-*",
            "a restore beside the function into a target that exists already updates it; the scenarios create it"),
    **_each("recovery", ["cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet"], f"{PIPELINE_STACK}/*",
            "recover_stack in place (mode 'update'); the scenarios recover beside the stack"),
    ("recovery", "cloudformation:DeleteChangeSet", f"{PIPELINE_STACK}*/*"):
        "a planned change set with nothing to change, or one CloudFormation failed, is deleted (StackRecovery.plan)",
}

# Mutating grants no code path uses, by (function, action, resource pattern), each with its reason: excess
# privilege, to be removed from the stacks.
KNOWN_EXCESS: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Recorded:
    """The drill and the scenarios beyond it, recorded once, and how the embedded world named what they used."""

    recording: CallRecording
    names: EmbeddedNames


@pytest.fixture(scope="module")
def recorded(synth: Any, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    # Both stacks' handlers: the region watcher is the standby's only
    handlers = sorted({resource["Properties"]["Handler"]
                       for template in (synth.template.to_json(), synth.standby.to_json())
                       for resource in template["Resources"].values() if resource["Type"] == "AWS::Lambda::Function"})
    recording = record_scenarios(handlers, tmp_path_factory.mktemp("drill"))
    names = EmbeddedNames(account=ACCOUNT, region=REGION, environments=recording.environments,
                          function_names=recording.invoked_as)
    return Recorded(recording, names)


# cdk.json configures no replication role (an operator names one: README, "Configuration"); the scenarios'
# configure_replication passes the embedded world's.
REPLICATING = {"dr": {"replication": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/{REPLICATION_ROLE}"}}}


@pytest.fixture(scope="module")
def replicating() -> Synthesized:
    """The app as cdk.json builds it, with the replication role the scenarios use."""
    return synthesize(REPLICATING)


@pytest.fixture(scope="module")
def report(replicating: Synthesized, recorded: Recorded) -> ConformanceReport:
    """The recorded calls checked against the roles synthesized from cdk.json and the replication role: the primary
    stack's for the calls of functions that ran in the primary region, the standby stack's for the secondary's."""
    return check_conformance(replicating.template.to_json(), recorded.recording, recorded.names,
                             other_stacks=[standby_deployed(replicating, recorded.recording)])


def standby_deployed(synthesized: Synthesized, recording: CallRecording) -> DeployedStack:
    return DeployedStack(synthesized.standby.to_json(), names_in(recording, ACCOUNT, SECONDARY))


def _matching(grant: Grant, listed: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [entry for entry in listed if fnmatch.fnmatchcase(grant.function, entry[0])
            and grant.action == entry[1] and fnmatch.fnmatchcase(grant.resource, entry[2])]


def test_the_scenarios_run_every_function_of_the_stack(report: ConformanceReport) -> None:
    assert report.functions_run == FUNCTIONS and report.calls > 500


def test_every_call_is_allowed_by_its_own_functions_role(report: ConformanceReport) -> None:
    # Given every AWS call the drill and the scenarios beyond it made, each under its function's role
    # Then none is refused but the known gaps
    unexpected = [denied.describe() for denied in report.denied if denied.key not in KNOWN_GAPS]
    assert not unexpected, "calls their role does not allow:\n" + "\n".join(unexpected)


def test_the_health_probes_invocations_are_among_the_checked_calls(recorded: Recorded) -> None:
    # The probe invokes the versions LIVE routes to by number, never the alias (drcore.rollback.health_probe): its
    # calls are checked against the health watcher's role like every other call
    probes = [call for call in recorded.recording.for_handler("health_watcher.handler.handler")
              if call.operation == "Invoke"]
    assert probes and all(str(call.params.get("Qualifier")).isdigit() for call in probes), probes


def test_every_known_gap_is_still_open(report: ConformanceReport) -> None:
    # An entry whose calls are allowed now is stale: the gap is closed, and the entry goes.
    closed = [gap for gap in KNOWN_GAPS if gap not in {denied.key for denied in report.denied}]
    assert not closed, closed


def test_every_mutating_grant_is_used_or_allow_listed_with_its_reason(report: ConformanceReport) -> None:
    unexplained = [grant.describe() for grant in report.unused_grants
                   if not _matching(grant, ALLOWED_UNUSED) and not _matching(grant, KNOWN_EXCESS)]
    assert not unexplained, "mutating grants no scenario uses (excess privilege):\n" + "\n".join(unexplained)


def test_every_allow_listed_grant_is_still_granted_and_unused(report: ConformanceReport) -> None:
    # An entry that matches nothing is stale: the grant is gone, or a scenario now uses it.
    stale = [entry for entry in ALLOWED_UNUSED if not any(_matching(grant, [entry]) for grant in report.unused_grants)]
    assert not stale, stale


def test_the_harness_refuses_a_restored_functions_role_when_none_may_be_passed(recorded: Recorded) -> None:
    # Given the same calls, and the roles synthesized with no execution role a restore may pass
    synthesized = synthesize({"dr": {"recovery": {"function_role_arns": []}}})
    # When they are checked / Then creating the drill's scratch function and a function beside the original
    # are refused iam:PassRole, as they would be in AWS
    denied = check_conformance(synthesized.template.to_json(), recorded.recording, recorded.names,
                               other_stacks=[standby_deployed(synthesized, recorded.recording)]).denied
    assert {("drill", "iam:PassRole"), ("recovery", "iam:PassRole")} <= {call.key for call in denied}


def test_the_harness_refuses_passing_a_replication_role_none_is_configured_for(synth: Any, recorded: Recorded) -> None:
    # Given the same calls, and the roles synthesized from cdk.json, which names no replication role
    denied = check_conformance(synth.template.to_json(), recorded.recording, recorded.names,
                               other_stacks=[standby_deployed(synth, recorded.recording)]).denied
    # When checked / Then configure_replication's PutBucketReplication is refused iam:PassRole, as S3 would refuse it
    [passing] = [call for call in denied if call.key == ("recovery", "iam:PassRole")]
    assert passing.why == ("PutBucketReplication passes ReplicationConfiguration.Role",)


def test_the_harness_refuses_deleting_the_recovery_copy_without_its_grant(synth: Any, recorded: Recorded) -> None:
    # Given the recovery role without cloudformation:DeleteStack
    template = copy.deepcopy(synth.template.to_json())
    for statement in _statements(template):
        actions = statement.get("Action")
        if isinstance(actions, list) and "cloudformation:DeleteStack" in actions:
            actions.remove("cloudformation:DeleteStack")
    # When the calls are checked / Then planning a recovery after a failed one is refused DeleteStack
    denied = check_conformance(template, recorded.recording, recorded.names,
                               other_stacks=[standby_deployed(synth, recorded.recording)]).denied
    assert ("recovery", "cloudformation:DeleteStack") in {call.key for call in denied}


def test_the_harness_refuses_a_backup_written_without_if_none_match(synth: Any, recorded: Recorded) -> None:
    # Given the same calls, but every write of the backup function into the backup bucket without If-None-Match,
    # as code that forgot the condition would send them
    bucket = recorded.recording.environments["backup.handler.handler"]["DR_BACKUP_BUCKET_NAME"]
    unguarded = [replace(call, params={k: v for k, v in call.params.items() if k != "IfNoneMatch"})
                 if call.service == "s3" and call.params.get("Bucket") == bucket else call
                 for call in recorded.recording.calls]
    assert any(call.params.get("IfNoneMatch") for call in recorded.recording.calls if call.service == "s3")
    recording = CallRecording(unguarded, recorded.recording.invoked_as, recorded.recording.environments)
    # When they are checked / Then the bucket policy refuses them explicitly: no role can overwrite a backup
    denied = {call.key: call.outcome for call in
              check_conformance(synth.template.to_json(), recording, recorded.names,
                                other_stacks=[standby_deployed(synth, recording)]).denied}
    assert denied[("backup", "s3:PutObject")] == "explicitly denied"
    assert denied[("recovery", "s3:PutObject")] == "explicitly denied"  # its safety snapshots and records


# What a switch from the primary calls in the primary region that it calls from the standby too, there across
# regions: the other region's LIVE read and probed, its alarms read, the probe's metrics, the data bucket's
# notifications. (Its writes into the data bucket and the backup store are the restores' grants of each stack.)
SWITCH_CALLS_INTO_THE_PRIMARY = {("lambda", "GetAlias"), ("lambda", "Invoke"), ("cloudwatch", "DescribeAlarms"),
                                 ("cloudwatch", "PutMetricData"), ("s3", "GetBucketNotificationConfiguration"),
                                 ("s3", "PutBucketNotificationConfiguration")}


def _as_from_the_standby(calls: Iterable[RecordedCall]) -> list[RecordedCall]:
    """The recovery function's calls into the secondary region, and those of SWITCH_CALLS_INTO_THE_PRIMARY on the
    protected function and the data bucket, as the standby's recovery function makes them (a failover, a failback,
    their validations and the status's replication reads, from the other side)."""
    def addressed(call: RecordedCall) -> bool:
        if call.region == SECONDARY:
            return True
        target = str(call.params.get("FunctionName", call.params.get("Bucket", "")))
        return (call.service, call.operation) in SWITCH_CALLS_INTO_THE_PRIMARY and (
            call.service == "cloudwatch" or target.split(":")[-1] == INGEST_NAME or target == DATA_BUCKET)
    return [replace(call, function_region=SECONDARY) for call in calls
            if call.handler == "recovery.handler.handler" and call.error_code is None and addressed(call)]


def test_a_switch_made_from_the_standby_is_allowed_by_the_standbys_role(replicating: Synthesized,
                                                                        recorded: Recorded) -> None:
    # Given the calls a failover and a failback made into the secondary region from the primary, and theirs into the
    # primary, as the standby's recovery function makes them (the scenarios switch from the primary only)
    calls = _as_from_the_standby(recorded.recording.calls)
    made = {(call.service, call.operation, call.region) for call in calls}
    assert {("s3", "PutBucketNotificationConfiguration", SECONDARY), ("s3", "PutBucketNotificationConfiguration",
            REGION), ("lambda", "UpdateFunctionConfiguration", SECONDARY), ("lambda", "GetPolicy", SECONDARY),
            ("s3", "ListObjectVersions", SECONDARY), ("lambda", "Invoke", SECONDARY), ("lambda", "Invoke", REGION),
            ("lambda", "GetAlias", REGION), ("cloudwatch", "DescribeAlarms", REGION)} <= made, made
    # When they are checked against the standby stack's roles / Then every one is allowed
    report = check_conformance(replicating.template.to_json(), CallRecording(calls), recorded.names,
                               other_stacks=[standby_deployed(replicating, recorded.recording)])
    assert report.functions_run == {f"recovery@{SECONDARY}"}
    assert [denied.describe() for denied in report.denied] == []
    # And without the region switch's grants, the calls into the primary are refused
    without = copy.deepcopy(replicating.standby.to_json())
    for name in [name for name in without["Resources"] if name.startswith("FunctionsRecoveryRegionSwitchGrants")]:
        del without["Resources"][name]
    refused = check_conformance(replicating.template.to_json(), CallRecording(calls), recorded.names,
                                other_stacks=[DeployedStack(without, names_in(recorded.recording, ACCOUNT,
                                                                              SECONDARY))]).denied
    assert {(f"recovery@{SECONDARY}", "s3:PutBucketNotification"), (f"recovery@{SECONDARY}", "lambda:GetAlias"),
            (f"recovery@{SECONDARY}", "lambda:InvokeFunction")} <= {denied.key for denied in refused}


def test_every_call_is_recorded_with_the_region_its_function_ran_in(recorded: Recorded) -> None:
    # The scenarios run every function in the primary region but the standby's region watcher: each call is checked
    # against the roles of the stack deployed where its function ran
    assert {call.function_region for call in recorded.recording.calls} == {REGION, SECONDARY}
    assert set(recorded.recording.regional_environments) == {REGION, SECONDARY}
    assert set(recorded.recording.regional_environments[SECONDARY]) == {"region_watcher.handler.handler"}


def test_the_region_watcher_reads_the_primary_writes_its_watch_and_alerts_from_the_secondary(
        recorded: Recorded) -> None:
    calls = recorded.recording.for_handler("region_watcher.handler.handler")
    where = {(call.service, call.operation, call.region) for call in calls if call.error_code is None}
    assert {("lambda", "GetAlias", REGION), ("lambda", "Invoke", REGION), ("cloudwatch", "DescribeAlarms", REGION),
            ("dynamodb", "PutItem", SECONDARY), ("lambda", "Invoke", SECONDARY),
            ("sns", "Publish", SECONDARY)} <= where, where


# Two stacks, one handler each: a call is checked against the role of the stack its function ran in -----------


def _object_lock_bucket(template: dict[str, Any], names: EmbeddedNames) -> str:
    [bucket] = [logical_id for logical_id, resource in template["Resources"].items()
                if resource["Type"] == "AWS::S3::Bucket" and resource["Properties"].get("ObjectLockEnabled")]
    return str(Resolver(template, names).ref(bucket))


def _safety_snapshot_write(bucket: str, function_region: str) -> RecordedCall:
    """What a restore's safety snapshot writes: a create-only PutObject under snapshots/."""
    return RecordedCall(handler="recovery.handler.handler", invoked_as="recovery", service="s3", operation="PutObject",
                        params={"Bucket": bucket, "Key": "snapshots/s3/apilados-production-data/x/manifest.json.gz",
                                "IfNoneMatch": "*"},
                        region=function_region, function_region=function_region)


def test_a_standby_functions_call_is_checked_against_the_standby_role(synth: Any) -> None:
    # Given both stacks, and the same safety-snapshot write made by the primary's recovery function and by the
    # standby's, each into its own backup store and into the other's
    primary, standby = synth.template.to_json(), synth.standby.to_json()
    primary_names = EmbeddedNames(account=ACCOUNT, region=REGION, environments={}, function_names={})
    standby_names = EmbeddedNames(account=ACCOUNT, region=SECONDARY, environments={}, function_names={})
    backups, copy = _object_lock_bucket(primary, primary_names), _object_lock_bucket(standby, standby_names)
    calls = [_safety_snapshot_write(bucket, region) for bucket in (backups, copy) for region in (REGION, SECONDARY)]
    # When they are checked with the standby stack deployed in the secondary region
    report = check_conformance(primary, CallRecording(calls), primary_names,
                               other_stacks=[DeployedStack(standby, standby_names)])
    # Then each function may write its own store only: the standby's role lacks the primary's backup bucket,
    # and the primary's lacks the copy
    denied = {(call.function, call.action): call.resources for call in report.denied}
    written = "snapshots/s3/apilados-production-data/x/manifest.json.gz"
    assert denied == {
        ("recovery", "s3:PutObject"): (f"arn:aws:s3:::{copy}/{written}",),
        (f"recovery@{SECONDARY}", "s3:PutObject"): (f"arn:aws:s3:::{backups}/{written}",),
    }
    assert report.functions_run == {"recovery", f"recovery@{SECONDARY}"}
    # And with the standby stack alone deciding nothing for the primary: a call from a region no stack under check
    # is deployed in cannot be judged
    with pytest.raises(UnresolvableTemplate, match=f"ran in {SECONDARY}"):
        check_conformance(primary, CallRecording(calls), primary_names)


def test_every_known_excess_grant_is_still_granted_and_unused(report: ConformanceReport) -> None:
    # An entry that matches nothing is stale: the grant is removed (or used), and the entry goes.
    removed = [entry for entry in KNOWN_EXCESS if not any(_matching(grant, [entry]) for grant in report.unused_grants)]
    assert not removed, removed


# No role can destroy a backup (DESIGN.md section 5, invariant 10) --------------------------------------

# Objects a kept backup needs, one of each kind the backup store holds.
NEEDED_OBJECTS = {
    "content": "content/sha256/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "snapshot manifest": "snapshots/s3/apilados-production-data/20261126T090000Z-3f9a1c/manifest.json.gz",
    "function code": "backups/lambda/apilados-pipeline-ingest/20261126T090000Z-3f9a1c/code.zip",
}
# What destroying one takes: deleting its version, writing over it (a new version replaces what a read by key
# gets), hiding it behind a delete marker, or shortening its lock.
ATTEMPTS: dict[str, dict[str, Any]] = {
    "delete its version": {"operation": "DeleteObject", "VersionId": "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"},
    "delete its version in a batch": {"operation": "DeleteObjects", "Delete": {"Objects": [
        {"Key": "{key}", "VersionId": "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"}]}},
    "overwrite it": {"operation": "PutObject"},
    "overwrite it by a copy": {"operation": "CopyObject", "CopySource": "apilados-production-data/a.csv"},
    "hide it": {"operation": "DeleteObject"},
    "shorten its lock": {"operation": "PutObjectRetention", "BypassGovernanceRetention": True,
                         "Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": "2026-11-27T00:00:00Z"}},
}


@pytest.fixture(scope="module")
def stack_alone(synth: Any) -> tuple[ResolvedTemplate, str]:
    """The synthesized roles and policies resolved without running anything (the names are stand-ins, the same
    on both sides of each check), and the backup bucket's name among them."""
    template = synth.template.to_json()
    names = EmbeddedNames(account=ACCOUNT, region=REGION, environments={}, function_names={})
    bucket = next(logical_id for logical_id, resource in template["Resources"].items()
                  if resource["Type"] == "AWS::S3::Bucket" and resource["Properties"].get("ObjectLockEnabled"))
    return resolve_template(template, names), Resolver(template, names).ref(bucket)


def _attempt(function: str, bucket: str, key: str, attempt: dict[str, Any]) -> RecordedCall:
    params = {name: value for name, value in attempt.items() if name != "operation"}
    if "Delete" in params:
        params = {**params, "Delete": {"Objects": [{**entry, "Key": key} for entry in params["Delete"]["Objects"]]}}
    else:
        params["Key"] = key
    return RecordedCall(handler=f"{function}.handler.handler", invoked_as=function, service="s3",
                        operation=attempt["operation"], params={"Bucket": bucket, **params}, region=REGION)


# The primary stack's functions (this checks the primary's backup bucket against the primary's roles).
@pytest.mark.parametrize("function", sorted(name for name in FUNCTIONS if "@" not in name))
def test_no_role_can_delete_overwrite_or_hide_a_backup_that_is_needed(stack_alone: tuple[ResolvedTemplate, str],
                                                                      function: str) -> None:
    # Given each function's synthesized role, and the backup bucket's and key's policies
    resolved, bucket = stack_alone
    role = resolved.roles[f"{function}.handler.handler"]
    # When it tries to destroy each kind of stored backup object in each way
    allowed = []
    for kind, key in NEEDED_OBJECTS.items():
        for attempt_name, attempt in ATTEMPTS.items():
            call = _attempt(function, bucket, key, attempt)
            decisions = [evaluate(permission, role.statements, resolved.resource_statements, resolved.key_policies,
                                  role_arn=role.role_arn, account=ACCOUNT)
                         for permission in permissions_of(call, resolved.facts)]
            if all(decision.allowed for decision in decisions):
                allowed.append((kind, attempt_name))
    # Then every attempt is refused, but the retention function's delete markers on the snapshots and the content
    # it prunes (its own logic never hides what a kept snapshot needs: tests/unit/test_retention.py)
    expected = ([("content", "hide it"), ("snapshot manifest", "hide it"), ("function code", "hide it")]
                if function == "retention" else [])
    assert allowed == expected


# Conditions the harness cannot decide from a request (embedded.iam.evaluator.ASSUMED) ------------------

def _statements(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        documents = [properties.get("PolicyDocument"), properties.get("KeyPolicy")]
        documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        for document in documents:
            if document:
                yield from document["Statement"]


def _uses(statement: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    return [(operator, values[key]) for operator, values in statement.get("Condition", {}).items() if key in values]


def _only_refuses_plain_http(statement: dict[str, Any]) -> bool:
    return statement["Effect"] == "Deny" and _uses(statement, "aws:SecureTransport") == [("Bool", "false")]


def _only_refuses_old_tls(statement: dict[str, Any]) -> bool:
    return statement["Effect"] == "Deny" and _uses(statement, "s3:TlsVersion") == [("NumericLessThan", 1.2)]


ASSERTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "aws:SecureTransport": _only_refuses_plain_http,
    "s3:TlsVersion": _only_refuses_old_tls,
}


def test_each_assumed_condition_key_is_covered_by_a_template_assertion(report: ConformanceReport) -> None:
    assert set(ASSUMED) == set(ASSERTED) and report.assumed <= set(ASSUMED)


@pytest.mark.parametrize("key", sorted(ASSERTED))
def test_the_template_uses_an_assumed_condition_key_only_as_the_assumption_allows(synth: Any, key: str) -> None:
    # Given the harness assumes every request in AWS has ASSUMED[key]'s value
    # Then every statement that conditions on the key only refuses requests without that value
    using = [statement for statement in _statements(synth.template.to_json()) if _uses(statement, key)]
    assert using and all(ASSERTED[key](statement) for statement in using), using


def test_every_kms_key_lets_iam_policies_decide_as_the_evaluator_assumes(synth: Any) -> None:
    # The evaluator counts a role's KMS grants only through a key policy statement for the account root: kms:*, or
    # (the backup key) everything but disabling and deleting it, which no role uses.
    use = ("kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt", "kms:DescribeKey")
    for resource in synth.template.to_json()["Resources"].values():
        if resource["Type"] == "AWS::KMS::Key":
            statements = resource["Properties"]["KeyPolicy"]["Statement"]
            for_account = [statement for statement in statements
                           if statement["Effect"] == "Allow" and ":root" in str(statement["Principal"])]
            assert any(statement.get("Action") == "kms:*" or (
                "NotAction" in statement and not set(use) & set(statement["NotAction"])) for statement in for_account)
