"""The controller's settings, read from the environment the stacks give every function, without pydantic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drcore.core.controller_settings import ControllerSettings
from drcore.core.errors import SettingsError

REQUIRED = {"DR_PROTECTED_FUNCTION_NAME": "f", "DR_STATE_TABLE_NAME": "t", "DR_ALERT_TOPIC_ARN": "a",
            "DR_EMERGENCY_TOPIC_ARN": "e"}
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def test_values_are_read_with_their_types_and_defaults_fill_the_rest():
    settings = ControllerSettings.from_environ({
        **REQUIRED, "DR_HEALTH_ALARM_NAMES": "f-LIVE-errors, f-LIVE-throttles,", "DR_BAKE_SECONDS": "60",
        "DR_REGRESSION_FACTOR": "2.5", "DR_UNRELATED": "ignored"})
    assert settings.health_alarms == ("f-LIVE-errors", "f-LIVE-throttles")
    assert settings.watched_alarms == settings.health_alarms
    assert (settings.bake_seconds, settings.regression_factor) == (60, 2.5)
    assert (settings.live_alias, settings.stable_alias, settings.min_bake_invocations) == ("LIVE", "STABLE", 10)
    assert hash(settings) == hash(ControllerSettings.from_environ({**REQUIRED,
        "DR_HEALTH_ALARM_NAMES": "f-LIVE-errors,f-LIVE-throttles", "DR_BAKE_SECONDS": "60",
        "DR_REGRESSION_FACTOR": "2.5"}))  # the builders are cached by settings


def test_every_bad_variable_is_named_in_one_error():
    environ = {**REQUIRED, "DR_STATE_TABLE_NAME": "", "DR_BAKE_SECONDS": "ten", "DR_SETTLE_SECONDS": "-1",
               "DR_REGRESSION_FACTOR": "1.0", "DR_REGRESSION_MIN_INVOCATIONS": "0"}
    del environ["DR_ALERT_TOPIC_ARN"]
    with pytest.raises(SettingsError) as refused:
        ControllerSettings.from_environ(environ)
    for name in ("DR_STATE_TABLE_NAME", "DR_ALERT_TOPIC_ARN", "DR_BAKE_SECONDS", "DR_SETTLE_SECONDS",
                 "DR_REGRESSION_FACTOR", "DR_REGRESSION_MIN_INVOCATIONS"):
        assert name in str(refused.value)
    assert "DR_PROTECTED_FUNCTION_NAME" not in str(refused.value)


@pytest.mark.parametrize("watcher", ["health_watcher", "performance_watcher"])
def test_a_watcher_imports_nothing_a_rollback_does_not_need(watcher):
    # Given a fresh interpreter, as a cold start has; When the watcher's handler module is imported
    code = f"import json, sys; import {watcher}.handler; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(FUNCTIONS)},
                                       capture_output=True, text=True, check=True).stdout)
    # Then neither pydantic (the other functions' settings and events are its models) nor any backup, restore or
    # drill code came with it
    assert "drcore.core.config" not in loaded
    assert not [name for name in loaded if name.split(".")[0] in ("pydantic", "pydantic_core")]
    assert not [name for name in loaded if name.split(".")[:2] in (["drcore", "backup"], ["drcore", "restore"],
                                                                   ["drcore", "drill"], ["drcore", "region"])]
