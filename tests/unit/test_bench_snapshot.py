"""The snapshot benchmark's section (embedded.bench), run small: both sides measured on one embedded server, and the
floor any snapshot that lists the bucket pays on it (the bucket listed alone, page after page, by our S3 client)."""

from __future__ import annotations

from embedded.bench import _snapshot_goals, bench_snapshot


def test_the_snapshot_section_measures_both_sides_and_the_listing_floor() -> None:
    # When the section runs over a bucket of 1,500 objects (two listing pages)
    section = bench_snapshot(1_500)
    ours, seed, floor = section["ours"], section["seed"], section["listing_floor"]
    # Then each side's second snapshot copied what each copies: ours the 1% changed, the runbook's sync everything
    assert ours["second"]["objects_copied"] == 15 and seed["second"]["objects_copied"] == 1_500
    # And the floor is the bucket's listing alone: its two pages, and no other request
    assert floor["requests"] == 2 and floor["seconds"] > 0
    # And the report says how much faster than the seed's second a listing snapshot can be on this endpoint
    bound = seed["second"]["seconds"] / floor["seconds"]
    assert f"at most {bound:.1f}x faster than the seed's second" in _snapshot_goals(section)[-1]
