"""The function backup's format, shared by the backup that writes it (drcore.backup.function_backup) and the
restore that reads it back (drcore.restore.function_restore): its file names, Lambda's code digest, and
how a setting is captured, with the reads of a function's settings that both make.

A capture says what a restore may do with a setting: `{"status": "present", "value": ...}` (apply it),
`{"status": "absent"}` (the function has none), or `{"status": "unavailable", "detail": ...}` (the
endpoint could not say, so a restore must leave that setting as it finds it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from drcore.aws.errors import NOT_IMPLEMENTED, error_code, is_not_found

FORMAT = 1
CODE_ARCHIVE = "code.zip"
CONFIGURATION = "configuration.json"
UNQUALIFIED = "$unqualified"  # "$" cannot start an alias name, so it never collides with one

PRESENT, ABSENT, UNAVAILABLE = "present", "absent", "unavailable"


def code_sha256(body: bytes) -> str:
    """Lambda's CodeSha256: the base64 of the SHA-256 digest of the archive."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def unqualified_arn(function_arn: str) -> str:
    return ":".join(function_arn.split(":")[:7])  # arn:aws:lambda:<region>:<account>:function:<name>


def is_unavailable(error: ClientError) -> bool:
    """The endpoint cannot tell: it does not implement the operation. Lambda names what is missing
    (ResourceNotFoundException), so from Lambda a 404 without a code of its own is a missing operation."""
    return error_code(error) in NOT_IMPLEMENTED or error_code(error) == "404"


def has_none(error: ClientError) -> bool:
    """Lambda's answer for "the function (or alias) has none of this"."""
    return is_not_found(error) and not is_unavailable(error)


def capture(read: Callable[[], Any]) -> dict[str, Any]:
    """What `read()` answers, as a capture; an empty answer is "absent"."""
    try:
        value = read()
    except ClientError as error:
        if is_unavailable(error):
            detail = f"{error.operation_name} is not available from this endpoint ({error_code(error)})"
            return {"status": UNAVAILABLE, "detail": detail}
        if has_none(error):
            return {"status": ABSENT}
        raise
    return captured(value)


def captured(value: Any) -> dict[str, Any]:
    """`value` as a capture: "present" with it, or "absent" when it is empty."""
    if value is None or value == [] or value == {}:
        return {"status": ABSENT}
    return {"status": PRESENT, "value": value}


def captured_value(capture: dict[str, Any]) -> Any:
    """A capture's value; None when it is absent or unavailable."""
    return capture.get("value") if capture["status"] == PRESENT else None


def read_tags(lambda_client: Any, function_arn: str) -> dict[str, str] | None:
    tags: dict[str, str] | None = lambda_client.list_tags(Resource=unqualified_arn(function_arn)).get("Tags")
    return tags


def read_reserved_concurrency(lambda_client: Any, function_name: str) -> int | None:
    reserved: int | None = lambda_client.get_function_concurrency(FunctionName=function_name).get(
        "ReservedConcurrentExecutions")
    return reserved
