"""The sample protected system: what the runbook's Apilados Pipeline looks like to the controller.

Built through the AWS API (moto in-process or the embedded server), so the drill, the tests and the
benchmark all start from the same world: the ingest function with published versions, LIVE on one,
STABLE on another, the alarms on LIVE, the controller's state table and alert topics, and a queue
subscribed to the topics so alerts can be read back.

The function is configured as a production one is, so a backup has something to capture and a
recovery something to prove: a layer, non-default memory, timeout, storage and tracing, environment
variables, tags, reserved concurrency, an event invoke config with a failure destination, and S3's
permission to invoke LIVE. Beside it: the pipeline's CloudFormation stack (parameters, outputs, tags,
IAM capability, stack policy, termination protection) and its log group with yesterday's and today's
events.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drcore.core.config import (
    DEFAULT_METRICS_NAMESPACE,
    HEALTH_ALARM_KINDS,
    PERFORMANCE_ALARM_KINDS,
    BackupEnvVar,
    DrillEnvironment,
    DrillEnvVar,
    EnvVar,
    FailoverEnvVar,
    RegionEnvVar,
    alarm_name,
)
from drcore.core.metric_names import ALIAS_DIMENSION, FUNCTION_DIMENSION, HEALTH_PROBE_METRIC

FUNCTION_NAME = "apilados-pipeline-ingest"
STATE_TABLE = "apilados-dr-state"
PIPELINE_STACK = "ApiladosPipelineStack"
DATA_BUCKET = "apilados-production-data"

FUNCTION_ENVIRONMENT = {"STAGE": "production", "DATA_BUCKET": DATA_BUCKET, "LOG_LEVEL": "INFO",
                        "MAX_ROWS_PER_BATCH": "500"}
FUNCTION_TAGS = {"app": "apilados", "component": "ingest", "owner": "data-platform"}
RESERVED_CONCURRENCY = 25


def execution_role_name(function_name: str) -> str:
    """The protected function's execution role, named as CloudFormation names the IngestRole the pipeline stack
    creates (`<stack>-<logical id>-<suffix>`): the controller's default iam:PassRole grant is `<pipeline stack>-*`."""
    return f"{PIPELINE_STACK}-IngestRole-{function_name}"

