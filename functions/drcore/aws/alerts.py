"""Alerts in the runbook's internal alert template, published to SNS.

Severity 1 (STABLE itself failing, nothing left to roll back to) goes to the emergency topic; every
other severity to the alert topic. Message attributes let subscribers filter without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the stubs are a development dependency: Lambda's runtime never imports them
    from mypy_boto3_sns import SNSClient

SYSTEM_NAME = "Apilados Pipeline"
SNS_SUBJECT_LIMIT = 100


@dataclass(frozen=True)
class Alert:
    severity: int  # 1 (critical) to 4 (low), as in the runbook
    brief: str
    occurred_at: str
    impact: str
    components: tuple[str, ...]
    status: str
    actions_taken: tuple[str, ...]
    next_steps: tuple[str, ...]
    event_type: str  # "rollback", "stable_failed", ... for subscription filters
    function_name: str
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        subject = f"[SEVERITY {self.severity}] {SYSTEM_NAME} Incident - {self.brief}"
        if len(subject) > SNS_SUBJECT_LIMIT:
            subject = subject[: SNS_SUBJECT_LIMIT - 3] + "..."
        return subject

    def render(self) -> str:
        def bullets(lines: tuple[str, ...] | list[str]) -> str:
            return "\n".join(f"- {line}" for line in lines) or "- none"

        facts = [f"{key}: {value}" for key, value in self.facts.items()]
        return (
            f"SUBJECT: {self.subject}\n\n"
            "INCIDENT DETAILS:\n"
            f"- Time: {self.occurred_at}\n"
            f"- Severity: {self.severity}\n"
            f"- Impact: {self.impact}\n"
            f"- Affected Components: {', '.join(self.components)}\n\n"
            f"CURRENT STATUS:\n- {self.status}\n\n"
            f"ACTIONS TAKEN:\n{bullets(self.actions_taken)}\n\n"
            f"NEXT STEPS:\n{bullets(self.next_steps)}\n"
            + (f"\nDETAILS:\n{bullets(facts)}\n" if facts else "")
        )


class AlertPublisher:
    def __init__(self, sns_client: SNSClient, alert_topic_arn: str, emergency_topic_arn: str) -> None:
        self._sns = sns_client
        self._alert_topic = alert_topic_arn
        self._emergency_topic = emergency_topic_arn

    def topic_for(self, severity: int) -> str:
        return self._emergency_topic if severity == 1 else self._alert_topic

    def publish(self, alert: Alert) -> str:
        response = self._sns.publish(
            TopicArn=self.topic_for(alert.severity),
            Subject=alert.subject,
            Message=alert.render(),
            MessageAttributes={
                "severity": {"DataType": "Number", "StringValue": str(alert.severity)},
                "event_type": {"DataType": "String", "StringValue": alert.event_type},
                "function_name": {"DataType": "String", "StringValue": alert.function_name},
            },
        )
        return response["MessageId"]
