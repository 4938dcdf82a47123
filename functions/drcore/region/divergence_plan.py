"""What a failback's copy-back plans, reports and refuses: the changes (one per diverged key), the plan
stored between the two steps, its progress and its verification. The engine is drcore.region.divergence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from drcore.core.errors import ConcurrentUpdate, InvalidRequest

PLAN_FORMAT = "failback-copy-plan/1"
CHANGES_FORMAT = "failback-changes/1"
PREFERENCES = ("secondary", "primary")

ChangeKind = Literal["created", "changed", "metadata", "deleted"]


class ConflictsUnresolved(InvalidRequest):
    """Keys changed in both regions since the failover, and no `prefer` says which side wins."""


class PrimaryChanged(ConcurrentUpdate):
    """The primary bucket changed a key the plan copies back since the plan was made: plan again."""


@dataclass(frozen=True)
class DivergedKey:
    """A key the replica changed since the failover, and the replica's version (or delete marker) the primary
    gets. `kind`: created (absent from the primary), changed (another body), metadata (the same body, by size
    and ETag, other headers), deleted (the replica's newest write is a delete marker). `conflict`: the
    primary changed the key after the failover too."""

    key: str
    kind: ChangeKind
    version_id: str
    etag: str
    size: int
    storage_class: str = "STANDARD"
    checksum_algorithm: str | None = None
    conflict: bool = False

    @property
    def is_delete(self) -> bool:
        return self.kind == "deleted"

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DivergedKey:
        return cls(**{item.name: row[item.name] for item in fields(cls) if item.name in row})


@dataclass(frozen=True)
class FailbackCopyPlan:
    plan_id: str
    records_id: str  # where copies are recorded and the safety snapshot's id kept (shared by a catch-up plan)
    created_at: str
    primary_bucket: str
    replica_bucket: str
    since: str  # the failover's time: what the replica wrote after it diverged
    prefer: str | None  # "secondary" | "primary" | None: who wins a conflict
    created: int
    changed: int
    metadata: int
    deleted: int
    conflicts: int  # keys changed in both regions since `since`
    kept_primary: int  # conflicts left as the primary holds them (prefer primary)
    to_copy: int
    to_delete: int
    bytes_to_copy: int
    copy_keys: tuple[str, ...]  # the first few of each (divergence.LISTED_KEYS); all changes in `changes_key`
    delete_keys: tuple[str, ...]
    conflict_keys: tuple[str, ...]
    changes_key: str | None  # backup-store key of every change (None: nothing diverged)
    format: str = PLAN_FORMAT

    @property
    def blocked(self) -> str | None:
        """Why an apply refuses this plan, or None."""
        if self.conflicts and self.prefer is None:
            return (f"{self.conflicts} keys changed in both regions since {self.since} (such as "
                    f"{', '.join(self.conflict_keys[:3])}): plan again with prefer 'secondary' or 'primary'")
        return None

    @property
    def diverged(self) -> bool:
        return bool(self.to_copy or self.to_delete)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "blocked": self.blocked}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> FailbackCopyPlan:
        if document.get("format") != PLAN_FORMAT:
            raise InvalidRequest(f"not a {PLAN_FORMAT} plan (format {document.get('format')!r})")
        values = {item.name: document[item.name] for item in fields(cls) if item.name in document}
        for name in ("copy_keys", "delete_keys", "conflict_keys"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


@dataclass(frozen=True)
class FailbackVerification:
    """The primary read back against the replica: a copied key matches only when the primary's current
    version is proven to hold the replica version's body and headers; a deleted key only when the primary
    has no current version of it."""

    expected: int
    matching: int
    mismatched_keys: tuple[str, ...] = ()  # the first few (divergence.LISTED_KEYS)
    read_back: int = 0

    @property
    def mismatched(self) -> int:
        return self.expected - self.matching

    @property
    def ok(self) -> bool:
        return self.matching == self.expected

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mismatched": self.mismatched, "ok": self.ok}


@dataclass(frozen=True)
class FailbackCopyProgress:
    plan_id: str
    finished: bool  # False: apply the same plan again (the safety snapshot and the copies continue)
    safety_snapshot_id: str | None  # undo: restore the primary bucket from this snapshot
    copied: int  # by this invocation
    deleted: int
    bytes_copied: int
    archived_keys: tuple[str, ...] = ()  # replica versions in an archive tier: not copied, reported mismatched
    verification: FailbackVerification | None = None  # when finished

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["verification"] = self.verification.to_dict() if self.verification else None
        return document
