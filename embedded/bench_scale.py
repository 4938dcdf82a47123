"""The benchmark's scale section: a bucket of 10 million objects, modelled, not run.

Nothing here is measured: the figures are what the planning code (drcore.aws.job_estimates, the functions a
restore plan reports its estimate with) gives for a snapshot and a full restore of such a bucket at S3's
documented limits, with its assumptions written next to them. Each job is modelled two ways: in one
invocation after another (how the functions run any job today), and fanned out into shards run at once
(the Distributed Map of issue 13's item 3, with the FanOut defaults; not built yet).
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


def _modelled(job: Any) -> dict[str, Any]:
    def both(**options: Any) -> dict[str, Estimate]:
        return {"one_invocation_after_another": job(**options), "fanned_out": job(**options, fan_out=FanOut())}
    return {way: figure.to_dict() for way, figure in both().items()}


def scale_model(objects: int = OBJECTS, mean_size: int = MEAN_SIZE) -> dict[str, Any]:
    assumptions = Assumptions(prefixes=PREFIXES)
    changed = int(objects * CHANGED)
    return {
        "objects": objects, "mean_size": mean_size, "changed_between_snapshots": changed,
        "fan_out": asdict(FanOut()), "fan_out_built": False,
        "first_snapshot": _modelled(lambda **options: snapshot_estimate(
            objects=objects, new=Copies.alike(objects, mean_size), described=0, assumptions=assumptions,
            **options)),
        "second_snapshot": _modelled(lambda **options: snapshot_estimate(
            objects=objects, new=Copies.alike(changed, mean_size), described=0, ranges=LISTING_RANGES,
            manifests_read=1, assumptions=assumptions, **options)),
        # Into an empty bucket (the data lost): nothing to compare, remove or keep safe.
        "full_restore": _modelled(lambda **options: restore_estimate(
            target_objects=0, copies=Copies.alike(objects, mean_size), removals=0, compared=0,
            safety_copies=Copies(), batch_size=BATCH_SIZE, assumptions=assumptions, **options)),
    }


def scale_table(scale: dict[str, Any]) -> str:
    rows = [(f"{scale['objects']:,} objects of {scale['mean_size'] // 1024} KiB (a model, at S3's documented limits; "
            f"fan-out built: {scale['fan_out_built']})"),
            (f"{'job':<16} {'way':<28} {'requests':>12} {'GiB':>8} {'hours':>7} {'limited by':<22} {'shards':>6} "
            f"{'invocations':>11} {'USD':>9}")]
    for job in ("first_snapshot", "second_snapshot", "full_restore"):
        for way, figure in scale[job].items():
            rows.append(f"{job:<16} {way:<28} {figure['requests']['total']:>12,} "
                        f"{figure['bytes_copied'] / 1024**3:>8.1f} {figure['seconds'] / 3600:>7.2f} "
                        f"{figure['limited_by']:<22} {figure['shards']:>6} {figure['invocations']:>11,} "
                        f"{figure['cost_usd']:>9.2f}")
    return "\n".join(rows)
