"""The drill's `failover` and `failback` steps: the recovery function's real handler, two-step, against the embedded
server with the two-region world added to the drill's sample system (embedded/sample_regions.py), uploads arriving
during each switch (UploadStream), each step judged by what is read back (embedded/drill_region.py), never by the
action's own answer alone.

The failover is planned and confirmed as the standby's recovery function runs it (DR_STATE_SCOPE the secondary
region); the failback as the primary's. AWS_REGION stays the primary's: moto keeps the state table (the global
table's stand-in) in one region only, as tests/failover_world.py explains.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from drcore.core.config import EnvVar, FailoverEnvVar
from drcore.core.models import parse_time
from embedded.aws_events import LambdaContextStub
from embedded.drill_region import (
    Buckets,
    UploadStream,
    Writes,
    environment_lost,
    function_environment,
    notifications_lost,
    processing_figures,
)
from embedded.moto_gaps import VersionBehaviour
from embedded.sample_regions import add_pipeline_notification, add_replication, add_secondary_function
from embedded.sample_system import SECONDARY_REGION, SampleSystem, add_replica

RECOVERY_FUNCTION = "apilados-dr-recovery"
OPERATOR = {"requested_by": "dr-drill", "reason": "scheduled DR drill: region failover"}
SWITCH_SECONDS = 10  # bound on waiting, after the confirm's answer, for the secondary alone to process
SETTLE_SECONDS = 30  # bound on waiting for replication of the step's uploads (the fill copies in the background)


def recovery_in(region: str, event: dict[str, Any]) -> dict[str, Any]:
    """The recovery handler's answer, invoked as the given region's stack runs it (its state scope)."""
    import recovery.handler as recovery
    from drcore.wiring.recovery import recovery_service

    with _scoped(None if region == os.environ.get(FailoverEnvVar.PRIMARY_REGION.value) else region):
        recovery_service.cache_clear()  # the service reads its environment once: build it for this region
        try:
            return dict(recovery.handler(event, LambdaContextStub(RECOVERY_FUNCTION)))
        finally:
            recovery_service.cache_clear()


@contextmanager
def _scoped(scope: str | None) -> Iterator[None]:
    name = EnvVar.STATE_SCOPE.value
    saved = os.environ.get(name)
    if scope is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = scope
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def add_regions(system: SampleSystem, session: Any, endpoint_url: str | None = None) -> None:
    """The secondary region beside the drill's system: replica, standby function, replication, the pipeline's
    notification; the objects already there copied onto themselves (as S3 Batch Replication would) so the replica
    holds them; the recovery function's region variables."""
    add_replica(system, session, endpoint_url)
    add_secondary_function(system, session, endpoint_url)
    # The standby runs the release the primary's STABLE runs now (the drill promoted one).
    stable_code = system.clients["lambda"].get_function(FunctionName=system.function_name,
                                                        Qualifier="STABLE")["Configuration"]["CodeSha256"]
    west = system.clients["lambda_secondary"]
    for version in system.secondary_versions.values():
        if west.get_function(FunctionName=system.function_name,
                             Qualifier=version)["Configuration"]["CodeSha256"] == stable_code:
            for alias in ("STABLE", "LIVE"):
                west.update_alias(FunctionName=system.function_name, Name=alias, FunctionVersion=version)
    # The backup function's schedule backs the function up after the promotion: the standby's readiness compares
    # its STABLE with the newest backup's.
    import backup.handler as backup

    backup.handler({"component": "lambda"}, LambdaContextStub("apilados-dr-backup"))
    add_replication(system)
    add_pipeline_notification(system)
    s3 = system.clients["s3"]
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=system.data_bucket)
            for item in page.get("Contents", [])]
    for key in keys:
        s3.copy_object(Bucket=system.data_bucket, Key=key, CopySource={"Bucket": system.data_bucket, "Key": key},
                       MetadataDirective="COPY", StorageClass="STANDARD")
    _wait_replicated(system, keys)
    os.environ.update({**system.region_environment(), FailoverEnvVar.PRIMARY_REGION.value: system.region})


