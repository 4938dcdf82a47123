"""The state table and the alert topics."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from tests.infra.support import TOPIC_KEY, Synthesized, logical_id, synthesize


def test_state_table_is_on_demand_recoverable_encrypted_and_retained(synth: Synthesized):
    # Given the synthesized controller / Then the state table keeps its data safe and costs nothing idle
    synth.template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                "DeletionProtectionEnabled": True,
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    synth.template.resource_count_is("AWS::DynamoDB::Table", 1)


def test_topics_are_encrypted_with_a_rotating_customer_managed_key(synth: Synthesized):
    # Given the synthesized controller
    resources = synth.resources
    key = logical_id(resources, "AWS::KMS::Key", Description=TOPIC_KEY)
    # Then the key rotates
    assert resources[key]["Properties"]["EnableKeyRotation"] is True
    # And both topics, and only they, are encrypted with it
    topics = {name: r for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"}
    assert len(topics) == 2
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key, "Arn"]}


def test_topics_refuse_publishing_without_tls(synth: Synthesized):
    # Given the synthesized controller / Then each topic's policy denies publishing over plain HTTP
    synth.template.resource_properties_count_is(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sns:Publish",
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
        2,
    )


def test_cloudwatch_may_use_the_key_to_alert_about_the_controller_itself(synth: Synthesized):
    # Given the failed-events alarm publishes to the encrypted alert topic / Then the key policy lets it
    synth.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            }
                        )
                    ]
                )
            }
        },
    )


def test_no_one_is_subscribed_by_default(synth: Synthesized):
    # Given cdk.json lists no alert e-mails / Then no subscription is created
    synth.template.resource_count_is("AWS::SNS::Subscription", 0)


@pytest.fixture(scope="module")
def with_subscribers() -> Synthesized:
    return synthesize(
        {
            "dr": {
                "alert_emails": {
                    "emergency": ["ops-lead@company.com", "dev-lead@company.com"],
                    "alert": ["dev-lead@company.com"],
                }
            }
        }
    )


def test_each_address_is_subscribed_to_its_severitys_topic(with_subscribers: Synthesized):
    # Given e-mails for severity 1 and for severities 2 to 4
    resources = with_subscribers.resources
    emergency = logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
    alert = logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    # When the app is synthesized / Then each address is an e-mail subscription of the right topic
    subscriptions = sorted(
        (r["Properties"]["TopicArn"]["Ref"], r["Properties"]["Endpoint"])
        for r in resources.values()
        if r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["Protocol"] == "email"
    )
    assert subscriptions == sorted(
        [
            (emergency, "ops-lead@company.com"),
            (emergency, "dev-lead@company.com"),
            (alert, "dev-lead@company.com"),
        ]
    )
