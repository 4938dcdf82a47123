"""The DR controller in the primary region: state, alerting, the LIVE alias's alarms and the watchers,
backups with their RPO alarms and the fan-out of big bucket snapshots, their retention and the alarm on changes to
their protection, the operators' recovery function and the fan-out of big bucket restores, the replication alarms, the
drills, and the dashboard; the state table is a global table with a replica in the secondary region, and the backup
bucket replicates to the standby stack's copy there."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.backup_guard import BackupGuard
from stacks.constructs.backup_replication import BackupReplication
from stacks.constructs.backups import Backups
from stacks.constructs.cdk_types import role_of
from stacks.constructs.controller_functions import ControllerFunctions
from stacks.constructs.dashboard import ControllerDashboard, dashboard_url
from stacks.constructs.drills import Drills, scratch_function_name
from stacks.constructs.recovery import Recovery
from stacks.constructs.replication import ReplicationAlarms
from stacks.constructs.restore_fanout import RESULTS_PREFIX as RESTORE_RESULTS_PREFIX
from stacks.constructs.restore_fanout import RestoreFanOut
from stacks.constructs.retention import Retention
from stacks.constructs.shard_fanout import RESULTS_EXPIRY
from stacks.constructs.snapshot_fanout import RESULTS_PREFIX as SNAPSHOT_RESULTS_PREFIX
from stacks.constructs.snapshot_fanout import SnapshotFanOut
from stacks.constructs.state_table import StateTable
from stacks.constructs.switch_gate import SwitchGate
from stacks.constructs.watchers import WATCHER_SERVICES, Watchers
from stacks.settings import Settings


class ControllerStack(Stack):
    def __init__(self, scope: Construct, settings: Settings) -> None:
        super().__init__(
            scope,
            settings.controller_stack,
            description=(
                f"Disaster-recovery controller of {settings.protected_function}: automatic rollback, backups, "
                "manual recovery"
            ),
            # The alarms, the alias ARNs and the Powertools layer parameter are all regional.
            env=Environment(region=settings.primary_region),
        )
        state = StateTable(self, "State", settings=settings)
        alerting = Alerting(
            self, "Alerting", emails=settings.alert_emails, other_subscribers=settings.alert_subscriptions
        )
        functions = ControllerFunctions(self, "Functions", settings=settings, alert_topic=alerting.alert_topic)
        alarms = LiveAliasAlarms(self, "LiveAliasAlarms", settings=settings)
        watchers = Watchers(
            self,
            "Watchers",
            settings=settings,
            functions=functions,
            state_table=state.table,
            alerting=alerting,
            alarms=alarms,
        )
        backup_bucket = BackupBucket(self, "BackupBucket", settings=settings)
        BackupReplication(self, "BackupReplication", settings=settings, backup_bucket=backup_bucket)
        backups = Backups(
            self,
            "Backups",
            settings=settings,
            functions=functions,
            state_table=state.table,
            backup_bucket=backup_bucket,
            alert_topic=alerting.alert_topic,
        )
        retention = Retention(
            self,
            "Retention",
            settings=settings,
            functions=functions,
            state_table=state.table,
            backup_bucket=backup_bucket,
        )
        BackupGuard(self, "BackupGuard", settings=settings, backup_bucket=backup_bucket, alerting=alerting,
                    functions=functions)
        recovery = Recovery(
            self,
            "Recovery",
            settings=settings,
            functions=functions,
            state_table=state.table,
            alerting=alerting,
            alarms=alarms,
            backup_bucket=backup_bucket,
        )
        # Big snapshots of the data bucket run as shards (the standby, which backs up its function only, has none), a
        # restore's safety snapshot of it too.
        snapshot_fan_out = SnapshotFanOut(
            self,
            "SnapshotFanOut",
            settings=settings,
            backup_function=backups.function,
            recovery_function=recovery.function,
            backup_bucket=backup_bucket,
            alert_topic=alerting.alert_topic,
        )
        # Big restores run as shards too (the standby's never fan out).
        restore_fan_out = RestoreFanOut(
            self,
            "RestoreFanOut",
            settings=settings,
            functions=functions,
            state_table=state.table,
            recovery_function=recovery.function,
            backup_bucket=backup_bucket,
            results_bucket=snapshot_fan_out.results_bucket,
            alert_topic=alerting.alert_topic,
        )
        SwitchGate(self, "SwitchGate", settings=settings, bucket=settings.data_bucket,
                   recovery_role=role_of(recovery.function))
        replication = ReplicationAlarms(self, "Replication", settings=settings, alert_topic=alerting.alert_topic)
        drills = Drills(
            self,
            "Drills",
            settings=settings,
            functions=functions,
            state_table=state.table,
            alerting=alerting,
            alarms=alarms,
            backup_bucket=backup_bucket,
        )
        ControllerDashboard(
            self,
            "Dashboard",
            settings=settings,
            watcher_services=WATCHER_SERVICES,
            live_alarms=[*alarms.health, *alarms.performance],
            rpo_alarms=backups.rpo_alarms,
            controller_alarms=[functions.failed_events_alarm, *watchers.heartbeat_alarms, *replication.alarms,
                               snapshot_fan_out.alarm, restore_fan_out.alarm],
            recovery_function=recovery.function,
            snapshot_fanout_state_machine=snapshot_fan_out.state_machine,
            restore_fanout_state_machine=restore_fan_out.state_machine,
        )

        invokers = (
            "the operator principals in cdk.json and IAM identities of this account allowed lambda:InvokeFunction"
            if settings.operator_principals
            else "IAM identities of this account allowed lambda:InvokeFunction (no operator principals configured)"
        )

        outputs = {
            "HealthWatcherName": (watchers.health_watcher.function_name, "Invoked by health alarms and the tick"),
            "PerformanceWatcherName": (
                watchers.performance_watcher.function_name,
                "Invoked by duration alarms and the tick",
            ),
            "BackupFunctionName": (
                backups.function.function_name,
                'Backs up on schedule; invoke with {"component": "lambda" | "s3" | "stack" | "logs"} to back up now',
            ),
            "RetentionFunctionName": (
                retention.function.function_name,
                'Prunes expired snapshots every hour; invoke with {"action": "retention"} to run now',
            ),
            "RecoveryFunctionName": (
                recovery.function.function_name,
                f'Manual recovery: invoke with {{"action": "status"}}; invocable by {invokers}',
            ),
            "RecoveryFunctionArn": (recovery.function.function_arn, "ARN of the recovery function"),
            "DrillFunctionName": (
                drills.function.function_name,
                f'DR drills on {settings.drill.schedule}; invoke with {{"action": "drill", "requested_by": "<you>"}}',
            ),
            "DrillScratchBucketName": (
                drills.scratch_bucket.bucket_name,
                f"Where drills restore the newest snapshot; expires after {settings.drill.scratch_expiry_days} days",
            ),
            "DrillScratchFunctionName": (
                scratch_function_name(settings),
                "Where drills restore the newest function backup",
            ),
            "StateTableName": (state.table.table_name, "Controller records, idempotency records and the journal"),
            "BackupBucketName": (backup_bucket.bucket.bucket_name, "Backups: versioned, KMS-encrypted, Object Lock"),
            "SnapshotFanOutResultsBucketName": (
                snapshot_fan_out.results_bucket.bucket_name,
                (
                    "The snapshot and restore fan-outs' Map Run results (which shards failed, and why), under "
                    f"{SNAPSHOT_RESULTS_PREFIX}/<map run id>/ and {RESTORE_RESULTS_PREFIX}/<map run id>/; they expire "
                    f"after {RESULTS_EXPIRY.to_days()} days"
                ),
            ),
            "DataBucketName": (settings.data_bucket, "The protected data bucket, snapshotted into the backup bucket"),
            "AlertTopicArn": (alerting.alert_topic.topic_arn, "Severity 2 to 4 alerts"),
            "EmergencyTopicArn": (alerting.emergency_topic.topic_arn, "Severity 1 alerts"),
            "FailedEventsQueueUrl": (functions.failed_events.queue_url, "Events the controller gave up on"),
            "DashboardUrl": (dashboard_url(settings), "The controller's CloudWatch dashboard"),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
