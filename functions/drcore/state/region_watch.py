"""What a region watcher remembers between its ticks about the other region: since when it has looked unhealthy,
the failover plan it raised, whether it confirmed it.

One item per watching region (`REGION_WATCH#<region>` in the protected function's partition), written only by
that region's watcher: in the global state table no other region ever writes it, so last-writer-wins never has to
choose. Ticks of the same watcher that overlap are ordered by the item's generation (a conditional put).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from drcore.aws.errors import is_precondition_failed
from drcore.core.errors import ConcurrentUpdate
from drcore.state.store import item_key, marshal, unmarshal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WATCH_PREFIX = "REGION_WATCH#"


@dataclass(frozen=True)
class WatchState:
    """The watcher's memory. Empty (the default) while the watched region is healthy."""

    unhealthy_since: str | None = None  # first tick that found it unhealthy, in this run of unhealth
    problems: tuple[str, ...] = ()  # what the latest tick found wrong
    plan_id: str | None = None  # the failover plan raised for this run of unhealth
    alerted_at: str | None = None  # when the severity-1 alert carrying plan_id went out
    confirmed_at: str | None = None  # when the watcher confirmed plan_id itself (automatic failover)
    refusal: str | None = None  # why the latest planning or automatic confirmation was refused
    generation: int = 0

    def evolve(self, **changes: Any) -> WatchState:
        return replace(self, **changes)


class RegionWatchStore:
    def __init__(self, dynamodb_client: DynamoDBClient, table_name: str, function_name: str,
                 watching_region: str) -> None:
        self._dynamodb = dynamodb_client
        self._table = table_name
        self._key = item_key(function_name, f"{WATCH_PREFIX}{watching_region}")

    def load(self) -> WatchState:
        response = self._dynamodb.get_item(TableName=self._table, Key=self._key, ConsistentRead=True)
        if "Item" not in response:
            return WatchState()
        values = unmarshal(response["Item"])
        return WatchState(
            unhealthy_since=values.get("unhealthy_since"),
            problems=tuple(values.get("problems", ())),
            plan_id=values.get("plan_id"),
            alerted_at=values.get("alerted_at"),
            confirmed_at=values.get("confirmed_at"),
            refusal=values.get("refusal"),
            generation=int(values.get("generation", 0)),
        )

    def save(self, expected: WatchState, new: WatchState) -> WatchState:
        """Write `new` only if the item is still at `expected`'s generation (ConcurrentUpdate otherwise)."""
        written = new.evolve(generation=expected.generation + 1)
        fields = {name: value for name, value in asdict(written).items() if value is not None}
        fields["problems"] = list(written.problems)
        try:
            # A first write finds no item; every later one the generation it read (items start at 1).
            self._dynamodb.put_item(TableName=self._table, Item={**self._key, **marshal(fields)},
                                    ConditionExpression="attribute_not_exists(sk) OR generation = :expected",
                                    ExpressionAttributeValues={":expected": {"N": str(expected.generation)}})
        except ClientError as error:
            if is_precondition_failed(error):
                raise ConcurrentUpdate("another tick of the region watcher wrote its state meanwhile") from error
            raise
        return written
