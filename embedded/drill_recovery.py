"""The drill's recovery steps: the real recovery handler, two-step, against the embedded endpoint.

- restore_s3: after the drill's snapshot, objects are corrupted in place at the same size, deleted and
  added; the operator plans a restore, confirms that plan, and every key must match the snapshot again.
- recover_lambda: the function rebuilt from its backup under a scratch name; code and environment verified.
- recover_stack: the pipeline's stack recreated from its backup as `<stack>-recovery`.
"""

from __future__ import annotations

from typing import Any

from drcore.backup.manifest import list_snapshots, read_manifest
from drcore.state.backup_store import BackupStore, Component
from embedded.aws_events import LambdaContextStub
from embedded.sample_system import SampleSystem

RECOVERY_FUNCTION = "apilados-dr-recovery"
OPERATOR = {"requested_by": "dr-drill", "reason": "scheduled DR drill"}


def _recover(event: dict[str, Any]) -> dict[str, Any]:
    import recovery.handler as recovery

    answer = recovery.handler(event, LambdaContextStub(RECOVERY_FUNCTION))
    if not answer["ok"]:
        raise RuntimeError(f"recovery refused {event['action']}: {answer['error']}")
    return answer["result"]


def restore_s3(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    s3, bucket = system.clients["s3"], system.data_bucket
    store = BackupStore(s3, system.backup_bucket)
    snapshot_id = [listing for listing in list_snapshots(store, bucket) if listing.complete][-1].backup_id
    expected = {entry.key: entry.etag for entry in read_manifest(store, bucket, snapshot_id).objects}
    keys = sorted(expected)
    corrupted, deleted = keys[:3], keys[3:6]
    for key in corrupted:  # same size, other bytes: a size-and-time comparison cannot see it
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(reversed(body)), ContentType="text/csv")
    for key in deleted:
        s3.delete_object(Bucket=bucket, Key=key)
    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"uploads/2026/11/unexpected-{n}.csv", Body=b"id,amount\n0,0\n")

    request = {"action": "restore_s3", "snapshot_id": snapshot_id, **OPERATOR}
    planned = _recover(request)
    applied = _recover({**request, "confirm": planned["plan_id"]})
    result = applied["result"]
    current = {entry["Key"]: entry["ETag"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
               for entry in page.get("Contents", [])}
    matching = sum(current.get(key) == etag for key, etag in expected.items())
    details = {
        "snapshot_id": snapshot_id,
        "plan_id": planned["plan_id"],
        "planned": {name: planned["plan"][name] for name in ("missing", "changed", "to_remove", "unchanged")},
        "objects_expected": len(expected),
        "objects_matching": matching,
        "same_size_restored": sum(current.get(key) == expected[key] for key in corrupted),
        "unexpected_left": sorted(set(current) - set(expected)),
        "safety_snapshot_id": result["safety_snapshot_id"],
        "verification_ok": result["verification"]["ok"],
    }
    if not details["verification_ok"]:  # what differs, and which of it the backup itself has damaged
        details |= {name: list(result["verification"][name]) for name in ("mismatched_keys", "backup_damaged_keys")}
    ok = (matching == len(expected) and details["same_size_restored"] == len(corrupted)
          and not details["unexpected_left"] and details["verification_ok"] and bool(details["safety_snapshot_id"]))
    return ok, details


def recover_lambda(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    """The function restored from its newest backup under a scratch name, beside the original."""
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    backup_id = [listing for listing in store.list_backups(Component.LAMBDA, system.function_name)
                 if listing.complete][-1].backup_id
    target = f"{system.function_name}-drill"
    request = {"action": "recover_from_backup", "backup_id": backup_id, "target": target, **OPERATOR}
    planned = _recover(request)
    result = _recover({**request, "confirm": planned["plan_id"]})["result"]
    configuration = store.get_json(f"backups/lambda/{system.function_name}/{backup_id}/configuration.json")
    restored = system.clients["lambda"].get_function_configuration(FunctionName=target, Qualifier=result["version"])
    details = {
        "backup_id": backup_id,
        "target": target,
        "version": result["version"],
        "code_sha256_verified": result["code_sha256_verified"],
        "environment_restored": result["environment_restored"]
        and restored["Environment"]["Variables"] == configuration["configuration"]["Environment"]["Variables"],
        "settings_restored": len(result["restored"]),
        "not_restored": result["not_restored"],
    }
    return bool(result["ok"] and details["code_sha256_verified"] and details["environment_restored"]), details


def recover_stack(system: SampleSystem) -> tuple[bool, dict[str, Any]]:
    """The pipeline's stack recreated from its newest backup as `<stack>-recovery` (the runbook's manual
    stack recovery), through a reviewed change set."""
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    backup_id = [listing for listing in store.list_backups(Component.STACK, system.stack_name)
                 if listing.complete][-1].backup_id
    request = {"action": "recover_stack", "backup_id": backup_id, "mode": "new", **OPERATOR}
    planned = _recover(request)
    applied = _recover({**request, "confirm": planned["plan_id"]})
    stack = system.clients["cloudformation"].describe_stacks(StackName=planned["plan"]["target_stack"])["Stacks"][0]
    details = {
        "backup_id": backup_id,
        "target_stack": planned["plan"]["target_stack"],
        "changes": len(planned["plan"]["changes"]),
        "status": applied["result"]["status"],
        "stack_status": stack["StackStatus"],
    }
    return applied["result"]["status"] == "complete" and stack["StackStatus"].endswith("_COMPLETE"), details
