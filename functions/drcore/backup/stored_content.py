"""Which content bodies the backup store holds, found out as cheaply as it can be, and as what.

Content the base references is known to be stored. Other content is first taken for missing: the
snapshot's copy is conditional (If-None-Match), so a body stored after all answers 412 and costs that
request and a HEAD, while a new body (the common case: what changed since the base) costs nothing more
than its copy. Once more unknown keys have been asked about than a listing of the content prefix would
cost (one LIST per thousand stored bodies, priced as `PROBES_PER_LISTING_PAGE` requests), the prefix is
listed once (its current versions, so each body is known with its version) and the listing answers every
later question: a first snapshot lists at once, and a snapshot started again after a crash finds what its
first attempt stored without a failed copy each.

Each known body is kept with what the snapshot records of it (drcore.backup.manifest.StoredBody): as
the base recorded it, as this snapshot's copy answered (or its HEAD after a 412), or as the listing
found it (its ETag and version). What the base recorded is never replaced by what is found later: a body
replaced since then must not pass as the one stored.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from drcore.aws.job_estimates import KEYS_PER_LIST_PAGE, USD_PER_1000_READS, USD_PER_1000_WRITES
from drcore.backup.manifest import CONTENT_PREFIX, StoredBody
from drcore.state.backup_store import BackupStore, readable_version

LISTING_PAGE = KEYS_PER_LIST_PAGE  # to price a listing of the content prefix
# A LIST request is billed 12.5x a HEAD and takes longer than a concurrent batch of requests, so one listing
# page is worth this many unknown keys.
PROBES_PER_LISTING_PAGE = int(USD_PER_1000_WRITES / USD_PER_1000_READS)

# A stored body, or None when only its presence is known (a base written before bodies were recorded).
Known = Mapping[str, StoredBody | None]


class StoredContent:
    """`known`: content keys already known to be stored (the base's), with their bodies as recorded. `stored`: about
    how many bodies the store holds, which prices a listing of them (default: as many as `known`; a fanned-out
    snapshot's shard knows its slice of the base, but a listing would list the whole base's). `listing` False:
    never list, every unknown key is copied conditionally (a first snapshot's shard: its bodies are nearly all
    new, and what a listing finds is the other shards' bodies, stored meanwhile)."""

    def __init__(self, store: BackupStore, known: Known, stored: int | None = None, listing: bool = True) -> None:
        self._store = store
        # Copies report what they stored from the pool's threads, and key ranges ask from theirs.
        self._lock = threading.RLock()
        self._known: dict[str, StoredBody | None] = dict(known)
        pages = -(-(len(known) if stored is None else stored) // LISTING_PAGE)
        self._listing_cost = PROBES_PER_LISTING_PAGE * max(1, pages)
        self._asked = 0  # unknown keys taken for missing so far, each a copy that may answer 412
        self._listed = not listing  # a listing is never made again, nor at all when not wanted

    def missing(self, keys: set[str]) -> set[str]:
        """The keys not known to be stored: to be copied, conditionally."""
        with self._lock:
            unknown = {key for key in keys if key not in self._known}
            if unknown and not self._listed and self._asked + len(unknown) > self._listing_cost:
                listed = {entry["Key"]: StoredBody(entry["ETag"], version_id=readable_version(entry.get("VersionId")))
                          for entry in self._store.current_versions(CONTENT_PREFIX)}
                self.add({key: body for key, body in listed.items() if key not in self._known})
                self._listed = True
                unknown = {key for key in unknown if key not in self._known}
            self._asked += len(unknown)
            return unknown

    def add(self, bodies: Known) -> None:
        with self._lock:
            for key, body in bodies.items():
                if self._known.get(key) is None:
                    self._known[key] = body

    def body(self, key: str) -> StoredBody | None:
        return self._known.get(key)
