"""`make bench`: measured figures, each next to the runbook's own procedure on the same embedded server.

rollback: alarm events fed to the real health watcher (each against a freshly deployed bad version):
AWS calls before the flip, warm handler latency p50/p95 and, within it, the time from the event entering
the handler to UpdateAlias answering (flip_ms), the first (cold-client) invocation; beside it the
runbook's quick-rollback.sh run with the AWS CLI. Requests are counted at the embedded server for both.
Then each function's handler module imported cold in a fresh interpreter, next to the floor every
function pays (boto3 and the Powertools logger).

snapshot: a bucket of N small objects; our first snapshot, then 1% of the objects get new content, and
our second; beside them the runbook's s3-backup.sh method, `aws s3 sync` of the whole bucket to a new
dated prefix, for the same two states. Each run reports its time, the requests the server received,
the objects it copied and the bytes it added to its backup bucket (content, manifests, checkpoints).

restore: the same bucket damaged (1% corrupted in place at the same size, 1% deleted, 1% added); our
plan + apply + verify next to the runbook's recover-s3-pit.sh (`aws s3 sync --delete` from the full
dated copy), each judged by how many objects match the snapshot afterwards (embedded/bench_restore.py).

failover: a region failover and failback in the two-region world while uploads continue, the runbook's
failover-region.sh and failback-region.sh run with the AWS CLI (as written, and with their two CLI syntax errors
corrected) next to ours, each judged by time, environment variables and notification entries lost, uploads
processed twice or never, and objects lost on failback (embedded/bench_failover.py). Ours is the recovery function's
failover and failback actions through its real handler.

scale: a bucket of 10 million objects, modelled by the planning code at S3's documented limits, not run
(embedded/bench_scale.py); beside it, what a snapshot manifest costs in memory to write and read, measured
(embedded/bench_manifest_memory.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from embedded.aws_events import alarm_action_event, invoke_handler, scheduled_event
from embedded.bench_failover import failover_table, run_failover_bench
from embedded.bench_manifest_memory import manifest_memory, manifest_memory_table
from embedded.bench_restore import restore_table, run_restore_bench
from embedded.bench_scale import scale_model, scale_table
from embedded.moto_gaps import versions_listed_without_copying_bodies
from embedded.sample_system import SampleSystem, _code_archive, build_sample_system
from embedded.server import RequestCounter
from embedded.world import REGION, embedded_world
from stacks.constructs.controller_functions import powertools_version
from stacks.function_asset import BUILD_ROOT, COMPLETE_MARKER, RUNTIME_PYTHON, function_asset, runtime_python

SEED_QUICK_ROLLBACK = Path(__file__).parent / "seed_procedures" / "quick-rollback.sh"


def _percentile(values: list[float], rank: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(rank / 100 * len(ordered) + 0.5) - 1))]


def _calls_before_flip(log: list[str]) -> int:
    """How many requests the server received before the one pointing LIVE elsewhere (every run makes one)."""
    flips = [i for i, call in enumerate(log) if call.startswith("PUT") and call.endswith("/aliases/LIVE")]
    if not flips:
        raise RuntimeError(f"no request pointed LIVE anywhere: {log}")
    return flips[0]


def _publish_bad_versions(system: SampleSystem, count: int) -> list[str]:
    lam = system.clients["lambda"]
    versions = []
    for n in range(count):
        lam.update_function_code(FunctionName=system.function_name, ZipFile=_code_archive(f"bad-{n}"))
        versions.append(lam.publish_version(FunctionName=system.function_name)["Version"])
    return versions


class FlipClock:
    """When UpdateAlias last answered a call pointing LIVE somewhere (perf_counter), seen from the client side:
    installed around the benchmark on botocore's one call path, so the handler runs unchanged."""

    def __init__(self) -> None:
        self.flipped_at: float | None = None

    @contextmanager
    def installed(self) -> Iterator[FlipClock]:
        # _make_api_call is botocore's private method every call goes through; the stubs do not declare it.
        original = BaseClient._make_api_call  # type: ignore[attr-defined]
        clock = self

        def timed(client: Any, operation_name: str, params: dict[str, Any]) -> Any:
            response = original(client, operation_name, params)
            if operation_name == "UpdateAlias" and params.get("Name") == "LIVE":
                clock.flipped_at = time.perf_counter()
            return response

        BaseClient._make_api_call = timed  # type: ignore[attr-defined]  # as above; removed on exit
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[attr-defined]  # as above


