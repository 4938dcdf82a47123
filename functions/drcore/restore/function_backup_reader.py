"""A function backup read back for a restore: its manifest, configuration.json and archives, each checked
against the manifest (drcore.state.backup_files) and the code archives also against the CodeSha256 the
backup recorded, so a restore never uploads code that is not what Lambda held."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from drcore.backup.function_format import CODE_ARCHIVE, CONFIGURATION, code_sha256
from drcore.restore.function_plan import UnknownBackup
from drcore.state.backup_files import (
    BACKUP_ID_EXAMPLE,
    INCOMPLETE,
    MALFORMED,
    BackupNotFound,
    BackupReader,
    CorruptBackup,
    StoredBackup,
)
from drcore.state.backup_store import BackupStore, Component


@dataclass(frozen=True)
class VerifiedFunctionBackup:
    """A function backup whose files match its manifest: its configuration.json, and its zip (None for an
    image)."""

    stored: StoredBackup
    document: dict[str, Any]
    archive: bytes | None

    @property
    def backup_id(self) -> str:
        return self.stored.backup_id

    @property
    def code(self) -> dict[str, Any]:
        code: dict[str, Any] = self.document["code"]
        return code

    @property
    def package_type(self) -> str:
        return str(self.code["package_type"])

    @property
    def code_sha256(self) -> str:
        return str(self.code["code_sha256"])


class FunctionBackupReader:
    """Reads the backups of `function_name`; an unknown id raises UnknownBackup, a damaged file CorruptBackup."""

    def __init__(self, store: BackupStore, function_name: str) -> None:
        self._function = function_name
        self._backups = BackupReader(store, Component.LAMBDA, function_name)

    def read(self, backup_id: str) -> VerifiedFunctionBackup:
        """The backup, its files checked against its manifest and its zip against the backup's CodeSha256."""
        try:
            stored = self._backups.open(backup_id)
        except BackupNotFound as missing:
            raise UnknownBackup(self._unknown(missing)) from missing
        manifest = stored.manifest
        archive = None
        if manifest["package_type"] == "Zip":
            archive = self._backups.read(stored, CODE_ARCHIVE)
            if code_sha256(archive) != manifest["code_sha256"]:
                raise CorruptBackup(f"backup {backup_id}: the stored {CODE_ARCHIVE} has CodeSha256 "
                                    f"{code_sha256(archive)}, the backup's is {manifest['code_sha256']}; "
                                    "a corrupt backup is never restored")
        document = json.loads(self._backups.read(stored, CONFIGURATION))
        if document["code"]["code_sha256"] != manifest["code_sha256"]:
            raise CorruptBackup(f"backup {backup_id}: {CONFIGURATION} and the manifest name different code")
        return VerifiedFunctionBackup(stored, document, archive)

    def layer_archive(self, backup: VerifiedFunctionBackup, layer: dict[str, Any]) -> bytes:
        """The archive of a layer version the backup recorded, checked against the layer's CodeSha256."""
        body = self._backups.read(backup.stored, layer["archive"])
        if code_sha256(body) != layer["code_sha256"]:
            raise CorruptBackup(f"backup {backup.backup_id}: the stored {layer['archive']} is not layer "
                                f"{layer['arn']} (CodeSha256 {code_sha256(body)}, recorded {layer['code_sha256']})")
        return body

    def _unknown(self, missing: BackupNotFound) -> str:
        newest = (f"newest complete backups of {self._function}: {', '.join(missing.newest_complete)}"
                  if missing.newest_complete else f"{self._function} has no complete backup")
        if missing.reason == MALFORMED:
            return f"{missing.backup_id!r} is not a backup id (like {BACKUP_ID_EXAMPLE}); {newest}"
        why = "is incomplete (it has no manifest) and is never restored" if missing.reason == INCOMPLETE else (
            "does not exist")
        return f"backup {missing.backup_id} of {self._function} {why}; {newest}"