PIPELINE_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "Apilados Pipeline: ingest queue, notifications and the ingest role",
    "Parameters": {
        "Stage": {"Type": "String", "Default": "staging", "AllowedValues": ["staging", "production"]},
        "RetentionDays": {"Type": "Number", "Default": 14},
    },
    "Resources": {
        "IngestNotifications": {"Type": "AWS::SNS::Topic"},
        "IngestQueue": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 900}},
        "IngestRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}}},
    },
    "Outputs": {
        "IngestQueueUrl": {"Value": {"Ref": "IngestQueue"}},
        "IngestNotificationsArn": {"Value": {"Ref": "IngestNotifications"}},
    },
}
PIPELINE_STACK_POLICY = {"Statement": [
    {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
    {"Effect": "Deny", "Action": "Update:Replace", "Principal": "*", "Resource": "LogicalResourceId/IngestQueue"},
]}


def _code_archive(version_label: str) -> bytes:
    """The release's zip, byte for byte the same whenever it is built (a fixed timestamp), so the same release
    published in two regions has one CodeSha256, as one build artefact deployed twice has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo("index.py", date_time=(2026, 11, 1, 0, 0, 0)),
            f"RELEASE = {version_label!r}\n\ndef handler(event, context):\n    return {{'release': RELEASE}}\n",
        )
    return buffer.getvalue()


def _layer_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/apilados_common.py", "CSV_DIALECT = 'excel'\n")
    return buffer.getvalue()


@dataclass
class SampleSystem:
    function_name: str
    versions: dict[str, str]  # label ("good", "bad", "fix") -> published version
    alarms: dict[str, str]  # kind -> alarm name
    table: str
    alert_topic_arn: str
    emergency_topic_arn: str
    alert_queue_url: str
    region: str
    clients: dict[str, Any] = field(repr=False, default_factory=dict)
    layer_arn: str = ""
    failure_queue_arn: str = ""  # the event invoke config's on-failure destination
    stack_name: str = PIPELINE_STACK
    log_group: str = ""
    log_events: dict[str, list[str]] = field(default_factory=dict)  # UTC day (YYYY-MM-DD) -> messages
    data_bucket: str = ""  # set by add_buckets
    backup_bucket: str = ""
    scratch_bucket: str = ""  # set by add_drill_scratch
    replica_bucket: str = ""  # set by add_replica
    replication_role_arn: str = ""
    secondary_versions: dict[str, str] = field(default_factory=dict)  # set by sample_regions.add_secondary_function
    secondary_alarms: dict[str, str] = field(default_factory=dict)

    @property
    def health_alarms(self) -> tuple[str, ...]:
        return tuple(self.alarms[kind] for kind in HEALTH_ALARM_KINDS)

    @property
    def performance_alarms(self) -> tuple[str, ...]:
        return tuple(self.alarms[kind] for kind in PERFORMANCE_ALARM_KINDS)

    def environment(self, **overrides: str) -> dict[str, str]:
        """The environment the stack gives the watchers, for this system."""
        values: dict[str, str] = {
            EnvVar.PROTECTED_FUNCTION_NAME: self.function_name,
            EnvVar.STATE_TABLE_NAME: self.table,
            EnvVar.ALERT_TOPIC_ARN: self.alert_topic_arn,
            EnvVar.EMERGENCY_TOPIC_ARN: self.emergency_topic_arn,
            EnvVar.HEALTH_ALARM_NAMES: ",".join(self.health_alarms),
            EnvVar.PERFORMANCE_ALARM_NAMES: ",".join(self.performance_alarms),
            "POWERTOOLS_SERVICE_NAME": "dr-controller",
            "POWERTOOLS_METRICS_NAMESPACE": DEFAULT_METRICS_NAMESPACE,
        }
        return {str(key): value for key, value in {**values, **overrides}.items()}

    def backup_environment(self, **overrides: str) -> dict[str, str]:
        """The environment the stack gives the backup function, for this system (after add_buckets)."""
        values: dict[str, str] = {
            BackupEnvVar.PROTECTED_FUNCTION_NAME: self.function_name,
            BackupEnvVar.STATE_TABLE_NAME: self.table,
            BackupEnvVar.DATA_BUCKET_NAME: self.data_bucket,
            BackupEnvVar.BACKUP_BUCKET_NAME: self.backup_bucket,
            BackupEnvVar.PIPELINE_STACK_NAME: self.stack_name,
            BackupEnvVar.LOG_GROUP_NAME: self.log_group,
        }
        return {str(key): value for key, value in {**values, **overrides}.items()}

    def drill_environment(self, **overrides: str) -> dict[str, str]:
        """The drill function's own variables, as the stack sets them (after add_drill_scratch)."""
        values: dict[str, str] = {
            DrillEnvVar.SCRATCH_BUCKET_NAME: self.scratch_bucket,
            DrillEnvVar.SCRATCH_FUNCTION_NAME: f"{self.function_name}-drill",
            DrillEnvVar.RTO_SECONDS: json.dumps({"lambda": 900, "s3": 1800, "configuration": 300}),
            DrillEnvVar.ENVIRONMENT: DrillEnvironment.EMBEDDED.value,
        }
        return {str(key): value for key, value in {**values, **overrides}.items()}

    def region_environment(self, **overrides: str) -> dict[str, str]:
        """The recovery function's replication variables, as the stack sets them (after add_replica)."""
        values: dict[str, str] = {
            RegionEnvVar.SECONDARY_REGION: SECONDARY_REGION,
            RegionEnvVar.REPLICA_BUCKET_NAME: self.replica_bucket,
            RegionEnvVar.REPLICATION_ROLE_ARN: self.replication_role_arn,
            FailoverEnvVar.SWITCH_GATE_QUEUE: SWITCH_GATE_QUEUE,
            # The embedded S3 sends an event to a queue before its write answers: nothing to wait for.
            FailoverEnvVar.SWITCH_GATE_SETTLE_SECONDS: "0",
        }
        return {str(key): value for key, value in {**values, **overrides}.items()}

    def alias_version(self, alias: str) -> str:
        return str(self.clients["lambda"].get_alias(FunctionName=self.function_name, Name=alias)["FunctionVersion"])

    def set_alarm(self, kind: str, state: str, reason: str = "drill") -> None:
        self.clients["cloudwatch"].set_alarm_state(AlarmName=self.alarms[kind], StateValue=state, StateReason=reason)

    def drain_alerts(self) -> list[dict[str, Any]]:
        """Every alert published since the last drain: subject, severity, topic and message."""
        sqs = self.clients["sqs"]
        alerts: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.alert_queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return alerts
            for message in messages:
                body = json.loads(message["Body"])
                alerts.append({
                    "subject": body.get("Subject"),
                    "topic": body.get("TopicArn"),
                    "severity": int(body.get("MessageAttributes", {}).get("severity", {}).get("Value", 0)),
                    "message": body.get("Message"),
                })
                sqs.delete_message(QueueUrl=self.alert_queue_url, ReceiptHandle=message["ReceiptHandle"])


def create_pipeline_function(lam: Any, name: str, role: str, environment: dict[str, str],
                             description: str) -> tuple[dict[str, str], str]:
    """The ingest function as a production one is configured (layer, memory, timeout, storage, tracing, tags,
    reserved concurrency), its good, bad and fix releases published, LIVE and STABLE on the good one. Returns the
    versions by label and the layer's ARN."""
    layer_arn = lam.publish_layer_version(LayerName=f"{name}-deps", Content={"ZipFile": _layer_archive()},
                                          CompatibleRuntimes=["python3.13"])["LayerVersionArn"]
    lam.create_function(FunctionName=name, Runtime="python3.13", Role=role, Handler="index.handler",
                        Code={"ZipFile": _code_archive("initial")}, Environment={"Variables": environment},
                        Description=description, MemorySize=1024, Timeout=600, EphemeralStorage={"Size": 2048},
                        TracingConfig={"Mode": "Active"}, Layers=[layer_arn], Tags=dict(FUNCTION_TAGS))
    versions = {}
    for label in ("good", "bad", "fix"):
        lam.update_function_code(FunctionName=name, ZipFile=_code_archive(label))
        versions[label] = lam.publish_version(FunctionName=name, Description=f"{label} release")["Version"]
    for alias in ("STABLE", "LIVE"):
        lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=versions["good"])
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=RESERVED_CONCURRENCY)
    return versions, layer_arn


