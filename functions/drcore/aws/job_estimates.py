"""What a job of S3 requests costs at AWS's documented limits: its requests by kind, the bytes it copies,
its time, its price, and the invocations it runs as.

A restore plan reports it before anything changes (drcore.restore.bucket_plan.plan_estimate); the
benchmark's scale section models a bucket of 10 million objects with the same functions.

Documented, and used as such:
- S3 accepts at least 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second per partitioned
  prefix (S3 User Guide, "Best practices design patterns: optimizing Amazon S3 performance"); a listing
  page holds at most 1,000 keys. LIST requests are counted against the GET/HEAD rate.
- Request prices, S3 Standard in US East (N. Virginia), per 1,000 requests: PUT, COPY, POST and LIST
  $0.005; GET, HEAD and the others $0.0004; DELETE free. A multipart copy's parts are COPY requests.
- Lambda: an invocation runs at most 900 s; compute is $0.0000166667 per GB-second (x86).
- Step Functions (standard workflows): $0.025 per 1,000 state transitions; a Distributed Map runs at most
  10,000 child executions at once.

What the documents do not fix is an assumption (`Assumptions`), reported with every estimate: a small
request's round trip, a listing page's, a copy's throughput, the requests in flight, the prefixes the
keys spread over. The time is the longest of three bounds: the requests at the prefixes' documented rates,
the requests and bytes through the requests in flight, and the listing's pages one after another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from drcore.aws.s3_copy import DEFAULT_PART_SIZE, MAX_SINGLE_COPY, copy_requests
from drcore.core.config import (
    DEFAULT_FANOUT_MAX_CONCURRENCY,
    DEFAULT_FANOUT_SHARD_OBJECTS,
    DEFAULT_FANOUT_THRESHOLD_OBJECTS,
)

WRITES_PER_SECOND_PER_PREFIX = 3_500  # PUT, COPY, POST, DELETE
READS_PER_SECOND_PER_PREFIX = 5_500  # GET, HEAD (and LIST)
KEYS_PER_LIST_PAGE = 1_000
USD_PER_1000_WRITES = 0.005  # PUT, COPY, POST, LIST
USD_PER_1000_READS = 0.0004  # GET, HEAD, other requests
LAMBDA_MAX_SECONDS = 900
USD_PER_LAMBDA_GB_SECOND = 0.0000166667
USD_PER_1000_STATE_TRANSITIONS = 0.025
MAP_MAX_CONCURRENCY = 10_000
# A first snapshot's census (drcore.backup.snapshot_census) checkpoints every this many pages of key names.
CENSUS_CHECKPOINT_PAGES = 100
TRANSITIONS_PER_SHARD = 4  # a child execution's start, its worker task, a retry allowance, its end


@dataclass(frozen=True)
class Assumptions:
    """What an estimate assumes where no document gives a figure."""

    request_seconds: float = 0.1  # a small request's round trip (S3: 100-200 ms to first byte for small objects)
    list_page_seconds: float = 0.3  # one listing page of 1,000 keys
    copy_bytes_per_second: float = 100 * 1024**2  # one server-side copy request's throughput
    concurrency: int = 16  # requests in flight per invocation (the backup setting copy_concurrency)
    prefixes: int = 1  # partitioned prefixes the requests spread over (1: S3's least)
    invocation_seconds: float = LAMBDA_MAX_SECONDS - 60  # the work one invocation does before it hands over
    memory_gb: float = 1.0  # the function's memory: its compute is priced by it


@dataclass(frozen=True)
class FanOut:
    """How a big job is split: past `threshold_objects` into shards of `shard_objects` keys, at most
    `max_concurrency` of them at once (a Step Functions Distributed Map)."""

    threshold_objects: int = DEFAULT_FANOUT_THRESHOLD_OBJECTS
    shard_objects: int = DEFAULT_FANOUT_SHARD_OBJECTS
    max_concurrency: int = DEFAULT_FANOUT_MAX_CONCURRENCY

    def shards(self, objects: int) -> int:
        return 1 if objects <= self.threshold_objects else math.ceil(objects / self.shard_objects)

    def workers(self, objects: int) -> int:
        return min(self.shards(objects), self.max_concurrency, MAP_MAX_CONCURRENCY)


@dataclass(frozen=True)
class Copies:
    """Objects to copy, their bytes, and the write requests copying them takes (drcore.aws.s3_copy)."""

    objects: int = 0
    bytes: int = 0
    requests: int = 0

    @classmethod
    def of(cls, sizes: Iterable[int], multipart_threshold: int = MAX_SINGLE_COPY,
           part_size: int = DEFAULT_PART_SIZE) -> Copies:
        copies = cls()
        for size in sizes:
            copies = copies.plus(size, multipart_threshold, part_size)
        return copies

    def plus(self, size: int, multipart_threshold: int = MAX_SINGLE_COPY,
             part_size: int = DEFAULT_PART_SIZE) -> Copies:
        """These copies and one more, of `size` bytes: for a job counted as it streams past."""
        return Copies(self.objects + 1, self.bytes + size,
                      self.requests + copy_requests(size, multipart_threshold, part_size))

    @classmethod
    def alike(cls, objects: int, size: int) -> Copies:
        """`objects` copies of `size` bytes each (a model's mean size)."""
        return cls(objects, objects * size, objects * copy_requests(size))


@dataclass(frozen=True)
class Requests:
    lists: int = 0  # ListObjectVersions, ListObjectsV2 pages
    copies: int = 0  # CopyObject; a multipart copy's CreateMultipartUpload, UploadPartCopy, Complete
    puts: int = 0  # PutObject: manifests, checkpoints, records
    deletes: int = 0  # DeleteObject (a delete marker)
    heads: int = 0  # HeadObject, GetObjectTagging
    gets: int = 0  # GetObject: manifests, checkpoints

    def __add__(self, other: Requests) -> Requests:
        return Requests(**{name: value + getattr(other, name) for name, value in asdict(self).items()})

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    @property
    def writes(self) -> int:
        return self.copies + self.puts + self.deletes

    @property
    def reads(self) -> int:
        return self.lists + self.heads + self.gets

    @property
    def cost_usd(self) -> float:
        return ((self.lists + self.copies + self.puts) * USD_PER_1000_WRITES
                + (self.heads + self.gets) * USD_PER_1000_READS) / 1000


@dataclass(frozen=True)
class Estimate:
    requests: Requests
    bytes_copied: int
    seconds: float
    limited_by: str  # "prefix request rates" | "requests in flight" | "listing"; a census's time adds to it
    bounds: dict[str, float]  # each bound's seconds
    shards: int
    invocations: int
    cost_usd: float  # requests, the invocations' compute, and a fanned-out job's state transitions
    assumptions: Assumptions = field(default_factory=Assumptions)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": {**asdict(self.requests), "total": self.requests.total},
                "bytes_copied": self.bytes_copied, "seconds": round(self.seconds, 1), "limited_by": self.limited_by,
                "bounds": {name: round(seconds, 1) for name, seconds in self.bounds.items()},
                "shards": self.shards, "invocations": self.invocations, "cost_usd": round(self.cost_usd, 4),
                "assumptions": asdict(self.assumptions)}


