"""The benchmark's scale section: a bucket of 10 million objects, modelled, not run.

Nothing here is measured: the figures are what the planning code (drcore.aws.job_estimates, the functions a
restore plan reports its estimate with) gives for a snapshot and a full restore of such a bucket at S3's
documented limits, with its assumptions written next to them. Each job is modelled two ways: in one
invocation after another, and fanned out into shards run at once (a Step Functions Distributed Map, with
the FanOut defaults). `built` says which way the functions run that job today: all three fan out, a
snapshot with a base cut at its base's keys (drcore.backup.snapshot_shards), a first one at its census's
(drcore.backup.snapshot_census: the key names listed one page after another before the shards run), and a
restore past the threshold (drcore.restore.restore_shards).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drcore.aws.job_estimates import Assumptions, Copies, Estimate, FanOut, restore_estimate, snapshot_estimate
from drcore.backup.snapshot_checkpoints import LISTING_RANGES
from drcore.restore.bucket_restore import BATCH_SIZE

OBJECTS = 10_000_000
MEAN_SIZE = 256 * 1024  # a CSV upload
CHANGED = 0.01  # of the objects, between two snapshots
# The writes' prefixes: a snapshot's go to the content keys, which spread over 16 (drcore.aws.prefix_pacing);
# a restore's to the data keys, assumed spread as widely (S3 partitions a prefix only as load grows on it).
PREFIXES = 16


def _modelled(job: Any, fans_out: bool) -> dict[str, Any]:
    ways: dict[str, Estimate] = {"one_invocation_after_another": job(), "fanned_out": job(fan_out=FanOut())}
    return {way: {**figure.to_dict(), "built": (way == "fanned_out") == fans_out} for way, figure in ways.items()}


def scale_model(objects: int = OBJECTS, mean_size: int = MEAN_SIZE) -> dict[str, Any]:
    assumptions = Assumptions(prefixes=PREFIXES)
    changed = int(objects * CHANGED)
    return {
        "objects": objects, "mean_size": mean_size, "changed_between_snapshots": changed,
        "fan_out": asdict(FanOut()),
        "first_snapshot": _modelled(lambda **options: snapshot_estimate(
            objects=objects, new=Copies.alike(objects, mean_size), described=0, assumptions=assumptions,
            first=True, **options), fans_out=True),
        "second_snapshot": _modelled(lambda **options: snapshot_estimate(
            objects=objects, new=Copies.alike(changed, mean_size), described=0, ranges=LISTING_RANGES,
            manifests_read=1, assumptions=assumptions, **options), fans_out=True),
        # Into an empty bucket (the data lost): nothing to compare, remove or keep safe.
        "full_restore": _modelled(lambda **options: restore_estimate(
            target_objects=0, copies=Copies.alike(objects, mean_size), removals=0, compared=0,
            safety_copies=Copies(), batch_size=BATCH_SIZE, assumptions=assumptions, **options), fans_out=True),
    }


def scale_table(scale: dict[str, Any]) -> str:
    rows = [(f"{scale['objects']:,} objects of {scale['mean_size'] // 1024} KiB (a model, at S3's documented limits; "
            "* the way the functions run it today)"),
            (f"{'job':<16} {'way':<30} {'requests':>12} {'GiB':>8} {'hours':>7} {'limited by':<22} {'shards':>6} "
            f"{'invocations':>11} {'USD':>9}")]
    for job in ("first_snapshot", "second_snapshot", "full_restore"):
        for way, figure in scale[job].items():
            rows.append(f"{job:<16} {way + (' *' if figure['built'] else ''):<30} {figure['requests']['total']:>12,} "
                        f"{figure['bytes_copied'] / 1024**3:>8.1f} {figure['seconds'] / 3600:>7.2f} "
                        f"{figure['limited_by']:<22} {figure['shards']:>6} {figure['invocations']:>11,} "
                        f"{figure['cost_usd']:>9.2f}")
    return "\n".join(rows)
