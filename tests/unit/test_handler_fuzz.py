"""Every handler, fed arbitrary JSON and near-valid events (each real shape with fields dropped, nulled,
retyped and oversized), through its real code against moto.

Property: the handler answers (never raises on its input), its answer is JSON as Lambda returns it, an
event that lacks a field its shape requires is refused, and a refused event made no mutating AWS call
(every boto3 client is spied on through botocore's `BaseClient._make_api_call`).

The backup, retention and drill functions run long jobs once an event is accepted; what those jobs do is
tested in test_backup_function.py, test_retention_function.py and test_drill_function.py. Here their runner
is replaced by one that records the request, so that what is fuzzed is the event's way in, at a few
milliseconds an example.

Runs are bounded by the Hypothesis profile (tests/conftest.py): `ci` by default, HYPOTHESIS_PROFILE=thorough
for a long search; a failing example is saved under .hypothesis/ and replayed first next time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st

import backup.handler as backup
import drill.handler as drill
import health_watcher.handler as health_watcher
import performance_watcher.handler as performance_watcher
import recovery.handler as recovery
import region_watcher.handler as region_watcher
import restore_shard.handler as restore_shard
import retention.handler as retention
from embedded.aws_events import (
    LambdaContextStub,
    alarm_action_event,
    alarm_state_change_event,
    cloudtrail_event,
    scheduled_event,
)
from embedded.sample_system import SampleSystem, add_drill_scratch
from tests.support import CallRecorder
from tests.unit.conftest import RECOVERY_FUNCTION

# The moto world is built once per test and shared by its examples: building it per example would cost
# seconds each. Examples that are accepted change it (a rollback, a freeze); the property holds in any state.
fuzz = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

Path = tuple[str | int, ...]
MISSING = object()

# Any JSON a function can be invoked with (NaN and infinities are not JSON).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=25,
)


@dataclass(frozen=True)
class Shape:
    """A real event, and the fields it cannot do without: with any of them missing or null, it is refused."""

    name: str
    event: Any
    required: tuple[Path, ...] = ()
    always_refused: bool = False  # arbitrary JSON: no function has a use for it

    def must_be_refused(self, event: Any) -> bool:
        return self.always_refused or any(_get(event, path) in (MISSING, None) for path in self.required)


@dataclass
class Case:
    shape: Shape
    event: Any
    mutations: list[str] = field(default_factory=list)

    @property
    def must_be_refused(self) -> bool:
        return self.shape.must_be_refused(self.event)


ARBITRARY = st.builds(lambda value: Case(Shape("any JSON", value, always_refused=True), value), JSON_VALUES)


def _get(value: Any, path: Path) -> Any:
    for part in path:
        in_dict = isinstance(value, dict) and isinstance(part, str) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if in_dict or in_list:
            value = value[part]
        else:
            return MISSING
    return value


def _paths(value: Any, at: Path = ()) -> Iterator[Path]:
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield (*at, key)
        yield from _paths(child, (*at, key))


def _other_type(value: Any) -> list[Any]:
    """Values of another JSON type than `value` (bool is not an int here, as it is not in JSON)."""
    candidates: list[Any] = [0, -1, 2**63, 1.5, True, "", "text", [], [value], {}, {"value": value}]
    return [candidate for candidate in candidates if type(candidate) is not type(value)]


def _oversized(value: Any, size: int) -> Any:
    if isinstance(value, str):
        return (value or "x") * (size // max(len(value), 1) + 1)
    if isinstance(value, bool) or value is None:
        return "x" * size
    if isinstance(value, int):
        return 10 ** min(size, 400)
    if isinstance(value, float):
        return 1.7e308
    if isinstance(value, list):
        return (value or ["x"]) * (min(size, 5_000) // max(len(value), 1) + 1)
    return {**value, **{f"extra{n}": "x" for n in range(min(size, 2_000))}}


@st.composite
def near_valid(draw: st.DrawFn, shapes: list[Shape]) -> Case:
    shape = draw(st.sampled_from(shapes))
    case = Case(shape, copy.deepcopy(shape.event))
    for _ in range(draw(st.integers(0, 3))):  # none: the real shape itself, which must be answered too
        paths = list(_paths(case.event))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        *parent_path, key = path
        parent = _get(case.event, tuple(parent_path))
        mutation = draw(st.sampled_from(["drop", "null", "retype", "oversize"]))
        if mutation == "drop":
            del parent[key]
        elif mutation == "null":
            parent[key] = None
        elif mutation == "retype":
            parent[key] = draw(st.sampled_from(_other_type(parent[key])))
        else:
            size = draw(st.sampled_from([2 * len(str(parent[key])), 300, 5_000, 200_000]))
            parent[key] = _oversized(parent[key], size)
        case.mutations.append(f"{mutation} {'.'.join(map(str, path))}")
    return case


def events(shapes: list[Shape]) -> st.SearchStrategy[Case]:
    """Arbitrary JSON, and the function's real events damaged."""
    return st.one_of(ARBITRARY, near_valid(shapes))


