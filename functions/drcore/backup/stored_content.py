"""Which content bodies the backup store holds, found out as cheaply as it can be, and as what.

A HEAD per unknown key costs one request each; a listing of the content prefix (of its current versions,
so that each body is known with its version) costs one LIST per thousand stored bodies. Keys are probed
until the probes would have paid for the listing (a first snapshot lists at once; a snapshot with a few
changes probes them), then the prefix is listed once and the listing answers every later question.

Each known body is kept with what the snapshot records of it (drcore.backup.manifest.StoredBody): as
the base recorded it, as this snapshot's copy answered, or as a probe (its ETag, SHA-256 and version) or
the listing (its ETag and version) found it. What the base recorded is never replaced by what is found
later: a body replaced since then must not pass as the one stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from drcore.backup.manifest import CONTENT_PREFIX, StoredBody
from drcore.state.backup_store import BackupStore, readable_version

LISTING_PAGE = 1000  # keys per ListObjectsV2 page, to price a listing of the content prefix
# A LIST request is billed 12.5x a HEAD ($0.005 against $0.0004 per thousand) and takes longer than a
# concurrent batch of probes, so one listing page is worth this many probes.
PROBES_PER_LISTING_PAGE = 12

# A stored body, or None when only its presence is known (a base written before bodies were recorded).
Known = Mapping[str, StoredBody | None]


class StoredContent:
    """`known`: content keys already known to be stored (the base's); `probe(key)`: the stored body under
    a key, or None if there is none."""

    def __init__(self, store: BackupStore, known: Known, probe: Callable[[str], StoredBody | None]) -> None:
        self._store = store
        self._lock = threading.Lock()  # copies report what they stored from the pool's threads
        self._known: dict[str, StoredBody | None] = dict(known)
        self._probe = probe
        self._listing_cost = PROBES_PER_LISTING_PAGE * max(1, -(-len(known) // LISTING_PAGE))
        self._probes = 0
        self._listed = False

    def missing(self, keys: set[str], pool: ThreadPoolExecutor) -> set[str]:
        unknown = sorted(keys - self._known.keys())
        if not unknown:
            return set()
        if not self._listed and self._probes + len(unknown) > self._listing_cost:
            listed = {entry["Key"]: StoredBody(entry["ETag"], version_id=readable_version(entry.get("VersionId")))
                      for entry in self._store.current_versions(CONTENT_PREFIX)}
            self.add({key: body for key, body in listed.items() if key not in self._known})
            self._listed = True
        if self._listed:
            return set(unknown) - self._known.keys()
        self._probes += len(unknown)
        found = {key: body for key, body in zip(unknown, pool.map(self._probe, unknown), strict=True) if body}
        self.add(found)
        return set(unknown) - found.keys()

    def add(self, bodies: Known) -> None:
        with self._lock:
            for key, body in bodies.items():
                if self._known.get(key) is None:
                    self._known[key] = body

    def body(self, key: str) -> StoredBody | None:
        return self._known.get(key)