def bench_ours(system: SampleSystem, counter: RequestCounter, events: int) -> dict[str, Any]:
    import health_watcher.handler as health_watcher

    lam = system.clients["lambda"]
    latencies: list[float] = []
    flips: list[float] = []
    before_flip: list[int] = []
    rollbacks = 0
    with FlipClock().installed() as flip_clock:
        for version in _publish_bad_versions(system, events):
            lam.update_alias(FunctionName=system.function_name, Name="LIVE", FunctionVersion=version)
            invoke_handler(health_watcher, scheduled_event(datetime.now(UTC)))
            event = alarm_action_event(system.alarms["errors"], "ALARM", datetime.now(UTC), system.function_name)
            counter.reset()
            flip_clock.flipped_at = None
            started = time.perf_counter()
            result, _ = invoke_handler(health_watcher, event)
            latencies.append((time.perf_counter() - started) * 1000)
            if flip_clock.flipped_at is not None:
                flips.append((flip_clock.flipped_at - started) * 1000)
            before_flip.append(_calls_before_flip(list(counter.log)))
            rollbacks += result["outcome"]["action"] == "rolled_back"
    warm, warm_flips = latencies[1:], flips[1:]
    return {
        "events": events,
        "rollbacks": rollbacks,
        "api_calls_before_flip": {"max": max(before_flip), "median": statistics.median(before_flip)},
        "handler_ms": {"first": round(latencies[0], 2), "p50": round(_percentile(warm, 50), 2),
                       "p95": round(_percentile(warm, 95), 2)},
        "flip_ms": {"first": round(flips[0], 2), "p50": round(_percentile(warm_flips, 50), 2),
                    "p95": round(_percentile(warm_flips, 95), 2)},
    }


HANDLER_MODULES = ("health_watcher", "performance_watcher", "backup", "retention", "recovery", "drill")
WATCHERS = ("health_watcher", "performance_watcher")
# What every function imports before any code of ours: boto3 and the Powertools logger.
FLOOR_IMPORT = "import boto3\nfrom aws_lambda_powertools import Logger"
GOAL_ABOVE_FLOOR_MS = {"watcher": 50, "other": 200}


def powertools_layer() -> Path:
    """What AWS's Powertools layer puts under /opt/python: the pinned Powertools with its parser extra, installed
    (and compiled) by the runtime's Python. Kept under build/, so only the first run downloads it."""
    version = powertools_version()
    folder = BUILD_ROOT.parent / "powertools-layer" / f"{version}-py{RUNTIME_PYTHON[0]}{RUNTIME_PYTHON[1]}"
    if not (folder / COMPLETE_MARKER).exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([runtime_python(), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(folder), f"aws-lambda-powertools[parser]=={version}"], check=True)
        (folder / COMPLETE_MARKER).touch()
    return folder


