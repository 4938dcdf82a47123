"""Telling the sender of a bad event what was wrong with it, without echoing the event back.

Events come from anyone allowed to invoke a function; an answer or a log line that repeats them verbatim
can be made arbitrarily large (a 200 KB field would come back 200 KB, and land in CloudWatch Logs at
that size). Everything a refusal quotes from the event goes through `echo` or `describe_problems`,
which bound it.
"""

from __future__ import annotations

from pydantic import ValidationError

ECHO_LIMIT = 120  # characters of one quoted value: enough to recognise it, not enough to replay it
PROBLEMS_SHOWN = 5  # validation problems named in one answer; the rest are counted


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)`, cut to `limit` characters with the full length said, so the sender can tell."""
    return _cut(repr(value), limit)


def describe_problems(error: ValidationError, *, skip_location_parts: int = 0) -> str:
    """Pydantic's findings as `field.path: message; ...`, every part bounded.

    `skip_location_parts` drops leading location parts that name no field of the event (the
    discriminator tag of a tagged union). A location can hold a key of the event (an extra field),
    so it is bounded like any other echo.
    """
    issues = error.errors(include_url=False, include_input=False, include_context=False)
    described = []
    for issue in issues[:PROBLEMS_SHOWN]:
        location = ".".join(_cut(str(part), ECHO_LIMIT // 2) for part in issue["loc"][skip_location_parts:])
        described.append(f"{location or 'event'}: {_cut(issue['msg'], 2 * ECHO_LIMIT)}")
    if len(issues) > PROBLEMS_SHOWN:
        described.append(f"and {len(issues) - PROBLEMS_SHOWN} more")
    return "; ".join(described)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
