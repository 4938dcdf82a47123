"""Which region processes each upload during a failback (drcore.region.failback_action), counted from the invocations
S3's notifications and the controller's invokes made (embedded/s3_notifications.py): an upload the secondary
processed is not processed again by its copy-back, an upload that reaches the replica while the failback runs is
processed once (by the primary, after its copy), and a failback that stops after the secondary stopped processing
gives it its processing back with every upload of the time it was off invoked once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import time_machine

from drcore.aws.pipeline_notification import BucketNotifications
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.core.models import parse_time
from drcore.region.divergence import ReplicaDivergence
from drcore.region.failback_action import STEPS
from drcore.region.switch_gate import SwitchGate
from embedded.sample_system import SampleSystem
from tests.failback_world import CSV_ONLY, PLENTY, PRIMARY, SECONDARY, FailedOver, failed_over_world

NOTIFIED_IN_SECONDARY, NOTIFIED_IN_PRIMARY = f"{SECONDARY}:notification", f"{PRIMARY}:notification"


@pytest.fixture
def failed_over(system: SampleSystem, versions_behaviour: Any) -> Iterator[FailedOver]:
    with failed_over_world(system, versions_behaviour) as world:
        yield world


def request(**fields: Any) -> Any:
    return SimpleNamespace(prefer=fields.get("prefer"))


class UploadsAtTheSwitch(BucketNotifications):
    """The replica's notifications, with clients still uploading to the replica as its pipeline entry is removed:
    one upload two seconds before the removal (processed by the secondary), one just after it (processed by no one
    yet)."""

    def __init__(self, world: FailedOver) -> None:
        super().__init__(world.secondary_s3)
        self._world = world

    def remove(self, bucket: str, target_arn: str) -> Any:
        with time_machine.travel(datetime.now(UTC) - timedelta(seconds=2)):
            self._world.upload_to_replica("uploads/before-the-switch.csv", b"processed by the secondary")
        change = super().remove(bucket, target_arn)
        self._world.upload_to_replica("uploads/after-the-switch.csv", b"processed by no one yet")
        return change


def test_an_upload_the_secondary_processed_is_not_processed_again_by_its_copy_back(failed_over):
    world = failed_over
    # Given uploads the secondary processed during the failover, one of them over a key the primary holds
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    world.upload_to_replica("uploads/a.csv", b"changed in the secondary")
    _, plan, _ = world.action().make_plan(request())
    world.upload_to_replica("uploads/after-the-plan.csv", b"written before the confirm")
    # And clients that keep uploading to the replica while its pipeline entry is removed
    action = world.action(replica_notifications=UploadsAtTheSwitch(world))
    # When the failback is applied, two seconds later (an upload in the second of the switch may be processed twice)
    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=2), tick=True):
        finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"], result
    # Then each upload the secondary processed is processed once, there: its copy-back into the primary (not
    # processing yet) is replicated into the replica, whose notification no longer fires
    for key in ("uploads/during.csv", "uploads/a.csv", "uploads/after-the-plan.csv", "uploads/before-the-switch.csv"):
        assert world.processed(key) == [NOTIFIED_IN_SECONDARY], key
    assert world.body("uploads/a.csv") == b"changed in the secondary"
    # And the upload the secondary never processed is processed once, by the primary, when copied into it
    assert world.processed("uploads/after-the-switch.csv") == [NOTIFIED_IN_PRIMARY]
    assert world.processing() == (True, False)


class UploadsAroundTheSwap(BucketNotifications):
    """The replica's notifications, with a client uploading to the replica just before its pipeline entry is swapped
    for the switch gate's and just after, within the same second: S3's listing times cannot tell the two apart. The
    swap takes effect `delay` after the replica-off moment (`shift` moves the clock): in a later second when slow or
    retried."""

    def __init__(self, world: FailedOver, delay: timedelta, shift: Callable[[timedelta], None]) -> None:
        super().__init__(world.secondary_s3)
        self._world = world
        self._delay = delay
        self._shift = shift

    def swap(self, bucket: str, removed_arn: str, added_arn: str, template: Any = None,
             entry_id: str | None = None) -> Any:
        self._shift(self._delay)
        self._world.upload_to_replica("uploads/just-before.csv", b"processed by the secondary")
        change = super().swap(bucket, removed_arn, added_arn, template, entry_id)
        self._world.upload_to_replica("uploads/just-after.csv", b"processed by no one yet")
        return change


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=1.5)], ids=["in-the-second", "a-second-later"])
def test_with_the_switch_gate_the_seconds_of_the_switch_are_split_exactly(failed_over, delay):
    world = failed_over
    boto3.client("sqs", region_name=SECONDARY).create_queue(QueueName="apilados-dr-switch-gate")
    gate = SwitchGate(boto3.client("sqs", region_name=SECONDARY), "apilados-dr-switch-gate", settle_seconds=0)
    _, plan, _ = world.action().make_plan(request())
    # Given a client uploading to the replica just before and just after its entry is swapped for the gate's, the
    # clock frozen: the swap takes effect in the replica-off moment's second, or in the next (a slow write)
    with time_machine.travel(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1), tick=False) as clock:
        action = world.action(replica_notifications=UploadsAroundTheSwap(world, delay, clock.shift), gate=gate)
        finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"], result
    off, swapped = (parse_time(result["replica_off"][moment]) for moment in ("at", "removed_at"))
    assert (swapped.second != off.second) == (delay > timedelta(0))
    # Then the upload the secondary processed is not processed again (its copy-back is made while the primary does
    # not process), and the one the gate recorded is processed once, by the primary: the gate says which is which
    assert world.processed("uploads/just-before.csv") == [NOTIFIED_IN_SECONDARY]
    assert world.processed("uploads/just-after.csv") == [NOTIFIED_IN_PRIMARY]
    assert world.body("uploads/just-before.csv") == b"processed by the secondary"
    # And the gate's entry is gone, the replica's other owner's entry kept
    assert world.processing() == (True, False)
    replica = BucketNotifications(world.secondary_s3).configuration(world.replica)
    assert "QueueConfigurations" not in replica and len(replica["LambdaFunctionConfigurations"]) == 1


class UploadsToThePrimaryAtTheSwitch(BucketNotifications):
    """The replica's notifications, with a client uploading to the primary bucket as the replica's entry is swapped
    for its gate: the upload's replica lands when the replica processes no more, and the primary does not yet."""

    def __init__(self, world: FailedOver) -> None:
        super().__init__(world.secondary_s3)
        self._world = world

    def swap(self, *args: Any, **kwargs: Any) -> Any:
        change = super().swap(*args, **kwargs)
        if self._world.body("uploads/to-the-primary.csv"):  # the replica's swap only, not a hand-back's
            return change
        self._world.upload_to_primary("uploads/to-the-primary.csv", b"uploaded to the primary during the failback")
        # and the replica of an earlier upload to the primary lands right then
        self._world.replication.held_keys.discard("uploads/landing-at-the-switch.csv")
        self._world.replication.catch_up()
        return change

    def remove(self, *args: Any, **kwargs: Any) -> Any:  # the replica's gate removed, a second later (first time)
        if not self._world.body("uploads/to-the-primary-later.csv"):
            self._world.upload_to_primary("uploads/to-the-primary-later.csv", b"uploaded to the primary, later")
        return super().remove(*args, **kwargs)


