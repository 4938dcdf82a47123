"""What proves that an S3 object holds a given body and carries given headers.

S3 answers three things about a body, of different strength:

- A full-object checksum (HeadObject with ChecksumMode ENABLED) is computed by S3 from the bytes it
  stored, and S3 refuses a write whose declared checksum does not match them: equal values of the same
  algorithm prove the same body, different ones prove another. A composite checksum (of parts: its
  value ends in `-<parts>`, or ChecksumType COMPOSITE) depends on the part sizes, and proves nothing.
- An ETag is the MD5 of the body only for a single-part upload under SSE-S3; under SSE-KMS, and for a
  multipart upload, it is not. An equal ETag (with the size) still names the same body; another ETag
  proves nothing either way.
- Where neither decides, the body is read and hashed: its SHA-256 or CRC32 against a recorded one, or
  its MD5 against an ETag that is a plain MD5.

Equal also means the same headers: the content type, the user metadata, the headers S3 keeps with an
object (Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires), and its tags.
HeadObject tells how many tags an object has (TagCount); only where both sides have some are the tag sets
read (GetObjectTagging) and compared.
"""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from drcore.aws.errors import retrying

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef, GetObjectTaggingRequestTypeDef

# Strongest first: where an object holds several, the first one known on both sides decides.
CHECKSUM_ALGORITHMS = ("SHA256", "SHA1", "CRC64NVME", "CRC32C", "CRC32")
FULL_OBJECT = "FULL_OBJECT"
# The headers S3 keeps with an object besides its content type and user metadata (HeadObject's names,
# which CopyObject and CreateMultipartUpload take as they are).
KEPT_HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "Expires")
STREAM_CHUNK = 1024**2


def full_object_checksums(head: Mapping[str, Any]) -> dict[str, str]:
    """The full-object checksums (algorithm to base64 value) a HeadObject or CopyObject answer carries."""
    if head.get("ChecksumType", FULL_OBJECT) != FULL_OBJECT:
        return {}
    return {algorithm: head[f"Checksum{algorithm}"] for algorithm in CHECKSUM_ALGORITHMS
            if head.get(f"Checksum{algorithm}") and "-" not in head[f"Checksum{algorithm}"]}


def recorded_checksum(checksum: Mapping[str, str] | None) -> dict[str, str]:
    """A manifest's `{"algorithm", "value", "type"?}` as a full-object checksum, or none if it is composite."""
    if not checksum:
        return {}
    return full_object_checksums({f"Checksum{checksum['algorithm']}": checksum["value"],
                                  "ChecksumType": checksum.get("type", FULL_OBJECT)})


@dataclass(frozen=True)
class BodyIdentity:
    """What is known of a body: its size, ETags that name it, full-object checksums (algorithm to value)."""

    size: int
    etags: frozenset[str] = frozenset()
    checksums: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def recorded(cls, size: int, etag: str, checksum: Mapping[str, str] | None,
                 content_sha256: str | None) -> BodyIdentity:
        """A body as a manifest records it: the object's ETag and checksum, and the SHA-256 S3 computed when
        the snapshot stored it."""
        checksums = recorded_checksum(checksum)
        if content_sha256:
            checksums.setdefault("SHA256", content_sha256)
        return cls(size, frozenset({etag}), checksums)

    def or_stored_as(self, content_etag: str | None) -> BodyIdentity:
        """The same body, also named by the ETag its stored content object has (a copy may change it)."""
        if content_etag is None:
            return self
        return BodyIdentity(self.size, self.etags | {content_etag}, self.checksums)

    @property
    def sha256(self) -> str | None:
        return self.checksums.get("SHA256")

    def decide(self, head: Mapping[str, Any]) -> bool | None:
        """Whether the object HeadObject described (ChecksumMode ENABLED) holds this body; None when its
        answer cannot tell (no common checksum, another ETag) and only reading the body can."""
        if head.get("ContentLength") != self.size:
            return False
        for algorithm, value in full_object_checksums(head).items():
            if algorithm in self.checksums:
                return value == self.checksums[algorithm]
        return True if head.get("ETag") in self.etags else None

    def decide_read(self, digests: BodyDigests) -> bool | None:
        """Whether a body read and hashed is this one: its SHA-256 or CRC32 decides where known, else an
        ETag that equals the body's MD5 (a single-part upload's) proves it; None when nothing can tell."""
        for algorithm, value in (("SHA256", digests.sha256), ("CRC32", digests.crc32)):
            if algorithm in self.checksums:
                return value == self.checksums[algorithm]
        if any(etag.strip('"') == digests.md5 for etag in self.etags):
            return True
        return None


