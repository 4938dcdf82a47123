"""Merging variables into a function's environment, never replacing it.

UpdateFunctionConfiguration's `Environment` replaces every variable (the runbook's failover-region.sh left
the function with two). So the environment is read, the controller's variables set (or removed) in it, and
written back with the `RevisionId` it was read at: Lambda refuses the write if the configuration changed
since, and the merge is redone on what is there now, a bounded number of times. Lambda's busy refusals and
the wait for the update to settle are drcore.aws.lambda_updates'.

The configuration changed is the function's unpublished one ($LATEST): published versions are immutable, so
an alias serves the variables from the next version published from it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from drcore.aws.errors import is_precondition_failed
from drcore.aws.lambda_updates import LambdaUpdates
from drcore.core.errors import ConcurrentUpdate

logger = Logger(child=True)

# Read-modify-write rounds before giving up on a configuration someone else keeps changing.
MAX_MERGE_ROUNDS = 4


@dataclass(frozen=True)
class EnvironmentChange:
    function_name: str
    changed: bool  # False: the variables already were as asked
    set_variables: dict[str, str]
    removed: tuple[str, ...]
    kept: int  # variables of others left as they were
    verified: bool  # read back: ours as asked, every other variable unchanged

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function_name, "changed": self.changed, "set": dict(self.set_variables),
                "removed": list(self.removed), "kept": self.kept, "verified": self.verified}


def merged_variables(current: Mapping[str, str], set_variables: Mapping[str, str],
                     remove: Collection[str] = ()) -> dict[str, str]:
    merged = {name: value for name, value in current.items() if name not in remove}
    merged.update(set_variables)
    return merged


class FunctionEnvironment:
    """Environments of functions reached through one Lambda client (one region's)."""

    def __init__(self, updates: LambdaUpdates, lambda_client: Any) -> None:
        self._updates = updates
        self._lambda = lambda_client

    def variables(self, function_name: str) -> dict[str, str]:
        configuration = self._lambda.get_function_configuration(FunctionName=function_name)
        return dict((configuration.get("Environment") or {}).get("Variables") or {})

    def merge(self, function_name: str, set_variables: Mapping[str, str],
              remove: Collection[str] = ()) -> EnvironmentChange:
        """Set `set_variables` and remove `remove` in the function's environment, keeping every other variable."""
        for _ in range(MAX_MERGE_ROUNDS):
            configuration = self._updates.settled(function_name)
            current = dict((configuration.get("Environment") or {}).get("Variables") or {})
            merged = merged_variables(current, set_variables, remove)
            if merged == current:
                return self._change(function_name, set_variables, remove, current, changed=False)
            try:
                self._updates.call(self._lambda.update_function_configuration, FunctionName=function_name,
                                   Environment={"Variables": merged}, RevisionId=configuration["RevisionId"])
            except ClientError as error:
                if is_precondition_failed(error):
                    logger.info("function configuration changed meanwhile; merging again",
                                extra={"function": function_name})
                    continue
                raise
            return self._change(function_name, set_variables, remove, current, changed=True)
        raise ConcurrentUpdate(f"the configuration of {function_name} kept changing during {MAX_MERGE_ROUNDS} "
                               "merges of its environment; try again")

    def _change(self, function_name: str, set_variables: Mapping[str, str], remove: Collection[str],
                before: Mapping[str, str], changed: bool) -> EnvironmentChange:
        after = dict((self._updates.settled(function_name).get("Environment") or {}).get("Variables") or {})
        others = {name: value for name, value in before.items() if name not in set_variables and name not in remove}
        verified = (all(after.get(name) == value for name, value in set_variables.items())
                    and not any(name in after for name in remove)
                    and all(after.get(name) == value for name, value in others.items()))
        change = EnvironmentChange(function_name, changed, dict(set_variables), tuple(remove), len(others), verified)
        logger.info("function environment merged", extra=change.to_dict())
        return change