def test_uploads_to_the_primary_that_neither_region_processed_are_processed_once_by_the_primary(failed_over):
    world = failed_over
    # Given an upload the secondary processed, and one made to the primary whose replication is still under way
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    world.replication.held_keys.update(["uploads/replicating.csv", "uploads/landing-at-the-switch.csv"])
    world.upload_to_primary("uploads/replicating.csv", b"its replica lands after the failback")
    world.upload_to_primary("uploads/landing-at-the-switch.csv", b"its replica lands as the replica stops processing")
    _, plan, _ = world.action().make_plan(request())
    # When the failback is applied with the gates, a client uploading to the primary as the replica stops processing
    action = world.action(replica_notifications=UploadsToThePrimaryAtTheSwitch(world), **world.gated())
    finished, _, result = action.apply(plan, None, PLENTY)
    world.replication.held_keys.clear()
    assert finished and result["ok"], result
    # Then both uploads to the primary are processed once, there; the secondary's, and its copy-back, are not again
    assert world.processed("uploads/to-the-primary.csv") == [f"{PRIMARY}:invoke"]
    assert world.processed("uploads/replicating.csv") == [f"{PRIMARY}:invoke"]
    assert world.processed("uploads/landing-at-the-switch.csv") == [f"{PRIMARY}:invoke"]
    assert world.processed("uploads/to-the-primary-later.csv") == [f"{PRIMARY}:invoke"]
    assert world.processed("uploads/during.csv") == [NOTIFIED_IN_SECONDARY]
    # (one still replicating; two landed once the replica's gate was in place; one recorded by the primary's gate)
    caught_up = result["catch_up_primary"]
    assert (caught_up["invoked"], caught_up["replicating"], caught_up["landed_late"]) == (4, 1, 2), caught_up
    assert caught_up["own_copies_skipped"] >= 1
    # And the primary's gate entry is gone, its LIVE's in place; the next upload to the primary is processed there
    assert world.processing() == (True, False)
    primary = BucketNotifications(world.primary_s3).configuration(world.data)
    assert "QueueConfigurations" not in primary
    world.upload_to_primary("uploads/next.csv", b"after the failback")
    assert world.processed("uploads/next.csv") == [NOTIFIED_IN_PRIMARY]


