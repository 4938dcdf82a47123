"""The failover benchmark's judge against the runbook's own failover-region.sh, run with the AWS CLI on the embedded
server: the faults the issue names must show as measured figures (so a judge that cannot see them fails here)."""

from __future__ import annotations

from datetime import UTC, datetime

from embedded.bench_failover import failover_world, seed_switch
from embedded.drill_region import (
    Buckets,
    Writes,
    environment_lost,
    function_environment,
    notifications_lost,
    processing_figures,
)
from embedded.sample_regions import AUDIT_NOTIFICATION_ID, SECONDARY_FUNCTION_ENVIRONMENT
from embedded.sample_system import SECONDARY_REGION
from embedded.world import REGION


def test_the_judge_measures_the_seed_failovers_faults() -> None:
    with failover_world() as (system, behaviour, workdir):
        buckets, name = Buckets(system), system.function_name
        secondary = system.clients["lambda_secondary"]
        before = buckets.configurations()
        # As written, both configuration calls fail to parse and the script still reports success.
        seed_switch(workdir).failover()
        assert function_environment(secondary, name) == SECONDARY_FUNCTION_ENVIRONMENT
        assert buckets.processing_regions() == [REGION]

        started = datetime.now(UTC)
        seed_switch(workdir, corrected=True).failover()
        after = buckets.configurations()
        # The secondary's whole environment replaced by two variables: every one it had is lost.
        assert environment_lost(SECONDARY_FUNCTION_ENVIRONMENT, function_environment(secondary, name)) == \
            sorted(SECONDARY_FUNCTION_ENVIRONMENT)
        # The replica's notification configuration replaced: the audit entry is gone; the data bucket's untouched.
        [lost] = notifications_lost(before[SECONDARY_REGION], after[SECONDARY_REGION], name)
        assert AUDIT_NOTIFICATION_ID in lost
        assert notifications_lost(before[REGION], after[REGION], name) == []
        # The primary never stopped: both regions process, and an upload to the primary is processed twice.
        assert buckets.processing_regions() == [REGION, SECONDARY_REGION]
        writes = Writes(buckets)
        writes.put(REGION, "uploads/after-failover.csv", b"id\n1\n")
        writes.put(SECONDARY_REGION, "uploads/in-secondary.csv", b"id\n2\n")
        figures = processing_figures(behaviour.invocations, writes, name, started)
        assert (figures["uploads"], figures["double_processed"], figures["unprocessed"]) == (2, 1, 0)
        assert figures["double_processed_keys"] == ["uploads/after-failover.csv"]


def test_ours_runs_through_the_recovery_handler_and_is_judged_like_the_seed() -> None:
    from embedded.bench_failover import _ours_side
    from embedded.drill_failover import recovery_in

    # When our failover and failback run the benchmark's scenario, each through the real handler in its region
    figures = _ours_side(3, recovery_in)
    failover, failback = figures["failover"], figures["failback"]
    # Then the judge reads back a switch to the secondary and back, with nothing merged away
    assert failover["regions_processing"] == [SECONDARY_REGION] and failback["regions_processing"] == [REGION]
    assert failover["env_vars_lost"] == failover["notifications_lost"] == [], failover
    assert failback["env_vars_lost"] == failback["notifications_lost"] == [], failback
    assert failback["objects_lost"] == 0, failback
    assert figures["processing"]["uploads"] > 0
