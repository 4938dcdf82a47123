"""Retention of function, stack and logs backups (drcore.backup.component_retention, run by the retention function):
each component pruned by the snapshots' policy, never the newest backup nor one a pending plan names, expired ones
hidden by delete markers only (a locked one left and reported), and every object a kept backup needs locked past
the horizon, so that a function backup older than the bucket's default retention still restores.

moto fills used (embedded/moto_gaps.py, through the `system` fixture): code archives served over loopback HTTP,
export tasks that run until next described. S3's refusal of a lock (an SCP, a key policy) is answered in moto's
place (tests/s3_gaps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import time_machine

import retention.handler as retention_function
from drcore.backup.component_retention import prune_component
from drcore.backup.function_backup import FunctionBackup
from drcore.backup.lock_extension import LOCK_HORIZON, KeptObjects, LockExtender, LockPolicy
from drcore.backup.logs_backup import LogsBackup, log_subject
from drcore.backup.retention_run import RetentionRequest, RetentionRun
from drcore.backup.stack_backup import StackBackup
from drcore.core.config import RetentionEnvVar, RetentionPolicy
from drcore.restore.function_restore import FunctionRestorer
from drcore.state.backup_files import BackupNotFound, BackupReader
from drcore.state.backup_store import BackupStore, Component, backup_prefix, manifest_key
from drcore.state.plans import PlanBook, backups_named_by_pending_plans
from drcore.state.store import ControllerStateStore
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem, add_buckets
from tests.s3_gaps import hook, s3_answers
from tests.support import SimulatedClock

PLENTY_MS = 15 * 60 * 1000
DAY = 86_400
# The newest backup, and the newest of each of the last two days.
TWO_DAYS = RetentionPolicy(keep_last=1, hourly=0, daily=2, weekly=0, monthly=0)
NEWEST_ONLY = RetentionPolicy(keep_last=1, hourly=0, daily=0, weekly=0, monthly=0)
LOCKS = LockPolicy("GOVERNANCE", days=30)
RESTORED = "apilados-pipeline-ingest-restored"


@pytest.fixture
def world(system: SampleSystem) -> SampleSystem:
    add_buckets(system, boto3.session.Session(region_name="us-east-1"), objects=2)
    return system


@pytest.fixture
def store(world: SampleSystem) -> BackupStore:
    return BackupStore(world.clients["s3"], world.backup_bucket)


def _subject(system: SampleSystem, component: Component) -> str:
    return {Component.LAMBDA: system.function_name, Component.STACK: system.stack_name,
            Component.LOGS: log_subject(system.log_group)}[component]


def _back_up(system: SampleSystem, store: BackupStore, component: Component, clock: SimulatedClock) -> str:
    """One backup of `component` by its own engine, as the backup function takes it, at the clock's time."""
    if component is Component.LAMBDA:
        return FunctionBackup(system.clients["lambda"], store, system.function_name, clock=clock).run().backup_id
    if component is Component.STACK:
        return StackBackup(system.clients["cloudformation"], store, system.stack_name, clock).run().backup_id
    logs = LogsBackup(system.clients["logs"], store, system.log_group, clock)
    day = clock().date() - timedelta(days=1)
    for _ in range(4):  # an export completes on a later run
        result = logs.run(day)
        if result.status == "complete":
            assert result.backup_id is not None
            return result.backup_id
    raise AssertionError(f"the export of {day} did not complete")


def _daily_backups(system: SampleSystem, store: BackupStore, component: Component, count: int) -> tuple[
        list[str], SimulatedClock]:
    # The log events follow the wall clock (CloudWatch Logs refuses old ones): the days end today.
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=count - 1))
    ids = []
    for _ in range(count):
        ids.append(_back_up(system, store, component, clock))
        clock.advance(DAY)
    clock.advance(-DAY + 3600)
    return ids, clock


def _versions(store: BackupStore, prefix: str) -> tuple[list[tuple[str, str]], int]:
    """Every version under `prefix` (key, version id) and the number of delete markers."""
    versions, markers = [], 0
    for page in store.s3.get_paginator("list_object_versions").paginate(Bucket=store.bucket, Prefix=prefix):
        versions += [(entry["Key"], entry["VersionId"]) for entry in page.get("Versions", [])]
        markers += len(page.get("DeleteMarkers", []))
    return sorted(versions), markers


