"""The switch gate in both stacks (stacks/constructs/switch_gate.py): a queue of the configured name in each region,
SQS-encrypted and TLS-only, that S3 may fill from that region's bucket only; each recovery role drains both regions'
gates and nothing more; the recovery function (and the region watcher) know the name."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from drcore.core.config import FailoverEnvVar, FailoverSettings
from stacks.settings import InvalidSettings, Settings
from tests.infra.support import (
    TUNED,
    UNSUBSCRIBED_ACKNOWLEDGED,
    Synthesized,
    as_list,
    logical_id,
    rendered,
    role_statements,
    synthesize,
)

RECOVERY = "recovery.handler.handler"
REGION_WATCHER = "region_watcher.handler.handler"
ACCOUNT = "${AWS::AccountId}"
GATE = "apilados-dr-switch-gate"
DRAIN = ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]
FOUR_DAYS = 4 * 24 * 60 * 60

# Another system's gate, in other regions, under a name of its own.
TUNED_GATE = "orders-switch-gate"
TUNED_WITH_GATE = {"dr": {**TUNED["dr"], "failover": {**TUNED["dr"]["failover"], "switch_gate_queue": TUNED_GATE}}}


@pytest.fixture(scope="module")
def tuned_gate() -> Synthesized:
    return synthesize(TUNED_WITH_GATE)


def _stacks(synth: Synthesized) -> dict[str, tuple[Template, dict[str, dict[str, Any]]]]:
    return {"primary": (synth.template, synth.resources), "standby": (synth.standby, synth.standby_resources)}


def _queue_policy(resources: dict[str, dict[str, Any]], queue: str) -> list[dict[str, Any]]:
    policies = [r["Properties"]["PolicyDocument"]["Statement"] for r in resources.values()
                if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue} in r["Properties"]["Queues"]]
    assert len(policies) == 1, policies
    return policies[0]


def _recovery_statements(resources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return role_statements(resources, logical_id(resources, "AWS::Lambda::Function", Handler=RECOVERY))


def _gate_statements(resources: dict[str, dict[str, Any]], name: str = GATE) -> list[dict[str, Any]]:
    """The recovery role's statements on a gate (by the queue's name in any region)."""
    return [s for s in _recovery_statements(resources)
            if any(str(rendered(r)).endswith(f":{name}") for r in as_list(s["Resource"]))]


@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_each_region_has_a_gate_of_the_configured_name_encrypted_and_kept_a_few_days(synth: Synthesized, stack: str):
    # Given either stack / Then it has one gate: its name the same in both regions, SQS-managed encryption (S3 cannot
    # send to a queue under the AWS-managed KMS key), no KMS key of its own, four days' retention
    template, _ = _stacks(synth)[stack]
    template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": GATE,
        "SqsManagedSseEnabled": True,
        "MessageRetentionPeriod": FOUR_DAYS,
        "KmsMasterKeyId": Match.absent(),
    })
    assert len(template.find_resources("AWS::SQS::Queue", {"Properties": {"QueueName": GATE}})) == 1


@pytest.mark.parametrize(("stack", "bucket"), [("primary", "apilados-production-data"),
                                               ("standby", "apilados-production-data-replica")])
def test_only_s3_sends_and_only_for_its_regions_bucket_of_this_account(synth: Synthesized, stack: str, bucket: str):
    # Given the gate's queue policy in either stack
    _, resources = _stacks(synth)[stack]
    queue = logical_id(resources, "AWS::SQS::Queue", QueueName=GATE)
    statements = _queue_policy(resources, queue)
    # Then it refuses every request without TLS, and allows exactly one thing: S3 sending this region's bucket's
    # events (the data bucket in the primary, the replica in the standby) of this account
    allowed = [s for s in statements if s["Effect"] == "Allow"]
    assert allowed == [{
        "Sid": "S3RecordsTheBucketsUploads",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": {"Fn::GetAtt": [queue, "Arn"]},
        "Condition": {
            "ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        },
    }]
    denied = [s for s in statements if s["Effect"] == "Deny"]
    assert denied == [{
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "sqs:*",
        "Resource": {"Fn::GetAtt": [queue, "Arn"]},
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]


@pytest.mark.parametrize("stack", ["primary", "standby"])
def test_the_recovery_role_drains_both_regions_gates_and_nothing_more(synth: Synthesized, stack: str):
    # Given the recovery role's statements on the gates in either stack
    _, resources = _stacks(synth)[stack]
    statements = _gate_statements(resources)
    # Then one statement receives, deletes, addresses and measures the gates of both regions by name, unconditionally
    # (no SendMessage: only S3 records; no PurgeQueue: a purge would lose uploads)
    assert len(statements) == 1, statements
    (drain,) = statements
    assert drain["Effect"] == "Allow"
    assert "Condition" not in drain
    assert sorted(as_list(drain["Action"])) == DRAIN
    assert sorted(rendered(resource) for resource in as_list(drain["Resource"])) == [
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:{GATE}", f"arn:aws:sqs:us-west-2:{ACCOUNT}:{GATE}"]
    # And no other statement of the role receives, deletes or purges any queue's messages
    consuming = [s for s in _recovery_statements(resources)
                 if {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:PurgeQueue", "sqs:*"} & set(as_list(s["Action"]))]
    assert consuming == [drain]


def test_the_gates_and_grants_follow_the_settings(tuned_gate: Synthesized):
    # Given another system's regions, buckets and gate name
    for stack, bucket in (("primary", "orders.data.example"), ("standby", "orders-data-replica")):
        template, resources = _stacks(tuned_gate)[stack]
        # Then each stack's gate has that name, S3 fills it from that region's bucket, and the role drains both
        template.has_resource_properties("AWS::SQS::Queue", {"QueueName": TUNED_GATE})
        queue = logical_id(resources, "AWS::SQS::Queue", QueueName=TUNED_GATE)
        (allowed,) = [s for s in _queue_policy(resources, queue) if s["Effect"] == "Allow"]
        assert allowed["Condition"]["ArnEquals"] == {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}, stack
        (drain,) = _gate_statements(resources, TUNED_GATE)
        assert sorted(rendered(resource) for resource in as_list(drain["Resource"])) == [
            f"arn:aws:sqs:eu-central-1:{ACCOUNT}:{TUNED_GATE}", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{TUNED_GATE}"], stack


@pytest.mark.parametrize(("stack", "handler"), [("primary", RECOVERY), ("standby", RECOVERY),
                                                ("standby", REGION_WATCHER)])
def test_the_functions_that_fail_over_know_the_gates_name(synth: Synthesized, tuned_gate: Synthesized, stack: str,
                                                           handler: str):
    # Given the recovery function of either stack and the standby's region watcher
    for app, name in ((synth, GATE), (tuned_gate, TUNED_GATE)):
        _, resources = _stacks(app)[stack]
        function = logical_id(resources, "AWS::Lambda::Function", Handler=handler)
        # (the region watcher's DR_RECOVERY_FUNCTION_NAME is a reference, resolved at deploy time)
        variables = {key: value for key, value in resources[function]["Properties"]["Environment"]["Variables"].items()
                     if isinstance(value, str)}
        # Then DR_SWITCH_GATE_QUEUE names the gate, and the function's settings read it back as configured
        assert variables[FailoverEnvVar.SWITCH_GATE_QUEUE.value] == name
        assert FailoverSettings.from_environ(variables).switch_gate_queue == name


@pytest.mark.parametrize("name", ["", "gate.fifo", "x" * 81, "gate queue"])
def test_a_gate_name_sqs_would_refuse_fails_synth_naming_the_key(name: str):
    with pytest.raises(InvalidSettings) as refused:
        Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "failover": {"switch_gate_queue": name}})
    assert "dr.failover.switch_gate_queue: String should match pattern" in str(refused.value)
