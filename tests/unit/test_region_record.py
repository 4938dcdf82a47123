"""The region record (drcore.state.region_record): immutable claims in the global state table, one per epoch and
writer region; the highest epoch holds, a tie goes to the claim making the primary active, in every region alike."""

from __future__ import annotations

import boto3
import pytest

from drcore.state.region_record import ClaimConflict, RegionClaim, RegionRecord
from embedded.sample_system import SampleSystem
from tests.support import SimulatedClock

PRIMARY, SECONDARY = "us-east-1", "us-west-2"


@pytest.fixture
def record(system: SampleSystem) -> RegionRecord:
    return RegionRecord(boto3.client("dynamodb", region_name=PRIMARY), system.table, system.function_name, PRIMARY,
                        clock=SimulatedClock())


def test_a_function_never_switched_is_active_in_the_primary_at_epoch_0(record):
    # Given no claim, Then there is no current claim, the primary is active, the epoch is 0
    assert record.claims() == [] and record.current() is None
    assert record.active_region() == PRIMARY and record.epoch() == 0


def test_a_claim_moves_the_active_region_and_the_next_one_moves_it_back(record):
    # When a failover claims epoch 1 from the secondary, then a failback epoch 2 from the primary
    failover = record.claim(SECONDARY, "failover", "fo-aaaaaa", SECONDARY, after_epoch=0)
    assert record.active_region() == SECONDARY and record.current() == failover and failover.epoch == 1
    failback = record.claim(PRIMARY, "failback", "fb-bbbbbb", PRIMARY, after_epoch=1)
    # Then the newest holds, and both claims stay in the record, oldest first
    assert record.current() == failback and record.active_region() == PRIMARY and record.epoch() == 2
    assert [claim.plan_id for claim in record.claims()] == ["fo-aaaaaa", "fb-bbbbbb"]
    assert record.holds(failback) and not record.holds(failover)


def test_claiming_again_what_was_claimed_returns_the_stored_claim(record):
    # Given a failover's claim, When a resumed failover claims the same again (later)
    first = record.claim(SECONDARY, "failover", "fo-aaaaaa", SECONDARY, after_epoch=0)
    again = record.claim(SECONDARY, "failover", "fo-aaaaaa", SECONDARY, after_epoch=0)
    # Then it gets the stored claim (its time too), and the record holds one claim
    assert again == first and len(record.claims()) == 1


def test_another_switch_claiming_an_epoch_this_region_claimed_is_refused(record):
    # Given epoch 1 claimed from the secondary by one plan
    first = record.claim(SECONDARY, "failover", "fo-aaaaaa", SECONDARY, after_epoch=0)
    # When another plan claims epoch 1 from the same region, Then it is refused naming the claim that holds it
    with pytest.raises(ClaimConflict) as refused:
        record.claim(SECONDARY, "failover", "fo-cccccc", SECONDARY, after_epoch=0)
    assert refused.value.existing == first and record.claims() == [first]


@pytest.mark.parametrize("primary_written_last", [True, False])
def test_a_tie_goes_to_the_claim_making_the_primary_active_whichever_was_written_last(record, primary_written_last):
    # Given two operators claiming epoch 1 at once: one in the primary region failing over to the secondary, one in
    # the secondary failing back to the primary (whose writer region sorts last), written in either order
    def to_secondary() -> RegionClaim:
        return record.claim(SECONDARY, "failover", "fo-111111", PRIMARY, after_epoch=0)

    def to_primary() -> RegionClaim:
        return record.claim(PRIMARY, "failback", "fb-222222", SECONDARY, after_epoch=0)

    first, last = (to_secondary, to_primary) if primary_written_last else (to_primary, to_secondary)
    claims = [first(), last()]
    primary_claim = next(claim for claim in claims if claim.active_region == PRIMARY)
    # Then the claim naming the primary holds, and the other reads as superseded
    assert record.current() == primary_claim and record.active_region() == PRIMARY
    assert [record.holds(claim) for claim in claims] == [claim is primary_claim for claim in claims]


def test_a_tie_between_claims_naming_the_same_region_is_decided_by_the_writer_region(record):
    # Given two failovers (one planned in each region) both claiming epoch 1 for the secondary
    west = record.claim(SECONDARY, "failover", "fo-222222", SECONDARY, after_epoch=0)
    east = record.claim(SECONDARY, "failover", "fo-111111", PRIMARY, after_epoch=0)
    # Then one of them holds, the same in every reading: the alphabetically first writer region
    assert record.current() == east and record.holds(east) and not record.holds(west)
    assert record.active_region() == SECONDARY


def test_a_later_epoch_supersedes_a_claim_whatever_region_it_names(record):
    record.claim(PRIMARY, "failback", "fb-333333", PRIMARY, after_epoch=0)
    later = record.claim(SECONDARY, "failover", "fo-444444", SECONDARY, after_epoch=1)
    assert record.current() == later and isinstance(later, RegionClaim)