def _wait_replicated(system: SampleSystem, keys: list[str]) -> None:
    s3, deadline = system.clients["s3"], time.monotonic() + SETTLE_SECONDS
    while any(s3.head_object(Bucket=system.data_bucket, Key=key).get("ReplicationStatus") not in ("COMPLETED",)
              for key in keys) and time.monotonic() < deadline:
        time.sleep(0.1)
    # S3 keeps last-modified to the second; a failover's catch-up window opens at the start of its second.
    time.sleep(1.0 - datetime.now(UTC).microsecond / 1_000_000)


def _settle(system: SampleSystem, writes: Writes, region: str) -> None:
    """Wait (bounded) until the step's uploads to the primary are replicated, so every notification they cause has
    been recorded before the figures are read."""
    if region == system.region:
        keys = [write.key for write in writes.last().values() if write.region == region]
        _wait_replicated(system, keys)


def _two_step(region: str, action: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(plan answer, apply answer, seconds the confirm took)."""
    planned = recovery_in(region, {"action": action, **OPERATOR, **fields})
    if not planned["ok"]:
        raise RuntimeError(f"{action} refused: {planned['error']}")
    started = time.perf_counter()
    applied = recovery_in(region, {"action": action, **OPERATOR, **fields, "confirm": planned["result"]["plan_id"]})
    if not applied["ok"]:
        raise RuntimeError(f"{action} refused its confirm: {applied['error']}")
    return planned["result"], applied["result"], started


def _how_processed(behaviour: VersionBehaviour, keys: list[str], name: str, since: datetime) -> dict[str, list[str]]:
    """Of keys processed twice, where and how each processing came (region: notification or invoke), to say why."""
    found: dict[str, list[str]] = {key: [] for key in keys[:5]}
    for invocation in behaviour.invocations.all(name, since):
        if invocation.key in found:
            found[invocation.key].append(f"{invocation.region}:{invocation.source}")
    return found


def failover(system: SampleSystem, behaviour: VersionBehaviour) -> tuple[bool, dict[str, Any]]:
    name, buckets = system.function_name, Buckets(system)
    writes, since = Writes(buckets), datetime.now(UTC)
    environment = function_environment(system.clients["lambda_secondary"], name)
    before = buckets.configurations()
    with UploadStream(writes, system.region, "uploads/drill-failover/"):
        planned, applied, confirmed = _two_step(SECONDARY_REGION, "failover")
        deadline = time.monotonic() + SWITCH_SECONDS
        while buckets.processing_regions() != [SECONDARY_REGION] and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = round(time.perf_counter() - confirmed, 3)
    _settle(system, writes, system.region)
    after = buckets.configurations()
    figures = processing_figures(behaviour.invocations, writes, name, since)
    details = {
        "plan_id": planned["plan_id"],
        "seconds": seconds,
        "objects_at_risk": planned["plan"]["data_at_risk"].get("objects"),
        "action_ok": applied["result"].get("ok"),
        "validation_failed": (applied["result"].get("validation") or {}).get("failed"),
        "regions_processing": buckets.processing_regions(),
        "env_vars_lost": environment_lost(environment, function_environment(system.clients["lambda_secondary"],
                                                                            name)),
        "notifications_lost": [entry for region in buckets.regions
                               for entry in notifications_lost(before[region], after[region], name)],
        **figures,
    }
    if figures["double_processed"]:
        details["double_processed_how"] = _how_processed(behaviour, figures["double_processed_keys"], name, since)
    ok = (details["regions_processing"] == [SECONDARY_REGION] and not details["env_vars_lost"]
          and not details["notifications_lost"] and figures["double_processed"] == 0
          and figures["unprocessed"] == 0)
    return ok, details


def failback(system: SampleSystem, behaviour: VersionBehaviour) -> tuple[bool, dict[str, Any]]:
    """Judged by read-back: one region processing, nothing lost of the configuration, no upload processed twice
    (`double_processed_at_the_switch` says how many of any were uploaded from the second the secondary stopped
    processing in until its notification's removal was read back: the second the switch gate splits), and none of
    the uploads the failback could reach left unprocessed: those answered before its last sweep listed the replica
    (`catch_up_after.listed_at`). Clients still uploading to the secondary after that are beyond any failback's
    reach (they must write to the primary once it answers): their uploads are counted apart, not judged. Other
    clients move back to the primary early, uploading to it all through the failback: each of theirs must be
    processed once too (by the secondary through replication, or by the primary, invoked for what neither region
    was sent, or notified once it processes)."""
    name, buckets = system.function_name, Buckets(system)
    writes, since = Writes(buckets), datetime.now(UTC)
    for n in range(5):  # clients in the secondary during the outage: new objects, and a change to an existing one
        writes.put(SECONDARY_REGION, f"uploads/drill-in-secondary/{n:05d}.csv", f"id\nsecondary {n}\n".encode())
    environment = function_environment(system.clients["lambda"], name)
    before = buckets.configurations()
    with UploadStream(writes, SECONDARY_REGION, "uploads/drill-failback/"), \
            UploadStream(writes, system.region, "uploads/drill-failback-at-the-primary/", interval=0.1):
        planned, applied, _ = _two_step(system.region, "failback")
        answered = datetime.now(UTC)
    after = buckets.configurations()
    result = applied["result"]
    stopped, removed = _moment(result, "replica_off", "at"), _moment(result, "replica_off", "removed_at")
    swept = _moment(result, "catch_up_after", "listed_at")
    figures = processing_figures(behaviour.invocations, writes, name, since,
                                 switch=None if stopped is None or removed is None else (stopped, removed))
    # A failback that stopped before its last sweep handed processing back to the secondary: every upload is judged.
    reached = processing_figures(behaviour.invocations, writes, name, since, made_before=swept)
    before_the_answer = processing_figures(behaviour.invocations, writes, name, since, made_before=answered)
    divergence = planned["plan"]["divergence"]
    details = {
        "plan_id": planned["plan_id"],
        "objects_reconciled": len(divergence.get("copy_keys", ())) + len(divergence.get("delete_keys", ())),
        "conflicts": len(divergence.get("conflict_keys", ())),
        # The action's own answer, shown, not judged by: its validation fails on what the embedded world lacks
        # (alarm actions, encrypted topics, backup bucket policy), and the figures below are read back.
        "action_ok": result.get("ok"),
        "action_stopped_at": {step: str(outcome)[:300] for step, outcome in result.items()
                              if isinstance(outcome, dict) and outcome.get("ok") is False},
        "regions_processing": buckets.processing_regions(),
        "env_vars_lost": environment_lost(environment, function_environment(system.clients["lambda"], name)),
        "notifications_lost": [entry for region in buckets.regions
                               for entry in notifications_lost(before[region], after[region], name)],
        **figures,
        "unprocessed": reached["unprocessed"],
        "unprocessed_keys": reached["unprocessed_keys"],
        "beyond_reach": {"uploads": figures["uploads"] - reached["uploads"],
                         "unprocessed": figures["unprocessed"] - reached["unprocessed"],
                         "of_which_before_the_answer": before_the_answer["uploads"] - reached["uploads"],
                         "detail": "uploads to the secondary answered after the failback's last sweep listed the "
                                   f"replica ({None if swept is None else swept.isoformat()}; it answered at "
                                   f"{answered.isoformat()}): beyond its reach, not judged"},
    }
    if figures["double_processed"]:
        details["double_processed_how"] = _how_processed(behaviour, figures["double_processed_keys"], name, since)
    ok = (details["regions_processing"] == [system.region] and not details["env_vars_lost"]
          and not details["notifications_lost"]
          and figures["double_processed"] == 0
          and reached["unprocessed"] == 0)
    return ok, details


def _moment(result: dict[str, Any], step: str, name: str) -> datetime | None:
    """A moment a step of the failback's result recorded; None when the step did not run."""
    outcome = result.get(step)
    return parse_time(outcome[name]) if isinstance(outcome, dict) and outcome.get(name) else None
