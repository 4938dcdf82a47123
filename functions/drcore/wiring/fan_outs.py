"""The Step Functions fan-outs of big snapshots and restores, as every function that starts one builds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drcore.aws.state_machines import MapExecutions
from drcore.backup.snapshot_shards import FanOutSettings
from drcore.core.config import BackupSettings

FanOut = tuple[FanOutSettings, MapExecutions]


def fan_out(backup: BackupSettings, state_machine: str | None, client: Callable[[str], Any]) -> FanOut | None:
    """Jobs past the backup settings' threshold run in shards of their size on `state_machine`; None where the stack
    set none (the standby's functions have no fan-out). `client(service)` makes a client."""
    if not state_machine:
        return None
    return (FanOutSettings(backup.fanout_threshold_objects, backup.fanout_shard_objects),
            MapExecutions(client("stepfunctions"), state_machine))
