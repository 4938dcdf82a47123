"""The S3 calls of replication, one gateway per region's client: a bucket's replication configuration, its
versioning and location, and what S3 says of one object version's replication.

Expected answers are translated here: a bucket without a configuration, a missing bucket or object version
are None, not errors. Anything else raises, as every adapter does.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import NOT_FOUND, REPLICATION_NOT_CONFIGURED, error_code

# A page of ListObjectVersions (S3's maximum).
PAGE_SIZE = 1000


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    last_modified: datetime
    size: int
    etag: str = ""


@dataclass(frozen=True)
class RecentVersions:
    """The newest object versions among those a bounded listing saw."""

    versions: tuple[ObjectVersion, ...]  # newest first
    listed: int  # versions the listing read
    complete: bool  # whether it read the whole bucket (False: it stopped at its bound)


@dataclass(frozen=True)
class VersionReplication:
    """What HeadObject says of one object version."""

    status: str | None  # PENDING, COMPLETED, FAILED, REPLICA; None: not in scope of any rule when written
    size: int
    etag: str = ""
    last_modified: datetime | None = None


class ReplicationGateway:
    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client

    def configuration(self, bucket: str) -> dict[str, Any] | None:
        """The bucket's replication configuration as S3 returns it, or None when it has none."""
        try:
            found: dict[str, Any] = self._s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
        except ClientError as error:
            if error_code(error) in REPLICATION_NOT_CONFIGURED:
                return None
            raise
        return found

    def put_configuration(self, bucket: str, configuration: Mapping[str, Any]) -> None:
        self._s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=dict(configuration))

    def versioning(self, bucket: str) -> str | None:
        """`Enabled`, `Suspended` or `Off` (never enabled); None when the bucket does not exist."""
        try:
            return str(self._s3.get_bucket_versioning(Bucket=bucket).get("Status") or "Off")
        except ClientError as error:
            if error_code(error) in NOT_FOUND:
                return None
            raise

    def region_of(self, bucket: str) -> str | None:
        """The bucket's region (S3 answers no constraint for us-east-1); None when it does not exist."""
        try:
            constraint = self._s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        except ClientError as error:
            if error_code(error) in NOT_FOUND:
                return None
            raise
        return str(constraint or "us-east-1")

    def versions_between(self, bucket: str, start: datetime, end: datetime,
                         listing_limit: int) -> tuple[list[ObjectVersion], bool]:
        """Every object version (older ones included, delete markers aside) last modified within [start, end], among
        the first `listing_limit` versions S3 lists; and whether the listing read the whole bucket."""
        found: list[ObjectVersion] = []
        complete = False
        for page in self._version_pages(bucket, listing_limit):
            found += [ObjectVersion(version["Key"], version["VersionId"], version["LastModified"],
                                    int(version.get("Size", 0)), str(version.get("ETag", "")).strip('"'))
                      for version in page.get("Versions", []) if start <= version["LastModified"] <= end]
            complete = not page.get("IsTruncated")
        return found, complete

    def _version_pages(self, bucket: str, listing_limit: int) -> Iterator[dict[str, Any]]:
        """ListObjectVersions' pages, until the bucket or `listing_limit` versions (delete markers counted) end."""
        listed, params = 0, {"Bucket": bucket, "MaxKeys": min(PAGE_SIZE, listing_limit)}
        while True:
            page = self._s3.list_object_versions(**params)
            yield page
            listed += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
            if not page.get("IsTruncated") or listed >= listing_limit:
                return
            params.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])

    def recent_versions(self, bucket: str, count: int, listing_limit: int) -> RecentVersions:
        """The `count` newest current object versions (delete markers aside) among the first `listing_limit`
        versions S3 lists. S3 lists in key order, not by time, so over a larger bucket these are the newest of the
        part listed (`complete` says which). Older versions are left out: what a replica must hold is each object's
        current version, and S3 keeps last-modified to the second, so an older one can sort among the newest."""
        newest: list[tuple[datetime, str, str, int]] = []
        listed, complete = 0, False
        for page in self._version_pages(bucket, listing_limit):
            listed += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
            for version in page.get("Versions", []):
                if not version.get("IsLatest", True):
                    continue
                entry = (version["LastModified"], version["Key"], version["VersionId"], int(version.get("Size", 0)))
                (heapq.heappush if len(newest) < count else heapq.heappushpop)(newest, entry)
            complete = not page.get("IsTruncated")
        ordered = sorted(newest, reverse=True)
        return RecentVersions(tuple(ObjectVersion(key, version_id, modified, size)
                                    for modified, key, version_id, size in ordered), listed, complete)

    def replication_of(self, bucket: str, key: str, version_id: str) -> VersionReplication | None:
        """S3's replication status of one object version; None when that version does not exist."""
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        except ClientError as error:
            if error_code(error) in NOT_FOUND:
                return None
            raise
        return VersionReplication(status=head.get("ReplicationStatus"), size=int(head.get("ContentLength", 0)),
                                  etag=str(head.get("ETag", "")).strip('"'), last_modified=head.get("LastModified"))
