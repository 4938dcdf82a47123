"""CDK entry point: validates the "dr" settings from cdk.json and builds the controller stack in the primary region
and its standby in the secondary region.

`build_app` is what both `cdk synth` (through `python app.py`) and the infrastructure tests synthesize.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

PROJECT_ROOT = Path(__file__).resolve().parent
FUNCTIONS_DIR = PROJECT_ROOT / "functions"


def build_app(context_overrides: Mapping[str, Any] | None = None) -> cdk.App:
    """The App with the controller stack, the standby stack, and cdk-nag's AwsSolutions checks.

    The controller stack depends on the standby: its backup bucket replicates into the standby's copy, which must
    exist first (`cdk deploy --all` deploys the standby first).

    Context comes from cdk.json, then from the CDK CLI (`-c`), then from `context_overrides`, each
    overriding the one before; a dict value is merged key by key, so an override may change one setting.
    Raises `stacks.settings.InvalidSettings` naming every bad key.
    """
    _import_functions()
    from cdk_nag import AwsSolutionsChecks

    from stacks.controller_stack import ControllerStack
    from stacks.settings import CONTEXT_KEY, Settings
    from stacks.standby_stack import StandbyStack

    # `python app.py` alone does not read cdk.json; the CDK CLI passes its context too, and that wins.
    app = cdk.App(context=json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"])
    for key, value in (context_overrides or {}).items():
        app.node.set_context(key, _merged(app.node.try_get_context(key), value))

    settings = Settings.from_context(app.node.try_get_context(CONTEXT_KEY))
    controller = ControllerStack(app, settings)
    controller.add_stack_dependency(StandbyStack(app, settings), "the backup bucket replicates into the standby's copy")
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app


def _import_functions() -> None:
    """Let the stacks import the functions' drcore.core: the one definition of the environment variables'
    names, the seed's defaults and the metric names."""
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))


def _merged(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: _merged(base.get(key), value) for key, value in override.items()}}
    return override


if __name__ == "__main__":
    _import_functions()
    from stacks.settings import InvalidSettings

    try:
        build_app().synth()
    except InvalidSettings as error:
        sys.exit(str(error))