def cold_imports(runs: int = 5) -> dict[str, Any]:
    """Each handler module imported in a fresh interpreter, as a cold start does, next to the floor; medians
    of `runs`, the samples interleaved so that a busy moment of the host weighs on all of them alike.

    The code is imported as Lambda gets it: the deployed asset (our code and the pinned SDK, with bytecode for
    the runtime) first on the path, then the Powertools layer, run by a CPython of the runtime's version that
    writes no bytecode (/var/task is read-only)."""
    env = {**os.environ, "PYTHONPATH": f"{function_asset()}:{powertools_layer()}", "PYTHONDONTWRITEBYTECODE": "1"}
    python = runtime_python()

    def once(statement: str) -> float:
        timed = f"import time\nstarted = time.perf_counter()\n{statement}\n"
        code = timed + "print((time.perf_counter() - started) * 1000)"
        return float(subprocess.run([python, "-s", "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout)

    statements = {"floor": FLOOR_IMPORT, **{name: f"import {name}.handler" for name in HANDLER_MODULES}}
    samples: dict[str, list[float]] = {name: [] for name in statements}
    order = list(statements)
    for round_ in range(runs):
        # Each round starts elsewhere, so that no subject is always the first after a pause.
        for name in order[round_ % len(order):] + order[:round_ % len(order)]:
            samples[name].append(once(statements[name]))
    floor = statistics.median(samples["floor"])
    handlers = {}
    for name in HANDLER_MODULES:
        median = statistics.median(samples[name])
        goal = GOAL_ABOVE_FLOOR_MS["watcher" if name in WATCHERS else "other"]
        handlers[name] = {"ms": round(median, 1), "above_floor_ms": round(median - floor, 1),
                          "goal_above_floor_ms": goal, "met": median - floor <= goal}
    return {"runs": runs, "python": "{}.{}".format(*RUNTIME_PYTHON), "floor_ms": round(floor, 1),
            "handlers": handlers}


def bench_seed(system: SampleSystem, counter: RequestCounter, runs: int) -> dict[str, Any]:
    aws_cli = Path(sys.executable).with_name("aws")
    env = {**os.environ, "PATH": f"{aws_cli.parent}:{os.environ['PATH']}"}
    lam = system.clients["lambda"]
    durations: list[float] = []
    before_flip: list[int] = []
    requests: list[int] = []
    for version in _publish_bad_versions(system, runs):
        lam.update_alias(FunctionName=system.function_name, Name="LIVE", FunctionVersion=version)
        counter.reset()
        started = time.perf_counter()
        subprocess.run(["bash", str(SEED_QUICK_ROLLBACK)], env=env, check=True, capture_output=True)
        durations.append((time.perf_counter() - started) * 1000)
        before_flip.append(_calls_before_flip(list(counter.log)))
        requests.append(counter.total)
    return {
        "runs": runs,
        "api_calls_before_flip": {"max": max(before_flip), "median": statistics.median(before_flip)},
        "requests_per_rollback": statistics.median(requests),
        "procedure_ms": {"p50": round(_percentile(durations, 50), 1), "p95": round(_percentile(durations, 95), 1)},
        "notes": "one AWS CLI process per call; no deduplication, no journal, no alert, no quarantine",
    }


def run(events: int, seed_runs: int) -> dict[str, Any]:
    with ExitStack() as stack:
        world = stack.enter_context(embedded_world())
        endpoint, counter = world.endpoint, world.counter
        system = build_sample_system(boto3.session.Session(region_name=REGION), endpoint)
        os.environ.update(system.environment())
        ours = bench_ours(system, counter, events)
        seed = bench_seed(system, counter, seed_runs)
    return {"ours": ours, "seed": seed,
            "ratio_p50_seed_over_ours": round(seed["procedure_ms"]["p50"] / ours["handler_ms"]["p50"], 1),
            "cold_import": cold_imports()}


def _table(rollback: dict[str, Any]) -> str:
    ours, seed = rollback["ours"], rollback["seed"]
    rows = [
        ("", "ours (health_watcher)", "seed (quick-rollback.sh)"),
        ("runs", f"{ours['events']} alarm events", f"{seed['runs']} runs"),
        ("AWS calls before the flip (max)", ours["api_calls_before_flip"]["max"], seed["api_calls_before_flip"]["max"]),
        ("flip p50 (ms)", ours["flip_ms"]["p50"], "-"),
        ("flip p95 (ms)", ours["flip_ms"]["p95"], "-"),
        ("latency p50 (ms)", ours["handler_ms"]["p50"], seed["procedure_ms"]["p50"]),
        ("latency p95 (ms)", ours["handler_ms"]["p95"], seed["procedure_ms"]["p95"]),
        ("first invocation (ms)", ours["handler_ms"]["first"], "-"),
    ]
    cold = rollback["cold_import"]
    rows += [("", "", ""), (f"cold import (median of {cold['runs']})", "ms", "above floor (goal)"),
             ("floor: boto3 + Powertools Logger", cold["floor_ms"], "-")]
    for name, figures in cold["handlers"].items():
        verdict = "" if figures["met"] else ", missed"
        rows.append((f"{name}.handler", figures["ms"],
                     f"{figures['above_floor_ms']} (<= {figures['goal_above_floor_ms']}{verdict})"))
    return "\n".join(f"{a!s:<32} {b!s:>24} {c!s:>26}" for a, b, c in rows)


SNAPSHOT_DATA_BUCKET = "apilados-production-data"
SNAPSHOT_BACKUP_BUCKET = "apilados-dr-backups"
SEED_BACKUP_BUCKET = "apilados-backup-data"  # s3-backup.sh's BACKUP_BUCKET
CHANGED_SHARE = 0.01
BODY_BYTES = (1024, 4096)


def _bucket_bytes(s3: Any, bucket: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(entry["Size"] for page in pages for entry in page.get("Contents", []))


def _bucket_count(s3: Any, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(len(page.get("Contents", [])) for page in pages)


def _write_objects(s3: Any, keys: list[str], rng: random.Random) -> int:
    """Give each key a new random body of 1-4 KB (not measured); returns the bytes written."""
    bodies = {key: rng.randbytes(rng.randint(*BODY_BYTES)) for key in keys}
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=SNAPSHOT_DATA_BUCKET, Key=key, Body=bodies[key]), keys))
    return sum(len(body) for body in bodies.values())


# Ours runs in a process of its own that imports what the backup function imports, as the seed's AWS
# CLI runs in its own: the embedded server's process then only serves requests, for both. One snapshot,
# continued until finished as the backup function's invocations would continue it.
SNAPSHOT_PROCESS = """
import json, sys
from drcore.state.backup_store import BackupStore
from drcore.backup.bucket_snapshots import BucketSnapshotter
from drcore.core.config import BackupSettings
from drcore.aws.clients import s3_client

data_bucket, backup_bucket = sys.argv[1:]
concurrency = BackupSettings.model_fields["copy_concurrency"].default
s3 = s3_client(concurrency)  # the backup function's own client
snapshotter = BucketSnapshotter(s3, BackupStore(s3, backup_bucket), data_bucket, concurrency=concurrency)
progress = snapshotter.snapshot(None, lambda: 15 * 60 * 1000)
while not progress.finished:
    progress = snapshotter.snapshot(progress.backup_id, lambda: 15 * 60 * 1000)
print(json.dumps(progress.stats))
"""


# What any snapshot that lists the bucket costs at least here: a process as ours, its S3 client, listing every version
# of the bucket one page after another, and nothing else (no manifest, no copy).
LISTING_PROCESS = """
import sys
from drcore.aws.clients import s3_client

s3 = s3_client(1)
for page in s3.get_paginator("list_object_versions").paginate(Bucket=sys.argv[1]):
    pass
"""


def _measured(counter: RequestCounter, command: list[str], copied: Callable[[str], int],
              stored: Callable[[], int]) -> dict[str, Any]:
    before = stored()
    counter.reset()
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "PYTHONPATH": "functions:."}, check=True,
                               capture_output=True, text=True)
    seconds = time.perf_counter() - started
    requests = counter.total
    return {"seconds": round(seconds, 2), "requests": requests, "objects_copied": copied(completed.stdout),
            "bytes_stored": stored() - before}


