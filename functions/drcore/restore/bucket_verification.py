"""Whether a bucket holds a restore point: proven by reading back what is there, never taken on trust.

A desired key matches only when the target's current version is proven to hold the restore point:

- the very version desired, in the same bucket: nothing has rewritten it (no request);
- any other version (one a restore wrote, a rewrite with the same ETag, a bucket restored beside):
  one HeadObject of that version (ChecksumMode ENABLED). Its headers (content type, user metadata,
  Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires) and tags must be the
  restore point's, and its body proven the restore point's (drcore.aws.object_identity): a full-object
  checksum in common decides, or the same ETag; where neither does (a multipart copy's ETag, SSE-KMS),
  the version is read and hashed against the recorded SHA-256 (or a single-part ETag's MD5), and a
  version of the bucket restored from is read too when nothing was recorded of it.

The restore point's headers and tags are the manifest's where it records them; otherwise those of the
content object its snapshot's copy stored them with (one HeadObject per content object, and its tags
where it has some), or of the version of the bucket restored from. Tags are read only where both sides
have as many, some (HeadObject's TagCount).

What a restore's apply wrote is checked like anything else: it counts as matching only once read back.
A mismatched key restored from the backup store has its stored content checked as well
(drcore.backup.content_check), so the report says which mismatches come from damaged backup content.
A failed verification is logged, and alerted where the restore reports to operators
(`VerificationAlerts`).

The plan and the apply use the same HeadObject comparison (`same_objects`) to decide what to copy, without
reading bodies: an object they cannot prove equal is copied again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.alerts import Alert, AlertPublisher
from drcore.aws.errors import OBJECT_ARCHIVED, OBJECT_NOT_FOUND, error_code, retrying
from drcore.aws.object_identity import (
    BodyIdentity,
    ObjectHeaders,
    full_object_checksums,
    streamed_digests,
    tag_set,
)
from drcore.backup.content_check import INTACT, UNVERIFIED, ContentChecker, StoredClaim
from drcore.core.models import Clock, to_iso, utc_now
from drcore.restore.bucket_diff import DesiredObject, ListedVersion, current_of, same_version, sample
from drcore.restore.bucket_plan import RestorePlan, Verification

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectRequestTypeDef

    from drcore.state.backup_store import BackupStore

logger = Logger(child=True)

REPORTED_KEYS = 100  # keys of each kind named in a verification


@dataclass(frozen=True)
class _Expected:
    body: BodyIdentity
    headers: ObjectHeaders | None  # None: unknown (the version restored from is gone), not compared


class RestoreVerifier:
    """Compares target objects with desired ones using `s3_client` (HeadObject, GetObject of versions of
    the target, and of the bucket restored from unless `source_client` is given: a bucket in another region
    is read with that region's client); checks stored content in `store`."""

    def __init__(self, s3_client: S3Client, store: BackupStore, *, concurrency: int = 16,
                 sleep: Callable[[float], None] = time.sleep, source_client: S3Client | None = None) -> None:
        self._s3 = s3_client
        self._source = source_client or s3_client
        self._store = store
        self._sleep = sleep
        self._content = ContentChecker(store, concurrency=concurrency, sleep=sleep)
        # The headers and tags of content objects, read once each: many keys may share one.
        self._content_headers: dict[tuple[str, str | None], ObjectHeaders | None] = {}
        self._content_headers_lock = threading.Lock()

    def same_objects(self, target: str, pairs: list[tuple[DesiredObject, ListedVersion]],
                     pool: ThreadPoolExecutor) -> Iterable[bool]:
        """For a plan or an apply: whether each target version is proven equal from its HeadObject alone."""
        return pool.map(lambda pair: self._matches(target, *pair, read=False)[0], pairs)

    def verify(self, plan: RestorePlan, desired: Mapping[str, DesiredObject], listing: Iterable[ListedVersion],
               pool: ThreadPoolExecutor) -> Verification:
        """Every desired key read back from the target (unless it is the very version desired), and the keys
        under the prefix that the desired state does not have."""
        target = plan.target_bucket
        current = current_of(listing)
        absent = [key for key in desired if key not in current]
        to_read = [(desired[key], current[key]) for key in desired
                   if key in current and not same_version(desired[key], current[key], target)]
        results = list(pool.map(lambda pair: self._matches(target, *pair, read=True), to_read))
        mismatched = sorted(absent + [want.key for (want, _), (same, _) in zip(to_read, results, strict=True)
                                      if not same])
        unexpected = sorted(current.keys() - desired.keys())
        verification = Verification(
            objects_expected=len(desired), objects_matching=len(desired) - len(mismatched), mismatched=len(mismatched),
            unexpected=len(unexpected), mismatched_keys=sample(mismatched, REPORTED_KEYS),
            unexpected_keys=sample(unexpected, REPORTED_KEYS),
            backup_damaged_keys=self._damaged_in_store([desired[key] for key in mismatched[:REPORTED_KEYS]]),
            read_back=len(to_read), streamed=sum(streamed for _, streamed in results))
        if not verification.ok:
            logger.warning("restore verification found differences", extra={
                "plan_id": plan.plan_id, "target": target, "mismatched": verification.mismatched,
                "unexpected": verification.unexpected, "mismatched_keys": list(verification.mismatched_keys[:10]),
                "backup_damaged_keys": list(verification.backup_damaged_keys[:10])})
        return verification

    def matches(self, target: str, want: DesiredObject, have: ListedVersion) -> bool:
        """Whether the target's version `have` is proven to hold `want`, reading its body where its
        HeadObject cannot tell."""
        return self._matches(target, want, have, read=True)[0]

    # One object ----------------------------------------------------------------------------------

    def _matches(self, target: str, want: DesiredObject, have: ListedVersion, *, read: bool) -> tuple[bool, bool]:
        """(whether `have` is proven to be `want`, whether its body was read to decide)."""
        head = self._head(target, have.key, have.version_id)
        if head is None:
            return False, False  # gone since it was listed
        expected = self._expected(want)
        if expected.headers is not None and expected.headers.differences(head):
            return False, False
        if expected.headers is not None and expected.headers.tags_to_compare(head) and tag_set(
                self._s3, target, have.key, have.version_id, sleep=self._sleep) != expected.headers.tags:
            return False, False
        decided = expected.body.decide(head)
        if decided is not None or not read:
            return bool(decided), False
        try:
            held = streamed_digests(self._s3, target, have.key, have.version_id, sleep=self._sleep)
            decided = expected.body.decide_read(held)
            if decided is None and not want.from_store:
                # Nothing recorded of the version restored from proves the body: it is read too.
                decided = held == streamed_digests(self._source, want.home_bucket, want.key, want.version_id,
                                                   sleep=self._sleep)
        except ClientError as error:
            if error_code(error) in OBJECT_ARCHIVED:
                return False, False  # archived: it cannot be read, so it is not proven
            raise
        return bool(decided), True

    def _expected(self, want: DesiredObject) -> _Expected:
        headers = want.object_headers()
        if headers is not None:
            return _Expected(want.body(), headers)
        if want.from_store:
            return _Expected(want.body(), self._carried_by_content(want))
        # A version of the bucket: its own HeadObject knows its headers and the checksums S3 holds for it.
        head = self._head(want.home_bucket, want.key, want.version_id, self._source)
        if head is None:
            return _Expected(want.body(), None)
        return _Expected(BodyIdentity(want.size, frozenset({want.etag}), full_object_checksums(head)),
                         self._headers_of(head, self._source, want.home_bucket, want.key, want.version_id))

    def _carried_by_content(self, want: DesiredObject) -> ObjectHeaders | None:
        """The headers and tags of the content object that carries `want`'s (the version its manifest names);
        None when it is gone (a restore could not have copied it: the body decides)."""
        assert want.content_key is not None
        cached = (want.content_key, want.content_version_id)
        with self._content_headers_lock:
            if cached in self._content_headers:
                return self._content_headers[cached]
        version = want.content_version_id or "null"
        head = self._head(self._store.bucket, want.content_key, version, self._store.s3)
        headers = None if head is None else self._headers_of(head, self._store.s3, self._store.bucket,
                                                             want.content_key, version)
        with self._content_headers_lock:
            self._content_headers[cached] = headers
        return headers

    def _headers_of(self, head: Mapping[str, Any], client: S3Client, bucket: str, key: str,
                    version_id: str) -> ObjectHeaders:
        """The headers HeadObject described, with the object's tags (read only where it has some)."""
        tags = tag_set(client, bucket, key, version_id, sleep=self._sleep) if head.get("TagCount") else {}
        return ObjectHeaders.of(head, tags)

    def _head(self, bucket: str, key: str, version_id: str,
              client: S3Client | None = None) -> Mapping[str, Any] | None:
        request: HeadObjectRequestTypeDef = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id != "null":
            request["VersionId"] = version_id
        try:
            head: Mapping[str, Any] = retrying(lambda: (client or self._s3).head_object(**request),
                                               sleep=self._sleep)
        except ClientError as error:
            if error_code(error) in OBJECT_NOT_FOUND:
                return None
            raise
        return head

    def _damaged_in_store(self, mismatched: list[DesiredObject]) -> tuple[str, ...]:
        """The mismatched keys whose stored content no longer matches the manifest."""
        claims = {want.content_key: StoredClaim(want.stored_body(), want.content_etag, want.content_version_id)
                  for want in mismatched if want.from_store and want.content_key}
        if not claims:
            return ()
        verdicts = self._content.check(claims, read=True)
        return tuple(sorted(want.key for want in mismatched if want.from_store and want.content_key
                            and verdicts[want.content_key] not in (INTACT, UNVERIFIED)))


class VerificationAlerts:
    """Tells operators of a restore whose verification failed, through the alert topic."""

    def __init__(self, publisher: AlertPublisher, function_name: str, clock: Clock = utc_now) -> None:
        self._publisher = publisher
        self._function = function_name
        self._clock = clock

    def restore_failed(self, plan: RestorePlan, verification: Verification, safety_snapshot_id: str | None) -> None:
        check = {"action": "verify_backup", "component": "s3", "backup_id": plan.snapshot_id, "full": True}
        self._publisher.publish(Alert(
            severity=2, brief=f"Bucket restore not verified: {verification.mismatched} objects differ",
            occurred_at=to_iso(self._clock()),
            impact=f"s3://{plan.target_bucket}/{plan.prefix}: {verification.failure(plan.snapshot_id)}",
            components=(f"s3:{plan.target_bucket}",), status="Restore applied; its verification failed",
            actions_taken=(f"Restore plan {plan.plan_id} applied from snapshot {plan.snapshot_id}",
                           f"Safety snapshot {safety_snapshot_id} taken before anything changed"),
            next_steps=(f"Check the backup's stored content: {json.dumps(check)}",
                        "Restore from another snapshot, or undo with restore_s3 from the safety snapshot"),
            event_type="restore_verification_failed", function_name=self._function,
            facts={"plan_id": plan.plan_id, "mismatched_keys": ", ".join(verification.mismatched_keys[:20]),
                   "unexpected_keys": ", ".join(verification.unexpected_keys[:20]),
                   "backup_damaged_keys": ", ".join(verification.backup_damaged_keys[:20]) or "none found"}))
