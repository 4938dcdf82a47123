"""Writes paced and spread by S3 prefix: a SlowDown slows its own prefix, not the job."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from drcore.aws.errors import BASE_BACKOFF_SECONDS, MAX_ATTEMPTS
from drcore.aws.prefix_pacing import PrefixPacer, prefix_of, spread_over_prefixes
from drcore.aws.s3_copy import CopySource, S3Copier
from tests.s3_gaps import hook, s3_answers
from tests.support import data_and_backup_buckets

DATA = "apilados-production-data"
STORE = "apilados-dr-backups"


def slow_down() -> ClientError:
    return ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                        "ResponseMetadata": {"HTTPStatusCode": 503}}, "CopyObject")


def answering(*outcomes: Exception | None) -> Callable[[], str]:
    """A request that raises each exception given, in turn, and answers "done" for None (and after them)."""
    remaining = list(outcomes)

    def request() -> str:
        outcome = remaining.pop(0) if remaining else None
        if outcome is not None:
            raise outcome
        return "done"
    return request


class FrozenClock:
    """A monotonic clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("key", "prefix"), [
    ("content/etag/9f86d081884c7d65-120", "content/etag/9"),
    ("uploads/2026/11/records-001.csv", "uploads/2026/11/r"),
    ("top-level.csv", "t"),
    ("folder/", "folder/"),
])
def test_a_keys_prefix_is_its_folder_and_the_first_character_after_it(key: str, prefix: str) -> None:
    assert prefix_of(key) == prefix


def test_work_is_spread_round_robin_over_prefixes_keeping_each_prefixs_order() -> None:
    # Given keys sorted as a listing gives them: three under one prefix, two under another, one alone
    keys = ["a/x1", "a/x2", "a/x3", "b/y1", "b/y2", "c/z1"]
    # When they are spread, Then each round takes one key of every prefix that has one left
    assert spread_over_prefixes(keys, str) == ["a/x1", "b/y1", "c/z1", "a/x2", "b/y2", "a/x3"]


def test_a_slowdown_pauses_the_other_requests_to_its_prefix_and_no_other_prefix() -> None:
    # Given a job's pacer, and a write to prefix content/etag/a refused once with SlowDown
    clock = FrozenClock()
    pacer = PrefixPacer(sleep=clock.sleep, clock=lambda: clock.now)
    retry_pauses: list[float] = []
    assert pacer.call("content/etag/a1-5", answering(slow_down()), sleep=retry_pauses.append) == "done"
    assert len(retry_pauses) == 1 and 0 < retry_pauses[0] <= BASE_BACKOFF_SECONDS
    # When (the clock not having moved) a write to another prefix is made, Then it does not wait
    pacer.call("content/etag/b1-5", answering())
    assert clock.sleeps == []
    # When a write to the slowed prefix is made, Then it waits out the prefix's pause first
    pacer.call("content/etag/a2-5", answering())
    assert clock.sleeps == [pytest.approx(retry_pauses[0])]
    # and once waited, the next one to it goes at once
    pacer.call("content/etag/a3-5", answering())
    assert len(clock.sleeps) == 1


def test_a_prefixs_pause_grows_with_slowdowns_in_a_row_and_shrinks_with_successes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given pauses drawn at their cap (the jitter taken out), and a prefix refused three times in a row
    monkeypatch.setattr("drcore.aws.prefix_pacing.full_jitter", lambda level: BASE_BACKOFF_SECONDS * 2 ** (level - 1))
    pacer = PrefixPacer(sleep=lambda _: None)
    pauses: list[float] = []
    pacer.call("uploads/r1.csv", answering(slow_down(), slow_down(), slow_down()), sleep=pauses.append)
    # Then each pause doubled
    assert pauses == [BASE_BACKOFF_SECONDS, 2 * BASE_BACKOFF_SECONDS, 4 * BASE_BACKOFF_SECONDS]
    # and the success worked one off: the prefix's next SlowDown pauses as long as the last one did
    pacer.call("uploads/r2.csv", answering(slow_down()), sleep=pauses.append)
    assert pauses[-1] == 4 * BASE_BACKOFF_SECONDS
    # while another prefix's first SlowDown pauses the least
    pacer.call("exports/e1.csv", answering(slow_down()), sleep=pauses.append)
    assert pauses[-1] == BASE_BACKOFF_SECONDS
    # and successes bring the slowed prefix back to no pause at all
    for n in range(3):
        pacer.call(f"uploads/r{n}-more.csv", answering())
    assert pacer.slowdowns("uploads/r9.csv") == 0


def test_a_prefix_that_never_stops_refusing_raises_after_the_bounded_attempts() -> None:
    pacer = PrefixPacer(sleep=lambda _: None)
    with pytest.raises(ClientError, match="SlowDown"):
        pacer.call("uploads/r1.csv", answering(*[slow_down()] * MAX_ATTEMPTS), sleep=lambda _: None)


def test_errors_other_than_throttling_are_not_retried_and_leave_the_prefix_unslowed() -> None:
    pacer = PrefixPacer(sleep=lambda _: None)
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "CopyObject")
    with pytest.raises(ClientError, match="AccessDenied"):
        pacer.call("uploads/r1.csv", answering(denied), sleep=lambda _: pytest.fail("retried"))
    assert pacer.slowdowns("uploads/r1.csv") == 0


# Through the copier -----------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with data_and_backup_buckets(DATA, STORE) as client:
        yield client


def test_the_copiers_writes_to_a_slowed_prefix_wait_and_those_to_other_prefixes_do_not(s3: Any) -> None:
    # Given three objects, and S3 refusing the first copy into content/etag/a... once with SlowDown
    sources = {}
    for name in ("one", "two", "three"):
        written = s3.put_object(Bucket=DATA, Key=f"uploads/{name}.csv", Body=name.encode())
        sources[name] = CopySource(DATA, f"uploads/{name}.csv", written["VersionId"], written["ETag"])
    hook(s3, "CopyObject", s3_answers("SlowDown", 503, times=1, when=lambda params: params["Key"].startswith(
        "content/etag/a")))
    clock = FrozenClock()
    retry_pauses: list[float] = []
    copier = S3Copier(s3, sleep=retry_pauses.append, pacer=PrefixPacer(sleep=clock.sleep, clock=lambda: clock.now))
    # When one object is copied into the slowed prefix, then one into another prefix, then one more into the first
    copier.copy(sources["one"], STORE, "content/etag/a1-3", 3)
    copier.copy(sources["two"], STORE, "content/etag/b1-3", 3)
    assert clock.sleeps == []
    copier.copy(sources["three"], STORE, "content/etag/a2-5", 5)
    # Then only the later copy into the slowed prefix waited, the pause the refused one was given
    assert len(retry_pauses) == 1 and clock.sleeps == [pytest.approx(retry_pauses[0])]
    # and every copy is whole
    for key, body in (("content/etag/a1-3", b"one"), ("content/etag/b1-3", b"two"), ("content/etag/a2-5", b"three")):
        assert s3.get_object(Bucket=STORE, Key=key)["Body"].read() == body
