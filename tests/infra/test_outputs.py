"""What an operator needs after `cdk deploy`."""

from __future__ import annotations

from .conftest import Synthesized
from .helpers import logical_id


def test_outputs_name_the_functions_table_topics_and_failed_events_queue(synth: Synthesized):
    # Given the synthesized controller
    resources = synth.resources
    outputs = {name: output["Value"] for name, output in synth.template.to_json()["Outputs"].items()}
    # Then each output refers to the resource it names
    assert outputs == {
        "HealthWatcherName": {
            "Ref": logical_id(resources, "AWS::Lambda::Function", Handler="health_watcher.handler.handler")
        },
        "PerformanceWatcherName": {
            "Ref": logical_id(resources, "AWS::Lambda::Function", Handler="performance_watcher.handler.handler")
        },
        "StateTableName": {"Ref": logical_id(resources, "AWS::DynamoDB::Table")},
        "AlertTopicArn": {"Ref": logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")},
        "EmergencyTopicArn": {
            "Ref": logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
        },
        "FailedEventsQueueUrl": {"Ref": logical_id(resources, "AWS::SQS::Queue")},
    }
