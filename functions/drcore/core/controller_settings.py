"""What every controller function reads about the protected function and the controller's resources, the
names of those environment variables (the stacks set them under these names) and their defaults.

Read without pydantic, unlike the other functions' settings (drcore.core.config): a watcher that starts
cold to roll back imports nothing it does not use, and pydantic with a model built would be the biggest
part of its cold start. The checks are the same, and a bad variable is named the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from drcore.core.errors import SettingsError

_Value = TypeVar("_Value")


class EnvVar(StrEnum):
    PROTECTED_FUNCTION_NAME = "DR_PROTECTED_FUNCTION_NAME"
    LIVE_ALIAS = "DR_LIVE_ALIAS"
    STABLE_ALIAS = "DR_STABLE_ALIAS"
    STATE_TABLE_NAME = "DR_STATE_TABLE_NAME"
    ALERT_TOPIC_ARN = "DR_ALERT_TOPIC_ARN"
    EMERGENCY_TOPIC_ARN = "DR_EMERGENCY_TOPIC_ARN"
    HEALTH_ALARM_NAMES = "DR_HEALTH_ALARM_NAMES"
    PERFORMANCE_ALARM_NAMES = "DR_PERFORMANCE_ALARM_NAMES"
    BAKE_SECONDS = "DR_BAKE_SECONDS"
    MIN_BAKE_INVOCATIONS = "DR_MIN_BAKE_INVOCATIONS"
    SETTLE_SECONDS = "DR_SETTLE_SECONDS"
    PENDING_REPAIR_SECONDS = "DR_PENDING_REPAIR_SECONDS"
    REGRESSION_FACTOR = "DR_REGRESSION_FACTOR"
    REGRESSION_MIN_INVOCATIONS = "DR_REGRESSION_MIN_INVOCATIONS"
    METRICS_NAMESPACE = "DR_METRICS_NAMESPACE"
    HEALTH_PROBE_TIMEOUT_SECONDS = "DR_HEALTH_PROBE_TIMEOUT_SECONDS"
    # The region whose copy of the protected function this controller keeps records for, where that is not the
    # primary (the standby stack's functions): their controller record and journal are kept apart from the
    # primary's in the shared global table. Empty in the primary.
    STATE_SCOPE = "DR_STATE_SCOPE"
    # The region the data bucket is in, active until a failover says otherwise (drcore.state.region_record).
    PRIMARY_REGION = "DR_PRIMARY_REGION"
    # The bucket whose pipeline notification this region's controller removes when the region record names another
    # region active (fencing a returning region); empty: no fence.
    FENCED_BUCKET = "DR_FENCED_BUCKET"


def split_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, as the stacks write lists into the environment."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


class _Reader:
    """Reads variables from an environment, collecting every problem so that one error names them all."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []

    def value(self, name: EnvVar, default: _Value, parse: Callable[[str], _Value], accept: Callable[[_Value], bool],
              expected: str) -> _Value:
        if name not in self._environ:
            return default
        try:
            value = parse(self._environ[name])
        except ValueError:
            return self._wrong(name, default, expected)
        return value if accept(value) else self._wrong(name, default, expected)

    def _wrong(self, name: EnvVar, default: _Value, expected: str) -> _Value:
        self.problems.append(f"{name.value}: should be {expected}")
        return default

    def required_text(self, name: EnvVar) -> str:
        if name not in self._environ:
            self.problems.append(f"{name.value}: required")
            return ""
        return self.text(name, "")

    def text(self, name: EnvVar, default: str) -> str:
        return self.value(name, default, str, bool, "a non-empty string")

    def names(self, name: EnvVar) -> tuple[str, ...]:
        return self.value(name, (), split_names, lambda _: True, "comma-separated names")

    def whole(self, name: EnvVar, default: int, minimum: int) -> int:
        return self.value(name, default, int, lambda value: value >= minimum, f"a whole number >= {minimum}")


# The seed runbook's values, for a variable the stack did not set (the tests, the local drill).
DEFAULT_LIVE_ALIAS = "LIVE"
DEFAULT_STABLE_ALIAS = "STABLE"
DEFAULT_METRICS_NAMESPACE = "ApiladosDR"
# A candidate becomes STABLE after serving this long with every alarm OK (seed: 30 minutes)...
DEFAULT_BAKE_SECONDS = 30 * 60
# ...and only if it served at least this many invocations: an idle bake proves nothing.
DEFAULT_MIN_BAKE_INVOCATIONS = 10
# After a rollback, alarms keep evaluating the bad version's datapoints for up to their longest window (the
# seed's duration alarm looks at 10 minutes): ALARMs inside it are not blamed on STABLE.
DEFAULT_SETTLE_SECONDS = 600
# A rollback whose bookkeeping is unfinished after this long is taken to have crashed.
DEFAULT_PENDING_REPAIR_SECONDS = 60
# Roll back when LIVE's p99 Duration exceeds STABLE's baseline by this factor, over at least this many invocations.
DEFAULT_REGRESSION_FACTOR = 1.5
DEFAULT_REGRESSION_MIN_INVOCATIONS = 20

