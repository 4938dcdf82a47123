"""`make bench`: measured figures, each next to the runbook's own procedure on the same embedded server.

rollback: alarm events fed to the real health watcher (each against a freshly deployed bad version):
AWS calls before the flip, warm handler latency p50/p95, the first (cold-client) invocation, and the
handler module's cold import time in a fresh interpreter; beside it the runbook's quick-rollback.sh
run with the AWS CLI. Requests are counted at the embedded server for both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

from embedded.aws_events import alarm_action_event, invoke_handler, scheduled_event
from embedded.drill import REGION, _embedded_environment
from embedded.moto_gaps import moto_gaps_filled
from embedded.sample_system import SampleSystem, _code_archive, build_sample_system
from embedded.server import RequestCounter, embedded_aws

SEED_QUICK_ROLLBACK = Path(__file__).parent / "seed_procedures" / "quick-rollback.sh"


def _percentile(values: list[float], rank: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(rank / 100 * len(ordered) + 0.5) - 1))]


def _calls_before_flip(log: list[str]) -> int | None:
    return next((i for i, call in enumerate(log) if call.startswith("PUT") and call.endswith("/aliases/LIVE")), None)


def _publish_bad_versions(system: SampleSystem, count: int) -> list[str]:
    lam = system.clients["lambda"]
    versions = []
    for n in range(count):
        lam.update_function_code(FunctionName=system.function_name, ZipFile=_code_archive(f"bad-{n}"))
        versions.append(lam.publish_version(FunctionName=system.function_name)["Version"])
    return versions


def bench_ours(system: SampleSystem, counter: RequestCounter, events: int) -> dict[str, Any]:
    import health_watcher.handler as health_watcher

    lam = system.clients["lambda"]
    latencies, before_flip, rollbacks = [], [], 0
    for version in _publish_bad_versions(system, events):
        lam.update_alias(FunctionName=system.function_name, Name="LIVE", FunctionVersion=version)
        invoke_handler(health_watcher, scheduled_event(datetime.now(timezone.utc)))
        event = alarm_action_event(system.alarms["errors"], "ALARM", datetime.now(timezone.utc), system.function_name)
        counter.reset()
        started = time.perf_counter()
        result, _ = invoke_handler(health_watcher, event)
        latencies.append((time.perf_counter() - started) * 1000)
        before_flip.append(_calls_before_flip(list(counter.log)))
        rollbacks += result["outcome"]["action"] == "rolled_back"
    warm = latencies[1:]
    return {
        "events": events,
        "rollbacks": rollbacks,
        "api_calls_before_flip": {"max": max(before_flip), "median": statistics.median(before_flip)},
        "handler_ms": {"first": round(latencies[0], 2), "p50": round(_percentile(warm, 50), 2),
                       "p95": round(_percentile(warm, 95), 2)},
        "cold_import_ms": cold_import_ms(),
    }


def cold_import_ms(runs: int = 5) -> float:
    """Median time to import the handler module in a fresh interpreter (what a cold start pays)."""
    code = "import time; t = time.perf_counter(); import health_watcher.handler; print((time.perf_counter() - t) * 1000)"
    env = {**os.environ, "PYTHONPATH": "functions:."}
    samples = [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
               for _ in range(runs)]
    return round(statistics.median(samples), 1)


def bench_seed(system: SampleSystem, counter: RequestCounter, runs: int) -> dict[str, Any]:
    aws_cli = Path(sys.executable).with_name("aws")
    env = {**os.environ, "PATH": f"{aws_cli.parent}:{os.environ['PATH']}"}
    lam = system.clients["lambda"]
    durations, before_flip, requests = [], [], []
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
        stack.enter_context(moto_gaps_filled())
        endpoint, counter = stack.enter_context(embedded_aws())
        saved = dict(os.environ)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update(_embedded_environment(endpoint))
        system = build_sample_system(boto3.session.Session(region_name=REGION), endpoint)
        os.environ.update(system.environment())
        ours = bench_ours(system, counter, events)
        seed = bench_seed(system, counter, seed_runs)
    return {"ours": ours, "seed": seed,
            "ratio_p50_seed_over_ours": round(seed["procedure_ms"]["p50"] / ours["handler_ms"]["p50"], 1)}


def _table(rollback: dict[str, Any]) -> str:
    ours, seed = rollback["ours"], rollback["seed"]
    rows = [
        ("", "ours (health_watcher)", "seed (quick-rollback.sh)"),
        ("runs", f"{ours['events']} alarm events", f"{seed['runs']} runs"),
        ("AWS calls before the flip (max)", ours["api_calls_before_flip"]["max"], seed["api_calls_before_flip"]["max"]),
        ("latency p50 (ms)", ours["handler_ms"]["p50"], seed["procedure_ms"]["p50"]),
        ("latency p95 (ms)", ours["handler_ms"]["p95"], seed["procedure_ms"]["p95"]),
        ("first invocation (ms)", ours["handler_ms"]["first"], "-"),
        ("cold import (ms)", ours["cold_import_ms"], "-"),
    ]
    return "\n".join(f"{str(a):<32} {str(b):>24} {str(c):>26}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks against the embedded AWS endpoint")
    parser.add_argument("--report", type=Path, default=Path("reports/bench.json"))
    parser.add_argument("--events", type=int, default=200, help="alarm events fed to our watcher")
    parser.add_argument("--seed-runs", type=int, default=20, help="runs of the runbook's script (a CLI process per call)")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text()) if args.report.exists() else {}
    report["rollback"] = run(args.events, args.seed_runs)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print("rollback\n" + _table(report["rollback"]))
    print(f"\nFigures in {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