def bench_snapshot(objects: int) -> dict[str, Any]:
    with ExitStack() as stack:
        counter = stack.enter_context(embedded_world()).counter
        stack.enter_context(versions_listed_without_copying_bodies())
        s3 = boto3.session.Session(region_name=REGION).client("s3", config=Config(max_pool_connections=32))
        for bucket in (SNAPSHOT_DATA_BUCKET, SNAPSHOT_BACKUP_BUCKET, SEED_BACKUP_BUCKET):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=SNAPSHOT_DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        rng = random.Random(20261126)
        keys = [f"uploads/{n // 1000:03d}/record-{n:06d}.csv" for n in range(objects)]
        _write_objects(s3, keys, rng)
        aws_cli = str(Path(sys.executable).with_name("aws"))

        def ours() -> dict[str, Any]:
            command = [sys.executable, "-c", SNAPSHOT_PROCESS, SNAPSHOT_DATA_BUCKET, SNAPSHOT_BACKUP_BUCKET]
            return _measured(counter, command,
                             lambda stdout: json.loads(stdout)["objects_copied"],
                             lambda: _bucket_bytes(s3, SNAPSHOT_BACKUP_BUCKET))

        def seed(date: str) -> dict[str, Any]:
            # s3-backup.sh's sync, to a new dated prefix each time as the runbook does
            return _measured(counter, [aws_cli, "s3", "sync", f"s3://{SNAPSHOT_DATA_BUCKET}",
                                       f"s3://{SEED_BACKUP_BUCKET}/{date}/", "--only-show-errors"],
                             lambda _: _bucket_count(s3, SEED_BACKUP_BUCKET, f"{date}/"),
                             lambda: _bucket_bytes(s3, SEED_BACKUP_BUCKET))

        first = {"ours": ours(), "seed": seed("20261126-120000")}
        changed_bytes = _write_objects(s3, keys[::round(1 / CHANGED_SHARE)], rng)
        second = {"ours": ours(), "seed": seed("20261126-130000")}
        floor = _measured(counter, [sys.executable, "-c", LISTING_PROCESS, SNAPSHOT_DATA_BUCKET],
                          lambda stdout: 0, lambda: 0)
    return {"objects": objects, "changed_bytes": changed_bytes,
            "ours": {"first": first["ours"], "second": second["ours"]},
            "seed": {"first": first["seed"], "second": second["seed"]},
            "listing_floor": {"seconds": floor["seconds"], "requests": floor["requests"]}}


