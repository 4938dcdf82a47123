"""Where people hear from the controller: an alert topic and an emergency topic, encrypted with a
customer-managed key, and who is subscribed to each.

Settings refuse a topic nobody is subscribed to unless the operator acknowledged it
(`alerts_acknowledged_unsubscribed`); then every synth still warns about it, naming the setting to fill.
"""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.settings import ALERTED_ON, AlertEmails, AlertSubscription, AlertSubscriptions

UNSUBSCRIBED_WARNING = "dr:AlertTopicUnsubscribed"


class Alerting(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, emails: AlertEmails, other_subscribers: AlertSubscriptions
    ) -> None:
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
        self.alert_topic = self._topic(
            "AlertTopic", "Apilados Pipeline DR alerts", "alert", emails.alert, other_subscribers.alert
        )
        # Severity 1: STABLE failing, nothing left to roll back to, automation frozen.
        self.emergency_topic = self._topic(
            "EmergencyTopic",
            "Apilados Pipeline DR emergencies",
            "emergency",
            emails.emergency,
            other_subscribers.emergency,
        )

    def _topic(
        self,
        construct_id: str,
        display_name: str,
        setting: str,
        emails: tuple[str, ...],
        others: tuple[AlertSubscription, ...],
    ) -> sns.Topic:
        topic = sns.Topic(self, construct_id, display_name=display_name, master_key=self.key, enforce_ssl=True)
        for address in emails:
            topic.add_subscription(subscriptions.EmailSubscription(address))
        for subscriber in others:
            if subscriber.protocol == "sms":
                topic.add_subscription(subscriptions.SmsSubscription(subscriber.endpoint))
            else:
                topic.add_subscription(
                    subscriptions.UrlSubscription(subscriber.endpoint, protocol=sns.SubscriptionProtocol.HTTPS)
                )
        if not emails and not others:
            Annotations.of(topic).add_warning_v2(
                UNSUBSCRIBED_WARNING,
                f"Nobody is subscribed to the {setting} topic ({ALERTED_ON[setting]}): its alerts reach no one. "
                f"List addresses in dr.alert_emails.{setting} (or endpoints in dr.alert_subscriptions.{setting}) "
                "in cdk.json; dr.alerts_acknowledged_unsubscribed lets this deploy anyway.",
            )
        return topic
