"""The controller's single source of truth: one DynamoDB table.

Items, all under the partition key of the protected function (`FUNCTION#<name>`):

- `CONTROLLER`: the controller record, with the per-alarm watermarks that make alarm events idempotent
  (the state-change time of the newest transition processed for each alarm);
- `JOURNAL#<time>#<id>`: the append-only journal, one item per action, written at most once;
- `PLAN#<id>`: the plans of two-step recovery actions, each applied at most once, expiring by TTL.

Every write is conditional and increments the record's generation, so two writers never both win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from drcore.aws.errors import is_precondition_failed
from drcore.core.errors import ConcurrentUpdate
from drcore.core.models import (
    AlarmSignal,
    Candidate,
    Cause,
    ControllerRecord,
    ControllerState,
    PendingRollback,
    to_iso,
)

if TYPE_CHECKING:
    # Types only: the stubs are a development dependency, never bundled into the Lambda asset.
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    # An item in DynamoDB's wire form, as the low-level client reads and writes it.
    DynamoItem = Mapping[str, AttributeValueTypeDef]

RECORD_KEY = "CONTROLLER"
JOURNAL_PREFIX = "JOURNAL#"
PLAN_PREFIX = "PLAN#"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _partition(function_name: str) -> str:
    return f"FUNCTION#{function_name}"


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _to_dynamo(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_to_dynamo(item) for item in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(item) for item in value]
    return value


def _marshal(item: Mapping[str, Any]) -> dict[str, AttributeValueTypeDef]:
    return {key: _serializer.serialize(_to_dynamo(value)) for key, value in item.items() if value is not None}


def _unmarshal(item: DynamoItem) -> dict[str, Any]:
    return {key: _from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def item_key(function_name: str, sort_key: str) -> dict[str, AttributeValueTypeDef]:
    """The key of one of the protected function's items, for the modules that keep items of their own here."""
    return {"pk": {"S": _partition(function_name)}, "sk": {"S": sort_key}}


# Item (un)marshalling, shared with the modules that keep items of their own in this table.
marshal = _marshal
unmarshal = _unmarshal


def record_to_item(record: ControllerRecord) -> dict[str, Any]:
    item = asdict(record)
    item["state"] = record.state.value
    item["quarantined"] = list(record.quarantined)
    item["pk"] = _partition(record.function_name)
    item["sk"] = RECORD_KEY
    return item


def record_from_item(item: DynamoItem) -> ControllerRecord:
    values = _unmarshal(item)
    candidate = values.get("candidate")
    pending = values.get("pending_rollback")
    return ControllerRecord(
        function_name=values["function_name"],
        state=ControllerState(values["state"]),
        stable_version=values["stable_version"],
        live_version=values["live_version"],
        generation=int(values["generation"]),
        candidate=Candidate(**candidate) if candidate else None,
        quarantined=tuple(values.get("quarantined", ())),
        live_revision_id=values.get("live_revision_id"),
        stable_revision_id=values.get("stable_revision_id"),
        pending_rollback=(
            PendingRollback(**{**pending, "cause": Cause.from_item(pending["cause"])}) if pending else None
        ),
        last_rollback_at=values.get("last_rollback_at"),
        frozen_reason=values.get("frozen_reason"),
        stable_p99_ms=values.get("stable_p99_ms"),
        alarm_watermarks=dict(values.get("alarm_watermarks", {})),
    )


class RollbackRefused(Exception):
    """The rollback claim's condition failed; `record` is the record as DynamoDB saw it (None if absent)."""

    def __init__(self, record: ControllerRecord | None) -> None:
        super().__init__("rollback not claimed")
        self.record = record


