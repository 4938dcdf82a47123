"""The "dr" settings: seed defaults, cdk.json, and bad values failing synth with a message naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import build_app
from drcore.core.config import DEFAULT_FANOUT_MAX_CONCURRENCY, BackupSettings, RecoverySettings, RetentionPolicy
from stacks.settings import InvalidSettings, Settings
from tests.infra.support import UNSUBSCRIBED_ACKNOWLEDGED, default_settings

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


def test_without_any_context_synth_is_refused_because_nobody_would_hear_an_alert():
    # Given no "dr" context at all / When it is validated / Then it is refused, naming the setting to fill
    with pytest.raises(InvalidSettings, match=r"dr\.alert_emails: .*nobody is subscribed to the emergency topic"):
        Settings.from_context(None)


def test_defaults_are_the_seed_runbooks_values():
    # Given no "dr" context but the acknowledgement that nobody is subscribed to the alerts / When validated
    settings = default_settings()
    # Then the protected system and its objectives are the seed's
    assert settings.protected_function == "apilados-pipeline-ingest"
    assert (settings.live_alias, settings.stable_alias) == ("LIVE", "STABLE")
    assert (settings.data_bucket, settings.replica_bucket) == (
        "apilados-production-data",
        "apilados-production-data-replica",
    )
    assert settings.pipeline_stack == "ApiladosPipelineStack"
    assert (settings.primary_region, settings.secondary_region) == ("us-east-1", "us-west-2")
    objectives = settings.recovery_objectives
    assert [
        (objective.rto_minutes, objective.rpo_minutes)
        for objective in (
            objectives.lambda_function,
            objectives.s3_data,
            objectives.cloudwatch_logs,
            objectives.configuration,
            objectives.health_reports,
        )
    ] == [(15, 5), (30, 60), (60, 1440), (5, 0), (120, 240)]
    # And the seed's rollback rule: average Duration above 300,000 ms over 10 minutes; 30 minutes of bake
    assert settings.alarms.average_duration.threshold_ms == 300_000
    assert settings.alarms.average_duration.window_minutes == 10
    assert settings.bake_minutes == 30
    assert settings.alert_emails.emergency == settings.alert_emails.alert == ()
    assert settings.alert_subscriptions.emergency == settings.alert_subscriptions.alert == ()
    # And nobody may invoke recovery until cdk.json names them
    assert settings.operator_principals == ()
    # And a restore targets the data bucket only, a plan stays confirmable an hour, a restored function may be
    # given the roles the pipeline stack creates (None: stacks.constructs.restore_grants), and no stack role
    recovery = settings.recovery
    assert recovery.restore_target_buckets == ()
    assert recovery.plan_ttl_minutes == 60
    assert recovery.function_role_arns is None
    assert recovery.stack_role_arn is None
    # And the watchers and the recovery function have concurrency of their own, out of AWS's default quota
    reserved = settings.reserved_concurrency
    assert (reserved.health_watcher, reserved.performance_watcher, reserved.recovery) == (5, 5, 3)
    assert reserved.account_limit == 1000


def test_recovery_defaults_are_the_recovery_functions_own():
    # Given no "dr" context, and the recovery function's defaults for an absent variable (drcore.core.config)
    recovery = default_settings().recovery
    runtime = RecoverySettings.model_fields
    # Then the stack sets what the function would assume anyway
    assert recovery.plan_ttl_minutes * 60 == runtime["plan_ttl_seconds"].default
    assert recovery.restore_target_buckets == runtime["restore_target_buckets"].default


def test_function_roles_may_be_named_exactly_or_by_pattern():
    # Given role ARNs with paths, and patterns with IAM's wildcards
    roles = [
        "arn:aws:iam::123456789012:role/apilados-pipeline-ingest-role",
        "arn:aws:iam::123456789012:role/service-role/apilados-*",
        "arn:aws:iam::123456789012:role/apilados-pipeline-ingest-role-v?",
    ]
    # When validated / Then they are kept, in order
    recovery = Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "recovery": {"function_role_arns": roles}}).recovery
    assert recovery.function_role_arns == tuple(roles)


def test_backup_defaults_are_the_backup_functions_own():
    # Given no "dr" context, and the backup function's defaults for an absent variable (drcore.core.config)
    backup = default_settings().backup
    runtime = BackupSettings.model_fields
    # Then the stack sets what the function would assume anyway
    assert backup.retention.model_dump() == RetentionPolicy().model_dump()
    assert backup.copy_concurrency == runtime["copy_concurrency"].default
    assert backup.full_manifest_every == runtime["full_manifest_every"].default == 24
    # And a snapshot of more than 100,000 objects fans out in shards of 10,000 keys, 100 at once
    assert backup.fanout_threshold_objects == runtime["fanout_threshold_objects"].default == 100_000
    assert backup.fanout_shard_objects == runtime["fanout_shard_objects"].default == 10_000
    assert backup.fanout_max_concurrency == DEFAULT_FANOUT_MAX_CONCURRENCY == 100
    assert backup.publish_version is runtime["publish_backup_version"].default is False
    # And backups are locked for 30 days and their pruned versions kept 30 days more
    assert (backup.object_lock_retention_days, backup.noncurrent_version_expiry_days) == (30, 30)
    assert backup.object_lock_mode == "GOVERNANCE"  # COMPLIANCE is irreversible: only when cdk.json asks for it


def test_operator_principals_are_iam_roles_users_or_account_roots():
    # Given principals of each kind a resource policy accepts, in any partition, with IAM paths
    principals = [
        "arn:aws:iam::123456789012:role/dr-operator",
        "arn:aws:iam::123456789012:role/ops/oncall/dr-operator",
        "arn:aws:iam::123456789012:user/ana.lopez@company.com",
        "arn:aws:iam::210987654321:root",
        "arn:aws-us-gov:iam::123456789012:role/dr-operator",
    ]
    # When validated / Then they are kept, in order
    settings = Settings.from_context({**UNSUBSCRIBED_ACKNOWLEDGED, "operator_principals": principals})
    assert settings.operator_principals == tuple(principals)


def test_cdk_json_spells_out_every_default():
    # Given the "dr" block an operator edits in cdk.json / When it is validated
    context = json.loads(CDK_JSON.read_text())["context"]["dr"]
    # Then it is valid, complete, and says exactly what the defaults say, but for acknowledging out loud that
    # nobody is subscribed to the alerts yet (which every synth then warns about: test_state_and_alerting)
    assert context["alerts_acknowledged_unsubscribed"] is True
    assert Settings.from_context(context) == default_settings()
    assert set(context) == set(Settings.model_fields)


def test_settle_time_covers_the_longest_alarm_window():
    # Given an alarm that looks back 20 minutes
    settings = Settings.from_context(
        {
            **UNSUBSCRIBED_ACKNOWLEDGED,
            "alarms": {"p99_duration": {"threshold_ms": 600_000, "period_minutes": 5, "evaluation_periods": 4}},
        }
    )
    # Then ALARMs are not blamed on STABLE for 20 minutes after a rollback
    assert settings.settle_seconds == 20 * 60


@pytest.mark.parametrize(
    ("dr", "expected"),
    [
        ({"bake_minutes": -1}, "dr.bake_minutes: Input should be greater than or equal to 0"),
        ({"bake_minuts": 5}, "dr.bake_minuts: Extra inputs are not permitted"),
        ({"protected_function": 42}, "dr.protected_function: Input should be a valid string"),
        ({"protected_function": "not a name"}, "dr.protected_function: String should match pattern"),
        ({"stable_alias": "LIVE"}, "dr.stable_alias: Value error, must differ from live_alias"),
        ({"live_alias": "7"}, "dr.live_alias: String should match pattern"),
        ({"secondary_region": "us-east-1"}, "dr.secondary_region: Value error, must differ from primary_region"),
        ({"primary_region": "Virginia"}, "dr.primary_region: String should match pattern"),
        ({"regression_factor": 1}, "dr.regression_factor: Input should be greater than 1"),
        ({"health_probe_timeout_seconds": 0}, "dr.health_probe_timeout_seconds: Input should be greater than or equal"),
        # At most the watchers' 30 s less the 10 s their tick keeps for reconciling: 20
        (
            {"health_probe_timeout_seconds": 21},
            "dr.health_probe_timeout_seconds: Input should be less than or equal to 20",
        ),
        ({"metrics_namespace": "AWS/Lambda"}, "dr.metrics_namespace: Value error, the AWS/ prefix is reserved"),
        ({"log_retention_days": 10}, "dr.log_retention_days: Input should be 1, 3, 5"),
        (
            {"alarms": {"average_duration": {"threshold_ms": 1_000_000}}},
            "dr.alarms.average_duration.threshold_ms: Input should be less than or equal to 900000",
        ),
        (
            {"alarms": {"errors": {"evaluation_periods": 2, "datapoints_to_alarm": 3}}},
            "dr.alarms.errors.datapoints_to_alarm: Value error, must not exceed evaluation_periods (2)",
        ),
        (
            {"alarms": {"health_probe": {"period_minutes": 60, "evaluation_periods": 25}}},
            "dr.alarms.health_probe.evaluation_periods: Value error, period_minutes x evaluation_periods is 1500",
        ),
        (
            {"recovery_objectives": {"s3_data": {"rto_minutes": 0, "rpo_minutes": 60}}},
            "dr.recovery_objectives.s3_data.rto_minutes: Input should be greater than 0",
        ),
        (
            {"alert_emails": {"emergency": ["ops-lead@company.com", "pager"]}},
            "dr.alert_emails.emergency.1: Value error, 'pager' is not an e-mail address",
        ),
        (
            {"alert_emails": {"alert": ["ops@company.com", "ops@company.com"]}},
            "dr.alert_emails.alert: Value error, lists an address twice",
        ),
        # Backup schedules and RPO alarms are derived from the objectives
        (
            {"recovery_objectives": {"s3_data": {"rto_minutes": 30, "rpo_minutes": 0}}},
            "dr.recovery_objectives.s3_data.rpo_minutes: Input should be greater than or equal to 1",
        ),
        (
            {"recovery_objectives": {"cloudwatch_logs": {"rto_minutes": 60, "rpo_minutes": 2880}}},
            "dr.recovery_objectives.cloudwatch_logs.rpo_minutes: Input should be less than or equal to 1440",
        ),
        (
            {"recovery_objectives": {"configuration": {"rto_minutes": 5, "rpo_minutes": -1}}},
            "dr.recovery_objectives.configuration.rpo_minutes: Input should be greater than or equal to 0",
        ),
        (
            {"backup": {"retention": {"keep_last": 0}}},
            "dr.backup.retention.keep_last: Input should be greater than or equal to 1",
        ),
        (
            {"backup": {"retention": {"daily": -1}}},
            "dr.backup.retention.daily: Input should be greater than or equal to 0",
        ),
        ({"backup": {"retention": {"yearly": 3}}}, "dr.backup.retention.yearly: Extra inputs are not permitted"),
        ({"backup": {"copy_concurrency": 0}}, "dr.backup.copy_concurrency: Input should be greater than or equal to 1"),
        (
            {"backup": {"copy_concurrency": 500}},
            "dr.backup.copy_concurrency: Input should be less than or equal to 128",
        ),
        ({"backup": {"publish_version": "sometimes"}}, "dr.backup.publish_version: Input should be a valid boolean"),
        ({"backup": {"memory_mb": 512}}, "dr.backup.memory_mb: Input should be greater than or equal to 1024"),
        ({"backup": {"memory_mb": 20_000}}, "dr.backup.memory_mb: Input should be less than or equal to 10240"),
        ({"backup": {"retention_memory_mb": 512}},
         "dr.backup.retention_memory_mb: Input should be greater than or equal to 1024"),
        ({"backup": {"retention_memory_mb": 10_241}},
         "dr.backup.retention_memory_mb: Input should be less than or equal to 10240"),
        ({"recovery": {"memory_mb": 128}}, "dr.recovery.memory_mb: Input should be greater than or equal to 1024"),
        (
            {"backup": {"fanout_threshold_objects": 999}},
            "dr.backup.fanout_threshold_objects: Input should be greater than or equal to 1000",
        ),
        (
            {"backup": {"fanout_shard_objects": 999}},
            "dr.backup.fanout_shard_objects: Input should be greater than or equal to 1000",
        ),
        (
            {"backup": {"fanout_shard_objects": 1_000_001}},
            "dr.backup.fanout_shard_objects: Input should be less than or equal to 1000000",
        ),
        (
            {"backup": {"fanout_max_concurrency": 0}},
            "dr.backup.fanout_max_concurrency: Input should be greater than or equal to 1",
        ),
        # A Distributed Map runs at most 10,000 child executions at once
        (
            {"backup": {"fanout_max_concurrency": 10_001}},
            "dr.backup.fanout_max_concurrency: Input should be less than or equal to 10000",
        ),
        (
            {"backup": {"object_lock_retention_days": 0}},
            "dr.backup.object_lock_retention_days: Input should be greater than or equal to 1",
        ),
        (
            {"backup": {"object_lock_retention_days": 40_000}},
            "dr.backup.object_lock_retention_days: Input should be less than or equal to 36500",
        ),
        (
            {"backup": {"noncurrent_version_expiry_days": 0}},
            "dr.backup.noncurrent_version_expiry_days: Input should be greater than or equal to 1",
        ),
        ({"backup": {"object_lock_days": 30}}, "dr.backup.object_lock_days: Extra inputs are not permitted"),
        (
            {"backup": {"object_lock_mode": "compliance"}},
            "dr.backup.object_lock_mode: Input should be 'GOVERNANCE' or 'COMPLIANCE'",
        ),
        (
            {"operator_principals": "arn:aws:iam::123456789012:role/dr-operator"},
            "dr.operator_principals: Input should be a valid tuple",
        ),
        (
            {"operator_principals": ["arn:aws:iam::123456789012:role/dr-operator", "bob"]},
            "dr.operator_principals.1: Value error, 'bob' is not the ARN of an IAM role, an IAM user or an account",
        ),
        (
            {"operator_principals": ["arn:aws:iam::123456789012:group/operators"]},
            "dr.operator_principals.0: Value error, 'arn:aws:iam::123456789012:group/operators' is not the ARN",
        ),
        (
            {"operator_principals": ["arn:aws:iam::1234:role/dr-operator"]},
            "dr.operator_principals.0: Value error, 'arn:aws:iam::1234:role/dr-operator' is not the ARN",
        ),
        (
            {"operator_principals": ["arn:aws:sts::123456789012:assumed-role/dr-operator/ana"]},
            "dr.operator_principals.0: Value error",
        ),
        (
            {"operator_principals": ["arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root"]},
            "dr.operator_principals: Value error, lists a principal twice",
        ),
        # The recovery function
        (
            {"recovery": {"restore_target_buckets": ["scratch", "Not_A_Bucket"]}},
            "dr.recovery.restore_target_buckets.1: Value error, 'Not_A_Bucket' is not an S3 bucket name",
        ),
        (
            {"recovery": {"restore_target_buckets": ["a..b"]}},
            "dr.recovery.restore_target_buckets.0: Value error, 'a..b' is not an S3 bucket name",
        ),
        (
            {"recovery": {"restore_target_buckets": "scratch"}},
            "dr.recovery.restore_target_buckets: Input should be a valid tuple",
        ),
        (
            {"recovery": {"restore_target_buckets": ["scratch", "scratch"]}},
            "dr.recovery.restore_target_buckets: Value error, lists a value twice",
        ),
        (
            {"recovery": {"plan_ttl_minutes": 0}},
            "dr.recovery.plan_ttl_minutes: Input should be greater than or equal to 1",
        ),
        (
            {"recovery": {"plan_ttl_minutes": 10_081}},
            "dr.recovery.plan_ttl_minutes: Input should be less than or equal to 10080",
        ),
        (
            {"recovery": {"function_role_arns": ["arn:aws:iam::123456789012:user/deployer"]}},
            (
                "dr.recovery.function_role_arns.0: Value error, 'arn:aws:iam::123456789012:user/deployer' is not an "
                "IAM role ARN or pattern"
            ),
        ),
        (
            {"recovery": {"function_role_arns": ["arn:aws:iam::123456789012:role/*"]}},
            "dr.recovery.function_role_arns.0: Value error, 'arn:aws:iam::123456789012:role/*' matches every role",
        ),
        (
            {"recovery": {"function_role_arns": ["arn:aws:iam::*:role/apilados-*"]}},
            "dr.recovery.function_role_arns.0: Value error, 'arn:aws:iam::*:role/apilados-*' is not an IAM role ARN",
        ),
        (
            {"recovery": {"stack_role_arn": "arn:aws:iam::123456789012:role/deployer-*"}},
            (
                "dr.recovery.stack_role_arn: Value error, 'arn:aws:iam::123456789012:role/deployer-*' is not the ARN "
                "of an IAM role"
            ),
        ),
        ({"recovery": {"plan_ttl": 30}}, "dr.recovery.plan_ttl: Extra inputs are not permitted"),
        (
            {"controller_stack": "apilados-pipeline-ingest-dr"},
            (
                "dr.protected_function: Value error, controller_stack 'apilados-pipeline-ingest-dr' starts with "
                "'apilados-pipeline-ingest-', the names of functions a recovery may create and rewrite"
            ),
        ),
        (
            {"drill": {"schedule": "every monday"}},
            "dr.drill.schedule: Value error, 'every monday' is not an EventBridge schedule expression",
        ),
        (
            {"drill": {"schedule": "rate(1 days)"}},
            "dr.drill.schedule: Value error, 'rate(1 days)': EventBridge wants a singular unit for 1",
        ),
        ({"drill": {"schedule": "cron(0 6 * *)"}}, "dr.drill.schedule: Value error, 'cron(0 6 * *)' is not an"),
        (
            {"drill": {"scratch_expiry_days": 0}},
            "dr.drill.scratch_expiry_days: Input should be greater than or equal to 1",
        ),
        ({"drill": {"enabled": False}}, "dr.drill.enabled: Extra inputs are not permitted"),
        (
            {"controller_stack": "ApiladosPipelineStack-dr"},
            (
                "dr.recovery: Value error, function_role_arns is not set, so a recovered function may be given any "
                "role named 'ApiladosPipelineStack-*'; the controller's own roles, named after controller_stack "
                "'ApiladosPipelineStack-dr', would be among them"
            ),
        ),
        (
            {"controller_stack": "ApiladosPipelineStack"},
            "dr.recovery: Value error, function_role_arns is not set",
        ),
        # Who hears the alerts
        (
            {"alert_subscriptions": {"emergency": [{"protocol": "sms", "endpoint": "555-0100"}]}},
            "dr.alert_subscriptions.emergency.0.endpoint: Value error, '555-0100' is not a phone number in E.164",
        ),
        (
            {"alert_subscriptions": {"alert": [{"protocol": "https", "endpoint": "http://chat.example/hook"}]}},
            "dr.alert_subscriptions.alert.0.endpoint: Value error, 'http://chat.example/hook' is not an https:// URL",
        ),
        (
            {"alert_subscriptions": {"alert": [{"protocol": "slack", "endpoint": "#oncall"}]}},
            "dr.alert_subscriptions.alert.0.protocol: Input should be 'sms' or 'https'",
        ),
        (
            {"alert_subscriptions": {"alert": [{"protocol": "sms", "endpoint": "+15555550100"}] * 2}},
            "dr.alert_subscriptions.alert: Value error, lists a subscription twice",
        ),
        ({"alerts_acknowledged_unsubscribed": "yes please"}, "dr.alerts_acknowledged_unsubscribed: Input should be"),
        # Reserved concurrency
        (
            {"reserved_concurrency": {"recovery": 0}},
            "dr.reserved_concurrency.recovery: Input should be greater than or equal to 1",
        ),
        (
            {"reserved_concurrency": {"health_watcher": 2.5}},
            "dr.reserved_concurrency.health_watcher: Input should be a valid integer",
        ),
        (
            {"reserved_concurrency": {"account_limit": 110}},
            (
                "dr.reserved_concurrency: Value error, reserves 14 concurrent executions, but an account limit of 110 "
                "leaves at most 10 to reserve (Lambda keeps 100 unreserved)"
            ),
        ),
        (
            {"reserved_concurrency": {"health_watcher": 500, "performance_watcher": 400, "recovery": 1}},
            "dr.reserved_concurrency: Value error, reserves 902 concurrent executions, but an account limit of 1000",
        ),
        (
            {"pipeline_stack": "P" + "x" * 119},
            (
                "dr.pipeline_stack: Value error, must leave room for the '-recovery' suffix of a recovered stack (at "
                "most 119 characters)"
            ),
        ),
    ],
)
def test_a_bad_setting_fails_synth_naming_the_key(dr, expected):
    # Given cdk.json's settings with one bad value / When the app is built
    with pytest.raises(InvalidSettings) as raised:
        build_app({"dr": dr})
    # Then synth stops with a message that names the key and the problem
    assert expected in str(raised.value)


def test_every_problem_is_reported_at_once():
    # Given two bad values / When the app is built
    with pytest.raises(InvalidSettings) as raised:
        build_app({"dr": {"bake_minutes": -1, "min_bake_invocations": -1}})
    # Then both are named, so one synth is enough to fix them
    assert "dr.bake_minutes" in str(raised.value)
    assert "dr.min_bake_invocations" in str(raised.value)


def test_the_dr_context_must_be_an_object():
    # Given a "dr" context that is not an object / When the app is built / Then synth names it
    with pytest.raises(InvalidSettings, match="dr: Input should be a valid dictionary"):
        build_app({"dr": "apilados-pipeline-ingest"})


# Who hears the alerts (README, "Configuration")

NOBODY = {"alerts_acknowledged_unsubscribed": False}


@pytest.mark.parametrize(
    ("dr", "unheard"),
    [
        (NOBODY, "the emergency topic (severity 1: STABLE failing, automation frozen) and the alert topic"),
        ({**NOBODY, "alert_emails": {"alert": ["team@company.com"]}}, "the emergency topic (severity 1"),
        ({**NOBODY, "alert_emails": {"emergency": ["oncall@company.com"]}}, "the alert topic (severities 2 to 4"),
    ],
)
def test_synth_fails_naming_alert_emails_while_a_topic_reaches_nobody(dr, unheard):
    # Given cdk.json's settings without the acknowledgement, and a topic nobody is subscribed to
    with pytest.raises(InvalidSettings) as raised:
        build_app({"dr": dr})
    # Then synth stops, naming that topic, dr.alert_emails, and the acknowledgement that would let it pass
    message = str(raised.value)
    assert f"dr.alert_emails: Value error, nobody is subscribed to {unheard}" in message
    assert "dr.alerts_acknowledged_unsubscribed" in message


def test_an_sms_or_https_subscriber_is_someone_hearing_the_topic():
    # Given no e-mail addresses, but a phone for emergencies and a chat endpoint for the other alerts
    settings = Settings.from_context(
        {
            "alert_subscriptions": {
                "emergency": [{"protocol": "sms", "endpoint": "+15555550100"}],
                "alert": [{"protocol": "https", "endpoint": "https://chat.example.com/hooks/dr?room=ops"}],
            }
        }
    )
    # Then that is a deployable configuration, without the acknowledgement
    assert settings.alerts_acknowledged_unsubscribed is False
    assert [subscriber.protocol for subscriber in settings.alert_subscriptions.emergency] == ["sms"]


def test_an_address_for_each_topic_needs_no_acknowledgement():
    settings = Settings.from_context(
        {"alert_emails": {"emergency": ["oncall@company.com"], "alert": ["team@company.com"]}}
    )
    assert settings.alerts_acknowledged_unsubscribed is False


def test_reserved_concurrency_may_take_all_but_the_unreserved_minimum():
    # Given an account quota of 120: 20 may be reserved, 100 stay unreserved
    settings = Settings.from_context(
        {
            **UNSUBSCRIBED_ACKNOWLEDGED,
            "reserved_concurrency": {
                "health_watcher": 9,
                "performance_watcher": 8,
                "recovery": 2,
                "account_limit": 120,
            },
        }
    )
    # Then all 20 may go to the controller's responders and its retention function (which reserves one)
    assert settings.reserved_concurrency.total == 20