# A watcher's invocation may last this long (the stack sets it as the watchers' Lambda timeout)...
WATCHER_TIMEOUT_SECONDS = 30
# ...of which the health probe leaves at least this much to the rest of the tick (reconcile and the metrics), so
# a LIVE that answers slowly or never is a failed probe, never a watcher timing out before it reconciles...
TICK_RESERVE_SECONDS = 10
# ...and waits this long for LIVE's answer by default: a health check answers in well under a second, and a
# cold start of the pipeline in a few.
DEFAULT_HEALTH_PROBE_TIMEOUT_SECONDS = 10
MAX_HEALTH_PROBE_TIMEOUT_SECONDS = WATCHER_TIMEOUT_SECONDS - TICK_RESERVE_SECONDS


@dataclass(frozen=True)
class ControllerSettings:
    """What a watcher needs to know about the protected function and the controller's resources."""

    protected_function: str
    state_table: str
    alert_topic_arn: str
    emergency_topic_arn: str
    live_alias: str = DEFAULT_LIVE_ALIAS
    stable_alias: str = DEFAULT_STABLE_ALIAS
    health_alarms: tuple[str, ...] = ()
    performance_alarms: tuple[str, ...] = ()
    bake_seconds: int = DEFAULT_BAKE_SECONDS
    min_bake_invocations: int = DEFAULT_MIN_BAKE_INVOCATIONS
    settle_seconds: int = DEFAULT_SETTLE_SECONDS
    pending_repair_seconds: int = DEFAULT_PENDING_REPAIR_SECONDS
    regression_factor: float = DEFAULT_REGRESSION_FACTOR
    regression_min_invocations: int = DEFAULT_REGRESSION_MIN_INVOCATIONS
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    health_probe_timeout_seconds: int = DEFAULT_HEALTH_PROBE_TIMEOUT_SECONDS
    state_scope: str | None = None
    primary_region: str = ""
    fenced_bucket: str = ""

    @property
    def watched_alarms(self) -> tuple[str, ...]:
        return self.health_alarms + self.performance_alarms

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ControllerSettings:
        """The settings in `environ`; a SettingsError names each bad or missing variable and its problem."""
        read = _Reader(environ)
        settings = cls(
            protected_function=read.required_text(EnvVar.PROTECTED_FUNCTION_NAME),
            state_table=read.required_text(EnvVar.STATE_TABLE_NAME),
            alert_topic_arn=read.required_text(EnvVar.ALERT_TOPIC_ARN),
            emergency_topic_arn=read.required_text(EnvVar.EMERGENCY_TOPIC_ARN),
            live_alias=read.text(EnvVar.LIVE_ALIAS, DEFAULT_LIVE_ALIAS),
            stable_alias=read.text(EnvVar.STABLE_ALIAS, DEFAULT_STABLE_ALIAS),
            health_alarms=read.names(EnvVar.HEALTH_ALARM_NAMES),
            performance_alarms=read.names(EnvVar.PERFORMANCE_ALARM_NAMES),
            bake_seconds=read.whole(EnvVar.BAKE_SECONDS, DEFAULT_BAKE_SECONDS, 0),
            min_bake_invocations=read.whole(EnvVar.MIN_BAKE_INVOCATIONS, DEFAULT_MIN_BAKE_INVOCATIONS, 0),
            settle_seconds=read.whole(EnvVar.SETTLE_SECONDS, DEFAULT_SETTLE_SECONDS, 0),
            pending_repair_seconds=read.whole(EnvVar.PENDING_REPAIR_SECONDS, DEFAULT_PENDING_REPAIR_SECONDS, 0),
            regression_factor=read.value(EnvVar.REGRESSION_FACTOR, DEFAULT_REGRESSION_FACTOR, float,
                                         lambda factor: factor > 1.0, "a number > 1.0"),
            regression_min_invocations=read.whole(EnvVar.REGRESSION_MIN_INVOCATIONS,
                                                  DEFAULT_REGRESSION_MIN_INVOCATIONS, 1),
            metrics_namespace=read.text(EnvVar.METRICS_NAMESPACE, DEFAULT_METRICS_NAMESPACE),
            health_probe_timeout_seconds=read.value(
                EnvVar.HEALTH_PROBE_TIMEOUT_SECONDS, DEFAULT_HEALTH_PROBE_TIMEOUT_SECONDS, int,
                lambda seconds: 1 <= seconds <= MAX_HEALTH_PROBE_TIMEOUT_SECONDS,
                f"a whole number of seconds from 1 to {MAX_HEALTH_PROBE_TIMEOUT_SECONDS}"),
            state_scope=read.text(EnvVar.STATE_SCOPE, "") or None,
            primary_region=read.value(EnvVar.PRIMARY_REGION, "", str, lambda _: True, "a region name"),
            fenced_bucket=read.value(EnvVar.FENCED_BUCKET, "", str, lambda _: True, "a bucket name"),
        )
        if read.problems:
            raise SettingsError(f"invalid controller settings: {'; '.join(read.problems)}")
        return settings