def check_answer(case: Case, answer: Any, refused: bool, calls: CallRecorder) -> None:
    tally(f"{case.shape.name}: {'refused' if refused else 'accepted'}")  # see --hypothesis-show-statistics
    json.dumps(answer)  # what Lambda does with the answer: it must be JSON as it stands
    if case.must_be_refused:
        assert refused, answer
    if refused:
        assert calls.mutating() == [], (answer, calls.mutating())


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    return CallRecorder().spy_on_every_client(monkeypatch)


# The watchers

WATCHERS = {"health_watcher": (health_watcher, ("errors", "throttles", "health-probe")),
            "performance_watcher": (performance_watcher, ("avg-duration", "p99-duration"))}
ENVELOPE: tuple[Path, ...] = (("version",), ("id",), ("source",), ("account",), ("time",), ("region",),
                              ("resources",), ("detail-type",))
ALARM_DATA: tuple[Path, ...] = (("alarmName",), ("state",), ("state", "value"), ("state", "timestamp"))


def watcher_shapes(system: SampleSystem, kinds: tuple[str, ...]) -> list[Shape]:
    at = datetime.now(UTC) - timedelta(minutes=1)
    shapes = [Shape("tick", scheduled_event(at), ENVELOPE)]
    for kind in kinds:
        name = system.alarms[kind]
        for state in ("ALARM", "OK"):
            shapes.append(Shape(f"{kind} {state} alarm action",
                                alarm_action_event(name, state, at, system.function_name),
                                (("alarmData",), *((("alarmData", *path)) for path in ALARM_DATA))))
            shapes.append(Shape(f"{kind} {state} state change",
                                alarm_state_change_event(name, state, at, system.function_name),
                                (*ENVELOPE, ("detail",), *((("detail", *path)) for path in ALARM_DATA))))
    return shapes


@pytest.fixture
def watcher_world(system: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    # A candidate baking on LIVE, so that an accepted alarm has something to roll back.
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])
    for name, value in system.environment().items():
        monkeypatch.setenv(name, value)
    return system


def invoke_watcher(name: str, event: Any, calls: CallRecorder) -> tuple[Any, bool]:
    calls.calls.clear()
    answer = WATCHERS[name][0].handler(event, LambdaContextStub(f"apilados-dr-{name}"))
    return answer, answer["status"] == "ignored"


@pytest.mark.parametrize("name", WATCHERS)
@fuzz
@given(data=st.data())
def test_a_watcher_answers_any_event(watcher_world, spy, name, data):
    case = data.draw(events(watcher_shapes(watcher_world, WATCHERS[name][1])), label="event")
    answer, refused = invoke_watcher(name, case.event, spy)
    check_answer(case, answer, refused, spy)


# The recovery function (the operator's console)

WHO = {"requested_by": "alice@example.com", "reason": "INC-7 fuzzing the console"}
OPERATOR: tuple[Path, ...] = (("action",), ("requested_by",), ("reason",))
PAST = "2026-01-01T00:00:00Z"
BACKUP_ID = "20261126T100000Z-abc123"


