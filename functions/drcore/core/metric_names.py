"""The names of the metrics the controller's functions publish in its own namespace, and of their dimensions.

Defined once: the functions publish under these names, and the stack's alarms and dashboard (stacks/) and
the local drill (embedded/) read them, so a renamed metric cannot leave an alarm watching nothing.
"""

from __future__ import annotations

# The backup function, after each good backup, per component (dimension COMPONENT_DIMENSION): the RPO
# alarms watch the first, the dashboard plots the age of the last good backup from the second.
BACKUP_SUCCEEDED_METRIC = "BackupSucceeded"  # 1, unit Count
BACKUP_COMPLETED_AT_METRIC = "BackupCompletedAt"  # epoch seconds, unit None
COMPONENT_DIMENSION = "Component"
# A fanned-out bucket snapshot's shard workers (drcore.backup.snapshot_shards), after each page and each shard
# finished (dimension COMPONENT_DIMENSION, value "s3"): the dashboard plots a fan-out's progress.
SNAPSHOT_SHARDS_DONE_METRIC = "SnapshotShardsDone"  # unit Count
SNAPSHOT_OBJECTS_LISTED_METRIC = "SnapshotObjectsListed"  # unit Count
SNAPSHOT_BYTES_COPIED_METRIC = "SnapshotBytesCopied"  # unit Bytes
# A fanned-out bucket restore's shard worker (drcore.restore.shard_worker), after each invocation (dimension
# COMPONENT_DIMENSION, value "s3"): what it copied, and once its shard is done, the shard and the objects it verified.
RESTORE_SHARDS_DONE_METRIC = "RestoreShardsDone"  # unit Count
RESTORE_OBJECTS_VERIFIED_METRIC = "RestoreObjectsVerified"  # unit Count
RESTORE_BYTES_COPIED_METRIC = "RestoreBytesCopied"  # unit Bytes

# A drill's result (dimension ENVIRONMENT_DIMENSION: where it ran, drcore.core.config.DrillEnvironment).
DRILL_PASSED_METRIC = "DrillPassed"  # 1 passed, 0 failed
ENVIRONMENT_DIMENSION = "Environment"

# The health watcher's tick invokes what LIVE serves with the seed's health-check payload (dimensions
# FUNCTION_DIMENSION and ALIAS_DIMENSION): the health-probe alarm fires on the first.
HEALTH_PROBE_METRIC = "HealthProbeFailed"  # 1 failed, 0 passed
HEALTH_PROBE_LATENCY_METRIC = "HealthProbeLatency"  # milliseconds
FUNCTION_DIMENSION = "FunctionName"
ALIAS_DIMENSION = "Alias"

# The watchers: the versions LIVE and STABLE serve (dimension FUNCTION_DIMENSION)...
LIVE_VERSION_METRIC = "LiveVersion"
STABLE_VERSION_METRIC = "StableVersion"
# ...and, through Powertools' embedded metric format (dimension SERVICE_DIMENSION: the watcher's Powertools
# service name), a count of each scheduled tick they complete, their heartbeat (an alarm per watcher fires when it
# stops: a disabled schedule, a broken deploy, a tick failing every time)...
HEARTBEAT_METRIC = "Ticks"
SERVICE_DIMENSION = "service"
# ...and of each change they make.
ROLLBACKS_METRIC = "Rollbacks"
PROMOTIONS_METRIC = "Promotions"
FREEZES_METRIC = "Freezes"
DRIFT_REVERTS_METRIC = "DriftReverts"
