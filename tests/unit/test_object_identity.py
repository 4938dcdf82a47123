"""What proves an S3 object holds a body and carries headers: HeadObject answers, and bodies read and hashed."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
from moto import mock_aws

from drcore.aws.object_identity import (
    BodyDigests,
    BodyIdentity,
    ObjectHeaders,
    full_object_checksums,
    kept_headers,
    recorded_checksum,
    streamed_digests,
)

BUCKET = "apilados-production-data"


def test_a_checksum_in_common_decides_before_the_etag_and_the_size_before_both():
    body = BodyIdentity(10, frozenset({'"etag"'}), {"SHA256": "sha=", "CRC32": "crc="})
    assert body.decide({"ContentLength": 10, "ChecksumSHA256": "sha=", "ETag": '"other"'}) is True
    assert body.decide({"ContentLength": 10, "ChecksumCRC32": "bad=", "ETag": '"etag"'}) is False
    assert body.decide({"ContentLength": 11, "ChecksumSHA256": "sha="}) is False
    # Without a checksum in common, the same ETag proves it and another says nothing
    assert body.decide({"ContentLength": 10, "ChecksumCRC64NVME": "x=", "ETag": '"etag"'}) is True
    assert body.decide({"ContentLength": 10, "ETag": '"kms"'}) is None


def test_a_composite_checksum_proves_nothing():
    assert full_object_checksums({"ChecksumSHA256": "abc=-3"}) == {}
    assert full_object_checksums({"ChecksumSHA256": "abc=", "ChecksumType": "COMPOSITE"}) == {}
    assert recorded_checksum({"algorithm": "SHA256", "value": "abc=", "type": "COMPOSITE"}) == {}
    assert recorded_checksum({"algorithm": "CRC32", "value": "abc="}) == {"CRC32": "abc="}


def test_a_body_read_is_decided_by_a_recorded_digest_or_a_plain_md5_etag():
    digests = BodyDigests(sha256="sha=", crc32="crc=", md5="0123")
    assert BodyIdentity(1, checksums={"SHA256": "sha="}).decide_read(digests) is True
    assert BodyIdentity(1, checksums={"CRC32": "other="}).decide_read(digests) is False
    assert BodyIdentity(1, frozenset({'"0123"'})).decide_read(digests) is True
    assert BodyIdentity(1, frozenset({'"0123-2"'})).decide_read(digests) is None


def test_streamed_digests_are_spelled_as_s3_spells_its_checksums():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        body = b"id,amount\n1,10\n" * 1000
        crc = s3.put_object(Bucket=BUCKET, Key="crc.csv", Body=body)
        sha = s3.put_object(Bucket=BUCKET, Key="sha.csv", Body=body, ChecksumAlgorithm="SHA256")
        digests = streamed_digests(s3, BUCKET, "crc.csv")
        assert digests.crc32 == crc["ChecksumCRC32"] and digests.sha256 == sha["ChecksumSHA256"]
        assert f'"{digests.md5}"' == crc["ETag"]


def test_headers_differ_by_name_and_unrecorded_ones_are_not_compared():
    head = {"ContentType": "text/csv", "Metadata": {"source": "x"}, "CacheControl": "no-cache",
            "Expires": datetime(2030, 1, 1, tzinfo=UTC)}
    assert kept_headers(head) == {"CacheControl": "no-cache", "Expires": "Tue, 01 Jan 2030 00:00:00 GMT"}
    wanted = ObjectHeaders("text/csv", {"source": "pipeline"}, {"CacheControl": "max-age=60"})
    assert wanted.differences(head) == ["Metadata", "CacheControl", "Expires"]
    assert ObjectHeaders("text/csv", {"source": "x"}, None).differences(head) == []
    assert ObjectHeaders.of(head).differences(head) == []
