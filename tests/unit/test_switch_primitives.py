"""The switch primitives a failover and a failback are built of: the pipeline's notification entry of a bucket,
merged in and removed by its target (drcore.aws.pipeline_notification), and variables merged into a function's
environment (drcore.region.function_environment). Everything else a bucket or a function has survives."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from drcore.aws.lambda_updates import LambdaUpdates
from drcore.aws.pipeline_notification import (
    PIPELINE_ENTRY_ID,
    BucketNotifications,
    live_alias_arn,
    with_pipeline_entry,
    without_pipeline_entry,
)
from drcore.core.errors import ConcurrentUpdate
from drcore.region.function_environment import MAX_MERGE_ROUNDS, FunctionEnvironment
from embedded.sample_system import FUNCTION_ENVIRONMENT, SampleSystem

ACCOUNT = "123456789012"
LIVE = live_alias_arn("us-east-1", ACCOUNT, "apilados-pipeline-ingest", "LIVE")
BUCKET = "apilados-production-data"


def others(system: SampleSystem) -> dict[str, Any]:
    """Entries of other owners: an audit function, a queue and a topic. (EventBridge too in S3, but moto stores an
    `EventBridgeConfiguration: {}` and never returns it; the pure merge keeps it: see the test below.)"""
    sqs, sns = system.clients["sqs"], boto3.client("sns", region_name="us-east-1")
    queue = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="audit")["QueueUrl"],
                                     AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="uploads")["TopicArn"]
    audit = LIVE.replace("apilados-pipeline-ingest:LIVE", "audit-trail")
    return {
        "LambdaFunctionConfigurations": [{"Id": "audit", "LambdaFunctionArn": audit, "Events": ["s3:ObjectRemoved:*"]}],
        "QueueConfigurations": [{"Id": "to-queue", "QueueArn": queue, "Events": ["s3:ObjectTagging:Put"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}}}],
        "TopicConfigurations": [{"Id": "to-topic", "TopicArn": topic, "Events": ["s3:ObjectRestore:Completed"]}],
    }


@pytest.fixture
def bucket(system: SampleSystem) -> Any:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    system.clients["s3"] = s3
    return s3


def stored(s3: Any) -> dict[str, Any]:
    answer = s3.get_bucket_notification_configuration(Bucket=BUCKET)
    answer.pop("ResponseMetadata")
    return answer


def test_merging_the_pipeline_entry_in_keeps_every_other_entry(system, bucket):
    # Given a bucket with four entries of other owners
    foreign = others(system)
    bucket.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=foreign)
    # When the pipeline's entry is merged in with the primary's filter
    template = {"Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}}
    change = BucketNotifications(bucket).merge_in(BUCKET, LIVE, template)
    # Then the bucket processes, and the read-back configuration is the four entries plus ours, nothing lost
    after = stored(bucket)
    assert change.changed and change.processing and change.ok
    assert without_pipeline_entry(after, LIVE) == foreign
    ours = [entry for entry in after["LambdaFunctionConfigurations"] if entry["LambdaFunctionArn"] == LIVE]
    assert len(ours) == 1 and ours[0]["Id"] == PIPELINE_ENTRY_ID and ours[0]["Filter"] == template["Filter"]


def test_merging_in_twice_changes_nothing_the_second_time(system, bucket):
    notifications = BucketNotifications(bucket)
    notifications.merge_in(BUCKET, LIVE)
    before = stored(bucket)
    again = notifications.merge_in(BUCKET, LIVE)
    assert not again.changed and again.processing and stored(bucket) == before


def test_removing_the_pipeline_entry_keeps_every_other_entry_whatever_its_id(system, bucket):
    # Given the runbook's pipeline entry (its own Id) beside four entries of others
    foreign = others(system)
    pipeline = {"Id": "ProcessCSVFiles", "LambdaFunctionArn": LIVE, "Events": ["s3:ObjectCreated:*"]}
    bucket.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
        **foreign, "LambdaFunctionConfigurations": [pipeline, *foreign["LambdaFunctionConfigurations"]]})
    # When the entry invoking LIVE is removed
    change = BucketNotifications(bucket).remove(BUCKET, LIVE)
    # Then the bucket no longer processes, and exactly the others' entries remain
    assert change.changed and not change.processing and change.ok
    assert stored(bucket) == foreign
    # And removing it again changes nothing
    assert not BucketNotifications(bucket).remove(BUCKET, LIVE).changed


def test_removing_the_only_entry_leaves_an_empty_configuration(system, bucket):
    notifications = BucketNotifications(bucket)
    notifications.merge_in(BUCKET, LIVE)
    assert notifications.remove(BUCKET, LIVE).changed and stored(bucket) == {}


def test_an_entry_of_another_owner_lost_on_read_back_is_reported(system, bucket):
    # Given a bucket whose writes drop the queue entry (someone else writing at the same moment)
    foreign = others(system)
    bucket.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=foreign)
    real_put = bucket.put_bucket_notification_configuration

    class Racing:
        def __getattr__(self, name: str) -> Any:
            return getattr(bucket, name)

        def put_bucket_notification_configuration(self, Bucket: str, NotificationConfiguration: Any) -> Any:  # noqa: N803
            racing = {key: value for key, value in NotificationConfiguration.items() if key != "QueueConfigurations"}
            return real_put(Bucket=Bucket, NotificationConfiguration=racing)

    # When the pipeline's entry is merged in, Then the lost entry is named
    change = BucketNotifications(Racing()).merge_in(BUCKET, LIVE)
    assert change.lost_entries == ("QueueConfigurations/to-queue",) and not change.ok


def test_the_merge_and_the_removal_keep_eventbridge_delivery():
    # Given a configuration delivering to EventBridge (an empty structure, as S3 returns it)
    configuration = {"EventBridgeConfiguration": {}, "ResponseMetadata": {"HTTPStatusCode": 200}}
    # When the pipeline entry is merged in and removed again
    merged = with_pipeline_entry(configuration, LIVE)
    # Then EventBridge delivery stays in both, and the response metadata is never written back
    assert merged["EventBridgeConfiguration"] == {} and "ResponseMetadata" not in merged
    assert without_pipeline_entry(merged, LIVE) == {"EventBridgeConfiguration": {}}


# --- environment


def test_merging_variables_keeps_every_other_variable(system):
    lam = system.clients["lambda"]
    environment = FunctionEnvironment(LambdaUpdates(lam, wait=lambda _: None), lam)
    # When the failover's variables are merged into the function's environment
    change = environment.merge(system.function_name, {"ACTIVE_REGION": "us-west-2", "FAILOVER_MODE": "true"})
    # Then the function has them and every variable it had, unchanged, verified by read-back
    assert environment.variables(system.function_name) == {**FUNCTION_ENVIRONMENT, "ACTIVE_REGION": "us-west-2",
                                                           "FAILOVER_MODE": "true"}
    assert change.changed and change.verified and change.kept == len(FUNCTION_ENVIRONMENT)
    # And merging the same again changes nothing; removing ours restores the environment exactly
    assert not environment.merge(system.function_name, {"ACTIVE_REGION": "us-west-2"}).changed
    environment.merge(system.function_name, {}, remove=("ACTIVE_REGION", "FAILOVER_MODE"))
    assert environment.variables(system.function_name) == FUNCTION_ENVIRONMENT


class Racing:
    """Another writer changes the function's environment just before each of our next `races` updates, so ours
    names a RevisionId that is no longer the function's (moto refuses it as Lambda does: embedded/moto_gaps.py)."""

    def __init__(self, lam: Any, function_name: str, races: int) -> None:
        self._lambda = lam
        self._function = function_name
        self.races = races
        self.updates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lambda, name)

    def update_function_configuration(self, **request: Any) -> Any:
        self.updates += 1
        if self.races:
            self.races -= 1
            current = self._lambda.get_function_configuration(FunctionName=self._function)
            variables = {**current["Environment"]["Variables"], f"ADDED_BY_OTHER_{self.races}": "yes"}
            self._lambda.update_function_configuration(FunctionName=self._function,
                                                       Environment={"Variables": variables})
        return self._lambda.update_function_configuration(**request)


