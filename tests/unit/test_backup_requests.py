"""Which events ask the backup function for what."""

from __future__ import annotations

import pytest

from drcore.backup.requests import Ignored, parse_backup_request
from drcore.core.errors import InvalidRequest
from embedded.aws_events import cloudtrail_event

FUNCTION = "apilados-pipeline-ingest"


@pytest.mark.parametrize("component", ["lambda", "s3", "stack", "logs", "all"])
def test_a_schedule_names_its_component(component):
    assert parse_backup_request({"component": component}, FUNCTION).component == component


def test_a_continuation_carries_the_snapshot_to_resume():
    request = parse_backup_request({"component": "s3", "resume": "20261126T120000Z-abc123"}, FUNCTION)
    assert request.resume == "20261126T120000Z-abc123"


@pytest.mark.parametrize("name, target", [
    ("UpdateFunctionConfiguration20150331v2", FUNCTION),
    ("UpdateFunctionCode20150331v2", f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"),
    ("PublishVersion20150331", FUNCTION),
    ("UpdateAlias20150331", f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}:LIVE"),
])
def test_a_configuration_change_of_the_function_backs_up_its_configuration(name, target):
    request = parse_backup_request(cloudtrail_event(name, target), FUNCTION)
    assert request.component == "lambda"
    assert name in request.reason and "deployer/ci" in request.reason


@pytest.mark.parametrize("event", [
    cloudtrail_event("UpdateFunctionConfiguration20150331v2", "billing-api"),
    cloudtrail_event("GetFunction20150331v2", FUNCTION),
    cloudtrail_event("UpdateFunctionCode20150331v2", FUNCTION, errorCode="AccessDenied"),
    {**cloudtrail_event("PutObject", FUNCTION),
     "detail": {**cloudtrail_event("PutObject", FUNCTION)["detail"], "eventSource": "s3.amazonaws.com"}},
])
def test_other_calls_are_ignored(event):
    assert isinstance(parse_backup_request(event, FUNCTION), Ignored)


def _without_detail(event: dict) -> dict:
    return {key: value for key, value in event.items() if key != "detail"}


def _with_detail(event: dict, **detail: object) -> dict:
    return {**event, "detail": {**event["detail"], **detail}}


CHANGE = cloudtrail_event("UpdateFunctionConfiguration20150331v2", FUNCTION)


@pytest.mark.parametrize("event, problem", [
    (_without_detail(CHANGE), "detail: Field required"),
    ({**CHANGE, "detail": None}, "detail"),
    ({**CHANGE, "detail": "UpdateFunctionConfiguration"}, "detail"),
    (_with_detail(CHANGE, requestParameters=f"functionName={FUNCTION}"), "detail.requestParameters"),
    (_with_detail(CHANGE, requestParameters={"functionName": ["a", "b"]}), "detail.requestParameters.functionName"),
    (_with_detail(CHANGE, eventName=None), "detail.eventName"),
    (_with_detail(CHANGE, eventName="UpdateFunctionConfiguration" * 10), "detail.eventName"),
    (_with_detail(CHANGE, userIdentity="root"), "detail.userIdentity"),
    ({**CHANGE, "time": None}, "time"),
])
def test_a_cloudtrail_event_that_is_not_usable_is_ignored_with_the_problem_named(event, problem):
    ignored = parse_backup_request(event, FUNCTION)
    assert isinstance(ignored, Ignored) and problem in ignored.reason, ignored


@pytest.mark.parametrize("event, problem", [
    ({"component": "database"}, "component"),
    ({}, "component"),
    ({"component": "s3", "resume": 5}, "resume"),
    ({"component": "s3", "resume": "../../backups/lambda"}, "resume"),
    ({"component": "s3", "resume": "20261126T120000Z-abc123/../x"}, "resume"),
    ({"component": "s3", "resume": "20261399T250000Z-abc123"}, "resume"),
    ({"component": "lambda", "resume": "20261126T120000Z-abc123"}, "resume continues a bucket snapshot"),
    ({"component": "all", "resume": "20261126T120000Z-abc123"}, "resume continues a bucket snapshot"),
    ({"component": "s3", "reason": "x" * 5000}, "reason"),
    ({"component": "s3", "delete_everything": True}, "delete_everything"),
    ("s3", "expected a JSON object"),
])
def test_bad_requests_are_refused_with_the_problem_named(event, problem):
    with pytest.raises(InvalidRequest, match=problem):
        parse_backup_request(event, FUNCTION)