def build_sample_system(session: Any, endpoint_url: str | None = None,
                        function_name: str = FUNCTION_NAME) -> SampleSystem:
    """Create the protected system: STABLE on a good version, LIVE on a bad one (the incident)."""
    clients = {name: session.client(name, endpoint_url=endpoint_url)
               for name in ("iam", "lambda", "cloudwatch", "dynamodb", "sns", "sqs", "cloudformation", "logs")}
    role = clients["iam"].create_role(
        RoleName=execution_role_name(function_name),
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    lam = clients["lambda"]
    versions, layer_arn = create_pipeline_function(lam, function_name, role, dict(FUNCTION_ENVIRONMENT),
                                                   "Apilados Pipeline: CSV ingest")
    sqs = clients["sqs"]
    failure_queue = sqs.create_queue(QueueName=f"{function_name}-failures")["QueueUrl"]
    failure_queue_arn = sqs.get_queue_attributes(QueueUrl=failure_queue,
                                                 AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.put_function_event_invoke_config(FunctionName=function_name, MaximumRetryAttempts=1,
                                         MaximumEventAgeInSeconds=3600,
                                         DestinationConfig={"OnFailure": {"Destination": failure_queue_arn}})
    lam.add_permission(FunctionName=function_name, Qualifier="LIVE", StatementId="s3-invokes-live",
                       Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                       SourceArn=f"arn:aws:s3:::{DATA_BUCKET}")

    alarms = create_alarms(clients["cloudwatch"], function_name)

    clients["dynamodb"].create_table(
        TableName=STATE_TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
    )
    sns = clients["sns"]
    alert_topic = sns.create_topic(Name="apilados-dr-alerts")["TopicArn"]
    emergency_topic = sns.create_topic(Name="apilados-dr-emergency")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="apilados-dr-alert-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in (alert_topic, emergency_topic):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    _create_pipeline_stack(clients["cloudformation"])
    log_group = f"/aws/lambda/{function_name}"
    log_events = _write_function_logs(clients["logs"], log_group)
    return SampleSystem(function_name=function_name, versions=versions, alarms=alarms, table=STATE_TABLE,
                        alert_topic_arn=alert_topic, emergency_topic_arn=emergency_topic, alert_queue_url=queue_url,
                        region=session.region_name, clients=clients, layer_arn=layer_arn,
                        failure_queue_arn=failure_queue_arn, log_group=log_group, log_events=log_events)


def create_alarms(cloudwatch: Any, function_name: str) -> dict[str, str]:
    """The alarms on LIVE, in the client's region: kind -> alarm name."""
    alias_dimensions = [{"Name": "FunctionName", "Value": function_name},
                        {"Name": "Resource", "Value": f"{function_name}:LIVE"}]
    # The same alarms, names and thresholds as the stack's defaults (stacks/constructs/alarms.py).
    alarm_specs: dict[str, dict[str, Any]] = {
        "errors": {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum", "Period": 60,
                   "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": 1, "Dimensions": alias_dimensions},
        "throttles": {"Namespace": "AWS/Lambda", "MetricName": "Throttles", "Statistic": "Sum", "Period": 60,
                      "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": 1, "Dimensions": alias_dimensions},
        "health-probe": {"Namespace": DEFAULT_METRICS_NAMESPACE, "MetricName": HEALTH_PROBE_METRIC,
                         "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2,
                         "Threshold": 1, "Dimensions": [{"Name": FUNCTION_DIMENSION, "Value": function_name},
                                                        {"Name": ALIAS_DIMENSION, "Value": "LIVE"}]},
        "avg-duration": {"Namespace": "AWS/Lambda", "MetricName": "Duration", "Statistic": "Average", "Period": 600,
                         "EvaluationPeriods": 1, "Threshold": 300000, "Dimensions": alias_dimensions},
        "p99-duration": {"Namespace": "AWS/Lambda", "MetricName": "Duration", "ExtendedStatistic": "p99",
                         "Period": 600, "EvaluationPeriods": 1, "Threshold": 600000, "Dimensions": alias_dimensions},
    }
    alarms = {}
    for kind, spec in alarm_specs.items():
        alarms[kind] = alarm_name(function_name, "LIVE", kind)
        cloudwatch.put_metric_alarm(AlarmName=alarms[kind], ComparisonOperator="GreaterThanOrEqualToThreshold", **spec)
        cloudwatch.set_alarm_state(AlarmName=alarms[kind], StateValue="OK", StateReason="healthy at start")
    return alarms


def _create_pipeline_stack(cloudformation: Any) -> None:
    cloudformation.create_stack(
        StackName=PIPELINE_STACK, TemplateBody=json.dumps(PIPELINE_TEMPLATE),
        Parameters=[{"ParameterKey": "Stage", "ParameterValue": "production"}], Capabilities=["CAPABILITY_IAM"],
        Tags=[{"Key": "app", "Value": "apilados"}, {"Key": "cost-center", "Value": "data"}],
        StackPolicyBody=json.dumps(PIPELINE_STACK_POLICY), EnableTerminationProtection=True,
    )


def _write_function_logs(logs: Any, log_group: str) -> dict[str, list[str]]:
    """Invocations yesterday and one today (UTC), as the function's log group would hold them.

    Timestamps follow the wall clock because CloudWatch Logs refuses events older than 14 days.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    yesterday = today - timedelta(days=1)
    streams = {
        f"{yesterday:%Y/%m/%d}/[1]a1b2c3": [yesterday + timedelta(hours=hour) for hour in (9, 13, 17)],
        f"{today:%Y/%m/%d}/[1]d4e5f6": [max(today, now - timedelta(seconds=1))],
    }
    logs.create_log_group(logGroupName=log_group)
    events: dict[str, list[str]] = {}
    for stream, moments in streams.items():
        logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
        batch: list[dict[str, Any]] = [
            {"timestamp": int(moment.timestamp() * 1000),
             "message": f"INFO processed uploads/{moment:%Y%m%dT%H%M%S}.csv rows=500"} for moment in moments]
        logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=batch)
        for moment, event in zip(moments, batch, strict=True):
            events.setdefault(f"{moment:%Y-%m-%d}", []).append(event["message"])
    return events


BACKUP_BUCKET = "apilados-dr-backups"


def add_buckets(system: SampleSystem, session: Any, endpoint_url: str | None = None, objects: int = 50) -> None:
    """The data bucket (versioned, with `objects` CSV uploads) and the controller's backup bucket
    (versioned, Object Lock), as the stack and the pipeline deploy them."""
    s3 = session.client("s3", endpoint_url=endpoint_url)
    system.clients["s3"] = s3
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    system.data_bucket = DATA_BUCKET
    put_sample_uploads(system, range(objects))
    s3.create_bucket(Bucket=BACKUP_BUCKET, ObjectLockEnabledForBucket=True)
    system.data_bucket, system.backup_bucket = DATA_BUCKET, BACKUP_BUCKET


def put_sample_uploads(system: SampleSystem, numbers: range) -> list[str]:
    """CSV uploads to the data bucket, numbered as the sample's; returns their keys."""
    keys = []
    for n in numbers:
        keys.append(f"uploads/2026/11/batch-{n:05d}.csv")
        # Every fourth carries tags, as a producer may set them: snapshots, restores and their checks keep them.
        tags = {"Tagging": f"batch={n}&producer=sample"} if n % 4 == 0 else {}
        system.clients["s3"].put_object(Bucket=system.data_bucket, Key=keys[-1], ContentType="text/csv",
                                        Body=f"id,amount\n{n},{n * 10}\n".encode(), Metadata={"source": "sample"},
                                        **tags)
    return keys


def add_controller_function(system: SampleSystem, name: str) -> None:
    """A stand-in for one of the controller's own functions, which invoke themselves to continue long work."""
    role = system.clients["iam"].get_role(RoleName=execution_role_name(system.function_name))["Role"]["Arn"]
    system.clients["lambda"].create_function(FunctionName=name, Runtime="python3.13", Role=role,
                                             Handler="index.handler", Code={"ZipFile": _code_archive(name)})


SCRATCH_BUCKET = "apilados-dr-drill-scratch"


def add_drill_scratch(system: SampleSystem) -> None:
    """The drill's scratch bucket, versioned as the stack creates it (after add_buckets)."""
    s3 = system.clients["s3"]
    s3.create_bucket(Bucket=SCRATCH_BUCKET)
    s3.put_bucket_versioning(Bucket=SCRATCH_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    system.scratch_bucket = SCRATCH_BUCKET


REPLICA_BUCKET = "apilados-production-data-replica"
SWITCH_GATE_QUEUE = "apilados-dr-switch-gate"
SECONDARY_REGION = "us-west-2"
REPLICATION_ROLE = "apilados-s3-replication"


def add_replica(system: SampleSystem, session: Any, endpoint_url: str | None = None) -> None:
    """The replica bucket in the secondary region (versioned) and the role S3 replicates with, as an operator
    prepares them before `configure_replication` (after add_buckets)."""
    s3 = session.client("s3", region_name=SECONDARY_REGION, endpoint_url=endpoint_url)
    system.clients["s3_secondary"] = s3
    s3.create_bucket(Bucket=REPLICA_BUCKET, CreateBucketConfiguration={"LocationConstraint": SECONDARY_REGION})
    s3.put_bucket_versioning(Bucket=REPLICA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    system.replication_role_arn = system.clients["iam"].create_role(
        RoleName=REPLICATION_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    system.replica_bucket = REPLICA_BUCKET
    # Each region's switch gate, as each stack creates it (drcore.region.switch_gate).
    for region in (system.region, SECONDARY_REGION):
        session.client("sqs", region_name=region, endpoint_url=endpoint_url).create_queue(QueueName=SWITCH_GATE_QUEUE)