def estimate(requests: Requests, bytes_copied: int, *, pages: int, ranges: int = 1, assumptions: Assumptions,
             fan_out: FanOut | None = None, objects: int = 0, counted_first: int = 0) -> Estimate:
    """The time and price of `requests` copying `bytes_copied`, listing `pages` in `ranges` listed at once. Run in
    one invocation after another, each with `assumptions.concurrency` requests in flight; or, with `fan_out`
    and past its threshold of `objects`, as shards (each listing its own keys) run `fan_out.workers` at once.
    `counted_first`: pages listed one after another before any of it, by invocations of their own (a first
    snapshot's census, drcore.backup.snapshot_census), which its time, invocations and price add up."""
    shards = fan_out.shards(objects) if fan_out else 1
    workers = fan_out.workers(objects) if fan_out else 1
    # Shards run in rounds of `workers`; each lists its own pages one after another (a job lists its ranges).
    sequential_pages = (math.ceil(pages / shards) * math.ceil(shards / workers) if shards > 1
                        else math.ceil(pages / max(ranges, 1)))
    bounds = {
        "prefix request rates": max(requests.writes / (WRITES_PER_SECOND_PER_PREFIX * assumptions.prefixes),
                                    requests.reads / (READS_PER_SECOND_PER_PREFIX * assumptions.prefixes)),
        "requests in flight": (((requests.total - requests.lists) * assumptions.request_seconds
                                + bytes_copied / assumptions.copy_bytes_per_second)
                               / (assumptions.concurrency * workers)),
        "listing": sequential_pages * assumptions.list_page_seconds,
    }
    limited_by = max(bounds, key=lambda name: bounds[name])
    seconds = bounds[limited_by]
    # A shard (or the one job) hands over to a new invocation when one runs out of time; a fanned-out job adds
    # the invocation that plans its shards and the one that merges their results.
    shard_seconds = seconds * workers / shards
    invocations = shards * max(1, math.ceil(shard_seconds / assumptions.invocation_seconds))
    invocations += 2 if shards > 1 else 0
    cost = (requests.cost_usd + workers * seconds * assumptions.memory_gb * USD_PER_LAMBDA_GB_SECOND
            + (shards * TRANSITIONS_PER_SHARD * USD_PER_1000_STATE_TRANSITIONS / 1000 if shards > 1 else 0.0))
    if counted_first:
        counting = counted_first * assumptions.list_page_seconds
        bounds["counted first"] = counting
        seconds += counting
        invocations += math.ceil(counting / assumptions.invocation_seconds) - 1  # its last one plans or snapshots
        census = Requests(lists=counted_first, puts=math.ceil(counted_first / CENSUS_CHECKPOINT_PAGES))
        requests += census
        cost += census.cost_usd + counting * assumptions.memory_gb * USD_PER_LAMBDA_GB_SECOND
    return Estimate(requests, bytes_copied, seconds, limited_by, bounds, shards, invocations, cost, assumptions)


