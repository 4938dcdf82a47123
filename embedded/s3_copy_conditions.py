"""A narrow fill for moto's S3: the conditions of a copy, which moto ignores.

S3 answers 412 PreconditionFailed when a CopyObject or UploadPartCopy names `x-amz-copy-source-if-match` and the
source's ETag is another, and when a CopyObject names `If-None-Match: *` and its target key holds an object. moto
copies regardless, so a write-once store would be overwritten and a copy pinned to a listed body would copy a
newer one. Here both are checked against moto's own state before moto copies; nothing else changes.

The in-process tests fill the same gap from the client's side (tests/s3_gaps.enforce_copy_conditions); this one
serves the embedded endpoint (`make drill`, the benchmarks), where the copier's requests arrive over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, unquote, urlparse

from moto.s3.exceptions import PreconditionFailed
from moto.s3.models import FakeDeleteMarker
from moto.s3.responses import S3Response


def _source_etag(response: S3Response) -> str | None:
    source = response.headers.get("x-amz-copy-source")
    if isinstance(source, bytes):
        source = source.decode("utf-8")
    parsed = urlparse(str(source))
    bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
    version_id = parse_qs(parsed.query).get("versionId", [None])[0]
    found = response.backend.get_object(bucket, key, version_id=version_id)
    return found.etag if found is not None else None  # gone: moto answers NoSuchKey or NoSuchVersion itself


def _check_source(response: S3Response) -> None:
    wanted = response.headers.get("x-amz-copy-source-if-match")
    etag = _source_etag(response) if wanted else None
    if wanted and etag is not None and wanted.strip('"') != etag.strip('"'):
        raise PreconditionFailed("x-amz-copy-source-If-Match")


def _check_target(response: S3Response) -> None:
    if response.headers.get("If-None-Match") != "*":
        return
    bucket = response.backend.get_bucket(response.bucket_name)
    current = bucket.keys.get(response.parse_key_name())
    if current is not None and not isinstance(current, FakeDeleteMarker):
        raise PreconditionFailed("If-None-Match")


@contextmanager
def s3_copy_conditions_as_aws() -> Iterator[None]:
    original_copy, original_part_copy = S3Response.copy_object, S3Response.upload_part_copy

    def checked(original: Callable[[S3Response], Any], *checks: Callable[[S3Response], None]) -> Any:
        def call(self: S3Response) -> Any:
            for check in checks:
                check(self)
            return original(self)
        return call

    with mock.patch.object(S3Response, "copy_object", checked(original_copy, _check_source, _check_target)), \
            mock.patch.object(S3Response, "upload_part_copy", checked(original_part_copy, _check_source)):
        yield
