"""The region-switch judge's pure parts (embedded/drill_region.py) and the benchmark's corrections of the runbook's
scripts (embedded/bench_failover.py)."""

from __future__ import annotations

import os
from unittest import mock

import boto3
import pytest

from embedded.bench_failover import SEED_FAILBACK, SEED_FAILOVER, SYNTAX_CORRECTIONS, syntax_corrected
from embedded.drill_region import environment_lost, notifications_lost, other_entries, pipeline_entries

FUNCTION = "apilados-pipeline-ingest"
LIVE = {"Id": "live", "LambdaFunctionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}:LIVE",
        "Events": ["s3:ObjectCreated:*"]}
UNQUALIFIED = {**LIVE, "Id": "ProcessCSVFiles", "LambdaFunctionArn": LIVE["LambdaFunctionArn"].rsplit(":", 1)[0]}
OTHER_FUNCTION = {**LIVE, "Id": "thumbs", "LambdaFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:thumbs"}
AUDIT = {"Id": "audit-trail", "QueueArn": "arn:aws:sqs:us-east-1:123456789012:audit", "Events": ["s3:ObjectCreated:*"]}


def test_the_pipeline_entries_are_those_targeting_the_function_in_any_qualifier() -> None:
    configuration = {"LambdaFunctionConfigurations": [LIVE, UNQUALIFIED, OTHER_FUNCTION],
                     "QueueConfigurations": [AUDIT]}
    assert pipeline_entries(configuration, FUNCTION) == [LIVE, UNQUALIFIED]
    assert len(other_entries(configuration, FUNCTION)) == 2


def test_notifications_lost_are_other_entries_gone_or_changed() -> None:
    before = {"LambdaFunctionConfigurations": [LIVE, OTHER_FUNCTION], "QueueConfigurations": [AUDIT],
              "EventBridgeConfiguration": {}}
    moved = {"LambdaFunctionConfigurations": [UNQUALIFIED, OTHER_FUNCTION], "QueueConfigurations": [AUDIT],
             "EventBridgeConfiguration": {}}
    assert notifications_lost(before, moved, FUNCTION) == []  # the pipeline's own entry may move
    replaced = {"LambdaFunctionConfigurations": [UNQUALIFIED]}
    assert len(notifications_lost(before, replaced, FUNCTION)) == 3
    narrowed = {**moved, "QueueConfigurations": [{**AUDIT, "Events": ["s3:ObjectCreated:Put"]}]}
    assert [lost for lost in notifications_lost(before, narrowed, FUNCTION) if "audit-trail" in lost]


def test_environment_lost_is_what_a_merge_would_have_kept() -> None:
    before = {"STAGE": "production", "LOG_LEVEL": "INFO"}
    assert environment_lost(before, {**before, "ACTIVE_REGION": "us-west-2"}) == []
    assert environment_lost(before, {"ACTIVE_REGION": "us-west-2", "LOG_LEVEL": "DEBUG"}) == ["LOG_LEVEL", "STAGE"]


@pytest.mark.parametrize("script", [SEED_FAILOVER, SEED_FAILBACK], ids=lambda path: path.name)
def test_the_corrections_change_exactly_the_two_cli_syntax_errors(script) -> None:
    text = script.read_text()
    corrected = syntax_corrected(text)
    assert "Variables='{" not in corrected and '"LambdaConfigurations"' not in corrected
    assert '"LambdaFunctionConfigurations"' in corrected and """--environment '{"Variables":{""" in corrected
    applied = [wrong for wrong, _ in SYNTAX_CORRECTIONS if wrong in text]
    assert len(applied) == 3  # the environment's opening and closing, and the notification's key
    assert len(corrected.splitlines()) == len(text.splitlines())


def test_a_changed_script_is_refused_rather_than_half_corrected() -> None:
    text = SEED_FAILOVER.read_text().replace('"FAILOVER_MODE":"true"\n    }\'', '"FAILOVER_MODE":"true"}\'')
    with pytest.raises(ValueError, match="changed"):
        syntax_corrected(text)


def test_the_drill_failover_step_fails_when_the_primary_keeps_processing(world, versions_behaviour, monkeypatch):
    """The step cannot pass vacuously: with the primary's pipeline notification left in place by the failover (its
    removal made a no-op), uploads made during the step are processed in both regions and the step fails on it."""
    from drcore.aws.pipeline_notification import BucketNotifications, NotificationChange
    from embedded.drill_failover import add_regions, failover

    # add_regions sets the recovery function's region variables in the process, as the drill runs it: restored
    # after this test, so that no later test finds the regions configured
    with mock.patch.dict(os.environ):
        add_regions(world, boto3.session.Session(region_name="us-east-1"))

        def left_in_place(self, bucket, target_arn):
            return NotificationChange(bucket, target_arn, False, True, ())

        swap = BucketNotifications.swap

        def primary_left_in_place(self, bucket, removed_arn, added_arn, template=None, entry_id=None):
            if bucket == world.data_bucket:  # the primary's entry stays (S3 takes no second one beside it)
                return NotificationChange(bucket, added_arn, False, True, ())
            return swap(self, bucket, removed_arn, added_arn, template, entry_id)

        monkeypatch.setattr(BucketNotifications, "remove", left_in_place)
        monkeypatch.setattr(BucketNotifications, "swap", primary_left_in_place)
        ok, details = failover(world, versions_behaviour)
        assert ok is False
        assert details["regions_processing"] == ["us-east-1", "us-west-2"]
        assert details["double_processed"] > 0
        # and the double processing counted is the one injected: S3 notified the pipeline in both regions for one upload
        notified: dict[str, set[str]] = {}
        for invocation in versions_behaviour.invocations.all(world.function_name):
            if invocation.source == "notification" and invocation.key.startswith("uploads/drill-failover/"):
                notified.setdefault(invocation.key, set()).add(invocation.region)
        assert any(regions == {"us-east-1", "us-west-2"} for regions in notified.values()), notified