def recovery_shapes() -> list[Shape]:
    def operated(action: str, *required: str, **parameters: Any) -> Shape:
        return Shape(action, {"action": action, **WHO, **parameters}, (*OPERATOR, *((name,) for name in required)))

    return [
        Shape("status", {"action": "status"}, (("action",),)),
        Shape("validate", {"action": "validate", **WHO}, (("action",),)),
        Shape("list_backups", {"action": "list_backups", "component": "s3", "limit": 5}, (("action",), ("component",))),
        *(operated(action) for action in ("rollback", "promote", "freeze", "unfreeze")),
        operated("release", "version", version="2", canary_percent=10.0, force=False),
        operated("recover_version", "version", version="2", force=False),
        operated("restore_s3", "snapshot_id", snapshot_id=BACKUP_ID, prefix="uploads/2026/",
                 target_bucket="apilados-scratch-restore"),
        operated("restore_s3", "at", at=PAST, prefix="uploads/"),
        operated("restore_s3", "snapshot_id", snapshot_id=BACKUP_ID, confirm="rp-0123456789"),
        operated("restore_s3", "resume", resume="rp-0123456789"),
        operated("recover_from_backup", "backup_id", backup_id=BACKUP_ID, target="apilados-pipeline-ingest-restored"),
        operated("recover_stack", "backup_id", "mode", backup_id=BACKUP_ID, mode="new",
                 parameter_values={"Stage": "prod"}),
        operated("comprehensive_rollback", "at", at=PAST, parameter_values={"Stage": "prod"}),
        operated("configure_replication"),
        operated("configure_replication", confirm="rr-0123456789"),
        operated("failover", force=True),
        operated("failover", confirm="fo-0123456789", force=False),
        operated("failover", "resume", resume="fo-0123456789"),
        operated("failback", prefer="secondary"),
        operated("failback", confirm="fb-0123456789"),
    ]


def invoke_recovery(event: Any, calls: CallRecorder) -> tuple[Any, bool]:
    calls.calls.clear()
    answer = recovery.handler(event, LambdaContextStub(RECOVERY_FUNCTION))
    return answer, answer["ok"] is False


@fuzz
@given(data=st.data())
def test_the_recovery_function_answers_any_event(world, spy, data):
    case = data.draw(events(recovery_shapes()), label="event")
    answer, refused = invoke_recovery(case.event, spy)
    check_answer(case, answer, refused, spy)


# The backup and drill functions, their long jobs recorded rather than run

class RecordingRunner:
    """Stands in for the backup or drill runner: records what it was asked, touches nothing."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> RecordingRunner:  # the wiring builder's place
        return self

    def run(self, request: Any, remaining_ms: Callable[[], int]) -> list[Any]:
        self.requests.append(request)
        return []

    def start(self, drill_id: str, requested_by: str, reason: str, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        self.requests.append(drill_id)
        return {"status": "recorded", "drill_id": drill_id}

    def resume(self, drill_id: str, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        self.requests.append(drill_id)
        return {"status": "recorded", "drill_id": drill_id}


@pytest.fixture
def runner(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> RecordingRunner:
    add_drill_scratch(world)
    for name, value in {**world.backup_environment(), **world.drill_environment()}.items():
        monkeypatch.setenv(name, value)
    recording = RecordingRunner()
    monkeypatch.setattr(backup, "backup_runner", recording)
    monkeypatch.setattr(drill, "drill_runner", recording)
    return recording


def backup_shapes(system: SampleSystem) -> list[Shape]:
    change = cloudtrail_event("UpdateFunctionConfiguration20150331v2", system.function_name)
    return [
        Shape("schedule", {"component": "lambda"}, (("component",),)),
        Shape("everything", {"component": "all", "reason": "before the migration"}, (("component",),)),
        Shape("continuation", {"component": "s3", "resume": BACKUP_ID, "reason": "scheduled"}, (("component",),)),
        Shape("configuration change", change,
              (*ENVELOPE, ("detail",), ("detail", "eventSource"), ("detail", "eventName"),
               ("detail", "requestParameters"), ("detail", "requestParameters", "functionName"))),
    ]


def invoke_backup(event: Any, calls: CallRecorder, runner: RecordingRunner) -> tuple[Any, bool]:
    calls.calls.clear()
    runner.requests.clear()
    answer = backup.handler(event, LambdaContextStub("apilados-dr-backup"))
    refused = answer.get("status") == "ignored" or answer["ok"] is False
    assert refused != bool(runner.requests), (answer, runner.requests)  # runs exactly what it accepts
    return answer, refused


@fuzz
@given(data=st.data())
def test_the_backup_function_answers_any_event(world, runner, spy, data):
    case = data.draw(events(backup_shapes(world)), label="event")
    answer, refused = invoke_backup(case.event, spy, runner)
    check_answer(case, answer, refused, spy)


DRILL_SHAPES = [
    Shape("operator", {"action": "drill", **WHO}, (("action",), ("requested_by",))),
    Shape("schedule", {"action": "drill", "requested_by": "schedule", "reason": "scheduled DR drill",
                       "scheduled_at": "2026-11-30T06:00:00Z"}, (("action",), ("requested_by",))),
    Shape("continuation", {"resume": "drill-20261130T060000Z"}, (("resume",),)),
]


def invoke_drill(event: Any, calls: CallRecorder, runner: RecordingRunner) -> tuple[Any, bool]:
    calls.calls.clear()
    runner.requests.clear()
    answer = drill.handler(event, LambdaContextStub("apilados-dr-drill"))
    refused = answer["ok"] is False
    assert refused != bool(runner.requests), (answer, runner.requests)
    return answer, refused


@fuzz
@given(data=st.data())
def test_the_drill_function_answers_any_event(runner, spy, data):
    case = data.draw(events(DRILL_SHAPES), label="event")
    answer, refused = invoke_drill(case.event, spy, runner)
    check_answer(case, answer, refused, spy)


class RecordingRetention(RecordingRunner):
    """Stands in for a retention run: records the request, touches nothing."""

    def run(self, request: Any, remaining_ms: Callable[[], int]) -> dict[str, Any]:  # type: ignore[override]
        self.requests.append(request)
        return {"pruned": {}}


RETENTION_SHAPES = [
    Shape("schedule", {"action": "retention"}, (("action",),)),
    Shape("operator", {"action": "retention", **WHO}, (("action",),)),
]


@pytest.fixture
def retention_runner(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> RecordingRetention:
    for name, value in world.backup_environment().items():
        monkeypatch.setenv(name, value)
    recording = RecordingRetention()
    monkeypatch.setattr(retention, "retention_run", recording)
    return recording


@fuzz
@given(data=st.data())
def test_the_retention_function_answers_any_event(retention_runner, spy, data):
    case = data.draw(events(RETENTION_SHAPES), label="event")
    spy.calls.clear()
    retention_runner.requests.clear()
    answer = retention.handler(case.event, LambdaContextStub("apilados-dr-retention"))
    refused = answer["ok"] is False
    assert refused != bool(retention_runner.requests), (answer, retention_runner.requests)
    check_answer(case, answer, refused, spy)


# The restore shard worker: its shard's work recorded rather than run

class RecordingShardWorker:
    """Stands in for the shard worker: records the shards it was asked for, touches nothing."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> RecordingShardWorker:  # the wiring builder's place
        return self

    def run(self, shard: Any, remaining_ms: Callable[[], int]) -> Any:
        from drcore.restore.restore_shards import ShardRun

        self.requests.append((shard.target_bucket, shard.plan_id, shard.number))
        return ShardRun(shard.number, True, 0, 0, 0, None)


