"""A random sample drawn from a stream in one pass, holding only the sample: what the checks that read a snapshot
a line at a time (drcore.backup.content_check, drcore.restore.validation_data) choose what they read back with."""

from __future__ import annotations

import hashlib
import heapq
import random
from typing import Generic, TypeVar

T = TypeVar("T")


class StreamSample(Generic[T]):
    """Up to `size` of the distinct names offered, each with the first item offered under it, chosen uniformly at
    random among the distinct names: the `size` whose hash, keyed by a salt drawn from `chooser`, is smallest (a
    bottom-k sketch). A name offered again hashes the same, so it counts once, and nothing but the sample is held.
    With `count_distinct`, the distinct names are counted too, by their 64-bit hashes (about 100 bytes each held, as
    the bench measures; two names sharing one, about one chance in 2^64 / n, are counted once)."""

    def __init__(self, size: int, chooser: random.Random, *, count_distinct: bool = False) -> None:
        self._size = size
        self._salt = chooser.getrandbits(64).to_bytes(8, "big")
        self._heap: list[tuple[int, str, T]] = []  # (-rank, name, item): the largest rank kept is on top
        self._names: set[str] = set()
        self._ranks: set[int] | None = set() if count_distinct else None

    def offer(self, name: str, item: T) -> None:
        rank = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8, key=self._salt).digest(), "big")
        if self._ranks is not None:
            self._ranks.add(rank)
        if name in self._names or self._size <= 0:
            return
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, (-rank, name, item))
            self._names.add(name)
        elif rank < -self._heap[0][0]:
            _, dropped, _ = heapq.heapreplace(self._heap, (-rank, name, item))
            self._names.discard(dropped)
            self._names.add(name)

    def chosen(self) -> dict[str, T]:
        """The sample, by name, in name order."""
        return {name: item for _, name, item in sorted(self._heap, key=lambda held: held[1])}

    @property
    def distinct(self) -> int:
        if self._ranks is None:
            raise ValueError("this sample does not count the distinct names (count_distinct=False)")
        return len(self._ranks)