def _lock_until(store: BackupStore, key: str, version_id: str | None, until: datetime) -> None:
    store.s3.put_object_retention(Bucket=store.bucket, Key=key, VersionId=version_id,
                                  Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})


@pytest.mark.parametrize("component", [Component.LAMBDA, Component.STACK, Component.LOGS])
def test_each_component_keeps_what_the_policy_keeps_and_only_hides_the_rest(world, store, component):
    # Given four backups of the component, a day apart, the oldest's manifest still under Object Lock
    ids, clock = _daily_backups(world, store, component, 4)
    subject = _subject(world, component)
    record = store.recorded_manifest(component, subject, ids[0])
    assert record is not None
    _lock_until(store, record.key, record.version_id, clock() + timedelta(days=60))
    versions_before = {backup_id: _versions(store, backup_prefix(component, subject, backup_id))[0]
                       for backup_id in ids}
    # When retention prunes it by a policy that keeps the newest of each of the last two days
    kept = KeptObjects()
    result = prune_component(store, component, subject, TWO_DAYS, clock(), kept)
    # Then the two newest stay, the third is removed, and the oldest, locked, is left and reported
    assert (result.kept, result.removed, result.locked) == ((ids[2], ids[3]), (ids[1],), (ids[0],))
    assert [listing.backup_id for listing in store.list_backups(component, subject) if listing.complete] == [
        ids[0], ids[2], ids[3]]
    reader = BackupReader(store, component, subject)
    with pytest.raises(BackupNotFound):
        reader.open(ids[1])
    # And the removal is delete markers only: every version of every backup is still stored
    for backup_id in ids:
        versions, markers = _versions(store, backup_prefix(component, subject, backup_id))
        assert versions == versions_before[backup_id]
        assert (markers > 0) == (backup_id == ids[1])
    # And what the kept ones (and the locked one, still complete) need is gathered for the lock extension: each
    # file its manifest lists, the manifest and the record of its version
    for backup_id in (ids[0], ids[2], ids[3]):
        stored = reader.open(backup_id)
        listed = [*stored.manifest.get("files", []), *stored.manifest.get("objects", [])]
        needed = {(stored.prefix + entry["path"], entry["version_id"]) for entry in listed}
        recorded = store.recorded_manifest(component, subject, backup_id)
        assert recorded is not None and listed
        needed |= {(manifest_key(component, subject, backup_id), recorded.version_id),
                   (stored.prefix + "manifest-version.json", None)}
        assert needed <= set(kept.objects)


def test_the_only_backup_stays_however_old_and_unfinished_ones_go_after_a_day(world, store):
    # Given one function backup, a year old, and an unfinished one (no manifest) two days old
    clock = SimulatedClock(datetime(2025, 11, 1, tzinfo=UTC))
    only = _back_up(world, store, Component.LAMBDA, clock)
    clock.advance(363 * DAY)
    store.put_once(backup_prefix(Component.LAMBDA, world.function_name, "20261028T000000Z-abc123") + "code.zip", b"x")
    # When retention runs a year on
    clock.advance(2 * DAY)
    result = prune_component(store, Component.LAMBDA, world.function_name, NEWEST_ONLY, clock(), KeptObjects())
    # Then the only complete backup stays, and the abandoned one is removed
    assert (result.kept, result.removed, result.abandoned) == ((only,), (), ("20261028T000000Z-abc123",))


def _retention_run(world: SampleSystem, store: BackupStore, policy: RetentionPolicy,
                   clock: Callable[[], datetime]) -> RetentionRun:
    subjects = {Component.S3: world.data_bucket, **{component: _subject(world, component)
                                                    for component in (Component.LAMBDA, Component.STACK,
                                                                      Component.LOGS)}}
    state = ControllerStateStore(world.clients["dynamodb"], world.table)
    return RetentionRun(store, subjects, policy, LockExtender(store, LOCKS), state, world.function_name, clock)