@pytest.fixture
def shard_worker(world: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> RecordingShardWorker:
    for name, value in world.backup_environment().items():
        monkeypatch.setenv(name, value)
    recording = RecordingShardWorker()
    monkeypatch.setattr(restore_shard, "restore_shard_worker", recording)
    return recording


def shard_shapes(system: SampleSystem) -> list[Shape]:
    shard = {"shard": {"plan_id": "rp-0123456789", "target_bucket": system.data_bucket, "number": 3}}
    return [Shape("map item", shard, (("shard",), ("shard", "plan_id"), ("shard", "target_bucket"),
                                      ("shard", "number")))]


@fuzz
@given(data=st.data())
def test_the_restore_shard_worker_answers_any_event(world, shard_worker, spy, data):
    case = data.draw(events(shard_shapes(world)), label="event")
    spy.calls.clear()
    shard_worker.requests.clear()
    answer = restore_shard.handler(case.event, LambdaContextStub("apilados-dr-restore-shard"))
    refused = answer["ok"] is False
    assert refused != bool(shard_worker.requests), (answer, shard_worker.requests)
    check_answer(case, answer, refused, spy)


# The region watcher (standby stack): only a scheduled event is acted on

@pytest.fixture
def region_world(system: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    from drcore.core.config import FailoverEnvVar, RegionEnvVar
    for name, value in {**system.environment(), FailoverEnvVar.PRIMARY_REGION: "us-east-1",
                        FailoverEnvVar.RECOVERY_FUNCTION_NAME: "apilados-dr-recovery",
                        RegionEnvVar.SECONDARY_REGION: "us-west-2"}.items():
        monkeypatch.setenv(name, value)
    return system


@fuzz
@given(data=st.data())
def test_the_region_watcher_answers_any_event(region_world, spy, data):
    at = datetime.now(UTC) - timedelta(minutes=1)
    case = data.draw(events([Shape("tick", scheduled_event(at, rule="apilados-dr-region-tick"), ENVELOPE)]),
                     label="event")
    spy.calls.clear()
    answer = region_watcher.handler(case.event, LambdaContextStub("apilados-dr-region-watcher"))
    check_answer(case, answer, answer["status"] == "ignored", spy)
