"""The sample protected system: what the runbook's Apilados Pipeline looks like to the controller.

Built through the AWS API (moto in-process or the embedded server), so the drill, the tests and the
benchmark all start from the same world: the ingest function with published versions, LIVE on one,
STABLE on another, the alarms on LIVE, the controller's state table and alert topics, and a queue
subscribed to the topics so alerts can be read back.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from drcore.config import HEALTH_ALARM_KINDS, PERFORMANCE_ALARM_KINDS, EnvVar, alarm_name

FUNCTION_NAME = "apilados-pipeline-ingest"
STATE_TABLE = "apilados-dr-state"


def _code_archive(version_label: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "index.py",
            f"RELEASE = {version_label!r}\n\ndef handler(event, context):\n    return {{'release': RELEASE}}\n",
        )
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

    @property
    def health_alarms(self) -> tuple[str, ...]:
        return tuple(self.alarms[kind] for kind in HEALTH_ALARM_KINDS)

    @property
    def performance_alarms(self) -> tuple[str, ...]:
        return tuple(self.alarms[kind] for kind in PERFORMANCE_ALARM_KINDS)

    def environment(self, **overrides: str) -> dict[str, str]:
        """The environment the stack gives the watchers, for this system."""
        values = {
            EnvVar.PROTECTED_FUNCTION_NAME: self.function_name,
            EnvVar.STATE_TABLE_NAME: self.table,
            EnvVar.ALERT_TOPIC_ARN: self.alert_topic_arn,
            EnvVar.EMERGENCY_TOPIC_ARN: self.emergency_topic_arn,
            EnvVar.HEALTH_ALARM_NAMES: ",".join(self.health_alarms),
            EnvVar.PERFORMANCE_ALARM_NAMES: ",".join(self.performance_alarms),
            "POWERTOOLS_SERVICE_NAME": "dr-controller",
            "POWERTOOLS_METRICS_NAMESPACE": "ApiladosDR",
        }
        return {str(key): value for key, value in {**values, **overrides}.items()}

    def alias_version(self, alias: str) -> str:
        return self.clients["lambda"].get_alias(FunctionName=self.function_name, Name=alias)["FunctionVersion"]

    def set_alarm(self, kind: str, state: str, reason: str = "drill") -> None:
        self.clients["cloudwatch"].set_alarm_state(AlarmName=self.alarms[kind], StateValue=state, StateReason=reason)

    def drain_alerts(self) -> list[dict[str, Any]]:
        """Every alert published since the last drain: subject, severity, topic and message."""
        sqs = self.clients["sqs"]
        alerts = []
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


def build_sample_system(session: Any, endpoint_url: str | None = None, function_name: str = FUNCTION_NAME) -> SampleSystem:
    """Create the protected system: STABLE on a good version, LIVE on a bad one (the incident)."""
    clients = {name: session.client(name, endpoint_url=endpoint_url)
               for name in ("iam", "lambda", "cloudwatch", "dynamodb", "sns", "sqs")}
    role = clients["iam"].create_role(
        RoleName=f"{function_name}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    )["Role"]["Arn"]
    lam = clients["lambda"]
    lam.create_function(FunctionName=function_name, Runtime="python3.13", Role=role, Handler="index.handler",
                        Code={"ZipFile": _code_archive("initial")}, Environment={"Variables": {"STAGE": "production"}})
    versions = {}
    for label in ("good", "bad", "fix"):
        lam.update_function_code(FunctionName=function_name, ZipFile=_code_archive(label))
        versions[label] = lam.publish_version(FunctionName=function_name, Description=f"{label} release")["Version"]
    lam.create_alias(FunctionName=function_name, Name="STABLE", FunctionVersion=versions["good"])
    lam.create_alias(FunctionName=function_name, Name="LIVE", FunctionVersion=versions["good"])

    cloudwatch = clients["cloudwatch"]
    alias_dimensions = [{"Name": "FunctionName", "Value": function_name}, {"Name": "Resource", "Value": f"{function_name}:LIVE"}]
    # The same alarms, names and thresholds as the stack's defaults (stacks/constructs/alarms.py).
    alarm_specs = {
        "errors": dict(Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60, EvaluationPeriods=3,
                       DatapointsToAlarm=2, Threshold=1, Dimensions=alias_dimensions),
        "throttles": dict(Namespace="AWS/Lambda", MetricName="Throttles", Statistic="Sum", Period=60,
                          EvaluationPeriods=3, DatapointsToAlarm=2, Threshold=1, Dimensions=alias_dimensions),
        "health-probe": dict(Namespace="ApiladosDR", MetricName="HealthProbeFailed", Statistic="Maximum", Period=60,
                             EvaluationPeriods=3, DatapointsToAlarm=2, Threshold=1,
                             Dimensions=[{"Name": "FunctionName", "Value": function_name}, {"Name": "Alias", "Value": "LIVE"}]),
        "avg-duration": dict(Namespace="AWS/Lambda", MetricName="Duration", Statistic="Average", Period=600,
                                 EvaluationPeriods=1, Threshold=300000, Dimensions=alias_dimensions),
        "p99-duration": dict(Namespace="AWS/Lambda", MetricName="Duration", ExtendedStatistic="p99", Period=600,
                             EvaluationPeriods=1, Threshold=600000, Dimensions=alias_dimensions),
    }
    alarms = {}
    for kind, spec in alarm_specs.items():
        alarms[kind] = alarm_name(function_name, "LIVE", kind)
        cloudwatch.put_metric_alarm(AlarmName=alarms[kind], ComparisonOperator="GreaterThanOrEqualToThreshold", **spec)
        cloudwatch.set_alarm_state(AlarmName=alarms[kind], StateValue="OK", StateReason="healthy at start")

    clients["dynamodb"].create_table(
        TableName=STATE_TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    )
    sns, sqs = clients["sns"], clients["sqs"]
    alert_topic = sns.create_topic(Name="apilados-dr-alerts")["TopicArn"]
    emergency_topic = sns.create_topic(Name="apilados-dr-emergency")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="apilados-dr-alert-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in (alert_topic, emergency_topic):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return SampleSystem(function_name=function_name, versions=versions, alarms=alarms, table=STATE_TABLE,
                        alert_topic_arn=alert_topic, emergency_topic_arn=emergency_topic, alert_queue_url=queue_url,
                        region=session.region_name, clients=clients)
