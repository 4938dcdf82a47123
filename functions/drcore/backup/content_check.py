"""Whether a bucket snapshot's stored content still matches its manifest.

A snapshot is only as good as the bodies under `content/` that its manifest names. Each is checked
against what the manifest recorded of it (drcore.backup.manifest.ManifestEntry.stored_body): its size,
the full-object checksums (the object's own, and the SHA-256 S3 computed when the body was stored), its
ETag as stored. Where the manifest recorded the content object's version, that version is the one checked:
a delete marker or a new version on the key since does not change what a restore copies.

- A quick check (`read=False`, what `list_backups` runs on a sample) makes one HeadObject per content
  object: the object is there, with the recorded size, and its checksum or ETag is the recorded one.
- A reading check (`read=True`, `verify_backup`) also reads and hashes every body the HeadObject could
  not prove: its SHA-256 against the recorded one (or its MD5 against a single-part ETag).

A content object is `intact` (proven), `unverified` (nothing recorded that could prove it: a manifest
older than the record, with another ETag) or damaged, with its problem. Nothing is written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import OBJECT_ARCHIVED, OBJECT_NOT_FOUND, error_code, retrying
from drcore.aws.object_identity import BodyIdentity, streamed_digests
from drcore.backup.manifest import ManifestStream, SnapshotManifest
from drcore.core.sampling import StreamSample
from drcore.state.backup_store import BackupStore

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import HeadObjectRequestTypeDef

logger = Logger(child=True)

INTACT = "intact"
UNVERIFIED = "unverified"
MISSING = "missing"
SIZE_DIFFERS = "size differs"
CHECKSUM_DIFFERS = "checksum differs"  # S3's own full-object checksum of the body is another
BODY_DIFFERS = "body differs"  # its streamed SHA-256 is another
REPLACED = "replaced since stored"  # another ETag than the object the snapshot stored (quick check)
REPORTED_DAMAGED = 100  # damaged keys named in a report; the counts have them all


@dataclass(frozen=True)
class StoredClaim:
    """What a manifest says is stored under a content key. `stored_etag`: the content object's ETag when
    the snapshot stored it, where recorded (a quick check expects exactly that object); `version_id`: the
    version it was stored as, where recorded (the one read)."""

    body: BodyIdentity
    stored_etag: str | None = None
    version_id: str | None = None


@dataclass
class ContentReport:
    """A snapshot's content checked against its manifest. Counts are of content objects, except
    `objects_affected`: the bucket keys whose body is a damaged content object."""

    bucket: str
    backup_id: str
    mode: str  # "quick", "sample" or "full"
    objects: int  # entries of the manifest
    archived: int  # entries without stored content (archive storage classes): nothing to check
    content_objects: int  # distinct content objects the manifest names
    checked: int = 0
    intact: int = 0
    unverified: int = 0
    damaged: int = 0
    objects_affected: int = 0
    damaged_keys: list[dict[str, str]] = field(default_factory=list)  # {"key", "content_key", "problem"}

    @property
    def ok(self) -> bool:
        return self.damaged == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class ContentChecker:
    """Checks content objects in `store` (reads only: HeadObject, and GetObject where a body is hashed)."""

    def __init__(self, store: BackupStore, *, concurrency: int = 16, sleep: Callable[[float], None] = time.sleep,
                 chooser: random.Random | None = None) -> None:
        self._store = store
        self._concurrency = concurrency
        self._sleep = sleep
        self._chooser = chooser or random.Random()

    def check(self, claims: Mapping[str, StoredClaim], *, read: bool) -> dict[str, str]:
        """Each content key's verdict: INTACT, UNVERIFIED, or its problem."""
        keys = sorted(claims)
        with ThreadPoolExecutor(self._concurrency) as pool:
            verdicts = list(pool.map(lambda key: self._verdict(key, claims[key], read), keys))
        return dict(zip(keys, verdicts, strict=True))

    def check_snapshot(self, manifest: SnapshotManifest | ManifestStream, *, sample: int | None,
                       read: bool) -> ContentReport:
        """Check `sample` of the snapshot's content objects, chosen at random (None: all of them). The manifest is
        gone through a line at a time: a sample holds only what it checks and the distinct content keys' hashes
        (drcore.core.sampling), and the bucket keys whose body is damaged are found by a second pass, when any is."""
        claims: dict[str, StoredClaim] = {}
        sampled: StreamSample[StoredClaim] | None = None
        if sample is not None:
            sampled = StreamSample(sample, self._chooser, count_distinct=True)
        objects = archived = 0
        for entry in manifest.entries():
            objects += 1
            archived += entry.archived
            if entry.content_key:
                claim = StoredClaim(entry.stored_body(), entry.content_etag, entry.content_version_id)
                if sampled is not None:
                    sampled.offer(entry.content_key, claim)
                else:
                    claims.setdefault(entry.content_key, claim)
        content_objects = sampled.distinct if sampled is not None else len(claims)
        chosen = sampled.chosen() if sampled is not None else dict(sorted(claims.items()))
        del claims
        mode = "full" if len(chosen) == content_objects and read else ("sample" if read else "quick")
        report = ContentReport(bucket=manifest.bucket, backup_id=manifest.backup_id, mode=mode, objects=objects,
                               archived=archived, content_objects=content_objects, checked=len(chosen))
        verdicts = self.check(chosen, read=read)
        damaged = {content_key: verdict for content_key, verdict in verdicts.items()
                   if verdict not in (INTACT, UNVERIFIED)}
        report.intact = sum(verdict == INTACT for verdict in verdicts.values())
        report.unverified = sum(verdict == UNVERIFIED for verdict in verdicts.values())
        report.damaged = len(damaged)
        if damaged:
            holders: dict[str, list[str]] = {content_key: [] for content_key in damaged}  # keys in the manifest's order
            for entry in manifest.entries():
                if entry.content_key in holders:
                    holders[entry.content_key].append(entry.key)
            report.objects_affected = sum(len(keys) for keys in holders.values())
            report.damaged_keys = [{"key": key, "content_key": content_key, "problem": damaged[content_key]}
                                   for content_key, keys in holders.items() for key in keys][:REPORTED_DAMAGED]
            logger.warning("backup content damaged", extra={
                "bucket": manifest.bucket, "backup_id": manifest.backup_id, "mode": mode, "damaged": report.damaged,
                "damaged_keys": [item["key"] for item in report.damaged_keys[:10]]})
        return report

    def _verdict(self, content_key: str, claim: StoredClaim, read: bool) -> str:
        bucket = self._store.bucket
        request: HeadObjectRequestTypeDef = {"Bucket": bucket, "Key": content_key, "ChecksumMode": "ENABLED"}
        if claim.version_id:
            request["VersionId"] = claim.version_id
        try:
            head = retrying(lambda: self._store.s3.head_object(**request), sleep=self._sleep)
        except ClientError as error:
            if error_code(error) in OBJECT_NOT_FOUND:
                return MISSING
            raise
        if head.get("ContentLength") != claim.body.size:
            return SIZE_DIFFERS
        decided = claim.body.decide(head)
        if decided is not None:
            return INTACT if decided else CHECKSUM_DIFFERS
        if read:
            try:
                digests = streamed_digests(self._store.s3, bucket, content_key, claim.version_id, sleep=self._sleep)
            except ClientError as error:
                if error_code(error) in OBJECT_ARCHIVED:
                    return UNVERIFIED  # in an archive tier: not readable without an S3 restore
                raise
            decided = claim.body.decide_read(digests)
            if decided is not None:
                return INTACT if decided else BODY_DIFFERS
        # Another ETag, no checksum in common: the object the snapshot stored would have had its ETag.
        return REPLACED if claim.stored_etag else UNVERIFIED
