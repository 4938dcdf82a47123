"""One retrying S3 copy: CopyObject up to a size threshold, UploadPartCopy of byte ranges above it.

Snapshots copy a bucket's objects into the backup store; restores copy stored content, or a bucket's
own versions, back. The requests are the same, so they are made here once; what to copy and what a
failed copy means stay with each engine.

- The source is pinned: to a version id when one is named, and to the ETag it was listed with
  (CopySourceIfMatch on every request), so a copy never writes a body other than the one decided on.
- `only_if_absent` makes the write conditional (IfNoneMatch on CopyObject and CompleteMultipartUpload),
  so a write-once target is never overwritten.
- Metadata: the source's own (CopyObject carries it and the tags; a multipart copy reads them, with one
  HeadObject, and GetObjectTagging where the source has tags), or the caller's replacing it: content
  type, user metadata, the headers S3 keeps with an object (drcore.aws.object_identity.KEPT_HEADERS) and
  tags.
- A single copy can ask S3 for a full-object checksum of what it wrote (`checksum_algorithm`); the
  answer carries the checksums S3 holds for the copy, so a caller can record or check what was written.
- Throttling is retried with backoff, paced per target prefix (drcore.aws.prefix_pacing: a SlowDown for
  one key slows the job's other writes to its prefix too); a failed multipart copy is aborted, so its parts
  do not hold storage.
- S3's answers are translated: the source moved (CopySourceChanged), the target already holds an
  object (TargetExists), the source is in an archive tier (CopySourceArchived).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import (
    OBJECT_ARCHIVED,
    OBJECT_NOT_FOUND,
    SOURCE_CHANGED,
    error_code,
    is_precondition_failed,
    retrying,
)
from drcore.aws.object_identity import KEPT_HEADERS, expires_of, full_object_checksums, tag_set, tagging_header
from drcore.aws.prefix_pacing import PrefixPacer
from drcore.core.errors import DrError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import ChecksumAlgorithmType
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        CopyObjectRequestTypeDef,
        CopySourceTypeDef,
        CreateMultipartUploadRequestTypeDef,
        HeadObjectRequestTypeDef,
        UploadPartCopyRequestTypeDef,
    )

logger = Logger(child=True)
T = TypeVar("T")

MIN_PART_SIZE = 5 * 1024**2  # S3's smallest part (except the last)
MAX_PARTS = 10_000
MAX_SINGLE_COPY = 5 * 1024**3  # CopyObject's largest object
DEFAULT_PART_SIZE = 512 * 1024**2
# Storage classes whose objects need an S3 restore before any read or copy (GLACIER_IR is served instantly
# and copies like STANDARD).
ARCHIVE_STORAGE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
# What a multipart copy carries over from its source's HeadObject (CreateMultipartUpload takes these).
CARRIED_HEADERS = ("ContentType", "Metadata", *KEPT_HEADERS)


class CopySourceChanged(DrError):
    """The source version is gone, or no longer has the ETag it was pinned to."""


class CopySourceArchived(DrError):
    """The source is in an archive storage class or tier: it needs an S3 restore before it can be read."""


class TargetExists(DrError):
    """A copy made only if the target key was absent found it written (by another writer, meanwhile). `held`:
    the HeadObject answer (ChecksumMode ENABLED) of what the key holds, so the caller need not ask again."""

    def __init__(self, message: str, held: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.held = held


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None = None  # None: the key's current version (pinned by `etag` when given)
    etag: str | None = None  # as S3 lists it, quotes included; None copies whatever the key holds

    def address(self) -> CopySourceTypeDef:
        address: CopySourceTypeDef = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id is not None:
            address["VersionId"] = self.version_id
        return address

    def __str__(self) -> str:
        version = f"?versionId={self.version_id}" if self.version_id is not None else ""
        return f"s3://{self.bucket}/{self.key}{version}"


@dataclass(frozen=True)
class ReplacedMetadata:
    """Metadata and tags a copy writes instead of its source's. `headers`: KEPT_HEADERS by name, as text
    (Expires as HeadObject sent it)."""

    user: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def request_fields(self) -> dict[str, Any]:
        """The fields CopyObject and CreateMultipartUpload take for this metadata."""
        fields: dict[str, Any] = {"Metadata": self.user}
        if self.content_type:
            fields["ContentType"] = self.content_type
        if self.tags:
            fields["Tagging"] = tagging_header(self.tags)
        return fields | {name: value for name, value in self.headers.items() if name in KEPT_HEADERS}


@dataclass(frozen=True)
class CopiedObject:
    version_id: str  # "null" in a bucket that is not versioned
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)  # full-object ones S3 answered (algorithm: value)
    last_modified: datetime | None = None  # when S3 created the copy (a single copy's answer says; parts' do not)

    @property
    def sha256(self) -> str | None:
        return self.checksums.get("SHA256")


def part_size_for(size: int, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The parts a multipart copy of `size` bytes uses: `part_size`, or larger where S3's 10,000 parts need it."""
    return max(part_size, -(-size // MAX_PARTS))


def copy_requests(size: int, multipart_threshold: int = MAX_SINGLE_COPY, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The write requests S3Copier makes to copy `size` bytes: one CopyObject, or a multipart upload's
    create, parts and completion (its source's HeadObject not counted)."""
    if size <= multipart_threshold:
        return 1
    return 2 + -(-size // part_size_for(size, part_size))


class S3Copier:
    """Copies objects with `s3_client` (requests go to the target bucket; the client must be allowed to
    read the source). Objects over `multipart_threshold` are copied in parts of at least `part_size`,
    `concurrency` parts at a time. `sleep` is where backoff waits; each call is one retry. `pacer` paces
    the writes per target prefix: share one between the copiers (and other writers) of one job."""

    def __init__(self, s3_client: S3Client, *, concurrency: int = 16, multipart_threshold: int = MAX_SINGLE_COPY,
                 part_size: int = DEFAULT_PART_SIZE, sleep: Callable[[float], None] = time.sleep,
                 pacer: PrefixPacer | None = None) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's smallest part)")
        self._s3 = s3_client
        self._concurrency = concurrency
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        self._sleep = sleep
        self.pacer = pacer or PrefixPacer(sleep=sleep)

    def copy(self, source: CopySource, bucket: str, key: str, size: int, *, only_if_absent: bool = False,
             metadata: ReplacedMetadata | None = None, checksum_algorithm: str | None = None) -> CopiedObject:
        """Copy `source` (of `size` bytes) to `bucket`/`key`. `checksum_algorithm` asks S3 for a full-object
        checksum of a single copy; a multipart copy gets S3's default."""
        try:
            if size > self._multipart_threshold:
                return self._copy_in_parts(source, bucket, key, size, only_if_absent, metadata)
            return self._copy_whole(source, bucket, key, only_if_absent, metadata, checksum_algorithm)
        except ClientError as error:
            code = error_code(error)
            # S3 answers a failed IfNoneMatch and a failed CopySourceIfMatch alike (412): the target says which.
            held = self._held(bucket, key) if only_if_absent and is_precondition_failed(error) else None
            if held is not None:
                raise TargetExists(f"s3://{bucket}/{key} already exists", held) from error
            if code in SOURCE_CHANGED:
                raise CopySourceChanged(f"{source} is gone or changed since it was listed ({code})") from error
            if code in OBJECT_ARCHIVED:
                raise CopySourceArchived(f"{source} is archived; it needs an S3 restore first") from error
            raise

    def _copy_whole(self, source: CopySource, bucket: str, key: str, only_if_absent: bool,
                    metadata: ReplacedMetadata | None, checksum_algorithm: str | None) -> CopiedObject:
        request: CopyObjectRequestTypeDef = {"Bucket": bucket, "Key": key, "CopySource": source.address()}
        if source.etag is not None:
            request["CopySourceIfMatch"] = source.etag
        if only_if_absent:
            request["IfNoneMatch"] = "*"
        if metadata is not None:
            # The same field names and types in both shapes (ReplacedMetadata.request_fields).
            request = cast("CopyObjectRequestTypeDef", {**request, "MetadataDirective": "REPLACE",
                                                        "TaggingDirective": "REPLACE", **metadata.request_fields()})
        if checksum_algorithm:
            # A name S3 gave (a listing's ChecksumAlgorithm, a manifest's checksum): S3 judges it.
            request["ChecksumAlgorithm"] = cast("ChecksumAlgorithmType", checksum_algorithm)
        response = self._write(key, lambda: self._s3.copy_object(**request))
        result = response["CopyObjectResult"]
        return CopiedObject(response.get("VersionId", "null"), result["ETag"], full_object_checksums(result),
                            result.get("LastModified"))

    def _copy_in_parts(self, source: CopySource, bucket: str, key: str, size: int, only_if_absent: bool,
                       metadata: ReplacedMetadata | None) -> CopiedObject:
        """CopyObject stops at 5 GB: above the threshold, UploadPartCopy of ranges, concurrently."""
        creation = self._upload_request(source, bucket, key, metadata)
        upload_id = self._write(key, lambda: self._s3.create_multipart_upload(**creation))["UploadId"]
        part_size = part_size_for(size, self._part_size)

        def copy_part(number_and_start: tuple[int, int]) -> CompletedPartTypeDef:
            number, start = number_and_start
            request: UploadPartCopyRequestTypeDef = {
                "Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number,
                "CopySource": source.address(), "CopySourceRange": f"bytes={start}-{min(start + part_size, size) - 1}"}
            if source.etag is not None:
                request["CopySourceIfMatch"] = source.etag
            part = self._write(key, lambda: self._s3.upload_part_copy(**request))
            return {"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]}

        try:
            # A pool of its own: the caller's copies often run in a pool, and waiting on that pool from
            # inside one of its tasks could deadlock.
            with ThreadPoolExecutor(self._concurrency) as parts:
                uploaded = list(parts.map(copy_part, enumerate(range(0, size, part_size), start=1)))
            completion: CompleteMultipartUploadRequestTypeDef = {
                "Bucket": bucket, "Key": key, "UploadId": upload_id, "MultipartUpload": {"Parts": uploaded}}
            if only_if_absent:
                completion["IfNoneMatch"] = "*"
            response = self._write(key, lambda: self._s3.complete_multipart_upload(**completion))
        except BaseException:
            self._abort(bucket, key, upload_id)
            raise
        return CopiedObject(response.get("VersionId", "null"), response["ETag"])

    def _write(self, key: str, request: Callable[[], T]) -> T:
        return self.pacer.call(key, request, sleep=self._sleep)

    def _upload_request(self, source: CopySource, bucket: str, key: str,
                        metadata: ReplacedMetadata | None) -> CreateMultipartUploadRequestTypeDef:
        """The multipart upload, with the metadata and tags CopyObject would have written: the caller's, or the
        source's own (one HeadObject, pinned like the copy, and GetObjectTagging where it has tags)."""
        request: CreateMultipartUploadRequestTypeDef = {"Bucket": bucket, "Key": key}
        if metadata is not None:
            return cast("CreateMultipartUploadRequestTypeDef", {**request, **metadata.request_fields()})
        head_request: HeadObjectRequestTypeDef = {"Bucket": source.bucket, "Key": source.key}
        if source.version_id is not None:
            head_request["VersionId"] = source.version_id
        if source.etag is not None:
            head_request["IfMatch"] = source.etag
        head: Mapping[str, object] = retrying(lambda: self._s3.head_object(**head_request), sleep=self._sleep)
        carried = {name: head[name] for name in CARRIED_HEADERS if name != "Expires" and head.get(name)}
        expires = expires_of(head)  # as S3 sent it: botocore's parsed date drops what it cannot parse
        if expires:
            carried["Expires"] = expires
        if head.get("TagCount"):
            carried["Tagging"] = tagging_header(tag_set(self._s3, source.bucket, source.key, source.version_id,
                                                        sleep=self._sleep))
        # CARRIED_HEADERS are fields of both shapes, with the same types.
        return cast("CreateMultipartUploadRequestTypeDef", {**request, **carried})

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError:
            # Its parts hold storage until the bucket's AbortIncompleteMultipartUpload rule removes them.
            logger.warning("could not abort a multipart copy", extra={"bucket": bucket, "key": key})

    def _held(self, bucket: str, key: str) -> Mapping[str, Any] | None:
        """What `key` holds (HeadObject with its checksums), or None if nothing."""
        try:
            head: Mapping[str, Any] = retrying(lambda: self._s3.head_object(Bucket=bucket, Key=key,
                                                                            ChecksumMode="ENABLED"), sleep=self._sleep)
        except ClientError as error:
            if error_code(error) in OBJECT_NOT_FOUND:
                return None
            raise
        return head
