"""The embedded S3's fills, applied to every test by tests/conftest.py: copy conditions (embedded.s3_copy_conditions:
moto ignores them, S3 answers 412), version listings after a KeyMarker alone (embedded.s3_version_listing), and
version listings that cost a page (embedded.s3_version_pages)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

BUCKET = "apilados-dr-backups"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def refused(call: Any) -> bool:
    try:
        call()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "PreconditionFailed"
        return True
    return False


def test_a_copy_of_another_source_etag_or_onto_a_written_key_is_refused(s3: Any) -> None:
    source = s3.put_object(Bucket=BUCKET, Key="source", Body=b"listed")
    s3.put_object(Bucket=BUCKET, Key="taken", Body=b"already there")
    address = {"Bucket": BUCKET, "Key": "source", "VersionId": source["VersionId"]}
    # Given the fill (every test has it: tests/conftest.py), Then a copy pinned to another ETag, or onto a key
    # that holds an object, is refused
    assert refused(lambda: s3.copy_object(Bucket=BUCKET, Key="new", CopySource=address,
                                          CopySourceIfMatch='"0123456789abcdef0123456789abcdef"'))
    assert refused(lambda: s3.copy_object(Bucket=BUCKET, Key="taken", CopySource=address, IfNoneMatch="*"))
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="parts")["UploadId"]
    assert refused(lambda: s3.upload_part_copy(Bucket=BUCKET, Key="parts", UploadId=upload, PartNumber=1,
                                               CopySource=address, CopySourceIfMatch='"other"'))
    # And copies whose conditions hold go through: the listed ETag, a new key, a key behind a delete marker
    s3.delete_object(Bucket=BUCKET, Key="taken")
    for target in ("new", "taken"):
        s3.copy_object(Bucket=BUCKET, Key=target, CopySource=address, CopySourceIfMatch=source["ETag"],
                       IfNoneMatch="*")
        assert s3.get_object(Bucket=BUCKET, Key=target)["Body"].read() == b"listed"


@pytest.mark.parametrize(("key_marker", "listed"), [
    ("0", ["a", "b", "b", "c"]),  # before every key
    ("a", ["b", "b", "c"]),
    ("b", ["c"]),  # every version of the marker key itself is left out
    ("bb", ["c"]),  # between two keys: the next one from its first version
    ("c", []),
])
def test_versions_after_a_key_marker_alone_are_the_keys_after_it(s3: Any, key_marker: str, listed: list[str]) -> None:
    for key in ("a", "b", "b", "c"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    s3.delete_object(Bucket=BUCKET, Key="c")
    answer = s3.list_object_versions(Bucket=BUCKET, KeyMarker=key_marker)
    assert [version["Key"] for version in answer.get("Versions", [])] == listed
    assert [marker["Key"] for marker in answer.get("DeleteMarkers", [])] == (["c"] if key_marker < "c" else [])


# ListObjectVersions by the page (embedded.s3_version_pages): moto's answers, from the first key a request can list

KEYS = ("a", "a/b", "a/c", "a/c/d", "ab", "b", "b/a", "c")


@given(operations=st.lists(st.tuples(st.sampled_from(("put", "delete")), st.sampled_from(KEYS)), max_size=25),
       requests=st.lists(st.tuples(
           st.sampled_from(("", "a", "a/", "b", "z")), st.sampled_from((None, "/")),
           st.one_of(st.none(), st.sampled_from((*KEYS, "0", "a/bb", "z"))),
           st.sampled_from(("none", "listed", "unknown")), st.sampled_from((1, 2, 3, 1000))), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_listing_by_the_page_answers_as_moto_does(operations, requests) -> None:
    from moto.s3.models import s3_backends

    from embedded.s3_version_pages import MOTO_LIST_OBJECT_VERSIONS, list_object_versions

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for operation, key in operations:
            if operation == "put":
                client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
            else:
                client.delete_object(Bucket=BUCKET, Key=key)
        backend = s3_backends["123456789012"]["aws"]
        for prefix, delimiter, key_marker, version_marker, max_keys in requests:
            held = backend.get_bucket(BUCKET).keys.getlist(key_marker) if key_marker in KEYS else []
            version_id_marker = {"none": None, "unknown": "not-a-version",
                                 "listed": held[-1].version_id if held else None}[version_marker]
            request = {"delimiter": delimiter, "key_marker": key_marker, "max_keys": max_keys, "prefix": prefix,
                       "version_id_marker": version_id_marker}

            def answer(listing: Any, request: dict[str, Any] = request) -> Any:
                versions, prefixes, markers, next_key, next_version = listing(backend, BUCKET, **request)
                return ([(version.name, version.version_id, version.is_latest) for version in versions], prefixes,
                        [(marker.name, marker.version_id, marker.is_latest) for marker in markers], next_key,
                        next_version)

            assert answer(list_object_versions) == answer(MOTO_LIST_OBJECT_VERSIONS), request
