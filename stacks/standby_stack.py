"""The DR controller's standby in secondary_region: what a region outage of the primary must not take away.

It deploys the primary's own constructs, each built for this stack's region (their ARNs are `Stack.of`'s):
- the recovery function with the primary's action table, on the protected function as deployed in this region, the
  state table's replica here, and the backup bucket's copy as its backup store; its restores read the data
  bucket's replicated snapshots and may write the replica bucket (`"target_bucket": "<replica_bucket>"`);
- the watchers of this region's function's LIVE alias, with their alarms, tick and heartbeat alarms;
- the region watcher (stacks/constructs/region_watcher.py), which watches the primary region every minute and
  alerts with a ready failover plan when it stays unhealthy, or confirms it if `failover.automatic`;
- the backup function, backing up this region's function (code and configuration) on schedule and on change, with
  its RPO alarm, into the copy;
- encrypted alert and emergency topics, subscribed as the primary's: alerts raised during a failover go out from
  the region that is up;
- the backup bucket's copy: versioned, Object Lock as the primary's, a KMS key of its own (with an alias, by which
  the primary's replication names it), create-only and no-delete for every principal of the account, and the
  severity-1 alert on changes to its protection. The primary stack replicates into it
  (stacks/constructs/backup_replication.py) and is deployed after this one.

The state table is the primary stack's global table; this stack addresses its replica by name, so neither stack
refers to the other.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from drcore.state.backup_store import Component
from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.backup_guard import BackupGuard
from stacks.constructs.backups import Backups
from stacks.constructs.cdk_types import role_of
from stacks.constructs.controller_functions import ControllerFunctions
from stacks.constructs.recovery import Recovery
from stacks.constructs.region_watcher import RegionWatcher
from stacks.constructs.state_table import state_table_replica
from stacks.constructs.switch_gate import SwitchGate
from stacks.constructs.watchers import Watchers
from stacks.settings import Settings

# What the standby backs up of its region: the protected function. The data is the replica (fed by replication,
# its snapshots are the primary's, replicated with the backups), the stack and the logs are the primary's.
STANDBY_BACKUPS = (Component.LAMBDA,)


def standby_recovery_settings(settings: Settings) -> Settings:
    """The recovery function's settings in the standby: restores may also write the replica bucket, the data this
    region holds, rather than the primary's allow-list of targets."""
    targets = (settings.replica_bucket,)
    return settings.model_copy(
        update={"recovery": settings.recovery.model_copy(update={"restore_target_buckets": targets})}
    )


class StandbyStack(Stack):
    def __init__(self, scope: Construct, settings: Settings) -> None:
        super().__init__(
            scope,
            settings.standby_stack,
            description=(
                f"Disaster-recovery standby of {settings.protected_function} in {settings.secondary_region}: "
                "recovery, automatic rollback, backups and their copy, alerts from the region that is up"
            ),
            env=Environment(region=settings.secondary_region),
        )
        state_table = state_table_replica(self, "State", settings)
        alerting = Alerting(
            self, "Alerting", emails=settings.alert_emails, other_subscribers=settings.alert_subscriptions
        )
        # Every function here keeps its controller items apart from the primary's in the global table.
        functions = ControllerFunctions(self, "Functions", settings=settings, alert_topic=alerting.alert_topic,
                                        state_scope=settings.secondary_region)
        alarms = LiveAliasAlarms(self, "LiveAliasAlarms", settings=settings)
        watchers = Watchers(
            self,
            "Watchers",
            settings=settings,
            functions=functions,
            state_table=state_table,
            alerting=alerting,
            alarms=alarms,
        )
        backup_copy = BackupBucket(
            self,
            "BackupCopy",
            settings=settings,
            bucket_name=settings.backup_copy_bucket(self.account),
            key_alias=settings.backup_copy_key_alias(),
            logs_export=False,
        )
        # No retention runs on the copy: no one hides a backup there.
        backup_copy.let_only_retention_hide(None)
        backups = Backups(
            self,
            "Backups",
            settings=settings,
            functions=functions,
            state_table=state_table,
            backup_bucket=backup_copy,
            alert_topic=alerting.alert_topic,
            components=STANDBY_BACKUPS,
        )
        BackupGuard(
            self, "BackupGuard", settings=settings, backup_bucket=backup_copy, alerting=alerting, functions=functions
        )
        recovery = Recovery(
            self,
            "Recovery",
            settings=standby_recovery_settings(settings),
            functions=functions,
            state_table=state_table,
            alerting=alerting,
            alarms=alarms,
            backup_bucket=backup_copy,
        )
        SwitchGate(self, "SwitchGate", settings=settings, bucket=settings.replica_bucket,
                   recovery_role=role_of(recovery.function))
        region_watcher = RegionWatcher(
            self,
            "RegionWatcher",
            settings=settings,
            functions=functions,
            state_table=state_table,
            alerting=alerting,
            alarms=alarms,
            recovery_function=recovery.function,
        )

        outputs = {
            "HealthWatcherName": (watchers.health_watcher.function_name, "Invoked by health alarms and the tick"),
            "PerformanceWatcherName": (
                watchers.performance_watcher.function_name,
                "Invoked by duration alarms and the tick",
            ),
            "RegionWatcherName": (
                region_watcher.function.function_name,
                (
                    f"Watches {settings.protected_function} in {settings.primary_region} every minute; alerts (and, "
                    "if failover.automatic, fails over) when it stays unhealthy"
                ),
            ),
            "BackupFunctionName": (
                backups.function.function_name,
                (
                    f"Backs up {settings.protected_function} in {settings.secondary_region} on schedule; invoke "
                    'with {"component": "lambda"} to back up now'
                ),
            ),
            "RecoveryFunctionName": (
                recovery.function.function_name,
                f'Manual recovery in {settings.secondary_region}: invoke with {{"action": "status"}}',
            ),
            "RecoveryFunctionArn": (recovery.function.function_arn, "ARN of the standby's recovery function"),
            "StateTableName": (state_table.table_name, "The state table's replica in this region"),
            "BackupCopyBucketName": (
                backup_copy.bucket.bucket_name,
                "The backup bucket's copy: replicated backups, versioned, KMS-encrypted, Object Lock",
            ),
            "ReplicaBucketName": (settings.replica_bucket, "The data bucket's replica, which restores here may write"),
            "AlertTopicArn": (alerting.alert_topic.topic_arn, "Severity 2 to 4 alerts from this region"),
            "EmergencyTopicArn": (alerting.emergency_topic.topic_arn, "Severity 1 alerts from this region"),
            "FailedEventsQueueUrl": (functions.failed_events.queue_url, "Events the standby gave up on"),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
