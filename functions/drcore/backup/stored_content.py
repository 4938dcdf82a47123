"""Which content bodies the backup store holds, found out as cheaply as it can be.

A HEAD per unknown key costs one request each; a listing of the content prefix costs one LIST per
thousand stored bodies. Keys are probed until the probes would have paid for the listing (a first
snapshot lists at once; a snapshot with a few changes probes them), then the prefix is listed once and
the listing answers every later question.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from drcore.backup.manifest import CONTENT_PREFIX
from drcore.state.backup_store import BackupStore

LISTING_PAGE = 1000  # keys per ListObjectsV2 page, to price a listing of the content prefix
# A LIST request is billed 12.5x a HEAD ($0.005 against $0.0004 per thousand) and takes longer than a
# concurrent batch of probes, so one listing page is worth this many probes.
PROBES_PER_LISTING_PAGE = 12


class StoredContent:
    """`known`: content keys already known to be stored (the base's); `probe(key)`: whether one is."""

    def __init__(self, store: BackupStore, known: set[str], probe: Callable[[str], bool]) -> None:
        self._store = store
        self._lock = threading.Lock()  # copies report what they stored from the pool's threads
        self._known = set(known)
        self._probe = probe
        self._listing_cost = PROBES_PER_LISTING_PAGE * max(1, -(-len(known) // LISTING_PAGE))
        self._probes = 0
        self._listed = False

    def missing(self, keys: set[str], pool: ThreadPoolExecutor) -> set[str]:
        unknown = sorted(keys - self._known)
        if not unknown:
            return set()
        if not self._listed and self._probes + len(unknown) > self._listing_cost:
            self._known |= {entry["Key"] for entry in self._store.keys(CONTENT_PREFIX)}
            self._listed = True
        if self._listed:
            return set(unknown) - self._known
        self._probes += len(unknown)
        found = {key for key, stored in zip(unknown, pool.map(self._probe, unknown), strict=True) if stored}
        self._known |= found
        return set(unknown) - found

    def add(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._known.update(keys)
