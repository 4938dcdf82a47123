"""The files of a function or stack backup: written once, each listed in the backup's manifest with its size,
SHA-256 and the version S3 gave it, and read back only as its manifest lists them.

The manifest is written last, then the record of its own version (drcore.state.backup_store), so a backup
without one is incomplete and is never read. Each read names the version recorded when the file (or the
manifest) was written; a file whose size or digest is not the manifest's is refused, whoever changed it. A
backup written before versions were recorded is read as its keys hold it now.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import is_not_found
from drcore.core.errors import InvalidRequest
from drcore.state.backup_store import BackupStore, Component, backup_prefix, json_bytes, manifest_key

# new_backup_id's form: `<UTC second>-<6 hex digits>`. Anything else is refused before a key is made of it.
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
BACKUP_ID_EXAMPLE = "20261126T132500Z-3f9a1c"
NEWEST_LISTED = 5  # complete backups named when an id is refused

# Why a backup id names no readable backup.
MALFORMED, INCOMPLETE, ABSENT = "malformed", "incomplete", "absent"


class BackupFiles:
    """The files of one backup, each written once, with the size and SHA-256 its manifest lists."""

    def __init__(self, store: BackupStore, component: Component, subject: str, backup_id: str) -> None:
        self._store = store
        self._component = component
        self._subject = subject
        self._backup_id = backup_id
        self._prefix = backup_prefix(component, subject, backup_id)
        self.entries: list[dict[str, Any]] = []

    @property
    def total_bytes(self) -> int:
        return sum(entry["size"] for entry in self.entries)

    def put(self, path: str, body: bytes, content_type: str) -> None:
        version_id = self._store.put_once(self._prefix + path, body, content_type)
        self.entries.append({"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                             "version_id": version_id})

    def put_json(self, path: str, document: Any) -> None:
        self.put(path, json_bytes(document), "application/json")

    def finish(self, manifest: dict[str, Any]) -> str:
        """Write the manifest, last: only now is the backup complete. Then record the version it was written as."""
        return self._store.put_manifest_once(self._component, self._subject, self._backup_id,
                                             {**manifest, "files": self.entries, "bytes": self.total_bytes})


class BackupNotFound(InvalidRequest):
    """No complete backup has this id; `reason` says why (MALFORMED, INCOMPLETE or ABSENT), and
    `newest_complete` names the newest complete backups of the subject, newest first."""

    def __init__(self, backup_id: str, subject: str, reason: str, newest_complete: list[str]) -> None:
        self.backup_id = backup_id
        self.reason = reason
        self.newest_complete = newest_complete
        listed = ", ".join(newest_complete) or "none"
        super().__init__(f"backup {backup_id!r} of {subject} is {reason}; newest complete backups: {listed}")


class CorruptBackup(InvalidRequest):
    """A backup's stored files are not what its manifest (or the code digest it records) says: it is never
    restored."""


@dataclass(frozen=True)
class StoredBackup:
    """A complete backup as its manifest describes it."""

    backup_id: str
    prefix: str
    manifest: dict[str, Any]

    def listed(self, path: str) -> dict[str, Any] | None:
        """The manifest's entry of file `path`: its size and SHA-256."""
        return next((entry for entry in self.manifest.get("files", []) if entry["path"] == path), None)


class BackupReader:
    """Reads the complete backups of one subject (a function, a stack) back, each file verified against its
    manifest; a failed check raises `corrupt` (a CorruptBackup, or the caller's own kind of it)."""

    def __init__(self, store: BackupStore, component: Component, subject: str, *,
                 corrupt: type[CorruptBackup] = CorruptBackup) -> None:
        self._store = store
        self._component = component
        self._subject = subject
        self._corrupt = corrupt

    def open(self, backup_id: str) -> StoredBackup:
        """The backup's manifest; BackupNotFound when the id is malformed, or names no complete backup."""
        if not BACKUP_ID.match(backup_id or ""):
            raise BackupNotFound(backup_id, self._subject, MALFORMED, self.newest_complete())
        record = self._store.recorded_manifest(self._component, self._subject, backup_id)
        key = manifest_key(self._component, self._subject, backup_id)
        try:
            body = self._store.get_bytes(key, record.version_id if record else None)
        except ClientError as error:
            if not is_not_found(error):
                raise
            if record is not None:
                raise self._corrupt(f"backup {backup_id} of {self._subject}: its manifest, version "
                                    f"{record.version_id}, is gone") from error
            listings = self._store.list_backups(self._component, self._subject)
            started = any(listing.backup_id == backup_id for listing in listings)
            newest = [listing.backup_id for listing in reversed(listings) if listing.complete][:NEWEST_LISTED]
            raise BackupNotFound(backup_id, self._subject, INCOMPLETE if started else ABSENT, newest) from error
        if record is not None and hashlib.sha256(body).hexdigest() != record.sha256:
            raise self._corrupt(f"backup {backup_id} of {self._subject}: its manifest does not match the SHA-256 "
                                "recorded when it was written; a corrupt backup is never restored")
        return StoredBackup(backup_id, backup_prefix(self._component, self._subject, backup_id), json.loads(body))

    def read(self, backup: StoredBackup, path: str) -> bytes:
        """A file of the backup, checked against the size and SHA-256 its manifest lists."""
        entry = backup.listed(path)
        where = f"backup {backup.backup_id} of {self._subject}"
        if entry is None:
            raise self._corrupt(f"{where}: its manifest does not list {path}")
        try:
            # The version written, where the manifest recorded one (older manifests name none).
            body = self._store.get_bytes(backup.prefix + path, entry.get("version_id"))
        except ClientError as error:
            if is_not_found(error):
                raise self._corrupt(f"{where}: {path} is listed in its manifest but missing") from error
            raise
        digest = hashlib.sha256(body).hexdigest()
        if (len(body), digest) != (entry["size"], entry["sha256"]):
            raise self._corrupt(f"{where}: {path} does not match the SHA-256 its manifest recorded (stored: "
                                f"{len(body)} bytes, SHA-256 {digest}; recorded: {entry['size']} bytes, SHA-256 "
                                f"{entry['sha256']}); a corrupt backup is never restored")
        return body

    def newest_complete(self) -> list[str]:
        """The newest complete backups' ids, newest first."""
        complete = [listing.backup_id for listing in self._store.list_backups(self._component, self._subject)
                    if listing.complete]
        return list(reversed(complete[-NEWEST_LISTED:]))
