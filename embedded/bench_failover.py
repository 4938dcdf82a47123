"""The "failover" section of `make bench`: a region failover and failback, ours next to the runbook's
failover-region.sh and failback-region.sh, each judged by the same read-back figures in the same scenario.

The world (embedded/sample_regions.py, on the embedded server): the pipeline's function in both regions, the data
bucket replicated to the replica, the data bucket notifying the primary LIVE, and on each bucket an audit queue's
notification entry that neither switch owns. The runbook's alert topic (`pipeline-alerts` in the secondary) exists,
so its script runs to its end.

The scenario, the same for both sides:
1. uploads to the data bucket (the primary processing them, replicated);
2. the failover, timed, while uploads keep arriving at the primary (the primary "comes back" during the switch:
   the runbook never stops it);
3. during the failover: uploads to the replica (clients in the secondary), some of them changing existing objects,
   and uploads to the primary (clients still there); some keys changed in both regions (conflicts), the last of the
   primary's writes still pending replication when the failback starts;
4. the failback, timed, while uploads keep arriving at the secondary (where clients are until it is done);
5. uploads to the primary after the failback.

Figures, each read back (embedded/drill_region.py): `seconds` of each switch; `env_vars_lost` (the secondary
function's variables before vs after the failover, the primary's before vs after the failback); `notifications_lost`
(entries other than the pipeline's on the replica and data buckets); `regions_processing` after each switch;
`double_processed` and `unprocessed` uploads over the whole scenario (keys processed more often than written, or
never: the invocation fill's per-key counts against the writes made); `objects_lost` on failback (keys whose last
write is not the primary's current content afterwards: a secondary write never copied back, or a primary write
overwritten by an older one; last-writer-wins is the expectation for a key written in both regions), counted apart
for the writes made in the secondary while the failback ran (`objects_lost_written_during`).

The runbook's scripts run verbatim (SYNTAX_CORRECTIONS below says what the second, corrected run changes) with the
AWS CLI from the venv: `--profile production` is a profile of a config file written for the run (credentials for the
embedded server), the endpoint comes from AWS_ENDPOINT_URL, and the account in their ARNs (123456789012) is the
embedded server's.

Ours is the recovery function's `failover` and `failback` actions, two-step each, invoked through the real handler
(`ours_switch` takes that invocation; by default embedded/drill_failover.py's `recovery_in`: the failover as the
standby's stack runs it, the failback as the primary's), with the recovery function's environment as the stacks set
it and a function backup taken first (as the backup schedule would: the standby's readiness compares its STABLE with
the newest backup's). A switch counts as run when the handler answered; whether it did its job is the judge's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from drcore.core.config import FailoverEnvVar
from drcore.restore.manual_actions import ACTION_NAMES
from embedded.aws_events import LambdaContextStub
from embedded.drill_failover import recovery_in
from embedded.drill_region import (
    Buckets,
    UploadStream,
    Writes,
    environment_lost,
    function_environment,
    notifications_lost,
    processing_figures,
    writes_lost,
)
from embedded.moto_gaps import VersionBehaviour
from embedded.sample_regions import add_audit_notifications, build_two_region_system
from embedded.sample_system import SECONDARY_REGION, SampleSystem
from embedded.world import REGION, embedded_world

SEED_PROCEDURES = Path(__file__).parent / "seed_procedures"
SEED_FAILOVER = SEED_PROCEDURES / "failover-region.sh"
SEED_FAILBACK = SEED_PROCEDURES / "failback-region.sh"
RUNBOOK_ALERT_TOPIC = "pipeline-alerts"  # failover-region.sh publishes its notice there
DURING_FAILBACK = "uploads/during-failback/"
WHO = {"requested_by": "bench@example.com", "reason": "make bench: region failover"}
NOT_AVAILABLE = "not available yet: the recovery function has no failover/failback actions"

# The recovery handler, invoked in a region: (region, event) -> the handler's answer.
RecoveryInvoke = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Switch:
    """One side's failover and failback, each run to its end."""

    name: str
    failover: Callable[[], None]
    failback: Callable[[], None]


def ours_available() -> bool:
    return {"failover", "failback"} <= set(ACTION_NAMES)


def ours_switch(invoke: RecoveryInvoke) -> Switch:
    """Our failover (invoked in the secondary, as with the primary unreachable) and failback, each planned and then
    confirmed with the plan's id, as an operator runs them."""

    def two_step(region: str, action: str, **fields: Any) -> None:
        planned = invoke(region, {"action": action, **WHO, **fields})
        if not planned["ok"]:
            raise RuntimeError(f"{action} refused: {planned['error']}")
        plan_id = planned["result"]["plan_id"]
        applied = invoke(region, {"action": action, **WHO, **fields, "confirm": plan_id})
        if not applied["ok"]:
            raise RuntimeError(f"{action} refused its confirm: {applied['error']}")

    # In the scenario every key changed in both regions was written last in the primary: last-writer-wins, which the
    # objects-lost figure expects, is `prefer: "primary"`.
    return Switch("ours", lambda: two_step(SECONDARY_REGION, "failover"),
                  lambda: two_step(REGION, "failback", prefer="primary"))


