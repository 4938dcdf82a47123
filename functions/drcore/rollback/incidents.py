"""The incident texts the controller sends: the runbook's alert template filled in for each incident it
handles without a human (a rollback, STABLE itself failing, LIVE found on a version that must not serve).

Only the words live here; drcore.aws.alerts renders the template and routes by severity.
"""

from __future__ import annotations

from dataclasses import dataclass

from drcore.aws.alerts import Alert
from drcore.core.models import Cause, PendingRollback


@dataclass(frozen=True)
class IncidentTexts:
    """The alerts about one protected function served through its LIVE alias."""

    function_name: str
    live_alias: str

    @property
    def _components(self) -> tuple[str, ...]:
        return (f"Lambda {self.function_name}:{self.live_alias}",)

    def rolled_back(self, pending: PendingRollback, from_version: str, stable_version: str,
                    quarantined: tuple[str, ...]) -> Alert:
        return Alert(
            severity=2,
            brief=f"{self.function_name} rolled back from v{from_version} to STABLE v{stable_version}",
            occurred_at=pending.started_at,
            impact=f"version {from_version} degraded the pipeline: {pending.cause.summary}",
            components=self._components,
            status=f"LIVE serves STABLE version {stable_version} again",
            actions_taken=(
                f"{self.live_alias} pointed back at version {stable_version}",
                f"version {', '.join(quarantined)} quarantined: it will not be promoted automatically",
            ),
            next_steps=(
                "find the root cause in the rolled-back version's logs",
                "release a fixed version; it bakes and is promoted once healthy",
            ),
            event_type="rollback",
            function_name=self.function_name,
            facts={"incident": pending.incident_id, "cause": pending.cause.kind},
        )

    def stable_failing(self, stable_version: str, cause: Cause, occurred_at: str) -> Alert:
        """Severity 1: the last known good version is failing, so there is nothing left to roll back to."""
        return Alert(
            severity=1,
            brief=f"{self.function_name} STABLE v{stable_version} failing, automation frozen",
            occurred_at=occurred_at,
            impact="the last known good version is degraded; there is nothing left to roll back to",
            components=self._components,
            status="automation frozen: no automatic rollback or promotion until an operator acts",
            actions_taken=(f"controller frozen ({cause.summary})",),
            next_steps=(
                "assess the failure: it is not explained by a recent release",
                "recover from a backup or release a fixed version, then invoke unfreeze",
            ),
            event_type="stable_failed",
            function_name=self.function_name,
            facts={"cause": cause.summary},
        )

    def stable_unusable(self, reason: str, live_version: str, cause: Cause, occurred_at: str) -> Alert:
        """Severity 1: STABLE names no version a rollback could go to ($LATEST, or a version that is gone)."""
        return Alert(
            severity=1,
            brief=f"{self.function_name} STABLE unusable, frozen",
            occurred_at=occurred_at,
            impact=f"no automatic rollback is possible: {reason}",
            components=self._components,
            status=f"automation frozen; LIVE still serves version {live_version}",
            actions_taken=(f"controller frozen ({cause.summary})",),
            next_steps=(
                "point the STABLE alias at the last published version known to be good (never $LATEST)",
                "if LIVE's version is failing, use recover_version to put LIVE on a good version",
                "invoke unfreeze once STABLE serves a published version",
            ),
            event_type="stable_unusable",
            function_name=self.function_name,
            facts={"reason": reason, "cause": cause.summary},
        )

    def drift_reverted(self, served: str, stable_version: str, occurred_at: str) -> Alert:
        """LIVE was found on $LATEST or on a quarantined version, and put back on STABLE."""
        return Alert(
            severity=2,
            brief=f"{self.function_name} LIVE moved to {served}, reverted to v{stable_version}",
            occurred_at=occurred_at,
            impact="LIVE served a version that must never serve traffic",
            components=self._components,
            status=f"LIVE serves STABLE version {stable_version}",
            actions_taken=(f"{self.live_alias} pointed back at STABLE version {stable_version}",),
            next_steps=("find who moved LIVE, and release through the controller (force needs a reason)",),
            event_type="drift_reverted",
            function_name=self.function_name,
        )

    def stable_reverted(self, quarantined: str, stable_version: str, occurred_at: str) -> Alert:
        """STABLE was found on a quarantined version, and put back on the last version known good."""
        return Alert(
            severity=2,
            brief=f"{self.function_name} STABLE moved to quarantined v{quarantined}, reverted to v{stable_version}",
            occurred_at=occurred_at,
            impact=f"version {quarantined} failed on LIVE; as STABLE it would be what a rollback restores",
            components=self._components,
            status=f"STABLE is version {stable_version} again",
            actions_taken=(f"STABLE pointed back at version {stable_version}",),
            next_steps=("find who moved STABLE: a quarantined version becomes STABLE by force-release and promote",),
            event_type="drift_reverted",
            function_name=self.function_name,
        )