def test_a_backup_a_pending_plan_names_stays_until_the_plan_expires(world, store):
    # Given three function backups a day apart, and a recovery planned from the oldest, not confirmed yet
    ids, clock = _daily_backups(world, store, Component.LAMBDA, 3)
    restorer = FunctionRestorer(boto3.client("lambda", region_name="us-east-1"), store, world.function_name,
                                clock=clock)
    plan = restorer.plan(ids[0], target=RESTORED)
    state = ControllerStateStore(world.clients["dynamodb"], world.table)
    PlanBook(state, world.function_name, ttl_seconds=3600, clock=clock).save(
        plan.plan_id, "recover_from_backup", {"action": "recover_from_backup", "backup_id": ids[0]}, plan.to_dict())
    # When retention runs while the plan can still be confirmed, under a policy that keeps the newest only
    run = _retention_run(world, store, NEWEST_ONLY, clock)
    functions = run.run(RetentionRequest(action="retention"), lambda: PLENTY_MS)["components"]["lambda"]
    # Then the planned backup stays beside the newest, and the other goes
    assert (functions["kept"], functions["pinned"], functions["removed"]) == (
        (ids[0], ids[2]), (ids[0],), (ids[1],))
    # And the confirmed plan still finds its backup and applies
    assert restorer.apply(restorer.plan(ids[0], target=RESTORED)).ok
    # When the plan has expired and retention runs again
    clock.advance(2 * 3600)
    later = run.run(RetentionRequest(action="retention"), lambda: PLENTY_MS)["components"]["lambda"]
    # Then the backup it named is expired, but left while the lock the kept backup got lasts (30 days)
    assert (later["kept"], later["removed"], later["locked"]) == ((ids[2],), (), (ids[0],))
    # And a run after that lock ended removes it
    clock.advance(31 * DAY)
    month_on = run.run(RetentionRequest(action="retention"), lambda: PLENTY_MS)["components"]["lambda"]
    assert (month_on["kept"], month_on["removed"], month_on["locked"]) == ((ids[2],), (ids[0],), ())


def _retention_until(store: BackupStore, key: str, version_id: str | None) -> tuple[str | None, datetime | None]:
    head = store.s3.head_object(Bucket=store.bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")


def _needed(store: BackupStore, component: Component, subject: str, backup_id: str) -> list[tuple[str, str | None]]:
    """Every object a backup needs to restore: its files, its manifest and the record of the manifest's version."""
    stored = BackupReader(store, component, subject).open(backup_id)
    record = store.recorded_manifest(component, subject, backup_id)
    assert record is not None
    listed = [*stored.manifest.get("files", []), *stored.manifest.get("objects", [])]
    return [*((stored.prefix + entry["path"], entry["version_id"]) for entry in listed),
            (record.key, record.version_id), (stored.prefix + "manifest-version.json", None)]


def test_a_function_backup_older_than_the_default_retention_is_still_locked_and_restores(world, store, monkeypatch):
    # Given the backup bucket as the stack builds it: every new object locked 30 days (GOVERNANCE) by default
    s3 = world.clients["s3"]
    s3.put_object_lock_configuration(Bucket=world.backup_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})
    # And a function, a stack and a logs backup taken now
    now = datetime.now(UTC).replace(microsecond=0)
    backups = {component: _back_up(world, store, component, SimulatedClock(now))
               for component in (Component.LAMBDA, Component.STACK, Component.LOGS)}
    needed = {component: _needed(store, component, _subject(world, component), backup_id)
              for component, backup_id in backups.items()}
    assert all(len(objects) > 2 for objects in needed.values())
    # When the retention function runs on its schedule 40 days later, under the default policy
    for name, value in {**world.backup_environment(), RetentionEnvVar.OBJECT_LOCK_DAYS: "30"}.items():
        monkeypatch.setenv(name, value)
    later = now + timedelta(days=40)
    with time_machine.travel(later, tick=False):
        answer = retention_function.handler({"action": "retention"}, LambdaContextStub("apilados-dr-retention"))
    # Then it kept each backup, and every object each one needs is locked past the horizon, read back from S3
    assert answer["ok"] is True and answer["locks"]["missing"] == [] and answer["locks"]["refused"] == {}
    for component, backup_id in backups.items():
        assert answer["components"][component.value]["kept"] == (backup_id,)
        for key, version_id in needed[component]:
            mode, until = _retention_until(store, key, version_id)
            assert mode == "GOVERNANCE" and until is not None and until >= later + LOCK_HORIZON, key
    # And the function backup restores through the existing restore path, its code verified
    restorer = FunctionRestorer(boto3.client("lambda", region_name="us-east-1"), store, world.function_name)
    restored = restorer.apply(restorer.plan(backups[Component.LAMBDA], target=RESTORED))
    assert restored.ok and restored.code_sha256_verified