def _snapshot_table(snapshot: dict[str, Any]) -> str:
    ours, seed = snapshot["ours"], snapshot["seed"]
    rows = [("", "ours first", "seed first", "ours second", "seed second")]
    for figure in ("seconds", "requests", "objects_copied", "bytes_stored"):
        rows.append((figure, ours["first"][figure], seed["first"][figure],
                     ours["second"][figure], seed["second"][figure]))
    second_ratio = ("second: seed/ours", "", "",
                    f"{seed['second']['requests'] / max(ours['second']['requests'], 1):.0f}x requests",
                    f"{seed['second']['seconds'] / max(ours['second']['seconds'], 0.01):.0f}x time")
    rows.append(second_ratio)
    header = f"{snapshot['objects']} objects, {snapshot['changed_bytes']} bytes changed in the second"
    table = "\n".join(f"{a!s:<20} {b!s:>14} {c!s:>14} {d!s:>18} {e!s:>14}" for a, b, c, d, e in rows)
    return header + "\n" + table + "\n" + "\n".join(_snapshot_goals(snapshot))


def _snapshot_goals(snapshot: dict[str, Any]) -> list[str]:
    """Each figure against its goal (issue 13)."""
    ours, seed, changed = snapshot["ours"], snapshot["seed"], snapshot["changed_bytes"]
    first_time = ours["first"]["seconds"] / max(seed["first"]["seconds"], 0.01)
    first_requests = ours["first"]["requests"] / max(seed["first"]["requests"], 1)
    second_requests = seed["second"]["requests"] / max(ours["second"]["requests"], 1)
    second_time = seed["second"]["seconds"] / max(ours["second"]["seconds"], 0.01)
    stored_bound = 1.5 * changed + 64 * 1024
    floor = snapshot["listing_floor"]
    return [f"first: time {first_time:.2f}x the seed's (goal <= 1.2x), requests {first_requests:.3f}x (goal <= 1.1x)",
            (f"second: {second_requests:.0f}x fewer requests (goal >= 50x), {second_time:.1f}x faster (goal >= 20x), "
             f"{ours['second']['bytes_stored']} bytes stored (goal <= {stored_bound:.0f}: 1.5x the changed + 64 KB)"),
            (f"floor: listing the bucket alone takes {floor['seconds']} s here ({floor['requests']} requests): a "
             f"snapshot that lists it is at most {seed['second']['seconds'] / max(floor['seconds'], 0.01):.1f}x "
             "faster than the seed's second on this endpoint")]


SECTIONS = ("rollback", "snapshot", "restore", "failover", "scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks against the embedded AWS endpoint")
    parser.add_argument("--report", type=Path, default=Path("reports/bench.json"))
    parser.add_argument("--events", type=int, default=200, help="alarm events fed to our watcher")
    parser.add_argument("--seed-runs", type=int, default=20,
                        help="runs of the runbook's script (a CLI process per call)")
    parser.add_argument("--objects", type=int, default=10_000, help="objects in the snapshot benchmark's bucket")
    parser.add_argument("--failover-uploads", type=int, default=10,
                        help="uploads per phase of the failover scenario (more arrive while each switch runs)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text()) if args.report.exists() else {}
    if "rollback" in args.sections:
        report["rollback"] = run(args.events, args.seed_runs)
    if "snapshot" in args.sections:
        report["snapshot"] = bench_snapshot(args.objects)
    if "restore" in args.sections:
        report["restore"] = run_restore_bench(args.objects)
    if "failover" in args.sections:
        report["failover"] = run_failover_bench(args.failover_uploads)
    if "scale" in args.sections:
        report["scale"] = scale_model() | {"manifest_memory": manifest_memory()}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    if "rollback" in args.sections:
        print("rollback\n" + _table(report["rollback"]))
    if "snapshot" in args.sections:
        print("\nsnapshot\n" + _snapshot_table(report["snapshot"]))
    if "restore" in args.sections:
        print("\nrestore\n" + restore_table(report["restore"]))
    if "failover" in args.sections:
        print("\nfailover\n" + failover_table(report["failover"]))
    if "scale" in args.sections:
        print("\nscale\n" + scale_table(report["scale"]))
        print("\n" + manifest_memory_table(report["scale"]["manifest_memory"]))
    print(f"\nFigures in {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
