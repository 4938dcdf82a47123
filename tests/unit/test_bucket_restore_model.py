"""Model-based test of bucket snapshots and restores (DESIGN.md sections 5 and 6; issue 10).

A Hypothesis state machine keeps a data bucket, backs it up and restores it as production does, crashing the
functions between any two AWS calls, and after every step checks, against what S3 and the state table hold:

(a) A restore or an undo that has completed (at once, or resumed after a crash or a continuation) left the
    bucket exactly at its restore point under its prefix (keys, bytes, content type, user metadata), and the
    rest of the bucket as it was; an undo brings back the state before the restore it undoes; a completed
    restore is journaled once, as applied. While a restore that crashed or paused has not completed, nothing
    says it succeeded: no journal entry, and no result on its plan unless it is true (an invocation that died
    after recording its result: the bucket must then be at the restore point, as (c) reads it).
(b) Nothing stored is lost: every object version and delete marker the data bucket ever had is still there
    (a restore only adds versions and delete markers); every snapshot manifest ever completed still reads
    back, verifies against its SHA-256, holds the state the bucket had when it was taken, and its content
    objects are proven against it (drcore.backup.content_check, reading every body) when it appears and at
    the end of the example; neither manifests nor content objects ever change or go away afterwards; the
    safety snapshot of every applied restore is one of them, holding the bucket's state before the restore.
(c) A completed restore's verification says as many objects match, and as many are unexpected, as the model
    finds by reading the bucket back and comparing it with its own record of the restore point.

The steps: writes to the data bucket (a new key or other bytes; the same bytes with another content type or
user metadata; a delete), damage (a same-size corruption, a deletion and an unwanted upload at once), a
snapshot by the backup function's handler (`{"component": "s3"}`, continued with the snapshot's id when its
time runs short, retried by Lambda when it crashed), a restore planned to a snapshot or to a moment (the whole
bucket or a prefix) and confirmed at once or later (refused, changing nothing, once it expired or the bucket
changed under its prefix), a restore that dies after its Nth AWS call followed by its resumption, the undo of
an applied restore, the resumption of a restore that crashed or paused, and time passing (past a plan's
expiry). Restores go through the recovery function's handler with the operator's events (`restore_s3`: plan,
`confirm`, `resume`).

A crash (tests.support.DyingInvocations) kills an invocation after the step's Nth AWS call: nothing it would
have done afterwards reaches AWS, and the next invocation starts cold (the functions' cached wiring is
dropped). A crashed snapshot is retried at once, as Lambda retries an asynchronous event. A crashed or paused
restore stays pending until a later step resumes it: the retry of the event that crashed (a confirm that was
claimed answers "already confirmed", and the operator then resumes), or the function's own continuation
(`{"resume": <plan id>}`, which the model delivers: moto cannot run a function, so the model answers the Invoke
as Lambda does and runs the event itself). While one is pending the bucket is not written, planned or restored
otherwise: only snapshots run, and time passes.

Everything runs on one clock (time_machine, frozen and moved by the steps, a second at least per step) so that
moto's version times, snapshot ids and restore points agree; snapshot pages of PAGE_SIZE versions and restore
batches of BATCH_SIZE changes let a few keys span several checkpoints and records; copies run one at a time
(DR_COPY_CONCURRENCY=1) so that a crash after N calls is the same crash on a replay. moto ignores S3's copy
conditions (embedded.s3_copy_conditions fills them in moto, for every test). Retention is set to keep
every snapshot: pruning has its own tests, and here every completed snapshot must stay. botocore's service
models are found and parsed once per test rather than at every cold start.

Runs: the `ci` profile (the default, tests/conftest.py) runs CI_EXAMPLES examples of CI_STEPS steps;
HYPOTHESIS_PROFILE=thorough runs THOROUGH_STEPS steps an example, as many examples as the profile says. A
failing example is saved under .hypothesis/ and replayed first next time.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine
from botocore.loaders import JSONFileLoader, Loader
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from moto import mock_aws

import backup.handler as backup_handler
import drcore.restore.bucket_restore as bucket_restore
import drcore.wiring.backup as backup_wiring
import drcore.wiring.restores as restore_wiring
import recovery.handler as recovery_handler
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.backup.content_check import ContentChecker
from drcore.backup.manifest import ManifestEntry, SnapshotManifest, read_manifest
from drcore.core.models import to_iso
from drcore.state.backup_store import BackupStore, Component, backup_prefix, backup_time, manifest_key
from drcore.state.store import ControllerStateStore
from drcore.wiring.backup import backup_runner
from drcore.wiring.recovery import recovery_service
from embedded.aws_events import LambdaContextStub
from tests.support import RECOVERY_FUNCTION, WHO, DyingInvocations

CI_EXAMPLES, CI_STEPS, THOROUGH_STEPS = 15, 20, 50
_PROFILE = settings.default
_THOROUGH = _PROFILE.max_examples > 100
MODEL_RUNS = settings(_PROFILE, max_examples=_PROFILE.max_examples if _THOROUGH else CI_EXAMPLES,
                      stateful_step_count=THOROUGH_STEPS if _THOROUGH else CI_STEPS)

REGION = "us-east-1"
TABLE = "model-restore-state"
BACKUP_FUNCTION = "apilados-dr-backup"
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PAGE_SIZE = 5  # versions per snapshot listing page: a few keys take several pages, each checkpointed
BATCH_SIZE = 1  # changes per restore batch: each copy is recorded apart, a crash can fall between any two
PLENTY_MS, SHORT_MS = 900_000, 10_000  # an invocation's remaining time: enough, or below every safety margin

KEYS = ("a/1.csv", "a/2.csv", "a/3.csv", "b/1.csv", "b/2.csv")
PREFIXES = ("", "a/")
# Two bodies of one size with other bytes (a same-size corruption), one shared by several keys, an empty one.
BODIES = (b"id,amount\n1,10\n", b"id,amount\n1,01\n", b"id,amount\n2,20\n", b"id,amount\n3,30\n", b"")
CONTENT_TYPES = ("text/csv", "application/octet-stream")
METADATA: tuple[dict[str, str], ...] = ({}, {"source": "pipeline"}, {"source": "model", "batch": "7"})

# How a step's invocation dies: never (None), after the step's Nth AWS call, before its (N+1)th write into the
# bucket the step changes (a restore's copies and removals in the data bucket, a snapshot's in the backup store),
# or before its (N+1)th write into the state table (a plan's claim, progress, result; the journal).
Crash = tuple[str, int] | None
DEATHS = st.one_of(st.tuples(st.just("call"), st.integers(min_value=0, max_value=70)),
                   st.tuples(st.just("write"), st.integers(min_value=0, max_value=5)),
                   st.tuples(st.just("record"), st.integers(min_value=0, max_value=3)))
CRASHES = st.one_of(st.none(), DEATHS)
S3_WRITES = frozenset({"CopyObject", "PutObject", "DeleteObject", "UploadPartCopy", "CompleteMultipartUpload"})
TABLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
# A snapshot (by its position among those taken) or a moment (by its position among the steps') to restore to.
POINTS = st.tuples(st.sampled_from(["snapshot", "at"]), st.integers(min_value=0, max_value=100))
# None: every invocation has time enough; n: the step's first invocation runs short after n looks at its time.
BUDGETS = st.one_of(st.none(), st.none(), st.integers(min_value=0, max_value=6))


@dataclass(frozen=True)
class Held:
    """What a key holds: its bytes and the headers a restore must bring back."""

    body: bytes
    content_type: str
    metadata: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return f"{self.body!r} {self.content_type} {dict(self.metadata)}"


State = dict[str, Held]


def under(state: Mapping[str, Held], prefix: str) -> State:
    return {key: held for key, held in state.items() if key.startswith(prefix)}


def differences(expected: Mapping[str, Held], actual: Mapping[str, Held]) -> list[str]:
    return [f"{key}: expected {expected[key].describe() if key in expected else 'absent'}, "
            f"holds {actual[key].describe() if key in actual else 'absent'}"
            for key in sorted(expected.keys() | actual.keys()) if expected.get(key) != actual.get(key)]


class ModelContext(LambdaContextStub):
    """A Lambda context whose remaining time runs short after `plenty_answers` looks (None: never)."""

    def __init__(self, function_name: str, plenty_answers: int | None) -> None:
        super().__init__(function_name, PLENTY_MS)
        self._answers = itertools.count()
        self._plenty = plenty_answers

    def get_remaining_time_in_millis(self) -> int:
        if self._plenty is None:
            return PLENTY_MS
        return PLENTY_MS if next(self._answers) < self._plenty else SHORT_MS


@dataclass
class World:
    """What the examples share: moto, the clock, the state table, the alert topics, the crashes, and the events
    the functions sent to themselves (which Lambda would deliver)."""

    traveller: Any
    s3: Any
    state: ControllerStateStore
    alert_topic_arn: str
    emergency_topic_arn: str
    monkeypatch: pytest.MonkeyPatch
    crashes: DyingInvocations
    continuations: list[tuple[str, dict[str, Any]]]
    names: Iterator[int] = field(default_factory=itertools.count)


def _service_models_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore searches its data directories and parses each service's model (megabytes of JSON) for every new
    session, so the cold starts after crashes would spend more time there than in the steps: each is done once
    per test. (botocore treats a loaded model as read-only: the clients of one session share it already.)"""
    parsed: dict[str, Any] = {}
    listed: dict[tuple[tuple[str, ...], str], list[str]] = {}
    parse, list_services = JSONFileLoader.load_file, Loader.list_available_services

    def parsed_once(loader: JSONFileLoader, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = parse(loader, file_path)
        return parsed[file_path]

    def listed_once(loader: Loader, type_name: str) -> list[str]:
        where = (tuple(loader.search_paths), type_name)
        if where not in listed:
            listed[where] = list_services(loader, type_name)
        return listed[where]

    monkeypatch.setattr(JSONFileLoader, "load_file", parsed_once)
    monkeypatch.setattr(Loader, "list_available_services", listed_once)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    _service_models_loaded_once(monkeypatch)
    # The wiring builds snapshotters and restores as production does, with pages and batches of a few keys.
    for module in (backup_wiring, restore_wiring):
        monkeypatch.setattr(module, "BucketSnapshotter", functools.partial(BucketSnapshotter, page_size=PAGE_SIZE))
    monkeypatch.setattr(bucket_restore, "BATCH_SIZE", BATCH_SIZE)
    with mock_aws(), time_machine.travel(START, tick=False) as traveller:
        session = boto3.session.Session(region_name=REGION)
        dynamodb, sns = session.client("dynamodb"), session.client("sns")
        dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}])
        continuations: list[tuple[str, dict[str, Any]]] = []

        def as_aws(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
            if operation == "Invoke" and params.get("InvocationType") == "Event":
                # A function continuing its own work: Lambda accepts the event and runs it later (the model does).
                continuations.append((params["FunctionName"], json.loads(params["Payload"])))
                return {"StatusCode": 202, "ResponseMetadata": {"HTTPStatusCode": 202}}
            return None

        yield World(traveller=traveller, s3=session.client("s3"), state=ControllerStateStore(dynamodb, TABLE),
                    alert_topic_arn=sns.create_topic(Name="model-alerts")["TopicArn"],
                    emergency_topic_arn=sns.create_topic(Name="model-emergency")["TopicArn"],
                    monkeypatch=monkeypatch, crashes=DyingInvocations(as_aws).install(monkeypatch),
                    continuations=continuations)


def md5_etag(body: bytes) -> str:
    return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'


@dataclass
class Restore:
    """A restore the operator asked for: what it restores, and where it stands."""

    plan_id: str
    request: dict[str, Any]  # the planning event, without who asks and why
    prefix: str
    point: State  # the restore point under `prefix`
    planned_at: datetime
    planned_versions: frozenset[tuple[str, str]]  # the current versions under `prefix` when planned
    stale: bool = False  # expired or the bucket changed under its prefix when it was confirmed: to be refused
    before: State | None = None  # the bucket when it was confirmed
    next_events: list[dict[str, Any]] = field(default_factory=list)  # what its next invocations receive


@dataclass(frozen=True)
class Applied:
    plan_id: str
    prefix: str
    safety_snapshot_id: str
    undo: dict[str, Any]


class BucketRestoreModel(RuleBasedStateMachine):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        n = next(world.names)
        self.function = f"model-ingest-{n}"
        self.bucket, self.backups = f"model-data-{n}", f"model-backups-{n}"
        s3 = world.s3
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket=self.backups, ObjectLockEnabledForBucket=True)
        self.store = BackupStore(s3, self.backups)
        environment = {
            "DR_PROTECTED_FUNCTION_NAME": self.function, "DR_STATE_TABLE_NAME": TABLE,
            "DR_ALERT_TOPIC_ARN": world.alert_topic_arn, "DR_EMERGENCY_TOPIC_ARN": world.emergency_topic_arn,
            "DR_HEALTH_ALARM_NAMES": f"{self.function}-LIVE-errors",
            "DR_PERFORMANCE_ALARM_NAMES": f"{self.function}-LIVE-p99-duration",
            "DR_DATA_BUCKET_NAME": self.bucket, "DR_BACKUP_BUCKET_NAME": self.backups,
            "DR_PIPELINE_STACK_NAME": "ModelPipelineStack", "DR_COPY_CONCURRENCY": "1",
            "DR_RETENTION_KEEP_LAST": "100000", "DR_RESTORE_TARGET_BUCKETS": "",
        }
        for name, value in environment.items():
            world.monkeypatch.setenv(name, value)
        recovery_service.cache_clear()
        backup_runner.cache_clear()

        self.expected: State | None = {}  # None while a crashed or paused restore leaves it unknown
        self.history: list[tuple[datetime, State]] = []  # the bucket after each step, at the step's time
        self.moments: list[datetime] = []  # times a restore may be asked for: steps whose changes had one time
        self.snapshot_states: dict[str, State] = {}  # every completed snapshot: the state it must hold
        self.verified: dict[str, str] = {}  # backup-store key (manifest, content) -> its ETag when verified
        self.versions: dict[tuple[str, str], str] = {}  # every version and delete marker of the data bucket seen
        self.planned: Restore | None = None
        self.pending: Restore | None = None
        self.applied: list[Applied] = []
        self.completed: list[str] = []  # plan ids of completed restores
        self.refused: list[str] = []  # plan ids refused at their confirmation
        self.new_snapshots_hold: State | None = None  # what a snapshot completed by the current step holds
        # As a deployment leaves it: a few uploads, and the first scheduled snapshot.
        self._begin("start")
        for key, body in zip(KEYS[:3], BODIES, strict=False):
            self._put(key, Held(body, CONTENT_TYPES[0], ()))
        self._snapshot(None, None)
        self.moments.append(self.now)

    # ------------------------------------------------------------------ the world

    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    def _begin(self, step: str) -> None:
        """A new step, a second (at least) after the last: version times, snapshot ids and plans never share
        a second across steps."""
        self.world.traveller.shift(timedelta(seconds=1))
        self.step, self.step_crashed, self.new_snapshots_hold = step, False, None
        self.crash_after: int | None = None  # the (counted) AWS calls the step's invocations make before one dies
        self.crash_counting: Callable[[str, dict[str, Any]], bool] | None = None  # which calls count (None: all)
        self.world.crashes.disarm()

    def _put(self, key: str, held: Held) -> None:
        self.world.s3.put_object(Bucket=self.bucket, Key=key, Body=held.body, ContentType=held.content_type,
                                 Metadata=dict(held.metadata))
        assert self.expected is not None
        self.expected[key] = held

    def _delete(self, key: str) -> None:
        self.world.s3.delete_object(Bucket=self.bucket, Key=key)
        assert self.expected is not None
        self.expected.pop(key, None)

    def _bucket(self) -> State:
        s3 = self.world.s3
        keys = [entry["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
                for entry in page.get("Contents", [])]
        held = {}
        for key in keys:
            response = s3.get_object(Bucket=self.bucket, Key=key)
            held[key] = Held(response["Body"].read(), response["ContentType"],
                             tuple(sorted(response.get("Metadata", {}).items())))
        return held

    def _current_versions(self, prefix: str) -> frozenset[tuple[str, str]]:
        pages = self.world.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        return frozenset((version["Key"], version["VersionId"]) for page in pages
                         for version in page.get("Versions", []) if version["IsLatest"])

    def _state_at(self, moment: datetime) -> State:
        return next(state for at, state in reversed(self.history) if at <= moment)

    # ------------------------------------------------------------------ invocations

    def _invoke(self, module: Any, function_name: str, event: dict[str, Any], budget: int | None) -> Any:
        """One invocation of a function's real handler; None if it died (the next one starts cold). It dies if
        the step's `crash_after` calls run out in it; a step's invocations die once at most."""
        crashes = self.world.crashes
        crashes.arm(self.crash_after, self.crash_counting)
        answer = None
        try:
            answer = module.handler(event, ModelContext(function_name, budget))
        except Exception:  # the InvocationCrash, or what the dying handler made of it
            if not crashes.fired:
                raise
        finally:
            died, calls = crashes.fired, crashes.calls
            crashes.disarm()
        if died:  # whatever it answered after it died reached nobody
            self.step_crashed, self.crash_after = True, None
            recovery_service.cache_clear()
            backup_runner.cache_clear()
            return None
        if self.crash_after is not None:
            self.crash_after -= calls
        return answer

    def _dies(self, crash: Crash, bucket: str) -> None:
        """The step's invocations die as `crash` says (writes counted: those into `bucket`)."""
        kind, self.crash_after = crash or ("call", None)

        def writes_into_the_bucket(operation: str, params: dict[str, Any]) -> bool:
            return operation in S3_WRITES and params.get("Bucket") == bucket

        def writes_into_the_table(operation: str, params: dict[str, Any]) -> bool:
            return operation in TABLE_WRITES

        self.crash_counting = {"write": writes_into_the_bucket, "record": writes_into_the_table}.get(kind)

    def _continuations(self, function_name: str) -> list[dict[str, Any]]:
        events = [event for name, event in self.world.continuations if name == function_name]
        self.world.continuations[:] = [(n, e) for n, e in self.world.continuations if n != function_name]
        return events

    # ------------------------------------------------------------------ rules: the data bucket

    @precondition(lambda self: self.pending is None)
    @rule(key=st.sampled_from(KEYS), change=st.sampled_from(["put", "headers", "delete"]),
          body=st.sampled_from(BODIES), content_type=st.sampled_from(CONTENT_TYPES),
          metadata=st.sampled_from(METADATA))
    def write(self, key: str, change: str, body: bytes, content_type: str, metadata: dict[str, str]) -> None:
        """The pipeline writes one key: a new object or other bytes; the same bytes with other headers; a
        delete (a delete marker)."""
        self._begin(f"write {change} {key}")
        assert self.expected is not None
        held = Held(body, content_type, tuple(sorted(metadata.items())))
        old = self.expected.get(key)
        if change == "headers" and old is not None:
            # The same bytes with another content type, other user metadata, or both.
            held = Held(old.body, held.content_type, held.metadata)
            if held == old:  # nothing drawn differs: other metadata
                other = next(metadata for metadata in METADATA if metadata != dict(old.metadata))
                held = Held(old.body, old.content_type, tuple(sorted(other.items())))
        if change == "delete":
            self._delete(key)
        else:
            self._put(key, held)
        self.moments.append(self.now)

    @precondition(lambda self: self.pending is None)
    @rule(keys=st.permutations(KEYS))
    def damage(self, keys: list[str]) -> None:
        """At once: one key corrupted at the same size, one deleted, one unwanted object uploaded."""
        self._begin("damage")
        assert self.expected is not None
        corrupted, deleted, added = keys[:3]
        old = self.expected.get(corrupted)
        body = bytes(reversed(old.body)) if old and old.body and old.body != old.body[::-1] else BODIES[3]
        self._put(corrupted, Held(body, old.content_type if old else CONTENT_TYPES[0], old.metadata if old else ()))
        self._delete(deleted)
        self._put(added, Held(b"not,a,pipeline,file\n", "text/plain", (("uploader", "unknown"),)))
        self.moments.append(self.now)

    @rule(seconds=st.sampled_from([5, 120, 3601]))
    def time_passes(self, seconds: int) -> None:
        """Time moves on (3601 s: past a plan's expiry)."""
        self._begin(f"{seconds}s pass")
        self.world.traveller.shift(timedelta(seconds=seconds - 1))
        if self.pending is None:
            self.moments.append(self.now)

    # ------------------------------------------------------------------ rules: snapshots

    @rule(crash=CRASHES, budget=BUDGETS)
    def take_snapshot(self, crash: Crash, budget: int | None) -> None:
        """The backup function's schedule fires: a snapshot, continued with its id when its time runs short,
        the event retried when an invocation crashed, until it completes."""
        self._begin("snapshot")
        self._snapshot(crash, budget)
        if self.pending is None:
            self.moments.append(self.now)

    def _snapshot(self, crash: Crash, budget: int | None) -> None:
        self.new_snapshots_hold = self._bucket() if self.expected is None else dict(self.expected)
        self._dies(crash, self.backups)
        events: list[dict[str, Any]] = [{"component": "s3"}]
        completed = None
        for _ in range(20):
            if not events:
                break
            event = events.pop(0)
            answer = self._invoke(backup_handler, BACKUP_FUNCTION, event, budget)
            budget = None  # only the first invocation runs short
            if answer is None:
                events.insert(0, event)  # Lambda retries the event that crashed
            else:
                assert answer["ok"], f"the backup function refused {event}: {answer}"
                [outcome] = answer["components"]
                assert outcome["status"] in ("complete", "continuing"), outcome
                if outcome["status"] == "complete":
                    completed = outcome["backup_id"]
            events += self._continuations(BACKUP_FUNCTION)
        assert completed is not None and not events, f"the snapshot never completed: {events}"
        self.snapshot_states[completed] = self.new_snapshots_hold

    # ------------------------------------------------------------------ rules: restores

    def _request(self, point: tuple[str, int], prefix: str) -> tuple[dict[str, Any], State] | None:
        """The planning event for a snapshot or a moment, and the state it restores (None: no such point)."""
        kind, pick = point
        if kind == "snapshot":
            if not self.snapshot_states:
                return None
            snapshot_id = sorted(self.snapshot_states)[pick % len(self.snapshot_states)]
            return ({"action": "restore_s3", "snapshot_id": snapshot_id, "prefix": prefix},
                    under(self.snapshot_states[snapshot_id], prefix))
        moment = self.moments[pick % len(self.moments)]
        return {"action": "restore_s3", "at": to_iso(moment), "prefix": prefix}, under(self._state_at(moment), prefix)

    def _plan(self, request: dict[str, Any], point: State) -> Restore | None:
        answer = self._invoke(recovery_handler, RECOVERY_FUNCTION, {**request, **WHO}, None)
        assert answer is not None  # planning is not crashed: it writes only the plan
        if "at" in request:
            moment = datetime.fromisoformat(request["at"])
            restorable = any(backup_time(snapshot_id) <= moment for snapshot_id in self.snapshot_states)
            if not restorable:
                assert not answer["ok"] and "no complete snapshot" in answer["error"], answer
                return None
        assert answer["ok"] and answer["result"]["status"] == "planned", f"{request} not planned: {answer}"
        return Restore(plan_id=answer["result"]["plan_id"], request=request, prefix=request["prefix"], point=point,
                       planned_at=self.now, planned_versions=self._current_versions(request["prefix"]))

    def _confirm(self, restore: Restore, crash: Crash, budget: int | None) -> None:
        assert self.expected is not None
        restore.before = dict(self.expected)
        self.new_snapshots_hold = restore.before  # its safety snapshot
        restore.stale = self._stale(restore)
        self._dies(crash, self.bucket)
        confirm = {**restore.request, **WHO, "confirm": restore.plan_id}
        self._follow(restore, confirm, self._invoke(recovery_handler, RECOVERY_FUNCTION, confirm, budget))

    def _stale(self, restore: Restore) -> bool:
        """Whether a confirmation of `restore` now must be refused: its plan expired (an hour), or the bucket
        changed under its prefix since it was planned."""
        return (self.now - restore.planned_at > timedelta(seconds=3600)
                or self._current_versions(restore.prefix) != restore.planned_versions)

    def _follow(self, restore: Restore, event: dict[str, Any], answer: Any) -> None:
        """Where a restore stands after an invocation answered (or died)."""
        continuations = self._continuations(RECOVERY_FUNCTION)
        if answer is None:
            # Retried as it was; any continuation it sent runs too.
            restore.next_events = [event, *restore.next_events, *continuations]
            self._pend(restore)
            return
        if restore.stale:
            # Expired, or the bucket changed under its prefix since the plan: refused, and nothing changed.
            assert not answer["ok"] and ("expired" in answer["error"] or "changed" in answer["error"]), (
                f"plan {restore.plan_id} was stale, yet: {answer}")
            self.refused.append(restore.plan_id)
            self.pending, self.expected = None, restore.before
            return
        assert answer["ok"], f"{event} refused: {answer}"
        status = answer["result"]["status"]
        if status == "in_progress":
            assert [event["resume"] for event in continuations] == [restore.plan_id], continuations
            restore.next_events += continuations
            self._pend(restore)
            return
        assert status in ("applied", "already_applied"), answer
        assert not continuations, continuations
        self._complete(restore, answer["result"]["result"])

    def _pend(self, restore: Restore) -> None:
        self.pending, self.expected = restore, None

    def _complete(self, restore: Restore, result: dict[str, Any]) -> None:
        self.pending = None
        self.expected = self._check_claim(restore, result, self._bucket(), "completed")
        safety = result["safety_snapshot_id"]
        assert safety, result
        self.snapshot_states.setdefault(safety, restore.before)
        self.applied.append(Applied(restore.plan_id, restore.prefix, safety, result["undo"]))
        self.completed.append(restore.plan_id)

    @staticmethod
    def _check_claim(restore: Restore, result: dict[str, Any], actual: State, context: str) -> State:
        """A restore's result, checked against the bucket read back: (c) its report says what the bucket holds,
        (a) the bucket holds its restore point under its prefix, and what it held before elsewhere. Returns the
        state the bucket must then hold."""
        assert restore.before is not None
        expected = {**{k: v for k, v in restore.before.items() if not k.startswith(restore.prefix)}, **restore.point}
        verification = result["verification"]
        in_scope = under(actual, restore.prefix)
        matching = sum(1 for key, held in restore.point.items() if in_scope.get(key) == held)
        unexpected = len(in_scope.keys() - restore.point.keys())
        assert (verification["objects_expected"], verification["objects_matching"], verification["unexpected"]) == (
            len(restore.point), matching, unexpected), (
            f"{context}: restore {restore.plan_id} reports what the bucket does not hold: {verification}; the "
            f"bucket differs from the restore point in {differences(expected, actual)}")
        assert actual == expected, (f"{context}: restore {restore.plan_id} claims success, but the bucket is not at "
                                    f"its restore point: {differences(expected, actual)}")
        assert verification["ok"], f"{context}: restore {restore.plan_id} not verified: {verification}"
        return expected

    @precondition(lambda self: self.pending is None)
    @rule(point=POINTS, prefix=st.sampled_from(PREFIXES), confirm_now=st.sampled_from([True, True, False]),
          crash=CRASHES, budget=BUDGETS)
    def restore(self, point: tuple[str, int], prefix: str, confirm_now: bool, crash: Crash,
                budget: int | None) -> None:
        """The operator plans a restore to a snapshot or a moment, and confirms it at once or later."""
        self._begin(f"restore to {point[0]} {prefix!r}")
        asked = self._request(point, prefix)
        if asked is None:
            return
        restore = self._plan(*asked)
        if restore is None:
            return
        if confirm_now:
            self._confirm(restore, crash, budget)
        else:
            self.planned = restore

    @precondition(lambda self: self.pending is None)
    @rule(point=POINTS, prefix=st.sampled_from(PREFIXES), crash=DEATHS, then=CRASHES)
    def restore_dies_then_resumes(self, point: tuple[str, int], prefix: str, crash: Crash, then: Crash) -> None:
        """A restore whose confirmation dies after its Nth AWS call, before its (N+1)th copy or removal, or before
        its (N+1)th write into the state table (in its safety snapshot, amid its copies, before it records
        anything); the invariants hold while it is pending; then its next invocation (more often than these would
        follow each other at random)."""
        self.restore(point, prefix, True, crash, None)
        if self.pending is not None:
            self.nothing_is_lost_and_nothing_is_claimed_falsely()
            self.resume(then, None)

    @precondition(lambda self: self.pending is None and self.planned is not None)
    @rule(crash=CRASHES, budget=BUDGETS)
    def confirm_later(self, crash: Crash, budget: int | None) -> None:
        """The operator confirms the plan made earlier; refused if it expired or the bucket changed since."""
        self._begin("confirm later")
        assert self.planned is not None
        restore, self.planned = self.planned, None
        self._confirm(restore, crash, budget)

    @precondition(lambda self: self.pending is None and self.applied)
    @rule(pick=st.integers(0, 100), crash=CRASHES, budget=BUDGETS)
    def undo(self, pick: int, crash: Crash, budget: int | None) -> None:
        """The operator undoes an applied restore with the event its result names: its safety snapshot back."""
        self._begin("undo")
        applied = self.applied[pick % len(self.applied)]
        point = under(self.snapshot_states[applied.safety_snapshot_id], applied.prefix)
        request = dict(applied.undo)
        assert request["target_bucket"] == self.bucket and request["prefix"] == applied.prefix, applied.undo
        restore = self._plan(request, point)
        assert restore is not None
        self._confirm(restore, crash, budget)

    @precondition(lambda self: self.pending is not None)
    @rule(crash=CRASHES, budget=BUDGETS)
    def resume(self, crash: Crash, budget: int | None) -> None:
        """The next invocation of a restore that crashed or paused: Lambda's retry of the event that crashed, or
        the function's continuation; after a retried confirmation that was claimed, the operator resumes."""
        self._begin("resume")
        restore = self.pending
        assert restore is not None and restore.next_events
        self.new_snapshots_hold = restore.before  # its safety snapshot, if it completes now
        self._dies(crash, self.bucket)
        for _ in range(5):
            event = restore.next_events.pop(0)
            if "confirm" in event:
                # A confirmation that died before it claimed the plan changed nothing: it is judged anew. One that
                # claimed it is answered "already confirmed".
                claimed = "applied_at" in (self.world.state.get_plan(self.function, restore.plan_id) or {})
                restore.stale = not claimed and self._stale(restore)
            answer = self._invoke(recovery_handler, RECOVERY_FUNCTION, event, budget)
            budget = None
            resuming = {"action": "restore_s3", "resume": restore.plan_id, **WHO}
            if answer is not None and not answer["ok"] and "already confirmed" in answer["error"]:
                restore.next_events.insert(0, resuming)  # the operator resumes it, as the answer says
                continue
            if answer is not None and answer["ok"] and restore.next_events and \
                    answer["result"]["status"] in ("applied", "already_applied"):
                restore.next_events.clear()  # a duplicate continuation finds the plan applied
            self._follow(restore, event, answer)
            return
        raise AssertionError(f"restore {restore.plan_id} went round in circles: {restore.next_events}")

    # ------------------------------------------------------------------ the invariants

    @invariant()
    def nothing_is_lost_and_nothing_is_claimed_falsely(self) -> None:
        context = f"after step {self.step!r} (crashed: {self.step_crashed})"
        actual = self._bucket()
        # (a) the bucket is what the model expects, whenever it knows (no restore crashed or paused)
        if self.expected is not None:
            assert actual == self.expected, f"{context}: {differences(self.expected, actual)}"
        self.history.append((self.now, actual))
        # (a) a restore still pending claims nothing, unless it did finish: its invocation died after recording a
        # result, which must then be true
        journaled: dict[str, list[str]] = {}
        for entry in self.world.state.journal(self.function, limit=1000):
            if entry["action"] == "restore_s3":
                journaled.setdefault(entry["entry_id"], []).append(entry["result"])
        if self.pending is not None:
            record = self.world.state.get_plan(self.function, self.pending.plan_id) or {}
            if "result" in record:
                self._check_claim(self.pending, json.loads(record["result"]), actual, context)
            else:
                assert self.pending.plan_id not in journaled, f"{context}: pending restore journaled: {journaled}"
        for plan_id in self.completed:
            assert journaled.get(plan_id) == ["applied"], f"{context}: restore {plan_id} journaled {journaled}"
        for plan_id in self.refused:
            record = self.world.state.get_plan(self.function, plan_id) or {}
            assert "applied_at" not in record and plan_id not in journaled, f"{context}: refused {record}"
        # (b) every version and delete marker the data bucket ever had is still there
        pages = self.world.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket)
        now_there = {(item["Key"], item["VersionId"]): item.get("ETag", "delete marker")
                     for page in pages for kind in ("Versions", "DeleteMarkers") for item in page.get(kind, [])}
        lost = {version: etag for version, etag in self.versions.items() if now_there.get(version) != etag}
        assert not lost, f"{context}: versions lost or changed: {lost}"
        self.versions = now_there
        # (b) every completed snapshot holds its state, verifies, and never changes afterwards
        self._check_backup_store(context)

    def _stored(self) -> dict[str, str]:
        store = self.world.s3
        found = {}
        for prefix in (backup_prefix(Component.S3, self.bucket, "x")[: -len("x/")], "content/"):
            for page in store.get_paginator("list_objects_v2").paginate(Bucket=self.backups, Prefix=prefix):
                found.update({entry["Key"]: entry["ETag"] for entry in page.get("Contents", [])})
        return found

    def _check_backup_store(self, context: str) -> None:
        stored = self._stored()
        changed = {key: (etag, stored.get(key)) for key, etag in self.verified.items() if stored.get(key) != etag}
        assert not changed, f"{context}: stored backups changed or gone (was, now): {changed}"
        complete = {key.split("/")[-2] for key in stored if key.endswith("/manifest.json.gz")}
        new = sorted(complete - {key.split("/")[-2] for key in self.verified if key.endswith("/manifest.json.gz")})
        for snapshot_id in new:
            holds = self.snapshot_states.get(snapshot_id, self.new_snapshots_hold)
            assert holds is not None, f"{context}: snapshot {snapshot_id} appeared in a step that takes none"
            self.snapshot_states.setdefault(snapshot_id, holds)
            manifest = self._verify_snapshot(snapshot_id, context)
            self.verified[manifest_key(Component.S3, self.bucket, snapshot_id)] = stored[
                manifest_key(Component.S3, self.bucket, snapshot_id)]
            unstored = manifest.content_keys() - stored.keys()
            assert not unstored, f"{context}: snapshot {snapshot_id} names content never stored: {unstored}"
            self.verified.update({key: stored[key] for key in manifest.content_keys()})
        for applied in self.applied:
            assert applied.safety_snapshot_id in complete, f"{context}: safety snapshot {applied} gone"

    def _verify_snapshot(self, snapshot_id: str, context: str) -> SnapshotManifest:
        manifest = read_manifest(self.store, self.bucket, snapshot_id)  # checks its SHA-256
        holds = self.snapshot_states[snapshot_id]
        recorded = {entry.key: (entry.etag, entry.size, *self._recorded_headers(entry)) for entry in manifest.objects}
        wanted = {key: (md5_etag(held.body), len(held.body), held.content_type, held.metadata)
                  for key, held in holds.items()}
        assert recorded == wanted, (f"{context}: snapshot {snapshot_id} is not the bucket it was taken of: "
                                    f"{recorded} != {wanted}")
        report = ContentChecker(self.store, concurrency=1).check_snapshot(manifest, sample=None, read=True)
        assert report.ok and report.intact == report.content_objects, f"{context}: {report.to_dict()}"
        return manifest

    def _recorded_headers(self, entry: ManifestEntry) -> tuple[str | None, tuple[tuple[str, str], ...]]:
        """The content type and user metadata a snapshot recorded of an entry: its own, or its content object's."""
        if not entry.described_by_content:
            return entry.content_type, tuple(sorted(entry.metadata.items()))
        version = {"VersionId": entry.content_version_id} if entry.content_version_id else {}
        head = self.store.s3.head_object(Bucket=self.store.bucket, Key=entry.content_key, **version)
        return head.get("ContentType"), tuple(sorted(head.get("Metadata", {}).items()))

    def teardown(self) -> None:
        """Every snapshot completed in the example, checked once more, body by body."""
        for snapshot_id in sorted(self.snapshot_states):
            self._verify_snapshot(snapshot_id, "at the end")


def test_restores_end_at_their_restore_point_and_lose_nothing_under_crashes(world: World) -> None:
    run_state_machine_as_test(lambda: BucketRestoreModel(world), settings=MODEL_RUNS)
