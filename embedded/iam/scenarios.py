"""The scenarios whose AWS calls the conformance check records: the drill, and what the drill does not reach.

1. The drill exactly as `make drill` and tests/e2e/test_drill.py run it (embedded.drill.run_drill): every
   backup, restore, recovery, rollback, promotion and the drill function's own run.
2. Beside it, in a fresh embedded world, paths of the same functions the drill does not take:
   - the drill function's first scheduled run, when its scratch function does not exist yet (the drill's
     own recover_lambda step creates it first, so the drill function only ever updates it there), and a
     later run after the function's configuration changed (it clears the scratch bucket and updates the
     scratch function);
   - the performance watcher, which the drill never invokes: its scheduled tick and its alarm action;
   - a recovery of the function in place from an older backup, released to LIVE, then the operator's
     manual rollback;
   - a stack recovery planned after an earlier `-recovery` stack failed to create (ROLLBACK_COMPLETE);
   - the operator's read-only `preflight`, in an account that has everything it checks for;
   - `configure_replication` planned and confirmed (the replica bucket in the secondary region, the replication
     role passed to S3), then `status` reading the replication metrics and a replicated upload on both sides;
   - the operator's read-only `validate` with the replica configured, each of its checks reading (a restore ends
     with the same validation: the drill's restore_s3 and the recovery in place above);
   - `failover` planned and confirmed with force (the primary's older objects predate the replication rule, so data
     is at risk) from the primary stack's recovery function, the secondary function deployed in the secondary
     region; then the primary's pipeline notification put back, as a returning primary has it, and the health
     watcher's tick fencing it (the region record names the secondary active);
   - the standby's region watcher in the secondary region, ticking while a primary alarm is in ALARM until it
     alerts (with the standby stack's roles: tests/infra/test_iam_conformance.py);
   - the retention function's scheduled runs two days after a snapshot that the policy no longer keeps, so
     that it hides the snapshot and the content only that snapshot referenced, and a function backup the
     policy no longer keeps (the oldest stays: a pending recover_from_backup plan names it), and locks what
     the kept snapshots, function, stack and logs backups need (the embedded bucket has no default
     retention: nothing is locked yet); then again after a new snapshot, replacing its lock index;
   - the data bucket's first snapshot with the snapshot fan-out configured: its census counts the bucket's keys
     (under the threshold, the snapshot then runs whole);
   - a bucket snapshot past the fan-out threshold: planned as shards, its execution started on the state
     machine the stack names, each shard invoked as the map's children invoke it, the snapshot resumed while
     a shard is unfinished (its execution described) and once all are done (the merge). moto runs no
     Distributed Map and has no RedriveExecution: the shards are invoked here, and no redrive is recorded;
   - a restore of that snapshot past the threshold: planned and confirmed through the recovery function, which
     starts its safety snapshot (of the data bucket, past the threshold) on the snapshot fan-out, whose shards and
     merge the backup function runs as above, and whose resume request (the snapshot execution's last step) sent to
     the recovery function has it write the restore's shard plan and start its execution; each shard applied by
     the restore shard worker as the map's children invoke it, `status` while it runs (the running executions
     listed), and the execution's resume request sent to the recovery function (the merge, the journal, the
     validation).

Each scenario must reach the outcome it is there for (`ScenarioFailed` otherwise), so the check never
passes on calls recorded along an error path.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import time_machine
from moto.cloudformation.models import cloudformation_backends
from moto.core.base_backend import BackendDict
from moto.core.model_instances import reset_model_data

from embedded.aws_events import ACCOUNT, LambdaContextStub, alarm_action_event, invoke_handler, scheduled_event
from embedded.drill import run_drill
from embedded.iam.recorder import CallRecording, record_calls
from embedded.sample_system import (
    SECONDARY_REGION,
    SampleSystem,
    add_buckets,
    add_drill_scratch,
    add_replica,
    build_sample_system,
    put_sample_uploads,
)
from embedded.world import REGION, embedded_world

# The names the drill invokes these functions as (embedded/drill_backups.py, drill_recovery.py, drill.py).
BACKUP_FUNCTION = "apilados-dr-backup"
RECOVERY_FUNCTION = "apilados-dr-recovery"
DRILL_FUNCTION = "apilados-dr-drill"
RETENTION_FUNCTION = "apilados-dr-retention"
RESTORE_SHARD_FUNCTION = "apilados-dr-restore-shard"
OPERATOR = {"requested_by": "iam-conformance", "reason": "the IAM conformance scenarios"}
VALIDATION_CHECKS = 7  # drcore.restore.validation's checks, each of which reads


class ScenarioFailed(Exception):
    """A scenario did not reach its outcome: the calls it recorded are not the path it is there for."""


def _context(function_name: str) -> Any:
    """The context Lambda would pass (the stub has the attributes Powertools reads)."""
    return LambdaContextStub(function_name)


def _expect(condition: bool, what: str, answer: Any) -> None:
    if not condition:
        raise ScenarioFailed(f"{what}: {json.dumps(answer, default=str)[:2000]}")


def _empty_account() -> None:
    """moto's backends are global to the process and outlive an embedded server (an earlier drill in the
    same test session leaves its sample system behind): each world here starts from an empty account."""
    BackendDict.reset()
    reset_model_data()


@contextmanager
def _fresh_system() -> Iterator[SampleSystem]:
    """A new embedded world with the sample system, its buckets and the drill's scratch bucket, and this
    process's environment set as the stack sets the functions' (restored by embedded_world)."""
    _empty_account()
    with embedded_world() as world:
        session = boto3.session.Session(region_name=REGION)
        system = build_sample_system(session, world.endpoint)
        add_buckets(system, session, world.endpoint)
        add_drill_scratch(system)
        os.environ.update({**system.environment(), **system.backup_environment(), **system.drill_environment()})
        world.behaviour.set_failing(system.function_name, system.versions["bad"])
        yield system


def _back_up(components: Iterable[str]) -> None:
    import backup.handler as backup

    for component in components:
        for _ in range(4):  # a logs export completes on a later run, as its schedule runs it again
            answer = backup.handler({"component": component}, _context(BACKUP_FUNCTION))
            if all(part["status"] == "complete" for part in answer["components"]):
                break
        _expect(all(part["status"] == "complete" for part in answer["components"]), f"backup of {component}", answer)


def _scheduled_drill() -> None:
    import drill.handler as drill

    # What the weekly rule's input transformer makes of its scheduled event (stacks/constructs/drills.py).
    event = {"action": "drill", "requested_by": "schedule", "reason": "scheduled DR drill",
             "scheduled_at": scheduled_event(datetime.now(UTC))["time"]}
    answer = drill.handler(event, _context(DRILL_FUNCTION))
    _expect(answer.get("ok") is True and answer.get("status") == "finished" and answer.get("passed") is True,
            "the scheduled drill", answer)


def _recover(request: dict[str, Any]) -> dict[str, Any]:
    """A two-step action through the recovery function: planned, then confirmed."""
    import recovery.handler as recovery

    planned = recovery.handler({**request, **OPERATOR}, _context(RECOVERY_FUNCTION))
    _expect(planned.get("ok") is True, f"the {request['action']} plan", planned)
    applied = recovery.handler({**request, **OPERATOR, "confirm": planned["result"]["plan_id"]},
                               _context(RECOVERY_FUNCTION))
    _expect(applied.get("ok") is True and applied["result"]["status"] == "applied", f"the {request['action']}", applied)
    return dict(applied["result"]["result"])


def _changed_configuration(system: SampleSystem) -> None:
    """An operator changes the function's environment (outside the controller)."""
    lam = system.clients["lambda"]
    variables = lam.get_function_configuration(FunctionName=system.function_name)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=system.function_name,
                                      Environment={"Variables": {**variables, "BATCH_TIMEOUT": "30"}})


