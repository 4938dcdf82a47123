"""S3's request rate is a limit per partitioned prefix: a 503 SlowDown says one prefix is saturated, not
the bucket. Writes are paced, and spread, by prefix.

`PrefixPacer.call(key, request)` retries throttling as every request does (drcore.aws.errors.retrying),
and more: a SlowDown for a key makes every request of the job to the same prefix wait out the pause,
not only the request that was refused, while requests to other prefixes go on. The pause grows with the
prefix's SlowDowns in a row (exponential, full jitter: drcore.aws.errors.full_jitter) and shrinks again
with its successes, so a job settles near the rate its prefixes accept.

`prefix_of(key)`: S3 partitions a bucket by key prefix as load grows and does not say where. We take the
key's folder (up to its last "/") and the first character after it: the backup store's content keys
(`content/etag/<md5 hex>-<size>`) fall into 16 prefixes that way, and a data bucket's keys into their
folders and initials.

`spread_over_prefixes(items, key_of)` orders work round-robin over prefixes, so that a pool's concurrent
requests go to several prefixes instead of all to one (a listing, sorted by key, puts one prefix's keys
together).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from botocore.exceptions import ClientError

from drcore.aws.errors import full_jitter, retrying

T = TypeVar("T")
Item = TypeVar("Item")


def prefix_of(key: str) -> str:
    folder, _, name = key.rpartition("/")
    return f"{folder}/{name[:1]}" if folder else name[:1]


def spread_over_prefixes(items: Iterable[Item], key_of: Callable[[Item], str]) -> list[Item]:
    """`items` round-robin over their keys' prefixes (the first of each prefix, then the second of each, ...),
    each prefix's items in their own order."""
    taken: dict[str, int] = {}
    ranked: list[tuple[int, int, Item]] = []
    for order, item in enumerate(items):
        prefix = prefix_of(key_of(item))
        taken[prefix] = taken.get(prefix, 0) + 1
        ranked.append((taken[prefix], order, item))
    return [item for _, _, item in sorted(ranked, key=lambda rank: rank[:2])]


class PrefixPacer:
    """Paces one job's requests per prefix. Thread-safe: share one between all of a job's threads.
    `sleep` is where a request waits for its prefix; `clock` is monotonic seconds."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._resume_at: dict[str, float] = {}
        self._slowdowns: dict[str, int] = {}  # SlowDowns of the prefix not yet worked off by successes

    def call(self, key: str, request: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
        """`request()` for `key`, after any pause its prefix is in; throttling retried after `sleep` of the
        prefix's pause, which every other request to the prefix waits out too."""
        prefix = prefix_of(key)
        retried = False

        def paced() -> T:
            if not retried:  # a retry has waited its own pause already (retrying's sleep)
                self._wait(prefix)
            return request()

        def slowed(_: ClientError, attempt: int, pause: float) -> None:
            nonlocal retried
            retried = True
            with self._lock:
                self._resume_at[prefix] = max(self._resume_at.get(prefix, 0.0), self._clock() + pause)

        def backoff(_: int) -> float:
            with self._lock:
                self._slowdowns[prefix] = self._slowdowns.get(prefix, 0) + 1
                return full_jitter(self._slowdowns[prefix])

        result = retrying(paced, sleep=sleep, backoff=backoff, on_retry=slowed)
        with self._lock:
            if self._slowdowns.get(prefix):
                self._slowdowns[prefix] -= 1
        return result

    def slowdowns(self, key: str) -> int:
        """SlowDowns of `key`'s prefix not yet worked off."""
        with self._lock:
            return self._slowdowns.get(prefix_of(key), 0)

    def _wait(self, prefix: str) -> None:
        with self._lock:
            pause = self._resume_at.get(prefix, 0.0) - self._clock()
        if pause > 0:
            self._sleep(pause)