# As written, two calls of each script fail at the AWS CLI's parameter parsing, and the scripts carry on and report
# success: `--environment Variables='{...}'` is neither the CLI's shorthand nor JSON, and the notification
# configuration names `LambdaConfigurations`, which S3's API does not have (`LambdaFunctionConfigurations`). The
# benchmark runs them as written ("seed"), and as their authors meant them ("seed, syntax corrected": exactly these
# two corrections, nothing else), which shows what the procedure itself does to the configuration.
SYNTAX_CORRECTIONS = (
    ("--environment Variables='{", """--environment '{"Variables":{"""),
    ('"FAILOVER_MODE":"true"\n    }\'', '"FAILOVER_MODE":"true"\n    }}\''),
    ('"FAILOVER_MODE":"false"\n        }\'', '"FAILOVER_MODE":"false"\n        }}\''),
    ('"LambdaConfigurations"', '"LambdaFunctionConfigurations"'),
)


def syntax_corrected(script: str) -> str:
    """The script with SYNTAX_CORRECTIONS applied; each correction that names text of this script must find it."""
    for wrong, right in SYNTAX_CORRECTIONS:
        if wrong.split("\n")[0] in script and wrong not in script:
            raise ValueError(f"the script changed: {wrong!r} is no longer where it was")
        script = script.replace(wrong, right)
    return script


def seed_switch(workdir: Path, corrected: bool = False) -> Switch:
    """The runbook's scripts, run with the AWS CLI against the embedded server (as written, or with their syntax
    corrected)."""
    aws_cli = Path(sys.executable).with_name("aws")
    config = workdir / "aws-config"
    config.write_text(f"[profile production]\nregion = {REGION}\naws_access_key_id = drill\n"
                      "aws_secret_access_key = drill\n")
    env = {**os.environ, "PATH": f"{aws_cli.parent}:{os.environ['PATH']}", "AWS_CONFIG_FILE": str(config),
           "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-credentials")}

    def run(script: Path) -> None:
        text = script.read_text()
        # No check: the runbook's scripts carry on past a failed call, and that is part of what is measured.
        subprocess.run(["bash", "-c", syntax_corrected(text) if corrected else text, script.name], env=env,
                       cwd=workdir, capture_output=True)

    return Switch("seed, syntax corrected" if corrected else "seed", lambda: run(SEED_FAILOVER),
                  lambda: run(SEED_FAILBACK))


def _timed(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 2)


def run_scenario(system: SampleSystem, behaviour: VersionBehaviour, switch: Switch,
                 uploads: int = 10) -> dict[str, Any]:
    """The scenario above, on a freshly built two-region world; the switch's figures."""
    name, buckets = system.function_name, Buckets(system)
    writes = Writes(buckets)
    primary, secondary = REGION, SECONDARY_REGION
    lambdas = {primary: system.clients["lambda"], secondary: system.clients["lambda_secondary"]}
    started_at = datetime.now(UTC)
    for n in range(uploads):
        writes.put(primary, f"uploads/before/{n:05d}.csv", f"id\nbefore {n}\n".encode())
    conflicts = [f"uploads/2026/11/batch-{n:05d}.csv" for n in range(4)]

    environment = {region: function_environment(lambdas[region], name) for region in (primary, secondary)}
    configurations = buckets.configurations()
    with UploadStream(writes, primary, "uploads/during-failover/"):
        failover_seconds = _timed(switch.failover)
    after_failover = buckets.configurations()
    failover = {
        "seconds": failover_seconds,
        "env_vars_lost": environment_lost(environment[secondary], function_environment(lambdas[secondary], name)),
        "notifications_lost": [entry for region in (primary, secondary)
                               for entry in notifications_lost(configurations[region], after_failover[region], name)],
        "regions_processing": buckets.processing_regions(),
    }

    for n in range(uploads):  # clients in the secondary: new objects, and changes to existing ones
        writes.put(secondary, f"uploads/in-secondary/{n:05d}.csv", f"id\nsecondary {n}\n".encode())
    for key in conflicts:
        writes.put(secondary, key, f"id\n{key} changed in the secondary\n".encode())
    for n in range(uploads):  # clients still at the primary
        writes.put(primary, f"uploads/in-primary/{n:05d}.csv", f"id\nprimary {n}\n".encode())
    writes.put(primary, conflicts[0], b"id\nchanged in the primary after the failover, replicated\n")
    behaviour.replication.held_keys.update(conflicts[1:])  # the primary's last writes, not replicated yet
    for key in conflicts[1:]:
        writes.put(primary, key, f"id\n{key}: the primary's last write\n".encode())

    environment[primary] = function_environment(lambdas[primary], name)
    configurations = buckets.configurations()
    with UploadStream(writes, secondary, DURING_FAILBACK):
        failback_seconds = _timed(switch.failback)
    behaviour.replication.held_keys.clear()
    after_failback = buckets.configurations()
    lost = writes_lost(buckets, writes, primary)
    lost_during = [key for key in lost if key.startswith(DURING_FAILBACK)]
    failback = {
        "seconds": failback_seconds,
        "env_vars_lost": environment_lost(environment[primary], function_environment(lambdas[primary], name)),
        "notifications_lost": [entry for region in (primary, secondary)
                               for entry in notifications_lost(configurations[region], after_failback[region], name)],
        "regions_processing": buckets.processing_regions(),
        # Writes made before the failback started, and writes made in the secondary while it ran.
        "objects_lost": len(lost) - len(lost_during), "objects_lost_keys": sorted(set(lost) - set(lost_during)),
        "objects_lost_written_during": len(lost_during),
    }
    for n in range(uploads):
        writes.put(primary, f"uploads/after/{n:05d}.csv", f"id\nafter {n}\n".encode())
    return {"failover": failover, "failback": failback,
            "processing": processing_figures(behaviour.invocations, writes, name, started_at)}


