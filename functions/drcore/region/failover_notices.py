"""What people hear of a failover: the runbook's "Regional Failover" alert (severity 1, the emergency topic, in
the internal template: drcore.aws.alerts) and its external stakeholder notice (the runbook's "External
Communication Template"), on the optional stakeholder topic. Both are published from the region that is up."""

from __future__ import annotations

from typing import Any

from drcore.aws.alerts import SYSTEM_NAME, Alert, AlertPublisher
from drcore.region.failover_plan import FailoverPlan

STAKEHOLDER_SUBJECT = f"Service Disruption Notice - {SYSTEM_NAME}"


def failover_alert(plan: FailoverPlan, at: str, requested_by: str, reason: str, result: dict[str, Any]) -> Alert:
    risk = plan.data_at_risk.get("objects")
    return Alert(
        severity=1,
        brief=f"Regional Failover to {plan.secondary_region}",
        occurred_at=at,
        impact=f"{plan.primary_region} no longer processes uploads; {plan.secondary_region} processes uploads to "
               f"{plan.replica_bucket}" + ("" if risk in (None, 0) else f"; {risk} objects may not have replicated"),
        components=(plan.function_name, plan.data_bucket, plan.replica_bucket),
        status=f"failed over to {plan.secondary_region} (region record epoch {result.get('epoch')})",
        actions_taken=(
            f"{plan.primary_region}: pipeline notification {result.get('primary_notification')}",
            f"region record: {plan.secondary_region} active",
            f"{plan.secondary_region}: ACTIVE_REGION/FAILOVER_MODE merged into {plan.function_name}'s environment",
            f"{plan.secondary_region}: pipeline notification on {plan.replica_bucket}",
            f"uploads caught up: {result.get('caught_up', 0)}",
        ),
        next_steps=("route producers to the replica bucket", "watch status and the secondary's alarms",
                    "fail back with {\"action\": \"failback\"} once the primary passes its health probe"),
        event_type="regional_failover",
        function_name=plan.function_name,
        facts={"plan_id": plan.plan_id, "requested_by": requested_by, "reason": reason,
               "forced": str(plan.forced).lower()},
    )


def stakeholder_notice(plan: FailoverPlan) -> str:
    """The runbook's external template, filled in: no internal names beyond the service's."""
    return (
        f"SUBJECT: {STAKEHOLDER_SUBJECT}\n\n"
        "Dear Stakeholders,\n\n"
        f"We are currently experiencing a service disruption with the {SYSTEM_NAME} system.\n\n"
        "IMPACT:\n"
        f"- Processing has moved to our standby region ({plan.secondary_region}); uploads continue to be "
        "processed there\n\n"
        "CAUSE:\n"
        f"- Our primary region ({plan.primary_region}) is impaired\n\n"
        "RESOLUTION:\n"
        "- We are actively working to resolve this issue\n"
        "- Estimated resolution time: when the primary region has recovered and passed its health checks\n"
        "- We will provide updates every hour\n\n"
        "We apologize for any inconvenience and appreciate your patience.\n\n"
        "Operations Team\n"
    )


class FailoverNotices:
    def __init__(self, alerts: AlertPublisher, sns_client: Any, stakeholder_topic_arn: str | None) -> None:
        self._alerts = alerts
        self._sns = sns_client
        self._stakeholders = stakeholder_topic_arn

    def send(self, plan: FailoverPlan, at: str, requested_by: str, reason: str,
             result: dict[str, Any]) -> dict[str, Any]:
        sent: dict[str, Any] = {"alert": self._alerts.publish(failover_alert(plan, at, requested_by, reason, result))}
        if self._stakeholders:
            sent["stakeholder_notice"] = self._sns.publish(
                TopicArn=self._stakeholders, Subject=STAKEHOLDER_SUBJECT, Message=stakeholder_notice(plan),
                MessageAttributes={"event_type": {"DataType": "String", "StringValue": "regional_failover"}},
            )["MessageId"]
        else:
            sent["stakeholder_notice"] = "not sent: no failover.stakeholder_topic_arn configured"
        return sent