class ControllerStateStore:
    """The protected function's items. `scope` (the standby's region) keeps a copy of the function in another
    region apart: its items go under `FUNCTION#<name>@<scope>`, so the standby's controller never writes the
    primary's record in the global table (DynamoDB's last-writer-wins would then choose between them). The region
    record and the region switches' plans are the primary's partition's, shared by design (drcore.state.region_record).
    """

    def __init__(self, dynamodb_client: DynamoDBClient, table_name: str, scope: str | None = None) -> None:
        self._dynamodb = dynamodb_client
        self._table = table_name
        self._scope = scope

    def _partition(self, function_name: str) -> str:
        return _partition(function_name) + (f"@{self._scope}" if self._scope else "")

    def _key(self, function_name: str, sort_key: str) -> dict[str, AttributeValueTypeDef]:
        return {"pk": {"S": self._partition(function_name)}, "sk": {"S": sort_key}}

    def _record_item(self, record: ControllerRecord) -> dict[str, AttributeValueTypeDef]:
        return _marshal({**record_to_item(record), "pk": self._partition(record.function_name)})

    def get(self, function_name: str) -> ControllerRecord | None:
        response = self._dynamodb.get_item(
            TableName=self._table, Key=self._key(function_name, RECORD_KEY), ConsistentRead=True
        )
        return record_from_item(response["Item"]) if "Item" in response else None

    def create(self, record: ControllerRecord) -> ControllerRecord:
        """Write the first record of a function; fails with ConcurrentUpdate if one appeared meanwhile."""
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=self._record_item(record),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if is_precondition_failed(error):
                raise ConcurrentUpdate(f"a controller record for {record.function_name} already exists") from error
            raise
        return record

    def replace(self, expected: ControllerRecord, new: ControllerRecord) -> ControllerRecord:
        """Optimistic transition: write `new` only if the record is still at `expected`'s generation."""
        written = new.evolve(generation=expected.generation + 1)
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=self._record_item(written),
                ConditionExpression="generation = :expected",
                ExpressionAttributeValues={":expected": {"N": str(expected.generation)}},
            )
        except ClientError as error:
            if is_precondition_failed(error):
                raise ConcurrentUpdate(
                    f"controller record of {expected.function_name} moved past generation {expected.generation}"
                ) from error
            raise
        return written

    def claim_rollback(
        self, function_name: str, pending: PendingRollback, signal: AlarmSignal | None = None
    ) -> ControllerRecord:
        """Atomically decide that LIVE goes back to STABLE: the only write before the alias flip.

        Succeeds only while a candidate is baking and no other rollback is in flight and, for an alarm, only
        for a transition newer than the last one processed for that alarm. Two watchers racing on one
        incident: one wins, the other gets RollbackRefused with the winner's record, at no extra call.
        """
        names = {"#state": "state"}
        values: dict[str, Any] = {
            ":baking": ControllerState.BAKING.value,
            ":rolled_back": ControllerState.ROLLED_BACK.value,
            ":pending": _to_dynamo(asdict(pending)),
            ":one": 1,
        }
        # last_rollback_at is the finished rollback's to write: a claim whose flip cannot happen (STABLE cannot
        # serve) turns into a freeze, and no rollback happened then.
        update = (
            "SET #state = :rolled_back, live_version = stable_version, pending_rollback = :pending, "
            "generation = generation + :one"
        )
        condition = "#state = :baking AND attribute_not_exists(pending_rollback)"
        if signal is not None:
            names["#alarm"] = signal.alarm_name
            values[":changed_at"] = to_iso(signal.changed_at)
            update += ", alarm_watermarks.#alarm = :changed_at"
            condition += " AND (attribute_not_exists(alarm_watermarks.#alarm) OR alarm_watermarks.#alarm < :changed_at)"
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(function_name, RECORD_KEY),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={key: _serializer.serialize(value) for key, value in values.items()},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if is_precondition_failed(error):
                # ReturnValuesOnConditionCheckFailure puts the item as it was into the error response.
                old = error.response.get("Item")
                raise RollbackRefused(record_from_item(old) if isinstance(old, dict) and old else None) from error
            raise
        return record_from_item(response["Attributes"])

    def append_journal(
        self,
        function_name: str,
        *,
        entry_id: str,
        at: str,
        action: str,
        cause: Cause,
        result: str,
        from_version: str | None = None,
        to_version: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        """Append one journal entry; an entry with the same time and id is written at most once."""
        item = {
            "pk": self._partition(function_name),
            "sk": f"{JOURNAL_PREFIX}{at}#{entry_id}",
            "entry_id": entry_id,
            "at": at,
            "action": action,
            "from_version": from_version,
            "to_version": to_version,
            "cause": cause.to_item(),
            "result": result,
            "details": details or None,
        }
        try:
            self._dynamodb.put_item(
                TableName=self._table, Item=_marshal(item), ConditionExpression="attribute_not_exists(sk)"
            )
        except ClientError as error:
            if is_precondition_failed(error):
                return False
            raise
        return True

    def journal_entry(self, function_name: str, at: str, entry_id: str) -> dict[str, Any] | None:
        """One journal entry, by the time and id it was appended with."""
        response = self._dynamodb.get_item(
            TableName=self._table, Key=self._key(function_name, f"{JOURNAL_PREFIX}{at}#{entry_id}"), ConsistentRead=True
        )
        return _unmarshal(response["Item"]) if "Item" in response else None

    def journal(self, function_name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest journal entries first."""
        response = self._dynamodb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": self._partition(function_name)},
                ":prefix": {"S": JOURNAL_PREFIX},
            },
            ScanIndexForward=False,
            Limit=limit,
        )
        return [_unmarshal(item) for item in response["Items"]]

    def latest_journal_entry(self, function_name: str, action: str) -> dict[str, Any] | None:
        """The newest journal entry of one kind of action (the last drill, say), or None."""
        pages = self._dynamodb.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            FilterExpression="#action = :action",
            ExpressionAttributeNames={"#action": "action"},
            ExpressionAttributeValues={":pk": {"S": self._partition(function_name)}, ":prefix": {"S": JOURNAL_PREFIX},
                                       ":action": {"S": action}},
            ScanIndexForward=False,
        )
        for page in pages:
            if page["Items"]:
                return _unmarshal(page["Items"][0])
        return None

    # ------------------------------------------------------------------ plans of two-step actions

    def put_plan(self, function_name: str, plan_id: str, document: dict[str, Any], expires_at: int) -> None:
        """Store a plan (`PLAN#<id>`); DynamoDB's TTL on `expires_at` removes it some time after it expired."""
        item = {"pk": self._partition(function_name), "sk": f"{PLAN_PREFIX}{plan_id}", **document,
                "expires_at": expires_at}
        self._dynamodb.put_item(TableName=self._table, Item=_marshal(item),
                                ConditionExpression="attribute_not_exists(sk)")

    def get_plan(self, function_name: str, plan_id: str) -> dict[str, Any] | None:
        response = self._dynamodb.get_item(
            TableName=self._table, Key=self._key(function_name, f"{PLAN_PREFIX}{plan_id}"), ConsistentRead=True
        )
        return _unmarshal(response["Item"]) if "Item" in response else None

    def plans(self, function_name: str) -> list[dict[str, Any]]:
        """Every stored plan of the function (those DynamoDB's TTL has not removed yet), as stored."""
        pages = self._dynamodb.get_paginator("query").paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": self._partition(function_name)}, ":prefix": {"S": PLAN_PREFIX}},
            ConsistentRead=True,
        )
        return [_unmarshal(item) for page in pages for item in page["Items"]]

    def claim_plan(self, function_name: str, plan_id: str, applied_at: str, applied_by: str) -> bool:
        """Mark a plan as being applied; False if someone confirmed it already (a plan applies once)."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=self._key(function_name, f"{PLAN_PREFIX}{plan_id}"),
                UpdateExpression="SET applied_at = :at, applied_by = :by",
                ConditionExpression="attribute_exists(sk) AND attribute_not_exists(applied_at)",
                ExpressionAttributeValues={":at": {"S": applied_at}, ":by": {"S": applied_by}},
            )
        except ClientError as error:
            if is_precondition_failed(error):
                return False
            raise
        return True

    def update_plan(self, function_name: str, plan_id: str, **fields: Any) -> None:
        """Record an applied plan's progress or result (only once it was claimed)."""
        names = {f"#{name}": name for name in fields}
        values = {f":{name}": _serializer.serialize(_to_dynamo(value)) for name, value in fields.items()}
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key(function_name, f"{PLAN_PREFIX}{plan_id}"),
            UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in fields),
            ConditionExpression="attribute_exists(applied_at)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
