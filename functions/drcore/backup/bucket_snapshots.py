"""Point-in-time snapshots of the data bucket: incremental, deduplicated by content, resumable.

A snapshot lists the bucket's current versions (ListObjectVersions, `IsLatest`) page by page and stores
each object's body once per content in the backup store (the content keys and the manifest format are
drcore.backup.manifest's).

A snapshot builds on the newest complete one before it (its base): an object listed as it is in the
base is carried over without a request, and the content the base references is known to be stored.
Other content is taken for missing and copied conditionally (a 412 means stored), or found by one
listing of the content prefix when that costs less (drcore.backup.stored_content). Stored content is
never copied again, so a snapshot of an unchanged bucket costs its listing and its manifest. Objects in
archive storage classes (or tiers) whose content is not stored are recorded (`archived: true`), not
copied.

Object metadata travels with the content: a new version whose content is not stored yet is copied with
S3's copy, which carries its content type, user metadata, kept headers and tags to the content object,
and its entry says so (`described_by_content`); no request describes it. Only a new version whose content
the store holds already (another object's, or an earlier version's: a change of metadata alone) is
described by a HeadObject, and GetObjectTagging where it has tags, and its entry records what they said.
A first snapshot thus costs its listing and one copy per distinct body.

Each new entry also records its stored body as the store holds it (drcore.backup.manifest): the ETag,
the SHA-256 S3 computed when this snapshot copied it (every copy asks for one) and the version S3 gave
the copy, or as the base recorded them, or as a 412's HeadObject or the listing found them.

The pages are listed in key ranges, several at once, each page listed, copied and described by
drcore.backup.snapshot_pages. After every page a checkpoint records the range's listing markers and that
page's manifest entries (drcore.backup.snapshot_checkpoints); an invocation given the snapshot's id
continues each range after its last checkpoint, with the same base. The manifest is written last.

A snapshot whose base is past the fan-out threshold is run as shards instead (drcore.backup.snapshot_shards):
each shard is a range snapshotted by `snapshot_shard` in invocations of its own, which a Step Functions
Distributed Map makes; continuing the snapshot merges them, or starts, redrives or waits on their execution.
A first snapshot, where the fan-out is configured, first counts the bucket's keys (drcore.backup.
snapshot_census), and fans out at the census's cuts when it counted more than the threshold.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from drcore.aws.prefix_pacing import PrefixPacer
from drcore.aws.s3_copy import DEFAULT_PART_SIZE, MAX_SINGLE_COPY, S3Copier
from drcore.aws.state_machines import REDRIVABLE, MapExecutions
from drcore.backup.manifest import (
    ManifestEntry,
    ManifestStream,
    SnapshotHeading,
    SnapshotManifest,
    locked_until,
    open_manifest,
    read_manifest,
    write_manifest,
)
from drcore.backup.retention import IN_PROGRESS_GRACE
from drcore.backup.snapshot_census import BucketCensus, read_census
from drcore.backup.snapshot_checkpoints import (
    LISTING_RANGES,
    Checkpoint,
    KeyRange,
    SnapshotBase,
    checkpoint_key,
    key_ranges,
    last_checkpoint,
    last_checkpoints,
    newest_complete_before,
    read_checkpoint,
    write_checkpoint,
)
from drcore.backup.snapshot_pages import ListedAhead, PageSnapshotter, SnapshotStats
from drcore.backup.snapshot_shards import (
    FanOutSettings,
    ShardPlan,
    progress_of,
    read_base_slice,
    read_shard_plan,
    write_census_shard_plan,
    write_shard_plan,
)
from drcore.backup.stored_content import StoredContent
from drcore.core.config import DEFAULT_FULL_MANIFEST_EVERY
from drcore.core.errors import ConcurrentUpdate, InvalidRequest
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.backup_store import (
    AlreadyWritten,
    BackupStore,
    Component,
    backup_time,
    manifest_key,
    new_backup_id,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

# Stop starting pages with less than this left: a page of copies plus its checkpoint must fit.
SAFETY_MARGIN_MS = 60_000


@dataclass(frozen=True)
class SnapshotProgress:
    backup_id: str
    finished: bool
    stats: dict[str, Any]
    fanned_out: bool = False  # its shards run in a Step Functions execution, which merges them when done
    # Another invocation chain is continuing it (a first snapshot's census): answered, nothing done.
    running_elsewhere: bool = False


@dataclass(frozen=True)
class ShardProgress:
    backup_id: str
    shard: int
    finished: bool
    stats: dict[str, Any]  # the shard's so far
    listed_here: int  # objects this invocation listed
    copied_here: int  # bytes this invocation copied


@dataclass
class _Range:
    """One key range's progress in this invocation."""

    number: int
    bounds: KeyRange
    markers: dict[str, str]  # to continue from; {} before its first page
    done: bool
    pages: int  # checkpointed
    stats: SnapshotStats

    @classmethod
    def resumed(cls, number: int, bounds: KeyRange, last: Checkpoint | None) -> _Range:
        if last is None:
            return cls(number, bounds, {}, False, 0, SnapshotStats())
        return cls(number, bounds, last["next"], not last["truncated"], last["page"], SnapshotStats(**last["stats"]))