def _in_place_recovery_and_manual_rollback(system: SampleSystem, backup_id: str) -> None:
    import recovery.handler as recovery

    result = _recover({"action": "recover_from_backup", "backup_id": backup_id})
    _expect(bool(result.get("ok")) and system.alias_version("LIVE") == result["version"],
            "the recovery in place, released to LIVE", result)
    _expect(len(result.get("validation", {}).get("checks", [])) == VALIDATION_CHECKS,
            "the post-recovery validation that ends the recovery", result)
    answer = recovery.handler({"action": "rollback", **OPERATOR}, _context(RECOVERY_FUNCTION))
    _expect(answer.get("ok") is True and system.alias_version("LIVE") == system.alias_version("STABLE"),
            "the manual rollback", answer)


def _performance_rollback(system: SampleSystem) -> None:
    import health_watcher.handler as health_watcher
    import performance_watcher.handler as performance_watcher

    # A deployment releases the bad version; the health tick adopts it; its average duration alarm fires.
    system.clients["lambda"].update_alias(FunctionName=system.function_name, Name="LIVE",
                                          FunctionVersion=system.versions["bad"])
    invoke_handler(health_watcher, scheduled_event(datetime.now(UTC)))
    invoke_handler(performance_watcher, scheduled_event(datetime.now(UTC)))
    system.set_alarm("avg-duration", "ALARM", "Threshold Crossed: 1 datapoint was greater than the threshold")
    alarm = system.clients["cloudwatch"].describe_alarms(AlarmNames=[system.alarms["avg-duration"]])["MetricAlarms"][0]
    event = alarm_action_event(system.alarms["avg-duration"], "ALARM", alarm["StateUpdatedTimestamp"],
                               system.function_name)
    answer, _ = invoke_handler(performance_watcher, event)
    _expect(system.alias_version("LIVE") == system.alias_version("STABLE"), "the performance watcher's rollback",
            answer)
    system.set_alarm("avg-duration", "OK", "Threshold Crossed: back under the threshold on STABLE")


