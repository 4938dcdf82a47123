"""The backup bucket's layout, and the only way anything is written to it: once.

Nothing in the backup bucket is overwritten after it is written (S3 conditional writes,
`If-None-Match: *`), so backups stay valid under S3 Object Lock, and every backup's manifest is
written last: a backup without a manifest is incomplete by definition and never restorable.

    content/<algorithm>/<digest>                           bucket object bodies, stored once per content
    snapshots/s3/<bucket>/<backup id>/progress/<page>.json  checkpoints of an unfinished snapshot
    snapshots/s3/<bucket>/<backup id>/manifest.json.gz      the snapshot's manifest (last)
    backups/lambda/<function>/<backup id>/...               code.zip, configuration.json, layers/, manifest.json
    backups/stack/<stack>/<backup id>/...                   template.json, stack.json, manifest.json
    backups/logs/<function>/<backup id>/...                 the log export, manifest.json
    restores/s3/<target>/<plan id>/changes.json.gz         a large bucket restore plan's full change lists
    restores/s3/<target>/<plan id>/applied/<...>.json.gz   the versions an apply of that plan wrote
    restores/s3/<target>/<plan id>/safety-snapshot.json    the id of that plan's safety snapshot
    drills/<drill id>/report.json, report.md               drill reports

A backup id is its UTC start time plus a random suffix (`20261126T132500Z-3f9a1c`), so ids sort by time.
The stacks grant each function its prefixes from these names, so this module imports no engine.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from drcore.aws.errors import OBJECT_NOT_FOUND, error_code, is_precondition_failed
from drcore.core.errors import DrError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef

MANIFEST_JSON = "manifest.json"
MANIFEST_GZIP = "manifest.json.gz"
RESTORE_ROOT = "restores/s3/"
REPORTS_PREFIX = "drills/"


class Component(StrEnum):
    LAMBDA = "lambda"
    S3 = "s3"
    STACK = "stack"
    LOGS = "logs"


class AlreadyWritten(DrError):
    """A write-once key already holds an object: the backup store never overwrites."""


def new_backup_id(moment: datetime) -> str:
    """`<UTC second>-<millisecond, 3 hex digits><3 random hex digits>`: ids sort in time order, down to the
    millisecond, so "the newest backup" is never a coin toss between two taken in the same second."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y%m%dT%H%M%SZ}-{utc.microsecond // 1000:03x}{secrets.token_hex(2)[:3]}"


def backup_time(backup_id: str) -> datetime:
    return datetime.strptime(backup_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def backup_prefix(component: Component, subject: str, backup_id: str) -> str:
    """Where one backup's objects live; `subject` is the bucket, function or stack backed up."""
    root = "snapshots/s3" if component is Component.S3 else f"backups/{component.value}"
    return f"{root}/{subject}/{backup_id}/"


def manifest_key(component: Component, subject: str, backup_id: str) -> str:
    name = MANIFEST_GZIP if component is Component.S3 else MANIFEST_JSON
    return backup_prefix(component, subject, backup_id) + name


def content_key(algorithm: str, digest: str) -> str:
    return f"content/{algorithm}/{digest}"


def restore_changes_key(target_bucket: str, plan_id: str) -> str:
    return f"{RESTORE_ROOT}{target_bucket}/{plan_id}/changes.json.gz"


def restore_records_prefix(target_bucket: str, plan_id: str) -> str:
    return f"{RESTORE_ROOT}{target_bucket}/{plan_id}/applied/"


def restore_safety_key(target_bucket: str, plan_id: str) -> str:
    return f"{RESTORE_ROOT}{target_bucket}/{plan_id}/safety-snapshot.json"


@dataclass(frozen=True)
class BackupListing:
    component: Component
    subject: str
    backup_id: str
    created_at: datetime
    complete: bool  # its manifest exists


class BackupStore:
    """Write-once access to the backup bucket."""

    def __init__(self, s3_client: S3Client, bucket: str) -> None:
        self.s3 = s3_client
        self.bucket = bucket

    def put_once(self, key: str, body: bytes, content_type: str = "application/octet-stream", **extra: Any) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                               IfNoneMatch="*", **extra)
        except ClientError as error:
            if is_precondition_failed(error):
                raise AlreadyWritten(f"s3://{self.bucket}/{key} already exists; backups are write-once") from error
            raise

    def put_json_once(self, key: str, document: Any) -> None:
        self.put_once(key, json.dumps(document, indent=1, sort_keys=True, default=str).encode(), "application/json")

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error_code(error) in OBJECT_NOT_FOUND:
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def keys(self, prefix: str) -> Iterator[ObjectTypeDef]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def backup_ids(self, component: Component, subject: str) -> list[str]:
        """The ids of every backup of `subject`, oldest first, complete or not."""
        root = backup_prefix(component, subject, "x")[: -len("x/")]
        ids: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root, Delimiter="/"):
            ids += [entry["Prefix"][len(root):].rstrip("/") for entry in page.get("CommonPrefixes", [])]
        return sorted(ids)

    def list_backups(self, component: Component, subject: str) -> list[BackupListing]:
        """Every backup of `subject`, oldest first, complete or not (a complete one has its manifest)."""
        return [BackupListing(component, subject, backup_id, backup_time(backup_id),
                              self.exists(manifest_key(component, subject, backup_id)))
                for backup_id in self.backup_ids(component, subject)]