@dataclass(frozen=True)
class _RangeWork:
    """What every range of one snapshot invocation shares."""

    backup_id: str
    ranges: tuple[KeyRange, ...] | None  # None: a shard's (its shard plan has them)
    base: SnapshotBase
    contents: StoredContent
    pool: ThreadPoolExecutor  # the copies and the listings ahead
    remaining_ms: Callable[[], int]
    stop: threading.Event
    pages_here: dict[tuple[int, int], list[ManifestEntry]]


class BucketSnapshotter:
    """Snapshots `source_bucket` into the backup store.

    `s3_client` reads the source bucket; copies are requests to the backup bucket made with the store's
    client, which must be allowed to read the source. Give both clients `max_pool_connections` of at
    least `concurrency`.
    """

    def __init__(
        self,
        s3_client: S3Client,
        store: BackupStore,
        source_bucket: str,
        *,
        concurrency: int = 16,
        clock: Clock = utc_now,
        multipart_threshold: int = MAX_SINGLE_COPY,
        part_size: int = DEFAULT_PART_SIZE,
        page_size: int = 1000,
        sleep: Callable[[float], None] = time.sleep,
        full_manifest_every: int = DEFAULT_FULL_MANIFEST_EVERY,
        listing_ranges: int = LISTING_RANGES,
        fan_out: tuple[FanOutSettings, MapExecutions] | None = None,
    ) -> None:
        self._s3 = s3_client
        self._store = store
        self._source = source_bucket
        self._concurrency = concurrency
        self._clock = clock
        self._page_size = page_size
        self._full_manifest_every = full_manifest_every
        self._listing_ranges = listing_ranges
        self._fan_out = fan_out
        self._census = BucketCensus(s3_client, store, source_bucket, page_size=page_size)
        # Waits for a prefix another copy was slowed on are not retries: they sleep outside the count.
        pacer = PrefixPacer(sleep=sleep)
        self._pages = PageSnapshotter(
            s3_client, store, source_bucket, page_size=page_size, sleep=sleep,
            copier=lambda back_off: S3Copier(store.s3, concurrency=concurrency, multipart_threshold=multipart_threshold,
                                             part_size=part_size, sleep=back_off, pacer=pacer))

    def snapshot(self, backup_id: str | None, remaining_ms: Callable[[], int], *,
                 then: dict[str, Any] | None = None) -> SnapshotProgress:
        """Start a snapshot (None) or continue one; call again with its id while `finished` is False.

        An id that has no checkpoints yet starts the snapshot under that id, so a caller that chooses the
        id up front (`new_backup_id`) can resume even a first invocation that crashed. A snapshot whose
        base was removed meanwhile cannot continue (SnapshotNotFound); retention keeps the base of a
        snapshot in progress for a day.

        `then`: the recovery function's request that its execution sends once the snapshot is merged, should this
        call fan it out (a restore's safety snapshot: the restore waits for it). Kept with the shard plan, so
        whichever invocation starts or redrives the execution gives it.
        """
        last: dict[int, Checkpoint] = {}
        backup_ids: list[str] | None = None
        self._pages.default_lock = self._store.default_retention()
        if backup_id is None:
            backup_id = new_backup_id(self._clock())
            # Listed once, for the fan-out still running and for the base.
            backup_ids = self._store.backup_ids(Component.S3, self._source)
            due = self._running_fan_out(backup_id, backup_ids)
            if due is not None:
                return due
        else:
            backup_time(backup_id)  # a malformed id fails here, before anything is read or written
            if self._store.exists(manifest_key(Component.S3, self._source, backup_id)):
                return SnapshotProgress(backup_id, True, open_manifest(self._store, self._source, backup_id).stats)
            plan = read_shard_plan(self._store, self._source, backup_id)
            if plan is not None:
                return self._continue_fan_out(plan)
            last = last_checkpoints(self._store, self._source, backup_id)
        any_last = next(iter(last.values()), None)
        if any_last is None:
            base_opened = newest_complete_before(self._store, self._source, backup_id, backup_ids)
            if self._fan_out and base_opened is not None and self._fan_out[0].wanted(base_opened.objects):
                return self._start_fan_out(write_shard_plan(self._store, self._source, backup_id, base_opened,
                                                            self._fan_out[0].shard_objects, then))
            base_manifest = base_opened.read() if base_opened is not None else None  # within the threshold: held
            if self._fan_out and base_manifest is None:
                census = self._census.count(backup_id, self._fan_out[0].shard_objects,
                                            lambda: remaining_ms() >= SAFETY_MARGIN_MS)
                if not census.done:
                    return SnapshotProgress(backup_id, False, {"census": census.progress()})
                if self._fan_out[0].wanted(census.objects):
                    return self._start_fan_out(write_census_shard_plan(self._store, self._source, backup_id, census,
                                                                       then))
            ranges = key_ranges(base_manifest, self._page_size, self._listing_ranges)
        else:  # the base the checkpoints refer to (retention keeps it while this snapshot runs), and their ranges
            base_id = any_last["base"]
            base_manifest = read_manifest(self._store, self._source, base_id) if base_id else None
            ranges = tuple(KeyRange(*bounds) for bounds in any_last.get("ranges", [[None, None]]))
        states = [_Range.resumed(number, bounds, last.get(number)) for number, bounds in enumerate(ranges)]
        base = SnapshotBase(base_manifest)
        contents = StoredContent(self._store, base_manifest.stored_bodies() if base_manifest else {})
        logger.info("snapshot running", extra={"bucket": self._source, "backup_id": backup_id, "base": base.backup_id,
                                               "ranges": len(ranges), "resumed": bool(last)})
        pages_here: dict[tuple[int, int], list[ManifestEntry]] = {}
        running = [state for state in states if not state.done]
        stop = threading.Event()  # set by a range that fails: the others stop after their page
        with ThreadPoolExecutor(self._concurrency) as pool, ThreadPoolExecutor(max(len(running), 1)) as listers:
            work = _RangeWork(backup_id, ranges, base, contents, pool, remaining_ms, stop, pages_here)
            outcomes = [listers.submit(self._snapshot_range, state, work) for state in running]
            ended, _ = wait(outcomes, return_when=FIRST_EXCEPTION)
            if any(outcome.exception() is not None for outcome in ended):
                stop.set()
            for outcome in outcomes:
                outcome.result()
        stats = SnapshotStats()
        for state in states:
            stats.add(state.stats)
        if not all(state.done for state in states):
            logger.info("snapshot paused", extra={"backup_id": backup_id, "pages": stats.pages})
            return SnapshotProgress(backup_id, False, asdict(stats))
        self._write_manifest(backup_id, self._all_entries(backup_id, states, pages_here, lambda _: base), stats,
                             base_manifest)
        logger.info("snapshot complete", extra={"backup_id": backup_id, "objects": stats.objects_listed,
                                                "copied": stats.objects_copied, "pages": stats.pages})
        return SnapshotProgress(backup_id, True, asdict(stats))

    def _snapshot_range(self, state: _Range, work: _RangeWork) -> None:
        """List one key range page by page, storing each page's new content and checkpointing it, until the
        range is done, time runs low, or another range failed."""
        ahead: ListedAhead | None = None
        while not state.done and not work.stop.is_set():
            if work.remaining_ms() < SAFETY_MARGIN_MS:
                return
            entries, positions, page_stats, following, ahead = self._pages.snapshot_page(
                state.markers, state.bounds, ahead, work.base, work.contents, work.pool)
            state.pages += 1
            state.stats.add(page_stats)
            state.markers, state.done = following or {}, following is None
            self._checkpoint(work, state, entries, positions)
            work.pages_here[(state.number, state.pages)] = entries

    # Fanned out (drcore.backup.snapshot_shards) ---------------------------------------------------

    def snapshot_shard(self, backup_id: str, number: int, remaining_ms: Callable[[], int]) -> ShardProgress:
        """Snapshot shard `number` of a fanned-out snapshot, from its last checkpoint, until it is done or time
        runs low: its key range, against its slice of the base, with the engine any range runs with."""
        backup_time(backup_id)
        plan = read_shard_plan(self._store, self._source, backup_id)
        if plan is None:
            raise InvalidRequest(f"snapshot {backup_id} of {self._source} has no shard plan: it is not fanned out")
        state = _Range.resumed(number, plan.shard(number),
                               last_checkpoint(self._store, self._source, backup_id, number))
        before = (state.stats.objects_listed, state.stats.bytes_copied)
        if not state.done:
            self._pages.default_lock = self._store.default_retention()
            base_slice = read_base_slice(self._store, self._source, plan, number)
            with ThreadPoolExecutor(self._concurrency) as pool:
                work = _RangeWork(backup_id, None, SnapshotBase(base_slice),
                                  StoredContent(self._store, base_slice.stored_bodies() if base_slice else {},
                                                plan.base_objects, listing=base_slice is not None),
                                  pool, remaining_ms, threading.Event(), {})
                self._snapshot_range(state, work)
        logger.info("snapshot shard", extra={"backup_id": backup_id, "shard": number, "finished": state.done,
                                             "pages": state.pages, "objects": state.stats.objects_listed})
        return ShardProgress(backup_id, number, state.done, asdict(state.stats),
                             state.stats.objects_listed - before[0], state.stats.bytes_copied - before[1])

    def _running_fan_out(self, new_id: str, backup_ids: list[str]) -> SnapshotProgress | None:
        """What is due for the newest snapshot before `new_id` when it is fanned out (or counting its keys to),
        unfinished and young enough to be running (retention keeps its base that long), instead of a new snapshot
        beside it, which would list and copy the same shards again: its fan-out continued (merged, started or
        redriven), or its census left to the invocations counting it."""
        if self._fan_out is None:
            return None
        earlier = [backup_id for backup_id in backup_ids if backup_id < new_id]
        if not earlier or backup_time(new_id) - backup_time(earlier[-1]) >= IN_PROGRESS_GRACE:
            return None
        if self._store.exists(manifest_key(Component.S3, self._source, earlier[-1])):
            return None
        plan = read_shard_plan(self._store, self._source, earlier[-1])
        if plan is not None:
            return self._continue_fan_out(plan)
        census = read_census(self._store, self._source, earlier[-1])
        if census is not None and not census.done:
            logger.info("a first snapshot is counting its keys", extra={"backup_id": earlier[-1]})
            return SnapshotProgress(earlier[-1], False, {"census": census.progress()}, running_elsewhere=True)
        return None

    def _start_fan_out(self, plan: ShardPlan) -> SnapshotProgress:
        assert self._fan_out is not None
        backup_id = plan.backup_id
        execution = self._fan_out[1].start(backup_id, plan.execution_input(self._source))
        logger.info("snapshot fanned out", extra={"backup_id": backup_id, "base": plan.base_id,
                                                  "shards": len(plan.ranges), "execution": execution})
        return SnapshotProgress(backup_id, False, {"shards": len(plan.ranges), "base": plan.base_id,
                                                   "execution": execution}, fanned_out=True)

    def _continue_fan_out(self, plan: ShardPlan) -> SnapshotProgress:
        """Merge the shards when all are done; else start their execution if it never started, redrive it if it
        failed (only its failed shards run again), or leave it running."""
        if self._fan_out is None:  # its shards' checkpoints are no snapshot a single invocation can continue
            raise InvalidRequest(f"snapshot {plan.backup_id} of {self._source} is fanned out, and this function has "
                                 "no fan-out state machine to continue it with (DR_SNAPSHOT_FANOUT_STATE_MACHINE)")
        _, executions = self._fan_out
        backup_id = plan.backup_id
        with ThreadPoolExecutor(self._concurrency) as pool:
            lasts = last_checkpoints(self._store, self._source, backup_id, pool)
        progress = progress_of(plan, lasts)
        if progress["shards_done"] == len(plan.ranges):
            states = [_Range.resumed(number, bounds, lasts[number]) for number, bounds in enumerate(plan.ranges)]
            return self._merge_shards(plan, states)
        execution = executions.state(backup_id)
        if execution is None:  # the invocation that planned it died before starting it
            executions.start(backup_id, plan.execution_input(self._source))
            execution = executions.state(backup_id)
        elif execution.status in REDRIVABLE:
            logger.warning("redriving a failed snapshot fan-out", extra={"backup_id": backup_id,
                                                                        "status": execution.status})
            execution = executions.redrive(backup_id)
        progress |= execution.to_dict() if execution else {}
        return SnapshotProgress(backup_id, False, progress, fanned_out=True)

    def _merge_shards(self, plan: ShardPlan, states: list[_Range]) -> SnapshotProgress:
        """Write the manifest of a fanned-out snapshot whose shards are all done, from their checkpoints: a shard at
        a time, each decoded against its slice of the base, beside the base as a stream. What is held is a shard's
        slice and the manifests, compressed, never the snapshot's entries."""
        base = open_manifest(self._store, self._source, plan.base_id) if plan.base_id else None
        self._pages.default_lock = self._store.default_retention()
        stats = SnapshotStats()
        for state in states:
            stats.add(state.stats)
        entries = self._all_entries(plan.backup_id, states, {},
                                    lambda number: SnapshotBase(read_base_slice(self._store, self._source, plan,
                                                                                number)))
        self._write_manifest(plan.backup_id, entries, stats, base)
        logger.info("snapshot shards merged", extra={"backup_id": plan.backup_id, "shards": len(states),
                                                     "objects": stats.objects_listed})
        return SnapshotProgress(plan.backup_id, True, asdict(stats))

    # Checkpoints and the manifest ----------------------------------------------------------------

    def _checkpoint(self, work: _RangeWork, state: _Range, entries: list[ManifestEntry],
                    positions: list[int | None]) -> None:
        checkpoint: Checkpoint = {
            "page": state.pages, "base": work.base.backup_id, "entries": work.base.encode(entries, positions),
            "stats": asdict(state.stats), "next": state.markers, "truncated": not state.done, "range": state.number}
        if work.ranges is None:
            checkpoint["sharded"] = True
        else:
            checkpoint["ranges"] = [[bounds.start_after, bounds.last] for bounds in work.ranges]
        try:
            write_checkpoint(self._store, self._source, work.backup_id, checkpoint)
        except AlreadyWritten as error:
            # Two invocations are running the same snapshot (an async event delivered twice): one goes on.
            raise ConcurrentUpdate(f"snapshot {work.backup_id} range {state.number} page {state.pages} was "
                                   "checkpointed by another invocation") from error
        logger.info("snapshot page", extra={
            "backup_id": work.backup_id, "range": state.number, "page": state.pages,
            "objects": state.stats.objects_listed, "copied": state.stats.objects_copied})

    def _all_entries(self, backup_id: str, states: list[_Range],
                     pages_here: dict[tuple[int, int], list[ManifestEntry]],
                     base_of: Callable[[int], SnapshotBase]) -> Iterator[ManifestEntry]:
        """Every range's entries, ranges and pages in order: the listing's key order, a page at a time. Pages this
        invocation listed are taken as listed; the others are read from their checkpoints, a range's at once (a
        merge of 10 million objects reads 10,000), and decoded against the base of their range (`base_of`, asked
        once per range: a shard's is its slice of the base)."""
        with ThreadPoolExecutor(self._concurrency) as pool:
            for state in states:
                base = base_of(state.number)
                earlier = [checkpoint_key(self._source, backup_id, page, state.number)
                           for page in range(1, state.pages + 1) if (state.number, page) not in pages_here]
                checkpointed = pool.map(lambda key: read_checkpoint(self._store, key)["entries"], earlier)
                for page in range(1, state.pages + 1):
                    entries = pages_here.get((state.number, page))
                    yield from entries if entries is not None else base.decode(next(checkpointed))

    def _write_manifest(self, backup_id: str, entries: Iterable[ManifestEntry], stats: SnapshotStats,
                        base: SnapshotManifest | ManifestStream | None) -> None:
        """Write the manifest: a delta on the base, unless the base's chain is `full_manifest_every` long."""
        if base is not None and base.depth + 1 >= self._full_manifest_every:
            base = None
        finished = self._clock()
        heading = SnapshotHeading(bucket=self._source, backup_id=backup_id, started_at=to_iso(backup_time(backup_id)),
                                  finished_at=to_iso(finished), stats=asdict(stats),
                                  locked_until=locked_until(finished, self._pages.default_lock))
        try:
            write_manifest(self._store, heading, entries, base)
        except AlreadyWritten:
            logger.info("snapshot finished by another invocation", extra={"backup_id": backup_id})