def test_a_variable_someone_else_set_meanwhile_survives_the_merge(system):
    # Given another writer changing the environment between our read and our write, once
    lam = Racing(system.clients["lambda"], system.function_name, races=1)
    environment = FunctionEnvironment(LambdaUpdates(lam, wait=lambda _: None), lam)
    # When the variables are merged
    change = environment.merge(system.function_name, {"ACTIVE_REGION": "us-west-2"})
    # Then the refused write was redone on the new environment: the other writer's variable is kept
    variables = environment.variables(system.function_name)
    assert lam.updates == 2 and change.verified
    assert variables == {**FUNCTION_ENVIRONMENT, "ADDED_BY_OTHER_0": "yes", "ACTIVE_REGION": "us-west-2"}


def test_an_environment_that_keeps_changing_is_given_up_on(system):
    lam = Racing(system.clients["lambda"], system.function_name, races=MAX_MERGE_ROUNDS)
    environment = FunctionEnvironment(LambdaUpdates(lam, wait=lambda _: None), lam)
    with pytest.raises(ConcurrentUpdate):
        environment.merge(system.function_name, {"ACTIVE_REGION": "us-west-2"})
    assert "ACTIVE_REGION" not in environment.variables(system.function_name)


def test_a_gate_entry_left_by_another_switch_is_replaced_by_this_switchs_with_its_id() -> None:
    gate = "arn:aws:sqs:us-west-2:123456789012:apilados-dr-switch-gate"
    created = ["s3:ObjectCreated:*"]
    stale = {"QueueConfigurations": [{"Id": "dr-switch-gate-fo-old", "QueueArn": gate, "Events": created},
                                     {"Id": "audit", "QueueArn": gate.replace("switch-gate", "audit"),
                                      "Events": ["s3:ObjectRemoved:*"]}]}
    merged = with_pipeline_entry(stale, gate, entry_id="dr-switch-gate-fo-new")
    assert [entry["Id"] for entry in merged["QueueConfigurations"]] == ["audit", "dr-switch-gate-fo-new"]
    # the same switch again (a resumption) changes nothing
    assert with_pipeline_entry(merged, gate, entry_id="dr-switch-gate-fo-new") == merged
    assert without_pipeline_entry(merged, gate) == {"QueueConfigurations": [stale["QueueConfigurations"][1]]}
