"""What a function restore (drcore.restore.function_restore) plans and what it reports, as JSON-ready types,
and the ways it refuses or stops."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from drcore.core.errors import ConcurrentUpdate, DrError, InvalidRequest

PLAN_FORMAT = "function-restore-plan/1"


class UnknownBackup(InvalidRequest):
    """No complete backup has this id."""


class TargetChanged(ConcurrentUpdate):
    """The target function changed since the plan: plan again."""


class RestoreIncomplete(DrError):
    """An apply stopped part-way; the message says what was done and the state the function is in."""


class CodeVerificationFailed(RestoreIncomplete):
    """Lambda holds other code than the backup's after the upload."""


@dataclass(frozen=True)
class FunctionRestorePlan:
    plan_id: str
    created_at: str
    function_name: str  # the protected function, whose backup this restores
    backup_id: str
    backup_version: str  # the version the backup captured
    backup_captured_at: str
    target: str
    in_place: bool  # the target is the protected function
    target_exists: bool
    package_type: str  # "Zip" | "Image"
    code_sha256: str  # the backup's
    code_archive_verified: bool  # the stored zip's SHA-256 is the backup's CodeSha256 (False for an image)
    changes: list[dict[str, Any]]  # {"setting": name, ...what differs}, in the order apply makes them
    unchanged: list[str]
    republish_layers: list[str]  # recorded layer versions deleted since, published again from the backup
    left_alone: dict[str, str]  # setting -> why the restore leaves it as it is
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    format: str = PLAN_FORMAT

    @property
    def changed_settings(self) -> list[str]:
        return [change["setting"] for change in self.changes]

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return document

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> FunctionRestorePlan:
        if document.get("format") != PLAN_FORMAT:
            raise InvalidRequest(f"not a {PLAN_FORMAT} plan (format {document.get('format')!r})")
        missing = [item.name for item in fields(cls) if item.name not in document]
        if missing:
            raise InvalidRequest(f"the plan lacks {', '.join(missing)}")
        return cls(**{item.name: document[item.name] for item in fields(cls)})


@dataclass(frozen=True)
class FunctionRestoreResult:
    plan_id: str
    backup_id: str
    target: str
    created: bool  # the target was created by this restore
    version: str  # published: point LIVE at it through the alias controller
    code_sha256: str
    code_sha256_verified: bool  # the published version's CodeSha256 is the backup's
    environment_restored: bool  # the published version's environment equals the backup's
    changed: list[str]  # settings this apply changed
    restored: list[str]  # settings that now equal the backup's (changed or not)
    not_restored: list[str]  # settings that still differ from the backup's after the apply
    republished_layers: dict[str, str]  # recorded layer version ARN -> the ARN published from the backup
    left_alone: dict[str, str]
    started_at: str
    finished_at: str

    @property
    def ok(self) -> bool:
        return self.code_sha256_verified and self.environment_restored and not self.not_restored

    def to_dict(self) -> dict[str, Any]:
        return {**json.loads(json.dumps(asdict(self))), "ok": self.ok}
