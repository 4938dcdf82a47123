"""Events in the exact shapes AWS delivers them to the watchers.

Shapes from the CloudWatch and EventBridge documentation: the alarm action payload that CloudWatch
sends when an alarm invokes a Lambda function, the "CloudWatch Alarm State Change" event, and the
"Scheduled Event" of an EventBridge schedule.
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

ACCOUNT = "123456789012"


def cloudwatch_time(moment: datetime) -> str:
    """CloudWatch's own timestamp form: 2023-08-04T12:36:15.490+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _metrics(function_name: str) -> list[dict[str, Any]]:
    return [{
        "id": "m1",
        "metricStat": {
            "metric": {"namespace": "AWS/Lambda", "name": "Errors",
                       "dimensions": {"FunctionName": function_name, "Resource": f"{function_name}:LIVE"}},
            "period": 60, "stat": "Sum",
        },
        "returnData": True,
    }]


def _states(state: str, changed_at: datetime, previous: str) -> tuple[dict[str, Any], dict[str, Any]]:
    reason = f"Threshold Crossed: 1 datapoint was {'greater' if state == 'ALARM' else 'less'} than the threshold"
    return (
        {"value": state, "reason": reason, "timestamp": cloudwatch_time(changed_at)},
        {"value": previous, "reason": "previous state",
         "timestamp": cloudwatch_time(changed_at.replace(microsecond=0))},
    )


def alarm_action_event(alarm_name: str, state: str, changed_at: datetime, function_name: str,
                       region: str = "us-east-1", previous: str = "OK") -> dict[str, Any]:
    current, before = _states(state, changed_at, previous)
    return {
        "source": "aws.cloudwatch",
        "alarmArn": f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{alarm_name}",
        "accountId": ACCOUNT,
        "time": cloudwatch_time(changed_at),
        "region": region,
        "alarmData": {
            "alarmName": alarm_name,
            "state": current,
            "previousState": before,
            "configuration": {"description": f"{alarm_name} on LIVE", "metrics": _metrics(function_name)},
        },
    }


def alarm_state_change_event(alarm_name: str, state: str, changed_at: datetime, function_name: str,
                             region: str = "us-east-1", previous: str = "OK") -> dict[str, Any]:
    current, before = _states(state, changed_at, previous)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT,
        "time": changed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{alarm_name}"],
        "detail": {
            "alarmName": alarm_name,
            "state": current,
            "previousState": before,
            "configuration": {"description": f"{alarm_name} on LIVE", "metrics": _metrics(function_name)},
        },
    }


def scheduled_event(at: datetime, rule: str = "apilados-dr-health-tick", region: str = "us-east-1") -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def cloudtrail_event(event_name: str, function_name: str, **detail: object) -> dict[str, Any]:
    """The shape EventBridge delivers for a CloudTrail-recorded Lambda API call."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.lambda", "account": "123456789012", "time": now, "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08", "eventSource": "lambda.amazonaws.com", "eventName": event_name,
            "awsRegion": "us-east-1", "eventTime": now,
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/deployer/ci"},
            "requestParameters": {"functionName": function_name},
            **detail,
        },
    }


class LambdaContextStub(LambdaContext):
    """The attributes of the Lambda context object that Powertools reads. A LambdaContext, so a handler's
    signature type-checks against it; Powertools' class serves them from these private fields."""

    def __init__(self, function_name: str, remaining_ms: int = 900_000) -> None:
        self._function_name = function_name
        self._remaining_ms = remaining_ms
        self._function_version = "$LATEST"
        self._memory_limit_in_mb = 256
        self._invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function_name}"
        self._aws_request_id = str(uuid.uuid4())
        self._log_group_name = f"/aws/lambda/{function_name}"
        self._log_stream_name = "embedded"

    # An instance method where Powertools' stand-in is static: each invocation has its own remaining time.
    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]  # see above
        return self._remaining_ms


def invoke_handler(module: Any, event: Any, function_name: str = "dr-watcher") -> tuple[Any, list[str]]:
    """Call a handler as Lambda would, capturing the CloudWatch EMF records it prints (which Lambda
    would turn into metrics); returns its result and the names of the metrics it emitted."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = module.handler(event, LambdaContextStub(function_name))
    emitted = []
    for line in buffer.getvalue().splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
            emitted += [metric["Name"] for metric in directive["Metrics"]]
    return result, emitted