@contextmanager
def failover_world() -> Iterator[tuple[SampleSystem, VersionBehaviour, Path]]:
    """A fresh embedded server with the two-region world, the audit entries and the runbook's alert topic; yields the
    system, the fills' behaviour and a scratch folder for the CLI's files."""
    with ExitStack() as stack:
        world = stack.enter_context(embedded_world())
        # moto's backends belong to the process: without a reset, an earlier side's (or section's) world is still there.
        urllib.request.urlopen(urllib.request.Request(f"{world.endpoint}/moto-api/reset", method="POST")).close()
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-failover-")))
        session = boto3.session.Session(region_name=REGION)
        system = build_two_region_system(session, world.endpoint)
        add_audit_notifications(system, session, world.endpoint)
        session.client("sns", region_name=SECONDARY_REGION).create_topic(Name=RUNBOOK_ALERT_TOPIC)
        yield system, world.behaviour, workdir


def _side(make_switch: Callable[[Path], Switch], uploads: int) -> dict[str, Any]:
    with failover_world() as (system, behaviour, workdir):
        return run_scenario(system, behaviour, make_switch(workdir), uploads)


def _ours_side(uploads: int, invoke: RecoveryInvoke) -> dict[str, Any]:
    import backup.handler as backup

    with failover_world() as (system, behaviour, _):
        # The recovery and backup functions' environment as the stacks set it (embedded_world restores it after).
        os.environ.update({**system.environment(), **system.backup_environment(), **system.region_environment(),
                           FailoverEnvVar.PRIMARY_REGION.value: REGION})
        backup.handler({"component": "lambda"}, LambdaContextStub("apilados-dr-backup"))
        return run_scenario(system, behaviour, ours_switch(invoke), uploads)


def run_failover_bench(uploads: int = 10, invoke: RecoveryInvoke = recovery_in) -> dict[str, Any]:
    """The seed's figures (as written, and syntax corrected), and ours when the actions exist."""
    report: dict[str, Any] = {"uploads_per_phase": uploads, "seed": _side(seed_switch, uploads),
                              "seed_corrected": _side(lambda workdir: seed_switch(workdir, corrected=True), uploads)}
    if not ours_available():
        return {**report, "ours": None, "ours_note": NOT_AVAILABLE}
    return {**report, "ours": _ours_side(uploads, invoke)}


def _figures(side: dict[str, Any] | None) -> list[Any]:
    if side is None:
        return ["-"] * len(FIGURES)
    over, back, processing = side["failover"], side["failback"], side["processing"]
    return [over["seconds"], len(over["env_vars_lost"]), len(over["notifications_lost"]),
            ",".join(over["regions_processing"]) or "none", back["seconds"], len(back["env_vars_lost"]),
            len(back["notifications_lost"]), ",".join(back["regions_processing"]) or "none", back["objects_lost"],
            back["objects_lost_written_during"],
            processing["uploads"], processing["double_processed"], processing["unprocessed"]]


FIGURES = ("failover seconds", "failover: env vars lost", "failover: notifications lost",
           "after failover: processing", "failback seconds", "failback: env vars lost",
           "failback: notifications lost", "after failback: processing", "objects lost on failback",
           "  of writes during the failback",
           "uploads", "uploads processed twice", "uploads never processed")


def failover_table(report: dict[str, Any]) -> str:
    rows = [("", "ours (recovery)", "seed (as written)", "seed (syntax corrected)")]
    rows += list(zip(FIGURES, _figures(report.get("ours")), _figures(report["seed"]),
                     _figures(report["seed_corrected"]), strict=True))
    table = "\n".join(f"{a!s:<30} {b!s:>20} {c!s:>20} {d!s:>24}" for a, b, c, d in rows)
    return table + (f"\nours: {report['ours_note']}" if report.get("ours") is None else "")


if __name__ == "__main__":
    figures = run_failover_bench()
    print(json.dumps(figures, indent=2))
    print(failover_table(figures))
