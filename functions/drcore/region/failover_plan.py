"""The plan of a `failover`: what was seen of both regions, the safety rules' verdict, and the exact changes.

Pure: no AWS call here (drcore.region.failover_survey reads the world, drcore.region.failover_action applies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from drcore.core.errors import InvalidRequest

# What a view answers for a region that could not be reached within its bound.
UNREACHABLE = "unreachable"

FAILOVER_VARIABLES = ("ACTIVE_REGION", "FAILOVER_MODE")
# The last step of a failover and a failback: (action, plan id, the region it made active) -> the post-recovery
# validation's result, journaled and alerted unless every check is ok (drcore.restore.validated_actions).
SwitchValidation = Callable[[str, str, str], dict[str, Any]]


@dataclass(frozen=True)
class DataAtRisk:
    """What a failover now would leave behind in the primary: operations S3 still has to replicate (its metric),
    and of the newest uploads sampled, those not (yet) on the replica. None where it could not be read."""

    operations_pending: int | None
    sampled: int | None  # newest versions checked
    not_on_replica: int | None  # of those, not COMPLETED on the replica
    detail: str = ""

    @property
    def known(self) -> bool:
        return self.operations_pending is not None and self.not_on_replica is not None

    @property
    def objects(self) -> int | None:
        """The larger of the two figures (the sample's are among the pending ones); None when unknown."""
        if not self.known:
            return None
        return max(self.operations_pending or 0, self.not_on_replica or 0)


@dataclass(frozen=True)
class Readiness:
    """Whether the secondary can take over: each check by name, with what it saw."""

    checks: dict[str, dict[str, Any]]

    @property
    def ready(self) -> bool:
        return all(check["ok"] for check in self.checks.values())

    def problems(self) -> list[str]:
        return [f"{name}: {check['detail']}" for name, check in self.checks.items() if not check["ok"]]


@dataclass(frozen=True)
class FailoverPlan:
    plan_id: str
    created_at: str
    primary_region: str
    secondary_region: str
    function_name: str
    data_bucket: str
    replica_bucket: str
    primary_live_arn: str
    secondary_live_arn: str
    after_epoch: int  # the region record's epoch the plan was made against
    already_active: bool  # the secondary is active already: a second failover changes nothing
    primary: dict[str, Any]  # its health as far as it could be seen, or UNREACHABLE parts
    data_at_risk: dict[str, Any]
    readiness: dict[str, Any]
    notification_template: dict[str, Any] | None  # the primary's pipeline entry (events, filter), if it was read
    forced: bool
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> FailoverPlan:
        return cls(**{name: document[name] for name in cls.__dataclass_fields__})

    def changes(self) -> list[dict[str, Any]]:
        """The exact changes, in the order they are applied."""
        if self.already_active:
            return []
        stop = ({"what": "remove the pipeline notification", "bucket": self.data_bucket,
                 "target": self.primary_live_arn, "region": self.primary_region}
                if self.primary.get("reachable") else
                {"what": "leave the pipeline notification to fencing", "bucket": self.data_bucket,
                 "detail": "the primary is unreachable: its own controller removes the notification on its first "
                           "tick once it reads the region record"})
        return [
            {"step": "stop_primary", **stop},
            {"step": "claim_region", "what": "region record", "epoch": self.after_epoch + 1,
             "active_region": self.secondary_region},
            {"step": "merge_environment", "what": "merge variables", "function": self.function_name,
             "region": self.secondary_region, "variables": {"ACTIVE_REGION": self.secondary_region,
                                                            "FAILOVER_MODE": "true"}},
            *([{"step": "await_replication", "what": "wait until the primary's uploads from before the stop are on "
                                                     "the replica (at most replication.max_latency_seconds)",
                "bucket": self.data_bucket}] if self.primary.get("reachable") else []),
            {"step": "start_secondary", "what": "merge the pipeline notification", "bucket": self.replica_bucket,
             "target": self.secondary_live_arn, "region": self.secondary_region},
            {"step": "catch_up", "what": "invoke the secondary LIVE once for each replica object uploaded between "
                                         "stop_primary and start_secondary"},
            {"step": "alert", "what": "Regional Failover alert (severity 1) and the external stakeholder notice"},
            {"step": "validate", "what": "post-recovery validation of the secondary"},
        ]

    def summary(self) -> dict[str, Any]:
        return {"primary_region": self.primary_region, "secondary_region": self.secondary_region,
                "already_active": self.already_active, "epoch": self.after_epoch, "primary": self.primary,
                "data_at_risk": self.data_at_risk, "readiness": self.readiness, "forced": self.forced,
                "changes": self.changes()}


def refusals(readiness: Readiness, risk: DataAtRisk, max_data_at_risk: int, force: bool) -> list[str]:
    """Why a failover must not go ahead (empty: it may). Not ready is refused even with force: it cannot succeed.
    Data at risk above the setting, or not known at all (the primary cannot be read), needs `force`."""
    problems = [f"the secondary is not ready: {problem}" for problem in readiness.problems()]
    if force:
        return problems
    objects = risk.objects
    if objects is None:
        problems.append("the data at risk cannot be known (" + (risk.detail or "the primary could not be read")
                        + "): give \"force\": true and a reason to fail over anyway")
    elif objects > max_data_at_risk:
        problems.append(f"{objects} objects are at risk (pending replication or not on the replica), above "
                        f"failover.max_data_at_risk {max_data_at_risk}: give \"force\": true and a reason to fail "
                        "over anyway")
    return problems


class FailoverRefused(InvalidRequest):
    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("failover refused: " + "; ".join(problems))
