"""The state table and the alert topics."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.infra.support import TOPIC_KEY, Synthesized, as_list, logical_id, role_statements, synthesize


def test_state_table_is_a_global_table_on_demand_recoverable_encrypted_and_retained(synth: Synthesized):
    # Given the synthesized controller / Then the state table keeps its data safe, in both regions, and costs
    # nothing idle
    protected = {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                 "DeletionProtectionEnabled": True}
    synth.template.has_resource(
        "AWS::DynamoDB::GlobalTable",
        {
            "Properties": {
                "TableName": "apilados-dr-state",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "SSESpecification": {"SSEEnabled": True},
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    synth.template.resource_count_is("AWS::DynamoDB::GlobalTable", 1)
    synth.template.resource_count_is("AWS::DynamoDB::Table", 0)
    # And a replica in each region, each as protected
    [table] = [r for r in synth.resources.values() if r["Type"] == "AWS::DynamoDB::GlobalTable"]
    replicas = sorted(table["Properties"]["Replicas"], key=lambda replica: replica["Region"])
    assert replicas == [{**protected, "Region": "us-east-1"}, {**protected, "Region": "us-west-2"}]


def test_the_standby_addresses_the_state_tables_replica_in_its_region_and_creates_no_table(synth: Synthesized):
    resources = synth.standby_resources
    assert not [r for r in resources.values() if r["Type"].startswith("AWS::DynamoDB::")]
    replica = {"Fn::Join": ["", ["arn:aws:dynamodb:us-west-2:", {"Ref": "AWS::AccountId"}, ":table/apilados-dr-state"]]}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            assert resource["Properties"]["Environment"]["Variables"]["DR_STATE_TABLE_NAME"] == "apilados-dr-state"
            granted = [statement["Resource"] for statement in role_statements(resources, name)
                       if any(str(action).startswith("dynamodb:") for action in as_list(statement["Action"]))]
            assert granted and all(resource == replica for resource in granted), (name, granted)


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
                                # (with EventBridge, which alerts on changes to the backups' protection)
                                "Principal": {"Service": Match.array_with(["cloudwatch.amazonaws.com"])},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            }
                        )
                    ]
                )
            }
        },
    )


def test_an_acknowledged_unsubscribed_topic_is_warned_about_at_every_synth(synth: Synthesized):
    # Given cdk.json lists no subscriber and acknowledges it / Then no subscription is created
    synth.template.resource_count_is("AWS::SNS::Subscription", 0)
    # And each synth warns about each topic, naming the setting that would subscribe someone
    warnings = Annotations.from_stack(synth.stack).find_warning(
        "*", Match.string_like_regexp("Nobody is subscribed to the .* topic")
    )
    messages = sorted(str(warning.entry.data) for warning in warnings)
    assert len(messages) == 2
    assert "dr.alert_emails.alert" in messages[0] and "dr.alert_emails.emergency" in messages[1]


def test_sms_and_https_subscribers_are_subscribed_to_their_topic(tuned: Synthesized):
    # Given a phone for emergencies and a chat endpoint for the other alerts, beside e-mail addresses
    resources = tuned.resources
    emergency = logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR emergencies")
    alert = logical_id(resources, "AWS::SNS::Topic", DisplayName="Apilados Pipeline DR alerts")
    # Then each is a subscription of its topic, with its protocol, and nothing is warned about
    subscriptions = sorted(
        (r["Properties"]["TopicArn"]["Ref"], r["Properties"]["Protocol"], r["Properties"]["Endpoint"])
        for r in resources.values()
        if r["Type"] == "AWS::SNS::Subscription"
    )
    assert subscriptions == sorted(
        [
            (emergency, "email", "oncall@orders.example"),
            (emergency, "sms", "+15555550100"),
            (alert, "email", "orders-team@orders.example"),
            (alert, "https", "https://chat.orders.example/hooks/dr-alerts"),
        ]
    )
    assert Annotations.from_stack(tuned.stack).find_warning("*", Match.string_like_regexp("Nobody is subscribed")) == []


@pytest.fixture(scope="module")
def with_subscribers() -> Synthesized:
    return synthesize(
        {
            "dr": {
                "alerts_acknowledged_unsubscribed": False,
                "alert_emails": {
                    "emergency": ["ops-lead@company.com", "dev-lead@company.com"],
                    "alert": ["dev-lead@company.com"],
                },
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
