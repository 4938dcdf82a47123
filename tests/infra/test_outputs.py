"""What an operator needs after `cdk deploy`."""

from __future__ import annotations

from tests.infra.support import (
    Synthesized,
    failed_events_queue,
    fanout_results_bucket_id,
    logical_id,
    scratch_bucket_id,
)


def test_outputs_name_the_functions_buckets_table_topics_queue_and_dashboard(synth: Synthesized):
    # Given the synthesized controller
    resources = synth.resources
    outputs = {name: output["Value"] for name, output in synth.template.to_json()["Outputs"].items()}

    def function(handler: str) -> dict:
        return {"Ref": logical_id(resources, "AWS::Lambda::Function", Handler=handler)}

    # Then each output refers to the resource it names
    assert outputs == {
        "HealthWatcherName": function("health_watcher.handler.handler"),
        "PerformanceWatcherName": function("performance_watcher.handler.handler"),
        "BackupFunctionName": function("backup.handler.handler"),
        "RetentionFunctionName": function("retention.handler.handler"),
        "RecoveryFunctionName": function("recovery.handler.handler"),
        "RecoveryFunctionArn": {
            "Fn::GetAtt": [logical_id(resources, "AWS::Lambda::Function", Handler="recovery.handler.handler"), "Arn"]
        },
        "DrillFunctionName": function("drill.handler.handler"),
        "DrillScratchBucketName": {"Ref": scratch_bucket_id(resources)},
        "DrillScratchFunctionName": "apilados-pipeline-ingest-drill",
        "StateTableName": {"Ref": logical_id(resources, "AWS::DynamoDB::GlobalTable")},
        "BackupBucketName": {"Ref": logical_id(resources, "AWS::S3::Bucket", ObjectLockEnabled=True)},
        "SnapshotFanOutResultsBucketName": {"Ref": fanout_results_bucket_id(resources)},
        # The data bucket is the pipeline's, named in cdk.json, not created here
        "DataBucketName": "apilados-production-data",
        "AlertTopicArn": {"Ref": logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")},
        "EmergencyTopicArn": {
            "Ref": logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
        },
        "FailedEventsQueueUrl": {"Ref": failed_events_queue(resources)},
        # And the dashboard opens in the primary region's console, under the dashboard's own name
        "DashboardUrl": "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#dashboards:name=apilados-pipeline-ingest-dr",
    }
    dashboard = logical_id(resources, "AWS::CloudWatch::Dashboard")
    assert resources[dashboard]["Properties"]["DashboardName"] == "apilados-pipeline-ingest-dr"


def test_the_recovery_function_output_says_who_may_invoke_it(synth: Synthesized):
    # Given no operator principals in cdk.json
    output = synth.template.to_json()["Outputs"]["RecoveryFunctionName"]
    # Then the output says that only this account's identities allowed by IAM can invoke it
    assert "no operator principals configured" in output["Description"]
    assert "lambda:InvokeFunction" in output["Description"]
