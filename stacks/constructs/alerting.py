"""Where people hear from the controller: an alert topic and an emergency topic, encrypted with a
customer-managed key."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.settings import AlertEmails


class Alerting(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, emails: AlertEmails) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the DR controller's alert and emergency topics",
            enable_key_rotation=True,
        )
        # CloudWatch alarms on the controller itself publish to the alert topic, and need the key to do so.
        self.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")

        # Severities 2 to 4: a rollback or another incident the controller handled.
        self.alert_topic = self._topic("AlertTopic", "Apilados Pipeline DR alerts", emails.alert)
        # Severity 1: STABLE failing, nothing left to roll back to, automation frozen.
        self.emergency_topic = self._topic("EmergencyTopic", "Apilados Pipeline DR emergencies", emails.emergency)

    def _topic(self, construct_id: str, display_name: str, emails: tuple[str, ...]) -> sns.Topic:
        topic = sns.Topic(self, construct_id, display_name=display_name, master_key=self.key, enforce_ssl=True)
        for address in emails:
            topic.add_subscription(subscriptions.EmailSubscription(address))
        return topic