def _stack_recovery_after_a_failed_one(system: SampleSystem) -> None:
    import recovery.handler as recovery

    # An earlier recovery beside the stack failed to create and rolled back: CloudFormation leaves it in
    # ROLLBACK_COMPLETE (set in moto's backend, which cannot fail a creation).
    target = f"{system.stack_name}-recovery"
    system.clients["cloudformation"].create_stack(StackName=target, TemplateBody=json.dumps({"Resources": {}}))
    failed = cloudformation_backends[ACCOUNT][system.region].get_stack(target)
    failed.status = "ROLLBACK_COMPLETE"
    request = {"action": "recover_stack", "backup_id": _newest_backup(system, "stack"), "mode": "new", **OPERATOR}
    answer = recovery.handler(request, _context(RECOVERY_FUNCTION))
    _expect(answer.get("ok") is True and answer["result"]["status"] == "planned", "the stack recovery plan", answer)


def _preflight(system: SampleSystem) -> None:
    """The recovery function's preflight, with every check made and passing, so every read it makes is recorded."""
    from moto.ssm.models import Parameter, ssm_backends

    import recovery.handler as recovery
    from drcore.restore.preflight import PreflightEnvVar
    from stacks.constructs.controller_functions import RUNTIME, powertools_layer_parameter, powertools_version

    clients = system.clients
    layer = clients["lambda"].publish_layer_version(
        LayerName="AWSLambdaPowertoolsPythonV3-python314-arm64", Content={"ZipFile": b"PK\x05\x06" + bytes(18)},
        CompatibleRuntimes=[RUNTIME.name])["LayerVersionArn"]
    parameter = powertools_layer_parameter(powertools_version())
    # moto refuses PutParameter under /aws/ (as AWS does): AWS's public parameter is placed in its backend.
    ssm_backends[ACCOUNT][system.region]._parameters[parameter].append(Parameter(  # type: ignore[abstract]
        account_id=ACCOUNT, name=parameter, value=layer, parameter_type="String", description=None,
        allowed_pattern=None, keyid=None, last_modified_date=datetime.now(UTC), version=1, data_type="text"))
    clients["s3"].create_bucket(Bucket="apilados-trail-logs")
    trail = boto3.client("cloudtrail", region_name=system.region)  # the embedded endpoint, from AWS_ENDPOINT_URL
    trail.create_trail(Name="management", S3BucketName="apilados-trail-logs", IsMultiRegionTrail=True)
    trail.start_logging(Name="management")
    role = clients["lambda"].get_function_configuration(FunctionName=system.function_name)["Role"]
    os.environ.update({PreflightEnvVar.LAYER_PARAMETER: parameter, PreflightEnvVar.RUNTIME: RUNTIME.name,
                       PreflightEnvVar.FUNCTION_ROLE_PATTERNS: json.dumps([role])})
    answer = recovery.handler({"action": "preflight"}, _context(RECOVERY_FUNCTION))
    _expect(answer.get("ok") is True and answer["result"]["ok"] is True, "the preflight", answer)


