"""The recovery function's wiring: the operator's actions over the controller, the catalog and the engines."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from drcore.aws.clients import client_factory
from drcore.aws.continuations import self_invoker
from drcore.core.config import (
    BackupSettings,
    ControllerSettings,
    FailoverSettings,
    RecoverySettings,
    RegionSettings,
)
from drcore.restore.manual_actions import Failback, Failover
from drcore.restore.preflight import PreflightSettings
from drcore.restore.recovery import RecoveryEngines, RecoveryService
from drcore.restore.validation_controls import ValidationSettings
from drcore.state.plans import PlanBook, PlanJournal, TwoStepFlow
from drcore.state.store import ControllerStateStore
from drcore.wiring.shared import alias_controller


@lru_cache(maxsize=4)
def recovery_service(settings: ControllerSettings, backup: BackupSettings, recovery: RecoverySettings,
                     function_name: str, endpoint_url: str | None = None,
                     preflight: PreflightSettings | None = None, region: RegionSettings | None = None,
                     failover: FailoverSettings | None = None,
                     validation_settings: ValidationSettings | None = None) -> RecoveryService:
    """The recovery function's service; `function_name` is its own, to continue long actions."""
    client = client_factory()
    controller, _, alarm_board = alias_controller(settings, client)
    state = ControllerStateStore(client("dynamodb"), settings.state_table, settings.state_scope)
    # A region switch's plan and journal entry are kept where either region's recovery function finds them (the
    # primary's partition), so a failover or failback that stopped is resumed from either region.
    shared = ControllerStateStore(client("dynamodb"), settings.state_table)
    continue_later = self_invoker(client("lambda"), function_name)

    def journal_in(journaled: ControllerStateStore) -> PlanJournal:
        def journal(kind: str, plan_id: str, request: Any, result: dict[str, Any], at: str) -> None:
            verified = result.get("ok", (result.get("verification") or {}).get("ok", True))
            journaled.append_journal(settings.protected_function, entry_id=plan_id, at=at, action=kind,
                                     cause=request.cause(),
                                     result="applied" if verified else "applied, verification failed",
                                     details={"plan_id": plan_id, **_figures(result)})
        return journal

    flow = TwoStepFlow(PlanBook(state, settings.protected_function, recovery.plan_ttl_seconds), journal_in(state),
                       continue_later)
    switch_book = PlanBook(shared, settings.protected_function, recovery.plan_ttl_seconds)
    switch_flow = TwoStepFlow(switch_book, journal_in(shared), continue_later)

    def engines() -> RecoveryEngines:
        # Imported on first use: a rollback or a promote from a cold start waits for no engine to import.
        from drcore.wiring.recovery_engines import recovery_engines
        return recovery_engines(settings, backup, recovery, client, controller, switch_book, preflight, region,
                                failover, validation_settings)

    return RecoveryService(settings, controller, alarm_board, flow, engines,
                           flows={Failover: switch_flow, Failback: switch_flow})


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    """The journal keeps a result's figures and ids, not its key lists."""
    return {key: value for key, value in result.items()
            if not isinstance(value, (list, tuple)) and len(str(value)) < 2000}