def test_an_upload_that_reaches_the_replica_while_the_failback_validates_is_processed_once(failed_over):
    world = failed_over
    _, plan, _ = world.action().make_plan(request())

    # Given clients still uploading to the replica while the failback alerts and validates (several seconds)
    def validation(action: str, plan_id: str, region: str) -> dict[str, Any]:
        world.upload_to_replica("uploads/during-validation.csv", b"written while the failback validates")
        return {"ok": True, "active_region": region}

    # When the failback is applied
    finished, _, result = world.action(validation=validation).apply(plan, None, PLENTY)
    assert finished and result["ok"], result
    # Then that upload reaches the primary and is processed once there: the last sweep is the failback's last step
    assert world.body("uploads/during-validation.csv") == b"written while the failback validates"
    assert world.processed("uploads/during-validation.csv") == [NOTIFIED_IN_PRIMARY]
    assert STEPS[-1] == "catch_up_after" and result["catch_up_after"]["copied"] == 1
    assert world.processing() == (True, False)


def damaged_copies(world: FailedOver) -> ReplicaDivergence:
    """A copy-back whose copies land other metadata than the replica's versions: it never verifies."""
    primary_s3, secondary_s3 = boto3.client("s3", region_name=PRIMARY), boto3.client("s3", region_name=SECONDARY)

    def damage(params: dict[str, Any], **_: Any) -> None:
        params.update(MetadataDirective="REPLACE", Metadata={"source": "damaged"}, ContentType="text/csv")

    primary_s3.meta.events.register("provide-client-params.s3.CopyObject", damage)
    return ReplicaDivergence(primary_s3, secondary_s3, world.store,
                             snapshots_of=lambda bucket: BucketSnapshotter(primary_s3, world.store, bucket))


def test_a_copy_back_that_does_not_verify_gives_the_secondary_its_processing_back(failed_over):
    world = failed_over
    # Given an upload the secondary processed, and a copy-back that will not verify
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    _, plan, _ = world.action().make_plan(request())
    action = world.action(replica_notifications=UploadsAtTheSwitch(world), divergence=damaged_copies(world))
    # When the failback is applied (clients uploading to the replica as it stops processing)
    finished, _, result = action.apply(plan, None, PLENTY)
    # Then it stops at the copy-back, nothing switched: the replica processes again, the record names the secondary
    assert finished and result["ok"] is False and result["copy"]["stop"] is True, result
    assert "did not verify" in result["copy"]["reason"]
    assert world.processing() == (False, True)
    assert world.record.current().active_region == SECONDARY  # type: ignore[union-attr]
    # And the upload made while the replica was off is processed once, by the secondary's LIVE invoked for it
    assert world.processed("uploads/after-the-switch.csv") == [f"{SECONDARY}:invoke"]
    assert result["copy"]["secondary_restored"]["invoked"] == 1
    # And the uploads the secondary processed before are not processed again (nor their copies' replicas)
    assert world.processed("uploads/during.csv") == [NOTIFIED_IN_SECONDARY]
    assert world.processed("uploads/before-the-switch.csv") == [NOTIFIED_IN_SECONDARY]
    # And the next upload is processed by the secondary, as before the failback
    world.upload_to_replica("uploads/next.csv", b"after the stopped failback")
    assert world.processed("uploads/next.csv") == [NOTIFIED_IN_SECONDARY]


def test_a_stopped_failback_releases_the_primarys_gate_and_the_secondary_processes_what_it_held(failed_over):
    world = failed_over
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    # (two uploads to the primary replicating: one lands as the replica stops processing, one after the failback)
    # a few seconds before the failback (before the second the replica stops in, where its hand-back lists from)
    world.replication.held_keys.update(["uploads/replicating.csv", "uploads/landing-at-the-switch.csv"])
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=5)):
        world.upload_to_primary("uploads/replicating.csv", b"its replica lands after the failback")
        world.upload_to_primary("uploads/landing-at-the-switch.csv", b"its replica lands as the replica stops")
    _, plan, _ = world.action().make_plan(request())
    action = world.action(replica_notifications=UploadsToThePrimaryAtTheSwitch(world), divergence=damaged_copies(world),
                          **world.gated())
    # When a failback with the gates stops at a copy-back that does not verify (a client uploading to the primary as
    # the replica stopped processing)
    finished, _, result = action.apply(plan, None, PLENTY)
    assert finished and result["ok"] is False and result["copy"]["stop"] is True, result
    # Then the secondary processes again, the primary's gate entry is gone, and the upload it held is processed
    # once, by the secondary (its replica is an upload of the time the replica was off)
    assert world.processing() == (False, True)
    assert "QueueConfigurations" not in BucketNotifications(world.primary_s3).configuration(world.data)
    assert world.processed("uploads/to-the-primary.csv") == [f"{SECONDARY}:invoke"]
    # And the replica that landed while the replica was off is processed once by the secondary (invoked: S3 sent it
    # to the gate), the one landing after processing came back once too (S3 sends it)
    assert world.processed("uploads/landing-at-the-switch.csv") == [f"{SECONDARY}:invoke"]
    world.replication.held_keys.clear()
    world.replication.catch_up()
    assert world.processed("uploads/replicating.csv") == [NOTIFIED_IN_SECONDARY]


