"""What diverged between a replica and its primary since a failover: the pure part, without AWS calls.

During a failover the secondary region writes to the replica bucket, and the primary bucket may still be
written (a primary that was not wholly down). After the failover time `since`:

- The replica's own writes are its versions that are not replicas (S3's ReplicationStatus is not `REPLICA`:
  the caller asks HeadObject of each version after `since`, `replica_written`) and its delete markers that
  did not come from the primary (S3 reports no replication status of a delete marker; a replicated one keeps
  the primary's version id, so a marker whose version id the primary does not hold was written here).
- Each key the replica wrote is wanted in the primary as the replica's newest own write of it: that version's
  content and headers, or (a delete marker) no current version.
- A conflict is such a key that the primary also changed after `since` without the replica having seen
  it: a version or delete marker of the primary after that time (not one the failback wrote itself: `own`)
  that never reached the replica, or that is not older than the replica's write.

Replicas keep the primary's last-modified time, so a replication that lands late is never taken for a change
after `since`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from drcore.restore.bucket_diff import ListedVersion, Written


def after(listing: Iterable[ListedVersion], since: datetime) -> list[ListedVersion]:
    return [item for item in listing if item.last_modified > since]


def status_needed(replica_listing: Iterable[ListedVersion], since: datetime) -> list[ListedVersion]:
    """The replica's object versions after `since` whose replication status decides whether they are its own."""
    return [item for item in after(replica_listing, since) if not item.delete_marker]


def version_ids(listing: Iterable[ListedVersion]) -> dict[str, set[str]]:
    """Every version id (delete markers too) of each key."""
    ids: dict[str, set[str]] = {}
    for item in listing:
        ids.setdefault(item.key, set()).add(item.version_id)
    return ids


def replica_writes(replica_listing: Iterable[ListedVersion], replica_written: set[tuple[str, str]],
                   primary_listing: Iterable[ListedVersion], since: datetime,
                   until: datetime | None = None) -> dict[str, ListedVersion]:
    """The replica's newest own write of each key it wrote after `since` (and not after `until`, when given).
    `replica_written`: the (key, version id) of its object versions after `since` that are not replicas."""
    primary_ids = version_ids(primary_listing)
    newest: dict[str, ListedVersion] = {}
    for item in after(replica_listing, since):
        if until is not None and item.last_modified > until:
            continue
        own = (item.version_id not in primary_ids.get(item.key, set()) if item.delete_marker
               else (item.key, item.version_id) in replica_written)
        if not own:
            continue
        seen = newest.get(item.key)
        # Listing times have one-second resolution: on a tie the listing's IsLatest decides, then a version
        # wins over a delete marker (keeping data, never hiding it, when in doubt).
        if seen is None or ((item.last_modified, item.is_latest, not item.delete_marker)
                            > (seen.last_modified, seen.is_latest, not seen.delete_marker)):
            newest[item.key] = item
    return newest


def primary_changed(primary_listing: Iterable[ListedVersion], since: datetime, own: Written) -> set[str]:
    """Keys the primary changed after `since`, other than by the failback's own writes."""
    return {item.key for item in after(primary_listing, since)
            if (item.version_id, item.etag) not in own.get(item.key, set())}


def conflicts(wanted: Mapping[str, ListedVersion], primary_listing: Iterable[ListedVersion],
              replica_listing: Iterable[ListedVersion], since: datetime, own: Written) -> set[str]:
    """The keys of `wanted` the primary changed after `since` in a way the replica's write did not see: a
    version (or delete marker) of the primary that never reached the replica, or that is not older than the
    replica's write. A primary write the replica held before writing over it is no conflict."""
    replica_ids = version_ids(replica_listing)
    found: set[str] = set()
    for item in after(primary_listing, since):
        write = wanted.get(item.key)
        if write is None or (item.version_id, item.etag) in own.get(item.key, set()):
            continue
        if item.version_id not in replica_ids.get(item.key, set()) or item.last_modified >= write.last_modified:
            found.add(item.key)
    return found


def same_body_listed(wanted: ListedVersion, current: ListedVersion) -> bool:
    """The same body as far as a listing tells (size and ETag): a change of the headers alone."""
    return wanted.size == current.size and wanted.etag == current.etag


def kind_of(wanted: ListedVersion, current: Mapping[str, ListedVersion]) -> str:
    """created, changed, metadata or deleted: what the replica's write does to the primary's current state."""
    if wanted.delete_marker:
        return "deleted"
    have = current.get(wanted.key)
    if have is None:
        return "created"
    return "metadata" if same_body_listed(wanted, have) else "changed"
