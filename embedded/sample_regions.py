"""The sample system in two regions: what a region failover and failback act on.

Beside the primary (embedded/sample_system.py): the pipeline's function in the secondary region, deployed from the
same releases (so STABLE's CodeSha256 there equals the primary STABLE's), with its own environment, LIVE and STABLE
aliases, the same alarms and S3's permission to invoke its LIVE from the replica bucket; the replica bucket fed by
the controller's replication rule (as `configure_replication` puts it); the data bucket's notification of the
primary LIVE on `s3:ObjectCreated:*`, as the pipeline stack sets it; and, on request, an unrelated notification
entry on each bucket (an audit queue), which a failover or failback must leave in place.

In the embedded world S3's notifications of a function are recorded as invocations (embedded/s3_notifications.py),
so which region processed which upload can be read back from `behaviour.invocations`.
"""

from __future__ import annotations

from typing import Any

from drcore.region.replication_rule import bucket_arn, owned_rule
from embedded.sample_system import (
    FUNCTION_ENVIRONMENT,
    REPLICA_BUCKET,
    SECONDARY_REGION,
    SampleSystem,
    add_buckets,
    add_replica,
    build_sample_system,
    create_alarms,
    create_pipeline_function,
    execution_role_name,
    put_sample_uploads,
)

SECONDARY_FUNCTION_ENVIRONMENT = {**FUNCTION_ENVIRONMENT, "DATA_BUCKET": REPLICA_BUCKET, "LOG_LEVEL": "WARNING"}
PIPELINE_NOTIFICATION_ID = "apilados-pipeline-ingest-live"  # the pipeline stack's entry on the data bucket
AUDIT_NOTIFICATION_ID = "audit-trail"  # an entry the DR controller does not own
AUDIT_QUEUE = "apilados-audit-trail"
OBJECT_CREATED = "s3:ObjectCreated:*"
# The audit entry hears of deletions: an ObjectCreated entry beside the pipeline's would overlap it, which S3 refuses.
OBJECT_REMOVED = "s3:ObjectRemoved:*"


def live_alias_arn(lambda_client: Any, function_name: str) -> str:
    return str(lambda_client.get_alias(FunctionName=function_name, Name="LIVE")["AliasArn"])


def add_secondary_function(system: SampleSystem, session: Any, endpoint_url: str | None = None) -> None:
    """The ingest function in the secondary region: the same releases published in the same order, LIVE and STABLE
    on the good one, its own environment, the alarms, and S3's permission to invoke LIVE from the replica."""
    lam = session.client("lambda", region_name=SECONDARY_REGION, endpoint_url=endpoint_url)
    cloudwatch = session.client("cloudwatch", region_name=SECONDARY_REGION, endpoint_url=endpoint_url)
    system.clients["lambda_secondary"], system.clients["cloudwatch_secondary"] = lam, cloudwatch
    name = system.function_name
    role = system.clients["iam"].get_role(RoleName=execution_role_name(name))["Role"]["Arn"]
    versions, _ = create_pipeline_function(lam, name, role, dict(SECONDARY_FUNCTION_ENVIRONMENT),
                                           "Apilados Pipeline: CSV ingest (standby)")
    system.secondary_versions.update(versions)
    lam.add_permission(FunctionName=name, Qualifier="LIVE", StatementId="s3-invokes-live",
                       Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                       SourceArn=f"arn:aws:s3:::{REPLICA_BUCKET}")
    system.secondary_alarms = create_alarms(cloudwatch, name)
    for alarm in system.secondary_alarms.values():
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="healthy at start")


def add_replication(system: SampleSystem) -> None:
    """The controller's replication rule on the data bucket, to the replica (after add_replica)."""
    system.clients["s3"].put_bucket_replication(Bucket=system.data_bucket, ReplicationConfiguration={
        "Role": system.replication_role_arn, "Rules": [owned_rule(bucket_arn(system.replica_bucket, "aws"), 1)]})


def merge_notification(s3: Any, bucket: str, kind: str, entry: dict[str, Any]) -> None:
    """Add `entry` to the bucket's `kind` (LambdaFunctionConfigurations, QueueConfigurations, ...), keeping the rest."""
    configuration = {key: value for key, value in s3.get_bucket_notification_configuration(Bucket=bucket).items()
                     if key != "ResponseMetadata"}
    configuration[kind] = [*[found for found in configuration.get(kind, []) if found.get("Id") != entry["Id"]], entry]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)


def add_pipeline_notification(system: SampleSystem) -> None:
    """The data bucket notifies the primary LIVE of every object created, as the pipeline stack configures it."""
    merge_notification(system.clients["s3"], system.data_bucket, "LambdaFunctionConfigurations", {
        "Id": PIPELINE_NOTIFICATION_ID, "LambdaFunctionArn": live_alias_arn(system.clients["lambda"],
                                                                            system.function_name),
        "Events": [OBJECT_CREATED]})


def add_audit_notifications(system: SampleSystem, session: Any, endpoint_url: str | None = None) -> dict[str, str]:
    """An audit queue in each region, notified of every object created in that region's bucket: configuration the
    controller does not own. Returns bucket -> queue URL."""
    queues = {}
    for bucket, region in ((system.data_bucket, system.region), (system.replica_bucket, SECONDARY_REGION)):
        sqs = session.client("sqs", region_name=region, endpoint_url=endpoint_url)
        queues[bucket] = sqs.create_queue(QueueName=AUDIT_QUEUE)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queues[bucket],
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3 = system.clients["s3" if bucket == system.data_bucket else "s3_secondary"]
        merge_notification(s3, bucket, "QueueConfigurations",
                           {"Id": AUDIT_NOTIFICATION_ID, "QueueArn": queue_arn, "Events": [OBJECT_REMOVED]})
    return queues


def build_two_region_system(session: Any, endpoint_url: str | None = None, objects: int = 20) -> SampleSystem:
    """The sample system with its secondary region: function, replica, replication, the pipeline's notification,
    and `objects` uploads made once all of it was in place (replicated, processed once by the primary)."""
    system = build_sample_system(session, endpoint_url)
    add_buckets(system, session, endpoint_url, objects=0)
    add_replica(system, session, endpoint_url)
    add_secondary_function(system, session, endpoint_url)
    add_replication(system)
    add_pipeline_notification(system)
    put_sample_uploads(system, range(objects))
    return system