def _replication_configured_and_watched(system: SampleSystem) -> None:
    import recovery.handler as recovery

    add_replica(system, boto3.session.Session(region_name=REGION), os.environ["AWS_ENDPOINT_URL"])
    os.environ.update(system.region_environment())
    result = _recover({"action": "configure_replication"})
    _expect(result.get("ok") is True and result.get("changed") is True, "configure_replication", result)
    system.clients["s3"].put_object(Bucket=system.data_bucket, Key="uploads/replicated.csv", Body=b"id\n1\n")
    answer = recovery.handler({"action": "status"}, _context(RECOVERY_FUNCTION))
    replication = answer.get("result", {}).get("replication", {})
    _expect(answer.get("ok") is True and replication.get("configured") is True
            and replication["sample"].get("completed", 0) >= 1, "the replication status", answer)


def _validated(system: SampleSystem) -> None:
    """The operator's read-only `validate`, with the pipeline's notification on the data bucket and the replica in
    the secondary region, so every check reads what it reads in AWS (the controls the embedded backup bucket lacks
    answer failed, after the same reads)."""
    import recovery.handler as recovery

    live = system.clients["lambda"].get_alias(FunctionName=system.function_name, Name="LIVE")["AliasArn"]
    system.clients["s3"].put_bucket_notification_configuration(Bucket=system.data_bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"Id": "pipeline", "LambdaFunctionArn": live,
                                          "Events": ["s3:ObjectCreated:*"]}]})
    answer = recovery.handler({"action": "validate", **OPERATOR}, _context(RECOVERY_FUNCTION))
    checks = {check["name"]: check for check in answer.get("result", {}).get("checks", [])}
    _expect(answer.get("ok") is True and len(checks) == VALIDATION_CHECKS
            and checks["event_processing"]["status"] == "ok" and checks["health_check"]["status"] == "ok"
            and checks["data_integrity"]["sampled"] > 0, "the validation", answer)


def _failover_and_fencing(system: SampleSystem) -> None:
    """After `_replication_configured_and_watched`: the secondary pipeline deployed, a failover, then the fence."""
    import health_watcher.handler as health_watcher
    from drcore.core.config import EnvVar, FailoverEnvVar

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    primary_live = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{system.function_name}:LIVE"
    pipeline_entry = {"Id": "ProcessCSVFiles", "LambdaFunctionArn": primary_live, "Events": ["s3:ObjectCreated:*"]}
    system.clients["s3"].put_bucket_notification_configuration(
        Bucket=system.data_bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [pipeline_entry]})
    lam = system.clients["lambda"]
    stable = lam.get_function(FunctionName=system.function_name, Qualifier="STABLE")
    with urllib.request.urlopen(stable["Code"]["Location"]) as response:  # the embedded server's archive
        code = response.read()
    west = boto3.client("lambda", region_name=SECONDARY_REGION, endpoint_url=endpoint)
    role = lam.get_function_configuration(FunctionName=system.function_name)["Role"]
    west.create_function(FunctionName=system.function_name, Runtime="python3.13", Role=role, Handler="index.handler",
                         Code={"ZipFile": code}, Environment={"Variables": {"STAGE": "production"}})
    version = west.publish_version(FunctionName=system.function_name)["Version"]
    for alias in ("STABLE", "LIVE"):
        west.create_alias(FunctionName=system.function_name, Name=alias, FunctionVersion=version)
    west.add_permission(FunctionName=system.function_name, Qualifier="LIVE", StatementId="s3-invokes-live",
                        Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                        SourceArn=f"arn:aws:s3:::{system.replica_bucket}")
    _back_up(["lambda"])  # STABLE's code as the newest function backup records it
    os.environ.update({FailoverEnvVar.PRIMARY_REGION: REGION, EnvVar.FENCED_BUCKET: system.data_bucket})
    result = _recover({"action": "failover", "force": True})
    _expect(result.get("ok") is True and result.get("primary_notification") == "removed", "the failover", result)
    system.clients["s3"].put_bucket_notification_configuration(
        Bucket=system.data_bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [pipeline_entry]})
    ticked, _ = invoke_handler(health_watcher, scheduled_event(datetime.now(UTC)))
    _expect(any(outcome["action"] == "fenced" for outcome in ticked.get("outcomes", [])), "the fence", ticked)


