"""Telling the sender of a bad event what was wrong with it, without echoing the event back.

Events come from anyone allowed to invoke a function; an answer or a log line that repeats them verbatim
can be made arbitrarily large (a 200 KB field would come back 200 KB, and land in CloudWatch Logs at
that size). Everything a refusal quotes from the event goes through `echo` or `describe_problems`,
which bound it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotated: the watchers quote their findings without loading pydantic
    from pydantic import ValidationError

ECHO_LIMIT = 120  # characters of one quoted value: enough to recognise it, not enough to replay it
PROBLEMS_SHOWN = 5  # validation problems named in one answer; the rest are counted


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)`, cut to `limit` characters with the full length said, so the sender can tell."""
    return _cut(repr(value), limit)


def describe_problems(error: ValidationError, *, skip_location_parts: int = 0) -> str:
    """Pydantic's findings as `field.path: message; ...`, every part bounded.

    `skip_location_parts` drops leading location parts that name no field of the event (the
    discriminator tag of a tagged union).
    """
    issues = error.errors(include_url=False, include_input=False, include_context=False)
    return describe_findings([(issue["loc"][skip_location_parts:], issue["msg"]) for issue in issues])


def describe_findings(findings: Sequence[tuple[Sequence[str | int], str]]) -> str:
    """Findings, each a location in the event (keys and list indexes) and what is wrong there, as
    `field.path: message; ...`, every part bounded. A location can hold a key of the event (an extra
    field), so it is bounded like any other echo."""
    described = []
    for location, message in findings[:PROBLEMS_SHOWN]:
        path = ".".join(_cut(str(part), ECHO_LIMIT // 2) for part in location)
        described.append(f"{path or 'event'}: {_cut(message, 2 * ECHO_LIMIT)}")
    if len(findings) > PROBLEMS_SHOWN:
        described.append(f"and {len(findings) - PROBLEMS_SHOWN} more")
    return "; ".join(described)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
