"""Fakes for the narrow places where moto 5's S3 falls short of S3, shared by the copy and restore tests:
test modules import these, never each other.

- moto ignores CopySourceIfMatch (CopyObject, UploadPartCopy) and IfNoneMatch on CopyObject:
  `enforce_copy_conditions` answers 412 PreconditionFailed as S3 does, decided from moto's own state.
- `s3_answers` makes S3 answer an error code of its own choosing (throttling, an archived object).
- moto refuses a CopyObject into a bucket with a default Object Lock retention unless it carries a header S3
  asks only of uploads with a body: `copies_into_a_locked_bucket` adds it to the copy's request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

Hook = Callable[..., Any]


def s3_answers(code: str, status: int, *, times: int = 10**6, when: Callable[[dict[str, Any]], bool] = lambda _: True,
               ) -> tuple[Hook, Hook]:
    """Hooks answering matching requests with S3's error `code` instead of moto, at most `times` times:
    (provide-client-params hook that keeps the request's parameters, before-call hook that answers)."""
    remaining = [times]

    def keep(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # Copied now: botocore rewrites CopySource into a string before the request is sent.
        context["api_params"] = {**params, "CopySource": dict(params["CopySource"])} \
            if isinstance(params.get("CopySource"), dict) else dict(params)

    def answer(context: dict[str, Any], **_: Any) -> Any:
        if remaining[0] > 0 and when(context["api_params"]):
            remaining[0] -= 1
            return (AWSResponse("https://s3.amazonaws.com", status, {}, None),
                    {"Error": {"Code": code, "Message": f"{code} (test)"},
                     "ResponseMetadata": {"HTTPStatusCode": status}})
        return None

    return keep, answer


def hook(s3: Any, operation: str, hooks: tuple[Hook, Hook]) -> None:
    keep, answer = hooks
    s3.meta.events.register(f"provide-client-params.s3.{operation}", keep)
    s3.meta.events.register(f"before-call.s3.{operation}", answer)


def enforce_copy_conditions(s3: Any) -> None:
    """Fake for moto's gap: S3 answers 412 PreconditionFailed when CopySourceIfMatch does not match the
    source, or IfNoneMatch: * finds the target written. Decided from moto's own state, read with a client
    of its own so that the test's call counts stay the copier's requests."""
    lookup = boto3.client("s3", region_name="us-east-1")

    def source_differs(params: dict[str, Any]) -> bool:
        if "CopySourceIfMatch" not in params:
            return False
        try:
            return lookup.head_object(**params["CopySource"])["ETag"] != params["CopySourceIfMatch"]
        except ClientError:
            return False  # gone: moto answers NoSuchKey or NoSuchVersion itself

    def target_written(params: dict[str, Any]) -> bool:
        if params.get("IfNoneMatch") != "*":
            return False
        try:
            lookup.head_object(Bucket=params["Bucket"], Key=params["Key"])
        except ClientError:
            return False
        return True

    for operation in ("CopyObject", "UploadPartCopy"):
        hook(s3, operation, s3_answers("PreconditionFailed", 412,
                                       when=lambda params: source_differs(params) or target_written(params)))




def copies_into_a_locked_bucket(s3: Any) -> None:
    """Fake for moto's gap: into a bucket with a default Object Lock retention, moto refuses a CopyObject that
    carries neither Content-MD5 nor x-amz-sdk-checksum-algorithm (MissingUploadObjectWithObjectLockHeaders), which
    S3 asks only of uploads that carry a body. The header moto looks for is added to the copy's request, which S3
    would ignore; moto then applies the default retention to the copy, as S3 does."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-amz-sdk-checksum-algorithm"] = "SHA256"

    s3.meta.events.register("before-sign.s3.CopyObject", add_header)