def list_pages(objects: int, page_size: int = KEYS_PER_LIST_PAGE) -> int:
    """Pages listing `objects` keys (one for none)."""
    return max(1, math.ceil(objects / page_size))


def snapshot_estimate(*, objects: int, new: Copies, described: int, ranges: int = 1,
                      manifests_read: int = 0, assumptions: Assumptions = Assumptions(),
                      fan_out: FanOut | None = None, page_size: int = KEYS_PER_LIST_PAGE,
                      first: bool = False) -> Estimate:
    """A snapshot of a bucket of `objects`: its listing (in `ranges` listed at once, each range ending in a
    partial page), the `new` bodies it copies, the `described` versions whose content the store holds
    already (a HeadObject each), a checkpoint per page, the manifest, and the base's manifests read. A `first`
    snapshot with a `fan_out` counts the bucket's keys before anything else (its census)."""
    pages = list_pages(objects, page_size) + max(ranges, 1) - 1
    requests = Requests(lists=pages, copies=new.requests, heads=described, puts=pages + 1, gets=manifests_read)
    return estimate(requests, new.bytes, pages=pages, ranges=ranges, assumptions=assumptions, fan_out=fan_out,
                    objects=objects, counted_first=list_pages(objects) if first and fan_out else 0)


# What an apply reads and writes in the backup store besides its changes: the safety snapshot's id record and
# manifest read back, the desired state's manifests, the records of what it wrote, listings of its prefixes.
APPLY_BOOKKEEPING = Requests(lists=3, puts=2, gets=2)


def restore_estimate(*, target_objects: int, copies: Copies, removals: int, compared: int, safety_copies: Copies,
                     batch_size: int, manifests_read: int = 1, ranges: int = 1,
                     assumptions: Assumptions = Assumptions(), fan_out: FanOut | None = None) -> Estimate:
    """Applying a restore plan: a safety snapshot of the target (`target_objects` listed in `ranges`,
    `safety_copies` of the bodies the store does not hold yet, its base's manifests read), the diff's
    comparisons (`compared` HeadObjects), the `copies` and `removals` with a record per batch, and the
    verification: the target listed again, every object that is not the restore point's version read back, and
    the headers of the stored content it was copied from (one HeadObject each, at most)."""
    safety = snapshot_estimate(objects=target_objects, new=safety_copies, described=0, ranges=ranges,
                               manifests_read=manifests_read, assumptions=assumptions)
    changes = copies.objects + removals
    target_pages = list_pages(target_objects + copies.objects)
    apply = APPLY_BOOKKEEPING + Requests(copies=copies.requests, deletes=removals, heads=compared,
                                         puts=math.ceil(changes / batch_size), gets=manifests_read)
    verify = Requests(lists=target_pages, heads=2 * copies.objects + compared)
    requests = safety.requests + apply + verify
    pages = safety.requests.lists + target_pages
    return estimate(requests, safety.bytes_copied + copies.bytes, pages=pages, assumptions=assumptions,
                    fan_out=fan_out, objects=max(target_objects, copies.objects + compared))
