"""Which region processes the pipeline's uploads: the region record, a fenced log of immutable claims.

The state table is a DynamoDB global table: both regions read and write it, and a write made in one
region reaches the other a second or so later, the later writer winning where two wrote one item. The
record is therefore never an item that two regions update. It is a series of claims, one item per
(epoch, writer region), under the protected function's partition:

    pk `FUNCTION#<function>`, sk `REGION#<epoch:08d>#<writer region>`

each written once (`attribute_not_exists(sk)`) and never changed, so last-writer-wins never has to choose
between two writes. A switch claims the epoch after the one it planned against. Two switches in two regions
at once (an operator in each) may both claim one epoch; every region then decides the same way which one
holds: the claim that makes the primary region active wins (the conservative choice: the primary holds the
data bucket), then the writer region's name. The losing switch sees the winner when it reads the record
back and reports itself superseded.

No claim at all means the region was never switched: the primary is active, epoch 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from drcore.aws.errors import is_precondition_failed
from drcore.core.errors import DrError
from drcore.core.models import Clock, to_iso, utc_now
from drcore.state.store import _marshal, _partition, _unmarshal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION_PREFIX = "REGION#"
SwitchKind = Literal["failover", "failback"]
SWITCH_KINDS: tuple[SwitchKind, ...] = ("failover", "failback")


@dataclass(frozen=True)
class RegionClaim:
    epoch: int
    active_region: str
    writer_region: str
    kind: SwitchKind
    plan_id: str
    at: str  # ISO-8601 UTC: when the claim was written

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_switch(self, other: RegionClaim) -> bool:
        """Whether two claims are one switch's (a retried claim carries a later `at`)."""
        return (self.epoch, self.active_region, self.writer_region, self.kind, self.plan_id) == (
            other.epoch, other.active_region, other.writer_region, other.kind, other.plan_id)


class ClaimConflict(DrError):
    """Another switch already claimed this epoch from this region: plan against the record as it is now."""

    def __init__(self, existing: RegionClaim) -> None:
        super().__init__(f"epoch {existing.epoch} was already claimed from {existing.writer_region} by plan "
                         f"{existing.plan_id} ({existing.kind} to {existing.active_region})")
        self.existing = existing


class RegionRecord:
    """The region record of one protected function in the state table, read and written in one region."""

    def __init__(self, dynamodb_client: DynamoDBClient, table: str, function_name: str, primary_region: str,
                 clock: Clock = utc_now) -> None:
        self._dynamodb = dynamodb_client
        self._table = table
        self._function = function_name
        self._primary = primary_region
        self._clock = clock

    @property
    def primary_region(self) -> str:
        return self._primary

    def claims(self) -> list[RegionClaim]:
        """Every claim this region's copy of the table holds, oldest epoch first."""
        pages = self._dynamodb.get_paginator("query").paginate(
            TableName=self._table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": _partition(self._function)}, ":prefix": {"S": REGION_PREFIX}})
        return [_claim_from_item(item) for page in pages for item in page.get("Items", [])]

    def current(self) -> RegionClaim | None:
        """The claim that holds: the highest epoch, ties decided by `_precedence`; None: never switched."""
        claims = self.claims()
        if not claims:
            return None
        return max(claims, key=self._precedence)

    def active_region(self) -> str:
        current = self.current()
        return current.active_region if current is not None else self._primary

    def epoch(self) -> int:
        current = self.current()
        return current.epoch if current is not None else 0

    def claim(self, active_region: str, kind: SwitchKind, plan_id: str, writer_region: str,
              after_epoch: int) -> RegionClaim:
        """Write the claim of epoch `after_epoch + 1`; returns it as stored.

        Claiming again what was claimed (a resumed switch) returns the stored claim; ClaimConflict when this
        region claimed that epoch for another switch. Whether the claim holds is for `current()` to say.
        """
        claim = RegionClaim(epoch=after_epoch + 1, active_region=active_region, writer_region=writer_region,
                            kind=kind, plan_id=plan_id, at=to_iso(self._clock()))
        item = {"pk": _partition(self._function), "sk": _sort_key(claim.epoch, writer_region), **claim.to_dict()}
        try:
            self._dynamodb.put_item(TableName=self._table, Item=_marshal(item),
                                    ConditionExpression="attribute_not_exists(sk)")
        except ClientError as error:
            if not is_precondition_failed(error):
                raise
            existing = self._stored(claim.epoch, writer_region)
            if existing is None or not existing.same_switch(claim):
                raise ClaimConflict(existing or claim) from error
            return existing
        return claim

    def holds(self, claim: RegionClaim) -> bool:
        """Whether `claim` is the one that holds now (False: a later switch, or a tie it lost, superseded it)."""
        current = self.current()
        return current is not None and current.same_switch(claim)

    def _stored(self, epoch: int, writer_region: str) -> RegionClaim | None:
        response = self._dynamodb.get_item(
            TableName=self._table, ConsistentRead=True,
            Key={"pk": {"S": _partition(self._function)}, "sk": {"S": _sort_key(epoch, writer_region)}})
        return _claim_from_item(response["Item"]) if "Item" in response else None

    def _precedence(self, claim: RegionClaim) -> tuple[int, bool, str]:
        # Within one epoch: the claim making the primary active first, then the writer region's name reversed
        # (max() picks the alphabetically first writer), so every region orders the claims alike.
        return claim.epoch, claim.active_region == self._primary, _reversed_order(claim.writer_region)


def _sort_key(epoch: int, writer_region: str) -> str:
    return f"{REGION_PREFIX}{epoch:08d}#{writer_region}"


def _reversed_order(text: str) -> str:
    """A key under which max() picks the alphabetically first of region names (lower-case ASCII)."""
    return "".join(chr(0x10FFFF - ord(char)) for char in text)


def _claim_from_item(item: Any) -> RegionClaim:
    values = _unmarshal(item)
    kind = values["kind"]
    if kind not in SWITCH_KINDS:
        raise DrError(f"region record item {values.get('sk')} has unknown kind {kind!r}")
    return RegionClaim(epoch=int(values["epoch"]), active_region=str(values["active_region"]),
                       writer_region=str(values["writer_region"]), kind=kind, plan_id=str(values["plan_id"]),
                       at=str(values["at"]))
