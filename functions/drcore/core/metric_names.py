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

# A drill's result (dimension ENVIRONMENT_DIMENSION: where it ran, drcore.core.config.DrillEnvironment).
DRILL_PASSED_METRIC = "DrillPassed"  # 1 passed, 0 failed
ENVIRONMENT_DIMENSION = "Environment"

# The health watcher's tick invokes LIVE with the seed's health-check payload (dimensions FUNCTION_DIMENSION
# and ALIAS_DIMENSION): the health-probe alarm fires on the first.
HEALTH_PROBE_METRIC = "HealthProbeFailed"  # 1 failed, 0 passed
HEALTH_PROBE_LATENCY_METRIC = "HealthProbeLatency"  # milliseconds
FUNCTION_DIMENSION = "FunctionName"
ALIAS_DIMENSION = "Alias"

# The watchers: the versions LIVE and STABLE serve (dimension FUNCTION_DIMENSION)...
LIVE_VERSION_METRIC = "LiveVersion"
STABLE_VERSION_METRIC = "StableVersion"
# ...and a count of each change they make (Powertools' embedded metric format, dimension `service`).
ROLLBACKS_METRIC = "Rollbacks"
PROMOTIONS_METRIC = "Promotions"
FREEZES_METRIC = "Freezes"
DRIFT_REVERTS_METRIC = "DriftReverts"