def expires_of(head: Mapping[str, Any]) -> str | None:
    """An object's Expires header as S3 sent it (botocore parses it into `Expires` too, and drops it when
    it is not a valid date)."""
    if head.get("ExpiresString"):
        return str(head["ExpiresString"])
    expires = head.get("Expires")
    return format_datetime(expires.astimezone(UTC), usegmt=True) if isinstance(expires, datetime) else None


def kept_headers(head: Mapping[str, Any]) -> dict[str, str]:
    """The KEPT_HEADERS an object has, as text."""
    headers = {name: str(head[name]) for name in KEPT_HEADERS if name != "Expires" and head.get(name)}
    expires = expires_of(head)
    if expires:
        headers["Expires"] = expires
    return headers


def tag_set(s3: S3Client, bucket: str, key: str, version_id: str | None = None, *,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
    """An object's tags (of one version where `version_id` names it), as a mapping."""
    request: GetObjectTaggingRequestTypeDef = {"Bucket": bucket, "Key": key}
    if version_id is not None and version_id != "null":
        request["VersionId"] = version_id
    answer = retrying(lambda: s3.get_object_tagging(**request), sleep=sleep)
    return {tag["Key"]: tag["Value"] for tag in answer["TagSet"]}


def tagging_header(tags: Mapping[str, str]) -> str:
    """Tags as the `Tagging` field of a write takes them: URL query encoding, spaces as %20."""
    return urlencode(dict(tags), quote_via=quote)


@dataclass(frozen=True)
class ObjectHeaders:
    """The headers an object should carry. `kept` None: not recorded (a manifest older than the record),
    so not compared; `tags` None likewise."""

    content_type: str | None
    metadata: Mapping[str, str]
    kept: Mapping[str, str] | None = None
    tags: Mapping[str, str] | None = None

    def tags_to_compare(self, head: Mapping[str, Any]) -> bool:
        """Whether the object HeadObject described has as many tags as expected, some: only reading them tells
        whether they are the same."""
        return bool(self.tags) and "Tags" not in self.differences(head)

    def differences(self, head: Mapping[str, Any]) -> list[str]:
        """The names of the headers in which the object HeadObject described differs (its tags by their number:
        see `tags_to_compare`)."""
        differing = []
        if self.content_type is not None and head.get("ContentType") != self.content_type:
            differing.append("ContentType")
        if dict(head.get("Metadata") or {}) != dict(self.metadata):
            differing.append("Metadata")
        if self.kept is not None:
            held = kept_headers(head)
            differing += [name for name in KEPT_HEADERS if held.get(name) != self.kept.get(name)]
        if self.tags is not None and head.get("TagCount", 0) != len(self.tags):
            differing.append("Tags")
        return differing

    @classmethod
    def of(cls, head: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> ObjectHeaders:
        return cls(head.get("ContentType"), dict(head.get("Metadata") or {}), kept_headers(head), tags)


@dataclass(frozen=True)
class BodyDigests:
    sha256: str  # base64, as S3 spells checksums
    crc32: str  # base64 of the big-endian value, as S3 spells it (the SDKs' default checksum)
    md5: str  # hex, as a single-part upload's ETag spells it


def streamed_digests(s3: S3Client, bucket: str, key: str, version_id: str | None = None, *,
                     sleep: Callable[[float], None] = time.sleep) -> BodyDigests:
    """The SHA-256, CRC32 and MD5 of an object's body (of one version where `version_id` names it), read
    in chunks: the body is never held whole."""
    request: GetObjectRequestTypeDef = {"Bucket": bucket, "Key": key}
    if version_id is not None and version_id != "null":
        request["VersionId"] = version_id
    response = retrying(lambda: s3.get_object(**request), sleep=sleep)
    sha256, md5, crc32 = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    for chunk in response["Body"].iter_chunks(STREAM_CHUNK):
        sha256.update(chunk)
        md5.update(chunk)
        crc32 = zlib.crc32(chunk, crc32)
    return BodyDigests(base64.b64encode(sha256.digest()).decode(), base64.b64encode(crc32.to_bytes(4, "big")).decode(),
                       md5.hexdigest())