def test_a_backup_missing_a_file_an_unreadable_manifest_and_a_refused_lock_are_reported_not_fatal(world, store):
    # Given a function backup whose code archive is gone, a stack backup whose recorded manifest version is gone
    # (another one stands in its place), and a logs backup whose first export S3 refuses to extend the lock of
    now = datetime.now(UTC).replace(microsecond=0)
    clock = SimulatedClock(now)
    function_id, stack_id, logs_id = (_back_up(world, store, component, clock)
                                      for component in (Component.LAMBDA, Component.STACK, Component.LOGS))
    s3 = world.clients["s3"]
    code = BackupReader(store, Component.LAMBDA, world.function_name).open(function_id)
    code_key = code.prefix + "code.zip"
    s3.delete_object(Bucket=store.bucket, Key=code_key, VersionId=code.listed("code.zip")["version_id"])
    record = store.recorded_manifest(Component.STACK, world.stack_name, stack_id)
    assert record is not None
    s3.put_object(Bucket=store.bucket, Key=record.key, Body=b'{"files": []}')
    s3.delete_object(Bucket=store.bucket, Key=record.key, VersionId=record.version_id)
    export = BackupReader(store, Component.LOGS, log_subject(world.log_group)).open(logs_id)
    refused_key = export.prefix + export.manifest["objects"][0]["path"]
    hook(s3, "PutObjectRetention", s3_answers("AccessDenied", 403, when=lambda params: params["Key"] == refused_key))
    # When retention runs
    run = _retention_run(world, store, NEWEST_ONLY, clock)
    result = run.run(RetentionRequest(action="retention"), lambda: PLENTY_MS)
    # Then the run completes and reports each: the missing file, the unreadable manifest, the refused lock
    locks = result["locks"]
    assert locks["missing"] == [code_key]
    assert locks["refused"] == {refused_key: "PutObjectRetention: AccessDenied"}
    assert list(result["components"]["stack"]["unreadable"]) == [stack_id]
    assert "is gone" in result["components"]["stack"]["unreadable"][stack_id]
    # And nothing of them was removed, and every other needed object was locked
    assert all(result["components"][name]["removed"] == () for name in ("lambda", "stack", "logs"))
    assert locks["extended"] == locks["looked_at"] - 2
    # And the journal says the run found kept backups that may not restore in full
    entry = ControllerStateStore(world.clients["dynamodb"], world.table).latest_journal_entry(
        world.function_name, "retention")
    assert entry is not None
    assert entry["result"] == ("complete, objects kept backups need are missing; locks S3 refused to extend; "
                               "kept backups whose manifest does not read back")



@pytest.mark.parametrize(("stored", "pins"), [
    ({"expires_in": 600}, True),  # planned, may still be confirmed
    ({"expires_in": -600}, False),  # expired unconfirmed: can no longer be applied
    ({"expires_in": -600, "applied": True}, True),  # confirmed, still being applied (a long restore resumes)
    ({"expires_in": -600, "applied": True, "finished": True}, False),  # applied: its result recorded
    ({"expires_in": 600, "applied": True, "result_only": True}, False),  # a drill run that finished (no finished_at)
])
def test_only_plans_that_may_still_read_their_backup_keep_it(world, stored, pins):
    # Given one stored plan (or drill run) naming a function backup in a step and a snapshot in its progress
    clock = SimulatedClock()
    state = ControllerStateStore(world.clients["dynamodb"], world.table)
    book = PlanBook(state, world.function_name, ttl_seconds=stored["expires_in"], clock=clock)
    plan = {"steps": {"function": {"backup_id": "20261126T090000Z-aaaaaa"}}}
    book.save("p-1", "comprehensive_rollback", {"action": "comprehensive_rollback"}, plan)
    if stored.get("applied"):
        assert book.claim("p-1", "operator")
        book.record("p-1", progress={"data": {"safety_snapshot_id": "20261126T100000Z-bbbbbb"}})
    if stored.get("finished"):
        book.finish("p-1", {}, {"ok": True})
    if stored.get("result_only"):
        book.record("p-1", result={"ok": True})
    # When retention asks which backups pending plans name
    named = backups_named_by_pending_plans(state, world.function_name, clock())
    # Then it names the plan's backups exactly while the plan may still read them
    expected = {"20261126T090000Z-aaaaaa"} | ({"20261126T100000Z-bbbbbb"} if stored.get("applied") else set())
    assert named == (expected if pins else frozenset())