def test_a_stopped_failback_resumed_after_a_crash_finishes_stopping_and_never_switches(failed_over, monkeypatch):
    world = failed_over
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    _, plan, _ = world.action().make_plan(request())
    action = world.action(replica_notifications=UploadsAtTheSwitch(world), divergence=damaged_copies(world))
    # Given a stopping failback whose invocation dies as it invokes the secondary for the off window
    with pytest.MonkeyPatch.context() as patch:
        def die(*_: Any, **__: Any) -> None:
            raise RuntimeError("the invocation died")

        patch.setattr("drcore.region.failback_hand_back.invoke_once", die)
        with pytest.raises(RuntimeError):
            action.apply(plan, None, PLENTY)
    # When it is resumed from the other region with the progress it recorded, with copies that would verify now
    finished, _, result = world.action(here=SECONDARY).apply(plan, world.checkpoints[-1], PLENTY)
    # Then it finishes stopping: the secondary processes, every upload of the off window invoked once, no switch
    assert finished and result["ok"] is False and result["copy"]["stop"] is True, result
    assert world.processing() == (False, True)
    assert world.record.current().active_region == SECONDARY  # type: ignore[union-attr]
    assert world.processed("uploads/after-the-switch.csv") == [f"{SECONDARY}:invoke"]
    assert [step for step in STEPS if step in result] == list(STEPS[:2])


def test_a_claim_lost_to_a_later_failover_hands_processing_back_to_the_secondary(failed_over):
    world = failed_over
    _, plan, _ = world.action().make_plan(request())

    class LaterFailover(UploadsAtTheSwitch):
        """As the replica stops processing, another failback (planned in the other region) and a failover after it
        move the region record on: the secondary is active again, two epochs later."""

        def remove(self, bucket: str, target_arn: str) -> Any:
            change = super().remove(bucket, target_arn)
            world.record.claim(PRIMARY, "failback", "fb-0000000002", SECONDARY, 1)
            world.record.claim(SECONDARY, "failover", "fo-9876543210", SECONDARY, 2)
            return change

    # When the failback is applied, its claim losing to that failover
    finished, _, result = world.action(replica_notifications=LaterFailover(world)).apply(plan, None, PLENTY)
    # Then it stops at its claim, the secondary processes again, and the upload made while it was off is processed
    assert finished and result["claim"]["stop"] is True and "superseded" in result["claim"]["reason"], result
    assert world.processing() == (False, True)
    assert world.record.current().plan_id == "fo-9876543210"  # type: ignore[union-attr]
    assert world.processed("uploads/after-the-switch.csv") == [f"{SECONDARY}:invoke"]
    assert world.processed("uploads/before-the-switch.csv") == [NOTIFIED_IN_SECONDARY]


def test_a_primary_entry_its_fencing_has_not_removed_yet_is_replaced_by_the_gate(failed_over):
    world = failed_over
    # Given the data bucket still notifying the primary LIVE (a primary back from an outage, not fenced yet)
    BucketNotifications(world.primary_s3).merge_in(world.data, world.sites.live_arn(PRIMARY),
                                                   {"Events": ["s3:ObjectCreated:*"], "Filter": CSV_ONLY})
    world.upload_to_replica("uploads/during.csv", b"written in the secondary")
    _, plan, _ = world.action().make_plan(request())
    # When the failback is applied with the gates (S3 takes no gate entry beside the LIVE entry)
    finished, _, result = world.action(**world.gated()).apply(plan, None, PLENTY)
    # Then it completes: the gate took LIVE's place, then LIVE the gate's; the primary alone processes
    assert finished and result["ok"], result
    assert world.processing() == (True, False)
    assert "QueueConfigurations" not in BucketNotifications(world.primary_s3).configuration(world.data)
