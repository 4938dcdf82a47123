"""What a bucket restore plans, reports and refuses: its plan (stored between the two steps), its
progress and verification, and its errors. The engine is drcore.restore.bucket_restore."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from drcore.aws.job_estimates import KEYS_PER_LIST_PAGE, Assumptions, Copies, Estimate, restore_estimate
from drcore.aws.prefix_pacing import prefix_of
from drcore.backup.snapshot_checkpoints import LISTING_RANGES, KeyRange, range_count
from drcore.core.errors import ConcurrentUpdate, DrError, InvalidRequest
from drcore.restore.bucket_diff import Decided, DiffCounts
from drcore.state.backup_store import GzipJsonLines, gzip_json_lines

# /2: the target's fingerprint and the desired state's digest hash their rows in key order, as a plan streams them.
PLAN_FORMAT = "s3-restore-plan/2"


class RestoreRefused(InvalidRequest):
    """The restore would have to do something a restore never does (remove without a delete marker)."""


class NoRestorePoint(InvalidRequest):
    """No complete snapshot of the bucket at or before the moment asked for."""


class TargetChanged(ConcurrentUpdate):
    """The target bucket is no longer in the state the plan was made against: plan again."""


class DesiredStateChanged(ConcurrentUpdate):
    """The state the plan restores can no longer be rebuilt as planned (versions expired): plan again."""


class RestoreSourceMissing(DrError):
    """A version the restore copies from no longer exists."""


@dataclass(frozen=True)
class RestorePlan:
    plan_id: str
    created_at: str
    source_bucket: str  # whose snapshots (and versions) give the desired state
    target_bucket: str
    prefix: str
    source: str  # "snapshot" | "versions": where the desired state comes from
    snapshot_id: str  # the snapshot restored, or the base the versions at `at` build on
    at: str | None  # the moment asked for (clamped to the plan's time); None when a snapshot id was given
    target_versioning: str  # "Enabled" | "Suspended" | "Disabled" when planned
    objects_desired: int
    to_copy: int  # missing + changed
    missing: int  # desired keys absent from the target
    changed: int  # desired keys present with other content
    to_remove: int  # keys under the prefix that the desired state does not have (delete markers)
    unchanged: int
    archived: int  # differing desired objects in an archive storage class: need an S3 restore first
    bytes_to_copy: int
    from_versions: int  # desired keys whose state comes from versions newer than the snapshot
    copy_keys: tuple[str, ...]  # the first few keys of each list (LISTED_KEYS); all of them in `changes_key`
    remove_keys: tuple[str, ...]
    archived_keys: tuple[str, ...]
    changes_key: str | None  # backup-store key of the full lists when one is longer than the plan names
    fingerprint: str  # the target's state under the prefix when planned
    desired_digest: str
    notes: tuple[str, ...] = ()
    # What applying it costs at S3's limits: requests by kind, bytes, time, price (drcore.aws.job_estimates)
    estimate: dict[str, Any] = field(default_factory=dict)
    # The key ranges the target is listed in at once ([start after, last]; one, the whole bucket, for a small one):
    # cut from the restore point's keys by the plan, and listed the same way when it is confirmed
    listing_ranges: tuple[tuple[str | None, str | None], ...] = ((None, None),)
    format: str = PLAN_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> RestorePlan:
        if document.get("format") == "s3-restore-plan/1":
            raise InvalidRequest("a restore plan made by an earlier version of the controller, whose digests this one "
                                 "does not compute: plan the restore again")
        if document.get("format") != PLAN_FORMAT:
            raise InvalidRequest(f"not a {PLAN_FORMAT} restore plan (format {document.get('format')!r})")
        values = {item.name: document[item.name] for item in fields(cls) if item.name in document}
        for name in ("copy_keys", "remove_keys", "archived_keys", "notes"):
            values[name] = tuple(values.get(name, ()))
        values["listing_ranges"] = tuple(tuple(bounds) for bounds in values.get("listing_ranges", [[None, None]]))
        return cls(**values)

    def ranges(self) -> tuple[KeyRange, ...]:
        return tuple(KeyRange(*bounds) for bounds in self.listing_ranges)


@dataclass(frozen=True)
class Verification:
    """What the target holds, read back (drcore.restore.bucket_verification): a key matches only when
    its object is proven to hold the restore point's body and headers."""

    objects_expected: int
    objects_matching: int
    mismatched: int  # desired keys absent from the target, or holding another body or other headers
    unexpected: int  # keys under the prefix the desired state does not have
    mismatched_keys: tuple[str, ...] = ()  # the first few of each (bucket_verification.REPORTED_KEYS)
    unexpected_keys: tuple[str, ...] = ()
    # Mismatched keys whose stored backup content no longer matches the manifest (of those checked: the
    # first REPORTED_KEYS mismatched keys restored from the backup store).
    backup_damaged_keys: tuple[str, ...] = ()
    read_back: int = 0  # objects whose HeadObject was compared (every object not the restore point's version)
    streamed: int = 0  # of those, objects whose body had to be read and hashed

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.unexpected == 0

    def failure(self, snapshot_id: str, named: int = 10) -> str:
        """What does not match the restore point, naming the first `named` keys of each kind."""
        damaged = self.backup_damaged_keys
        return (f"the target does not hold snapshot {snapshot_id}: {self.mismatched} objects differ from it "
                f"({', '.join(self.mismatched_keys[:named]) or 'none'}), {self.unexpected} are not in it "
                f"({', '.join(self.unexpected_keys[:named]) or 'none'})"
                + (f"; backup content damaged for {', '.join(damaged[:named])}" if damaged else ""))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class RestoreProgress:
    plan_id: str
    finished: bool  # False: call apply again with the same plan and `safety_snapshot_id`
    safety_snapshot_id: str | None  # undo: restore the target bucket from this snapshot (None: not begun yet)
    copied: int  # by this invocation
    removed: int
    bytes_copied: int
    verification: Verification | None  # when finished
    # A fanned-out restore's shards (drcore.restore.restore_shards): how many, how many done, and its execution's
    # state while it runs. Unfinished with this: the execution's last step resumes the plan, nothing else need.
    fan_out: dict[str, Any] | None = None
    # A safety snapshot fanned out (drcore.backup.snapshot_shards): its shards and execution, whose last step resumes
    # the plan once the snapshot is merged. Nothing of the plan is applied yet.
    safety_fan_out: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["verification"] = self.verification.to_dict() if self.verification else None
        return document


