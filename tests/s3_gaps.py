"""Fakes for the narrow places where moto 5's S3 falls short of S3, shared by the copy and restore tests:
test modules import these, never each other.

- moto ignores CopySourceIfMatch (CopyObject, UploadPartCopy) and IfNoneMatch on CopyObject: filled on moto's
  side for every test (embedded.s3_copy_conditions, the autouse `s3_as_aws` fixture).
- `s3_answers` makes S3 answer an error code of its own choosing (throttling, an archived object).
- moto refuses a CopyObject into a bucket with a default Object Lock retention unless it carries a header S3
  asks only of uploads with a body: `copies_into_a_locked_bucket` adds it to the copy's request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse

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


def copies_into_a_locked_bucket(s3: Any) -> None:
    """Fake for moto's gap: into a bucket with a default Object Lock retention, moto refuses a CopyObject that
    carries neither Content-MD5 nor x-amz-sdk-checksum-algorithm (MissingUploadObjectWithObjectLockHeaders), which
    S3 asks only of uploads that carry a body. The header moto looks for is added to the copy's request, which S3
    would ignore; moto then applies the default retention to the copy, as S3 does."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-amz-sdk-checksum-algorithm"] = "SHA256"

    s3.meta.events.register("before-sign.s3.CopyObject", add_header)