def _failback(system: SampleSystem) -> None:
    """After `_failover_and_fencing` (the replica processing, the secondary function with the failover's variables,
    the region record claimed for the secondary), the secondary writes and deletes objects; `failback` copies them
    back, switches the notifications, claims the record back and cleans the environment."""
    replica_s3 = system.clients["s3_secondary"]
    replica_s3.put_object(Bucket=system.replica_bucket, Key="uploads/during-failover.csv", Body=b"id\n2\n")
    replica_s3.delete_object(Bucket=system.replica_bucket, Key="uploads/replicated.csv")
    result = _recover({"action": "failback"})
    # Its validation runs and reads what it reads in AWS, and fails here: the embedded world has no alarm actions or
    # encrypted topics. What must hold is the switch itself.
    switched = all(value.get("ok", True) for step, value in result.items()
                   if isinstance(value, dict) and step != "validation")
    _expect(switched and result["copy"]["copied"] == 1 and result["copy"]["deleted"] == 1
            and result.get("validation", {}).get("ran") is True, "the failback", result)


def _region_watched(system: SampleSystem) -> None:
    """The standby's region watcher, run as the standby stack deploys it: in the secondary region, with the state
    table's replica and the alert topics there and the standby's recovery function to ask for a plan. It ticks while
    a primary alarm is in ALARM: the first tick reads the primary (LIVE's alias, its versions invoked, its alarms)
    and writes its watch; a tick `detect_minutes` later asks the recovery function for a plan and alerts. The
    embedded world runs no controller function in the secondary region: the recovery function there is a stand-in
    that answers as the world's functions do, not with a plan, which the watcher alerts as a refusal (the alert is
    what the scenario is there for; the planning itself is tests/unit/test_region_watch.py's)."""
    import region_watcher.handler as region_watcher
    from drcore.core.config import DEFAULT_FAILOVER_DETECT_MINUTES, FailoverEnvVar, RegionEnvVar
    from drcore.core.controller_settings import EnvVar

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    west = boto3.session.Session(region_name=SECONDARY_REGION)
    west.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName=system.table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    sns, sqs = west.client("sns", endpoint_url=endpoint), west.client("sqs", endpoint_url=endpoint)
    topics = {variable.value: sns.create_topic(Name=f"standby-{name}")["TopicArn"]
              for variable, name in ((EnvVar.ALERT_TOPIC_ARN, "alerts"), (EnvVar.EMERGENCY_TOPIC_ARN, "emergency"))}
    queue = sqs.create_queue(QueueName="standby-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in topics.values():
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    role = system.clients["lambda"].get_function_configuration(FunctionName=system.function_name)["Role"]
    west.client("lambda", endpoint_url=endpoint).create_function(
        FunctionName=RECOVERY_FUNCTION, Runtime="python3.13", Role=role, Handler="recovery.handler.handler",
        Code={"ZipFile": b"stand-in"})
    saved = dict(os.environ)
    os.environ.update({**topics, "AWS_REGION": SECONDARY_REGION, "AWS_DEFAULT_REGION": SECONDARY_REGION,
                       EnvVar.STATE_SCOPE: SECONDARY_REGION, FailoverEnvVar.PRIMARY_REGION: REGION,
                       FailoverEnvVar.RECOVERY_FUNCTION_NAME: RECOVERY_FUNCTION,
                       RegionEnvVar.SECONDARY_REGION: SECONDARY_REGION})
    system.set_alarm("errors", "ALARM", "the primary region failing")
    try:
        first = region_watcher.handler(scheduled_event(datetime.now(UTC), region=SECONDARY_REGION),
                                       _context("apilados-dr-region-watcher"))
        _expect(first.get("outcome", {}).get("action") == "suspect", "the region watcher's first tick", first)
        with time_machine.travel(datetime.now(UTC) + timedelta(minutes=DEFAULT_FAILOVER_DETECT_MINUTES + 1),
                                 tick=True):
            later = region_watcher.handler(scheduled_event(datetime.now(UTC), region=SECONDARY_REGION),
                                           _context("apilados-dr-region-watcher"))
        alerted = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        _expect(later.get("outcome", {}).get("action") == "plan_refused" and len(alerted) == 1,
                "the region watcher's alert", later)
    finally:
        system.set_alarm("errors", "OK", "the primary region back")
        os.environ.clear()
        os.environ.update(saved)


def _retention(system: SampleSystem, oldest_function_backup: str) -> None:
    """Every body changes and the bucket is snapshotted again (a full manifest: more than half the objects differ,
    so the older snapshot is no base of the newer), and the function is backed up once more; under a policy
    that keeps the newest backup only, the retention run two days later hides the older snapshot and the bodies
    only it referenced, and the function backups but the newest and the oldest (which a pending plan names), and locks
    what the kept backups need. After another change and snapshot, the next run locks the new body and replaces
    its lock index."""
    import recovery.handler as recovery
    import retention.handler as retention
    from drcore.core.config import RetentionEnvVar

    def change_and_snapshot(row: str) -> None:
        s3 = system.clients["s3"]
        for key in [entry["Key"] for entry in s3.list_objects_v2(Bucket=system.data_bucket).get("Contents", [])]:
            s3.put_object(Bucket=system.data_bucket, Key=key, Body=f"id,amount\n{key},{row}\n".encode())
        _back_up(["s3"])

    change_and_snapshot("1")
    _back_up(["lambda"])
    os.environ.update({RetentionEnvVar.RETENTION_KEEP_LAST: "1", RetentionEnvVar.RETENTION_HOURLY: "0",
                       RetentionEnvVar.RETENTION_DAILY: "0", RetentionEnvVar.RETENTION_WEEKLY: "0",
                       RetentionEnvVar.RETENTION_MONTHLY: "0"})
    with time_machine.travel(datetime.now(UTC) + timedelta(days=2), tick=True):
        pending = recovery.handler({"action": "recover_from_backup", "backup_id": oldest_function_backup, **OPERATOR},
                                   _context(RECOVERY_FUNCTION))
        _expect(pending.get("ok") is True, "the pending recover_from_backup plan", pending)
        first = retention.handler({"action": "retention"}, _context(RETENTION_FUNCTION))
        functions = first.get("components", {}).get("lambda", {})
        _expect(first.get("ok") is True and len(first["pruned"]["removed"]) == 1
                and first["pruned"]["content_removed"] >= 1 and first["locks"]["extended"] >= 1
                and list(functions.get("pinned", ())) == [oldest_function_backup] and len(functions["removed"]) >= 1
                and all(first["components"][name]["kept"] for name in ("stack", "logs"))
                and not first["locks"]["refused"] and not first["locks"]["missing"], "the retention run", first)
        change_and_snapshot("2")
        second = retention.handler({"action": "retention"}, _context(RETENTION_FUNCTION))
    _expect(second.get("ok") is True and second["locks"]["indexes_hidden"] == 1, "the next retention run", second)


def _snapshot_fan_out(system: SampleSystem) -> dict[str, str]:
    """The backup function's environment with the snapshot fan-out state machine (created here the first time) and
    the least threshold and shard size."""
    from drcore.core.config import MIN_FANOUT_THRESHOLD_OBJECTS, BackupEnvVar

    machine = boto3.client("stepfunctions", region_name=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    # The name the stack gives it (stacks/constructs/snapshot_fanout.py); moto runs none of its definition.
    name = f"{system.function_name}-snapshot-fanout"
    arns = [listed["stateMachineArn"] for listed in machine.list_state_machines()["stateMachines"]
            if listed["name"] == name]
    arn = arns[0] if arns else machine.create_state_machine(
        name=name, definition='{"StartAt":"S","States":{"S":{"Type":"Succeed"}}}',
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/snapshot-fanout")["stateMachineArn"]
    return {BackupEnvVar.SNAPSHOT_FANOUT_STATE_MACHINE: arn,
            BackupEnvVar.FANOUT_THRESHOLD_OBJECTS: str(MIN_FANOUT_THRESHOLD_OBJECTS),
            BackupEnvVar.FANOUT_SHARD_OBJECTS: str(MIN_FANOUT_THRESHOLD_OBJECTS)}


def _snapshot_fanned_out(system: SampleSystem) -> str:
    import backup.handler as backup
    from drcore.core.config import MIN_FANOUT_THRESHOLD_OBJECTS

    put_sample_uploads(system, range(1_000, 1_000 + MIN_FANOUT_THRESHOLD_OBJECTS))
    _back_up(["s3"])  # the base: whole, its own base below the threshold
    os.environ.update(_snapshot_fan_out(system))
    [fanned] = backup.handler({"component": "s3"}, _context(BACKUP_FUNCTION))["components"]
    _expect(fanned["status"] == "fanned_out" and fanned["details"]["shards"] >= 2, "a snapshot fanned out", fanned)
    backup_id, shards = fanned["backup_id"], fanned["details"]["shards"]

    _snapshot_shards_merged(backup_id, shards)
    return backup_id


def _snapshot_shards_merged(backup_id: str, shards: int) -> None:
    """What the snapshot fan-out's execution has the backup function do: each shard, then the merge (asked once
    before, while a shard is still to run)."""
    import backup.handler as backup

    def shard(number: int) -> dict[str, Any]:
        answer = backup.handler({"component": "s3", "shard": {"backup_id": backup_id, "number": number}},
                                _context(BACKUP_FUNCTION))
        _expect(answer.get("finished") is True, f"shard {number}", answer)
        return answer

    shard(0)
    [waiting] = backup.handler({"component": "s3", "resume": backup_id}, _context(BACKUP_FUNCTION))["components"]
    _expect(waiting["status"] == "fanned_out" and waiting["details"]["status"] == "RUNNING", "a fan-out waiting",
            waiting)
    for number in range(1, shards):
        shard(number)
    [merged] = backup.handler({"component": "s3", "resume": backup_id}, _context(BACKUP_FUNCTION))["components"]
    _expect(merged["status"] == "complete", "the shards merged", merged)


def _restore_fanned_out(system: SampleSystem, snapshot_id: str) -> None:
    import recovery.handler as recovery
    import restore_shard.handler as restore_shard
    from drcore.core.config import RecoveryEnvVar

    machine = boto3.client("stepfunctions", region_name=REGION, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    # The name the stack gives it (stacks/constructs/restore_fanout.py); moto runs none of its definition.
    arn = machine.create_state_machine(
        name=f"{system.function_name}-restore-fanout", definition='{"StartAt":"S","States":{"S":{"Type":"Succeed"}}}',
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/restore-fanout")["stateMachineArn"]
    os.environ[RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE] = arn  # the fan-out thresholds: the snapshot's above
    put_sample_uploads(system, range(5_000, 5_010))  # to be removed by the restore
    s3 = system.clients["s3"]  # and to be copied back: one deleted, one rewritten (every fourth upload has tags)
    s3.delete_object(Bucket=system.data_bucket, Key="uploads/2026/11/batch-01000.csv")
    s3.put_object(Bucket=system.data_bucket, Key="uploads/2026/11/batch-01001.csv", Body=b"id,amount\n1,0\n")
    request = {"action": "restore_s3", "snapshot_id": snapshot_id, **OPERATOR}
    planned = recovery.handler(request, _context(RECOVERY_FUNCTION))
    _expect(planned.get("ok") is True, "the big restore's plan", planned)
    plan_id = planned["result"]["plan_id"]
    # Its safety snapshot first: a snapshot of the data bucket past the threshold, in shards by the snapshot
    # fan-out (the backup function's shards and merge), whose last step resumes the restore
    safety = recovery.handler({**request, "confirm": plan_id}, _context(RECOVERY_FUNCTION))
    _expect(safety.get("ok") is True and safety["result"]["status"] == "in_progress"
            and safety["result"]["progress"]["safety_fan_out"]["shards"] >= 2, "a safety snapshot fanned out", safety)
    _snapshot_shards_merged(safety["result"]["progress"]["safety_snapshot_id"],
                            safety["result"]["progress"]["safety_fan_out"]["shards"])
    safety_input = json.loads(machine.describe_execution(
        executionArn=safety["result"]["progress"]["waiting_for"])["input"])
    waiting = recovery.handler(safety_input["resume"], _context(RECOVERY_FUNCTION))
    _expect(waiting.get("ok") is True and waiting["result"]["status"] == "in_progress"
            and waiting["result"]["progress"]["fan_out"]["shards"] >= 2, "a restore fanned out", waiting)
    execution_input = json.loads(machine.describe_execution(
        executionArn=waiting["result"]["progress"]["waiting_for"])["input"])
    for number in range(waiting["result"]["progress"]["fan_out"]["shards"]):
        answer = restore_shard.handler({"shard": {"plan_id": plan_id, "target_bucket": system.data_bucket,
                                                  "number": number}}, _context(RESTORE_SHARD_FUNCTION))
        _expect(answer.get("finished") is True, f"restore shard {number}", answer)
        status = recovery.handler({"action": "status"}, _context(RECOVERY_FUNCTION))
        _expect(status["result"]["restores_running"][0]["shards_done"] == number + 1, "status while it runs", status)
    merged = recovery.handler(execution_input["resume"], _context(RECOVERY_FUNCTION))
    _expect(merged.get("ok") is True and merged["result"]["status"] == "applied"
            and merged["result"]["result"]["verification"]["ok"] and merged["result"]["result"]["copied"] == 2
            and merged["result"]["result"]["removed"] == 10, "the restore's shards merged", merged)


def _newest_backup(system: SampleSystem, component: str) -> str:
    from drcore.state.backup_store import BackupStore, Component

    subject = system.stack_name if component == "stack" else system.function_name
    store = BackupStore(system.clients["s3"], system.backup_bucket)
    return [listing for listing in store.list_backups(Component(component), subject)
            if listing.complete][-1].backup_id


def beyond_the_drill() -> None:
    """The paths of the controller's functions that the drill does not take (see the module's docstring)."""
    with _fresh_system() as system:
        with mock.patch.dict(os.environ, _snapshot_fan_out(system)):  # the first snapshot counts the bucket's keys
            _back_up(["lambda", "s3", "stack", "logs"])
        first_backup = _newest_backup(system, "lambda")
        _scheduled_drill()  # the first: creates the scratch function
        _performance_rollback(system)
        _changed_configuration(system)
        _back_up(["lambda"])
        _scheduled_drill()  # the next: clears the scratch bucket, updates the scratch function
        _in_place_recovery_and_manual_rollback(system, first_backup)
        _stack_recovery_after_a_failed_one(system)
        _preflight(system)
        _replication_configured_and_watched(system)
        _validated(system)
        _failover_and_fencing(system)
        _retention(system, first_backup)  # it moves the clock on two days
        with time_machine.travel(datetime.now(UTC) + timedelta(days=3), tick=True):
            _failback(system)  # back from the failover above; its safety snapshot is no snapshot retention counts
        _region_watched(system)  # the primary active again (the failback claimed the record back)
        # last: their thousand more objects would slow every scenario after them
        _restore_fanned_out(system, _snapshot_fanned_out(system))


def record_scenarios(handlers: Iterable[str], report_dir: Path) -> CallRecording:
    """Run the drill and the scenarios beyond it, recording every AWS call of each of `handlers`."""
    with record_calls(handlers) as recording:
        _empty_account()
        # The drill's region steps fail on what they measure (README, "The drill"); the failover and failback
        # they run are recorded below, in `_failover_and_fencing` and `_failback`.
        report = run_drill(report_dir, regions=False)
        _expect(report.ok, "the drill", report.summary())
        beyond_the_drill()
    return recording