CHANGES_FORMAT = "s3-restore-changes/2"


class PlanTally:
    """A plan's figures, gathered as `decide` goes through the keys in key order: the counts and bytes, the first
    `listed` keys of each kind, every changed key (held compressed, about 20 bytes each, for the changes object), and
    what the estimate needs: the copies, the target's bodies its safety snapshot copies, the prefixes written."""

    def __init__(self, listed: int, multipart_threshold: int, part_size: int) -> None:
        self._listed = listed
        self._multipart = (multipart_threshold, part_size)
        self.counts = DiffCounts()
        self.desired = self.target_objects = self.removals = self.archived = 0
        self.copies = self.safety_copies = Copies()
        self.keys: dict[str, list[str]] = {"copy": [], "remove": [], "archived": []}
        self.prefixes: set[str] = set()
        self._changes = GzipJsonLines()

    def add(self, item: Decided) -> None:
        self.desired += item.want is not None
        self.target_objects += item.have is not None
        change = self.counts.count(item)
        if change is None:
            return
        if change == "copy":
            assert item.want is not None  # a copy is of a desired object
            self.copies = self.copies.plus(item.want.size, *self._multipart)
        self.removals += change == "remove"
        self.archived += change == "archived"
        if change != "archived":
            self.prefixes.add(prefix_of(item.key))
            if item.have is not None:  # its safety snapshot copies the target's body first (unless stored)
                self.safety_copies = self.safety_copies.plus(item.have.size, *self._multipart)
        if len(self.keys[change]) < self._listed:
            self.keys[change].append(item.key)
        self._changes.write({change: item.key})

    def changes(self, plan_id: str) -> bytes | None:
        """The changes object: every key to copy, remove or restore from archive first, in key order (gzip JSON
        lines after a header), when one kind has more than the plan names; None when the plan names them all."""
        lines = self._changes.close()
        if max(self.copies.objects, self.removals, self.archived) <= self._listed:
            return None
        header = {"format": CHANGES_FORMAT, "plan_id": plan_id, "copy": self.copies.objects,
                  "remove": self.removals, "archived": self.archived}
        return gzip_json_lines([header]) + lines.tobytes()

    def estimate(self, manifests_read: int, *, batch_size: int, concurrency: int) -> Estimate:
        """What applying the plan costs. Its safety snapshot is taken to copy the target's bodies of every key the
        restore changes or removes (at most: some may be stored already); its writes spread over the prefixes of
        the keys they write (drcore.aws.prefix_pacing), if S3 has partitioned them."""
        return restore_estimate(
            target_objects=self.target_objects, copies=self.copies, removals=self.removals,
            compared=self.counts.compared,
            batch_size=batch_size, safety_copies=self.safety_copies, manifests_read=manifests_read,
            ranges=range_count(self.target_objects, KEYS_PER_LIST_PAGE, LISTING_RANGES),
            assumptions=Assumptions(concurrency=concurrency, prefixes=max(1, len(self.prefixes))))
