"""`make drill`: a DR drill against an embedded AWS endpoint, with the real handlers.

It starts a moto server in this process, builds the sample protected system through the AWS API,
and feeds the watcher handlers events of the exact shapes AWS sends:

1. backup_lambda, backup_s3, backup_stack, rpo_check: the backup function's real handler backs up
   the function (code verified), the data bucket (incrementally), the stack and the logs, and every
   component's newest backup must be younger than its recovery point objective (embedded/drill_backups.py).
   restore_s3: the data bucket damaged (same-size corruption, deletions, additions) and restored through
   the recovery function's plan and confirm; recover_lambda: the function rebuilt from its backup under
   a scratch name; recover_stack: the stack recreated as `<stack>-recovery` (embedded/drill_recovery.py).
2. auto_rollback: a deployment puts LIVE on a bad version; its errors alarm fires; the health watcher,
   invoked as the alarm's action, must put LIVE back on STABLE within the Lambda RTO. The AWS calls
   before the flip are counted at the server.
3. promote: a fixed version is deployed, serves traffic with every alarm OK, the bake time passes
   (simulated clock: time-machine moves the process's clock), and the health tick must promote it.
4. drill_function: the drill function's real handler, as its weekly schedule invokes it in AWS, restores
   the newest backups into its scratch function and bucket, validates the stack backup, and reports
   (drcore.drill.runner); every one of its steps must pass.
5. failover, failback: the secondary region added, the recovery function's real handler fails over (as the standby
   runs it) and back (as the primary runs it) while uploads keep arriving; each judged by what is read back: which
   bucket processes, environments and notifications kept, no upload processed twice (embedded/drill_failover.py).

Writes reports/drill-report.json and reports/drill-report.md; exits non-zero if a step fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import time_machine

from drcore.core.config import DEFAULT_METRICS_NAMESPACE, DrillEnvironment
from drcore.core.metric_names import DRILL_PASSED_METRIC, ENVIRONMENT_DIMENSION, PROMOTIONS_METRIC, ROLLBACKS_METRIC
from drcore.core.models import Cause, to_iso
from drcore.drill.report import DrillReport, DrillStep
from drcore.state.store import ControllerStateStore
from embedded.aws_events import LambdaContextStub, alarm_action_event, invoke_handler, scheduled_event
from embedded.drill_backups import backup_lambda, backup_s3, backup_stack, recovery_objectives, rpo_check
from embedded.drill_failover import add_regions, failback, failover
from embedded.drill_recovery import recover_lambda, recover_stack, restore_s3
from embedded.sample_system import SampleSystem, add_buckets, add_drill_scratch, build_sample_system
from embedded.server import RequestCounter
from embedded.world import REGION, embedded_world


def _step(name: str, objective: float | None, run: Callable[[], tuple[bool, dict[str, Any]]]) -> DrillStep:
    started = time.perf_counter()
    try:
        ok, details = run()
    except Exception as error:  # noqa: BLE001 - a drill reports a failed step; it does not stop at the first error
        ok, details = False, {"error": f"{type(error).__name__}: {error}"}
    return DrillStep(name=name, ok=ok, seconds=round(time.perf_counter() - started, 3), objective_seconds=objective,
                     details=details)


def _auto_rollback(system: SampleSystem, counter: RequestCounter) -> tuple[bool, dict[str, Any]]:
    import health_watcher.handler as health_watcher

    lam = system.clients["lambda"]
    stable = system.alias_version("STABLE")
    bad = system.versions["bad"]
    # A deployment pipeline releases the bad version; the next health tick adopts it as a candidate.
    lam.update_alias(FunctionName=system.function_name, Name="LIVE", FunctionVersion=bad)
    invoke_handler(health_watcher, scheduled_event(datetime.now(UTC)))
    # CloudWatch moves the errors alarm to ALARM and invokes its action with the alarm's own timestamp.
    system.set_alarm("errors", "ALARM", "Threshold Crossed: 3 datapoints were greater than the threshold (1.0)")
    alarm = system.clients["cloudwatch"].describe_alarms(AlarmNames=[system.alarms["errors"]])["MetricAlarms"][0]
    event = alarm_action_event(system.alarms["errors"], "ALARM", alarm["StateUpdatedTimestamp"], system.function_name)
    system.drain_alerts()  # the earlier steps' alerts (each applied recovery's validation) are theirs, not this one's
    counter.reset()
    started = time.perf_counter()
    result, metrics = invoke_handler(health_watcher, event)
    handler_ms = (time.perf_counter() - started) * 1000
    calls = list(counter.log)
    flip = next((i for i, call in enumerate(calls) if call.startswith("PUT") and call.endswith("/aliases/LIVE")), None)
    live_after = system.alias_version("LIVE")
    alerts = system.drain_alerts()
    details = {
        "from_version": result.get("outcome", {}).get("from_version"),
        "to_version": live_after,
        "api_calls_before_flip": flip,
        "handler_ms": round(handler_ms, 1),
        "calls_in_order": calls,
        "alerts": [alert["subject"] for alert in alerts],
        "metrics_emitted": metrics,
    }
    ok = (live_after == stable and details["from_version"] == bad and flip is not None and flip <= 3
          and [alert["severity"] for alert in alerts] == [2] and ROLLBACKS_METRIC in metrics)
    return ok, details


def _promote(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    import health_watcher.handler as health_watcher

    lam, cloudwatch = system.clients["lambda"], system.clients["cloudwatch"]
    fix = system.versions["fix"]
    before = system.alias_version("STABLE")
    # The bad version's alarm recovers once LIVE is back on STABLE; the team deploys the fix.
    for kind in system.alarms:
        system.set_alarm(kind, "OK", "Threshold Crossed: no datapoints above the threshold")
    lam.update_alias(FunctionName=system.function_name, Name="LIVE", FunctionVersion=fix)
    adopted, _ = invoke_handler(health_watcher, scheduled_event(datetime.now(UTC)))
    bake_minutes = 31
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=bake_minutes), tick=True):
        # The fix served traffic during the bake; moto runs no code, so the drill records what Lambda
        # would publish for it.
        served_at = datetime.now(UTC) - timedelta(minutes=5)
        dimensions = [{"Name": "FunctionName", "Value": system.function_name},
                      {"Name": "Resource", "Value": f"{system.function_name}:LIVE"},
                      {"Name": "ExecutedVersion", "Value": fix}]
        cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=[
            {"MetricName": "Invocations", "Dimensions": dimensions, "Value": 1.0, "Timestamp": served_at}
            for _ in range(25)] + [
            {"MetricName": "Duration", "Dimensions": dimensions, "Value": 800.0 + 10 * n, "Timestamp": served_at}
            for n in range(25)])
        result, metrics = invoke_handler(health_watcher, scheduled_event(datetime.now(UTC)))
    outcomes = result.get("outcomes", [])
    promoted = next((outcome for outcome in outcomes if outcome["action"] == "promoted"), None)
    stable_after = system.alias_version("STABLE")
    details = {
        "candidate": fix,
        "stable_before": before,
        "stable_after": stable_after,
        "simulated_bake_minutes": bake_minutes,
        "adoption": [outcome["action"] for outcome in adopted.get("outcomes", [])],
        "verdict": promoted["detail"] if promoted else [outcome.get("detail") for outcome in outcomes],
        "stable_p99_ms": promoted["facts"].get("stable_p99_ms") if promoted else None,
        "metrics_emitted": metrics,
    }
    ok = (promoted is not None and stable_after == fix and system.alias_version("LIVE") == fix
          and PROMOTIONS_METRIC in metrics)
    return ok, details


def _drill_function() -> tuple[bool, dict[str, Any]]:
    import drill.handler as drill

    event = {"action": "drill", "requested_by": "make drill", "reason": "the embedded drill runs the drill function",
             "scheduled_at": datetime.now(UTC).isoformat()}
    result = drill.handler(event, LambdaContextStub("apilados-dr-drill"))
    if not result["ok"]:
        return False, {"error": result["error"]}
    report = result["report"]
    restore = next(step for step in report["steps"] if step["name"] == "restore_s3")
    details = {
        "drill_id": result["drill_id"],
        "status": result["status"],
        "steps": {step["name"]: {"ok": step["ok"], "seconds": step["seconds"], "objective": step["objective_seconds"]}
                  for step in report["steps"]},
        "restored": {key: restore["details"][key] for key in ("snapshot_id", "objects_expected", "objects_matching",
                                                             "error") if key in restore["details"]},
        "report": report["report_key"],
    }
    return result["status"] == "finished" and result["passed"], details


def _record(report: DrillReport, system: SampleSystem) -> None:
    """Like a drill in AWS would: its result in the journal (the recovery function's `status` shows the
    last one) and as the `DrillPassed` metric the dashboard plots."""
    ControllerStateStore(system.clients["dynamodb"], system.table).append_journal(
        system.function_name, entry_id=f"drill-{report.started_at}", at=report.finished_at, action="drill",
        cause=Cause(kind="drill", summary=f"DR drill ({report.environment})"),
        result="passed" if report.ok else "failed", details=report.summary())
    # The functions run with the default namespace here: the sample system sets no DR_METRICS_NAMESPACE.
    system.clients["cloudwatch"].put_metric_data(Namespace=DEFAULT_METRICS_NAMESPACE, MetricData=[{
        "MetricName": DRILL_PASSED_METRIC, "Value": 1 if report.ok else 0, "Unit": "None",
        "Dimensions": [{"Name": ENVIRONMENT_DIMENSION, "Value": report.environment}]}])


def run_drill(report_dir: Path, regions: bool = True) -> DrillReport:
    """The drill; `regions=False` leaves out the failover and failback steps (the IAM scenarios run their own)."""
    report = DrillReport(environment=DrillEnvironment.EMBEDDED.value, started_at=to_iso(datetime.now(UTC)))
    with ExitStack() as stack:
        world = stack.enter_context(embedded_world())
        endpoint, counter, behaviour = world.endpoint, world.counter, world.behaviour
        session = boto3.session.Session(region_name=REGION)
        system = build_sample_system(session, endpoint)
        add_buckets(system, session, endpoint)
        add_drill_scratch(system)
        os.environ.update({**system.environment(), **system.backup_environment(), **system.drill_environment()})
        behaviour.set_failing(system.function_name, system.versions["bad"])
        objectives = recovery_objectives()
        report.steps.append(_step("backup_lambda", objectives["lambda_function"]["rpo_seconds"],
                                  lambda: backup_lambda(system)))
        report.steps.append(_step("backup_s3", objectives["s3_data"]["rpo_seconds"], lambda: backup_s3(system)))
        report.steps.append(_step("backup_stack", None, lambda: backup_stack(system)))
        report.steps.append(_step("rpo_check", None, lambda: rpo_check(system)))
        report.steps.append(_step("restore_s3", objectives["s3_data"]["rto_seconds"], lambda: restore_s3(system)))
        report.steps.append(_step("recover_lambda", objectives["lambda_function"]["rto_seconds"],
                                  lambda: recover_lambda(system)))
        report.steps.append(_step("recover_stack", objectives["configuration"]["rto_seconds"],
                                  lambda: recover_stack(system)))
        report.steps.append(_step("auto_rollback", objectives["lambda_function"]["rto_seconds"],
                                  lambda: _auto_rollback(system, counter)))
        report.steps.append(_step("promote", None, lambda: _promote(system)))
        report.steps.append(_step("drill_function", None, _drill_function))
        if regions:
            add_regions(system, session, endpoint)
            report.steps.append(_step("failover", None, lambda: failover(system, behaviour)))
            report.steps.append(_step("failback", None, lambda: failback(system, behaviour)))
        report.finished_at = to_iso(datetime.now(UTC))
        _record(report, system)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "drill-report.json").write_text(report.to_json())
    (report_dir / "drill-report.md").write_text(report.to_markdown())
    return report


def _summary(report: DrillReport) -> str:
    lines = [f"DR drill on the embedded AWS endpoint: {'PASSED' if report.ok else 'FAILED'}"]
    for step in report.steps:
        mark = "ok  " if step.ok and step.within_objective else "FAIL"
        lines.append(f"  [{mark}] {step.name:<14} {step.seconds:8.3f}s"
                     + (f"  (objective {step.objective_seconds:g}s)" if step.objective_seconds else ""))
        for key, value in step.details.items():
            if key != "calls_in_order":
                lines.append(f"         {key}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    report = run_drill(args.report_dir)
    print(_summary(report))
    print(f"\nReport: {args.report_dir / 'drill-report.json'} and {args.report_dir / 'drill-report.md'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
