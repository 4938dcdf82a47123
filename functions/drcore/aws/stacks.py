"""CloudFormation reads that answer None for what does not exist, so callers decide what absence means
(a stack backup refuses, a stack recovery creates it) without reading error codes themselves."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import is_not_found, stack_does_not_exist


def describe_stack(cloudformation_client: Any, stack: str) -> dict[str, Any] | None:
    """DescribeStacks' entry of `stack` (a name or a stack id); None when there is no such stack. By id, a
    deleted stack still answers, as DELETE_COMPLETE."""
    try:
        described: dict[str, Any] = cloudformation_client.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as error:
        if stack_does_not_exist(error):
            return None
        raise
    return described


def describe_change_set(cloudformation_client: Any, change_set_id: str) -> dict[str, Any] | None:
    """DescribeChangeSet's first page; None when the change set is gone (executed, deleted or expired)."""
    try:
        described: dict[str, Any] = cloudformation_client.describe_change_set(ChangeSetName=change_set_id)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise
    return described
