"""The restore shard worker's one request: a shard of a fanned-out bucket restore, from the restore fan-out's map
(drcore.restore.restore_shards): `{"shard": {"plan_id": "<plan id>", "target_bucket": "<bucket>", "number": <n>}}`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drcore.core.errors import InvalidRequest
from drcore.core.untrusted_input import describe_problems
from drcore.restore.manual_actions import BUCKET_NAME, PLAN_ID

EXPECTED = '{"shard": {"plan_id": "<restore plan id>", "target_bucket": "<bucket>", "number": <n>}}'


class RestoreShard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    plan_id: str = Field(pattern=PLAN_ID)
    target_bucket: str = Field(pattern=BUCKET_NAME)
    number: int = Field(ge=0, le=10_000_000, strict=True)  # a map item's number, never a string


class RestoreShardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    shard: RestoreShard


def parse_restore_shard_request(event: Any, allowed_targets: tuple[str, ...]) -> RestoreShard:
    """The shard an event names; InvalidRequest naming the problem for anything else, or for a target bucket this
    controller does not restore into."""
    if not isinstance(event, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(event).__name__}; expected {EXPECTED}")
    try:
        shard = RestoreShardRequest.model_validate(event).shard
    except ValidationError as error:
        problems = describe_problems(error)
        raise InvalidRequest(f"not a restore shard request ({problems}); expected {EXPECTED}") from error
    if shard.target_bucket not in allowed_targets:
        raise InvalidRequest(f"target_bucket {shard.target_bucket!r} is not one this controller restores into "
                             f"({', '.join(allowed_targets)})")
    return shard
