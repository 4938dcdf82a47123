"""Job estimates at S3's documented limits: requests, bytes, time, price, shards and invocations."""

from __future__ import annotations

import math

import pytest

from drcore.aws.job_estimates import (
    LAMBDA_MAX_SECONDS,
    USD_PER_1000_READS,
    USD_PER_1000_WRITES,
    WRITES_PER_SECOND_PER_PREFIX,
    Assumptions,
    Copies,
    FanOut,
    Requests,
    estimate,
    restore_estimate,
    snapshot_estimate,
)
from drcore.aws.s3_copy import DEFAULT_PART_SIZE, MAX_SINGLE_COPY

GiB = 1024**3


def test_requests_are_priced_by_kind_and_deletes_are_free() -> None:
    requests = Requests(lists=10, copies=1000, puts=5, deletes=400, heads=2000, gets=3)
    assert requests.total == 3418 and requests.writes == 1405 and requests.reads == 2013
    assert requests.cost_usd == pytest.approx((10 + 1000 + 5) * USD_PER_1000_WRITES / 1000
                                              + (2000 + 3) * USD_PER_1000_READS / 1000)


def test_a_copy_over_5_gb_counts_its_multipart_requests_as_the_copier_makes_them() -> None:
    # Given one small object and one of 6 GiB (over CopyObject's 5 GB: parts of 512 MiB)
    copies = Copies.of([1024, 6 * GiB])
    # Then the big one costs its create, twelve parts and completion
    assert copies == Copies(objects=2, bytes=1024 + 6 * GiB, requests=1 + 2 + math.ceil(6 * GiB / DEFAULT_PART_SIZE))
    assert Copies.alike(3, MAX_SINGLE_COPY) == Copies(3, 3 * MAX_SINGLE_COPY, 3)


def test_a_snapshot_of_an_unchanged_bucket_costs_its_listing_checkpoints_and_manifest() -> None:
    # Given 10,000 unchanged objects listed in 8 ranges
    cost = snapshot_estimate(objects=10_000, new=Copies(), described=0, ranges=8, manifests_read=2)
    # Then it lists 10 pages and the ranges' partial last pages, checkpoints each page, writes one manifest
    assert cost.requests == Requests(lists=17, puts=18, gets=2)
    # and its time is its listing, 17 pages over 8 ranges, 3 pages one after another
    assert cost.limited_by == "listing" and cost.seconds == pytest.approx(3 * Assumptions().list_page_seconds)
    assert cost.shards == 1 and cost.invocations == 1


def test_the_time_is_the_slowest_bound_and_the_prefix_rate_bounds_many_requests_on_one_prefix() -> None:
    many = Requests(copies=1_000_000)
    # With ample requests in flight on one prefix, S3's 3,500 writes a second is the limit
    ample = Assumptions(concurrency=1000, request_seconds=0.01, prefixes=1)
    one_prefix = estimate(many, 0, pages=1, assumptions=ample)
    assert one_prefix.limited_by == "prefix request rates"
    assert one_prefix.seconds == pytest.approx(1_000_000 / WRITES_PER_SECOND_PER_PREFIX)
    # Spread over a hundred prefixes, the requests in flight are the limit again
    spread = estimate(many, 0, pages=1, assumptions=Assumptions(concurrency=1000, request_seconds=0.01, prefixes=100))
    assert spread.limited_by == "requests in flight" and spread.seconds == pytest.approx(10.0)
    # and the invocations needed follow the time: one per 840 s of work
    assert one_prefix.invocations == math.ceil(one_prefix.seconds / (LAMBDA_MAX_SECONDS - 60))


def test_a_job_past_the_fan_out_threshold_runs_as_shards_with_planning_and_merge_invocations() -> None:
    # Given keys spread over enough prefixes that S3's rates are not the limit
    fan_out = FanOut(threshold_objects=100_000, shard_objects=10_000, max_concurrency=100)
    spread = Assumptions(prefixes=100)
    small = snapshot_estimate(objects=100_000, new=Copies.alike(100_000, 1024), described=0, fan_out=fan_out,
                              assumptions=spread)
    big = snapshot_estimate(objects=1_000_000, new=Copies.alike(1_000_000, 1024), described=0, fan_out=fan_out,
                            assumptions=spread)
    alone = snapshot_estimate(objects=1_000_000, new=Copies.alike(1_000_000, 1024), described=0, assumptions=spread)
    one_prefix = snapshot_estimate(objects=1_000_000, new=Copies.alike(1_000_000, 1024), described=0, fan_out=fan_out)
    # Then a job at the threshold runs alone, and one past it as 100 shards plus the planner and the merge
    assert small.shards == 1 and big.shards == 100 and big.invocations == 102
    # and the shards, 100 at once, take a hundredth of the time one invocation after another would
    assert big.seconds == pytest.approx(alone.seconds / 100)
    assert alone.invocations == math.ceil(alone.seconds / (LAMBDA_MAX_SECONDS - 60))
    # while on one prefix the shards are held to S3's 3,500 writes a second
    assert one_prefix.limited_by == "prefix request rates" and one_prefix.seconds > 4 * big.seconds


def test_a_restore_estimate_adds_its_safety_snapshot_its_changes_and_its_verification() -> None:
    cost = restore_estimate(target_objects=2_500, copies=Copies.alike(100, 2048), removals=30, compared=20,
                            safety_copies=Copies.alike(50, 1024), batch_size=512, manifests_read=1)
    assert cost.requests.copies == 150 and cost.requests.deletes == 30
    assert cost.bytes_copied == 100 * 2048 + 50 * 1024
    # the safety snapshot's 3 pages, then the verification's 3 (the target listed with what was copied)
    assert cost.requests.lists - 3 == 3 + 3
    assert cost.requests.heads == 20 + 2 * 100 + 20
