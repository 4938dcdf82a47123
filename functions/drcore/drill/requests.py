"""What the drill function is asked to do: start a drill, or continue one.

- `{"action": "drill", "requested_by": "...", "reason": "..."}` from an operator; the schedule adds
  `"scheduled_at": <the event's time>`, so a duplicated schedule event names the same drill and starts it once;
- `{"resume": "<drill id>"}`: the function's own continuation of a drill that outlasted an invocation
  (an operator may send it too, to continue a drill that stopped).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from drcore.core.errors import InvalidRequest
from drcore.core.models import parse_time
from drcore.core.untrusted_input import describe_problems

DRILL_ID = r"^drill-\d{8}T\d{6}Z(-[0-9a-f]{4})?$"


def _a_time(text: str) -> str:
    """The schedule's time names the drill: it must be one (kept as sent, so a duplicate names the same drill)."""
    try:
        parse_time(text)
    except ValueError as error:
        raise ValueError("not an ISO 8601 time") from error
    return text


ScheduleTime = Annotated[str, Field(max_length=64), AfterValidator(_a_time)]


class StartDrill(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["drill"]
    requested_by: str = Field(min_length=1, max_length=256)
    reason: str = Field("DR drill", min_length=1, max_length=1024)
    scheduled_at: ScheduleTime | None = None  # the schedule event's time

    def drill_id(self, now: datetime) -> str:
        if self.scheduled_at is not None:
            return f"drill-{parse_time(self.scheduled_at):%Y%m%dT%H%M%SZ}"
        return f"drill-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


class ResumeDrill(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resume: str = Field(pattern=DRILL_ID)


def parse_drill_request(event: Any) -> StartDrill | ResumeDrill:
    """The request an event carries; InvalidRequest names what is wrong and what is expected."""
    if not isinstance(event, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(event).__name__}")
    model: type[StartDrill] | type[ResumeDrill] = ResumeDrill if "resume" in event else StartDrill
    try:
        return model.model_validate(event)
    except ValidationError as error:
        raise InvalidRequest(
            f"not a drill request ({describe_problems(error)}); expected {{\"action\": \"drill\", \"requested_by\": "
            "\"<who>\", \"reason\": \"<why>\"} or {\"resume\": \"<drill id>\"}") from error
