"""Manual recovery: the recovery function operators invoke in an incident, and what it may do.

Operators invoke it synchronously (Lambda console, `aws lambda invoke`) with `{"action": ..., ...}`; a long
restore continues by invoking the function itself asynchronously. Only `operator_principals` get a grant
in its resource policy. Identities of the same account whose own IAM policies allow lambda:InvokeFunction on
it can invoke it as well: within an account a resource policy adds to identity policies, it cannot take
anything away from them (an SCP or a permissions boundary can).

Its role holds exactly what the recovery actions need:
- the alias controller's permissions, as the watchers have them (not their metrics nor the probe of LIVE);
- bucket restores (`restore_s3`) into the data bucket and the allow-listed target buckets: listing, reading
  and writing object versions, removing by delete markers only (no s3:DeleteObjectVersion: invariant 5), a
  safety snapshot into the backup bucket, the plan's records under `restores/`; a big restore's shards are applied
  by the restore fan-out, which the function starts, follows and redrives (stacks/constructs/restore_fanout.py);
- `recover_from_backup`: the protected function's code, configuration, concurrency, tags and event invoke
  configuration, a new version; or a new function beside it, named `<protected function>-<suffix>`;
  layers republished in this account; iam:PassRole to Lambda only for the roles
  restore_grants.passable_function_roles names (by default the pipeline stack's);
- `recover_stack`: change sets on the pipeline stack and on `<pipeline stack>-recovery`; the stack policy,
  termination protection and deletion (of a failed or empty copy) of `<pipeline stack>-recovery` only;
  iam:PassRole to CloudFormation only for `recovery.stack_role_arn`;
- `configure_replication` and the replication part of `status` (stacks/constructs/replication.py): the data
  bucket's replication configuration, reads of the replica bucket, iam:PassRole to S3 only for
  `replication.role_arn`;
- what `failover` and `failback` both call (stacks/constructs/region_switch.py): the pipeline's notification entry
  of the data bucket and the replica, the replica's versions listed, the secondary function's environment, the
  other region's LIVE read and its versions invoked, its alarms read;
- `failover` alone (stacks/constructs/failover.py): the secondary LIVE's resource policy and STABLE's version
  read, the stakeholder topic;
- `failback` alone (stacks/constructs/failback.py): the replica's versions' tags copied back, the primary's health
  probe's metrics;
- `validate` and the validation that ends every applied recovery (stacks/constructs/validation_grants.py): the
  probe of LIVE's versions, the backup bucket's controls, the topics' encryption.

It has reserved concurrency of its own, so an operator can act while the protected function throttles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from drcore.core.config import RecoveryEnvVar
from drcore.state.backup_store import RESTORE_ROOT, Component, backup_prefix, content_key
from stacks.constructs.alarms import LiveAliasAlarms
from stacks.constructs.alerting import Alerting
from stacks.constructs.backup_bucket import BackupBucket
from stacks.constructs.backups import (
    BACKUP_BUCKET_READS,
    BACKUP_KEY_USE,
    CONTENT_TAG_READS,
    CONTENT_TAG_WRITES,
    MULTIPART_ABORT,
    STORED_BACKUP_READS,
    backup_environment,
    backup_key_prefixes,
    content_prefix,
    rpo_window_minutes,
)
from stacks.constructs.cdk_types import default_resource, role_of
from stacks.constructs.controller_functions import ControllerFunctions
from stacks.constructs.failback import grant_failback
from stacks.constructs.failover import grant_failover
from stacks.constructs.preflight_grants import grant_preflight
from stacks.constructs.region_switch import grant_region_switch
from stacks.constructs.replication import grant_replication
from stacks.constructs.restore_grants import (
    TARGET_BUCKET_READS,
    TARGET_OBJECT_READS,
    continue_in_new_invocations,
    grant_layers_and_roles,
    layer_and_role_suppressions,
    let_operators_invoke,
)
from stacks.constructs.validation_grants import grant_validation
from stacks.constructs.watchers import (
    controller_environment,
    every_version_of,
    grant_alias_control,
    protected_function_arn,
    regional_arn,
)
from stacks.settings import DEFAULT_RECOVERY_MEMORY_MB, RECOVERY_STACK_SUFFIX, Settings

RECOVERY_HANDLER = "recovery.handler.handler"
# Lambda's maximum: a restore works until shortly before it and continues in a new invocation.
RECOVERY_TIMEOUT = Duration.minutes(15)
# A restore shard worker's memory: it holds its shard's slice of the restore, never the whole (the recovery function's
# is the recovery.memory_mb setting).
RESTORE_SHARD_MEMORY_MB = DEFAULT_RECOVERY_MEMORY_MB


def _top_level(key: str) -> str:
    return key.split("/", 1)[0] + "/"


# The backup store's prefix for restore plans and the versions an apply wrote ("restores/").
RESTORES_PREFIX = _top_level(RESTORE_ROOT)
# What a restore writes into the backup bucket: its safety snapshot (content and manifest) and its records.
RECOVERY_WRITE_PREFIXES = tuple(
    sorted(
        {
            _top_level(content_key("algorithm", "digest")),
            _top_level(backup_prefix(Component.S3, "bucket", "id")),
            RESTORES_PREFIX,
        }
    )
)
# What it reads there: every backup (function, stack, snapshots and their content) and the restore records.
RECOVERY_READ_PREFIXES = tuple(sorted({*backup_key_prefixes(), RESTORES_PREFIX}))

# DeleteObject without a version id only places a delete marker; s3:DeleteObjectVersion is never granted,
# so no restore can remove data for good. PutObjectTagging writes the tags a copied-back version brings.
# AbortMultipartUpload cleans up a multipart copy of a large object that failed half-way.
TARGET_OBJECT_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload")
# Writes into the backup bucket never delete: the retention function alone prunes. (A safety snapshot's copy in
# parts, into content/ only, is aborted when it fails: backups.MULTIPART_ABORT.)
BACKUP_OBJECT_WRITES = ("s3:PutObject",)

# `recover_from_backup` on the protected function, or on a new function beside it.
FUNCTION_RECOVERY_ACTIONS = (
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:PublishVersion",
    "lambda:TagResource",
    "lambda:UntagResource",
    "lambda:ListTags",
    "lambda:PutFunctionConcurrency",
    "lambda:DeleteFunctionConcurrency",
    "lambda:GetFunctionConcurrency",
    "lambda:PutFunctionEventInvokeConfig",
    "lambda:GetFunctionEventInvokeConfig",
    "lambda:UpdateFunctionEventInvokeConfig",
    # The function's own event invoke configuration, when its backup had none.
    "lambda:DeleteFunctionEventInvokeConfig",
)
# A function restored beside the original is created, then read back: its state before the next update,
# its CodeSha256 against the backup's.
NEW_FUNCTION_ACTIONS = ("lambda:CreateFunction", "lambda:GetFunction", "lambda:GetFunctionConfiguration")

# `recover_stack`: a change set on the pipeline stack (mode "update") or on `<pipeline stack>-recovery`.
STACK_RECOVERY_ACTIONS = (
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:GetTemplate",
    "cloudformation:ListChangeSets",
    "cloudformation:GetStackPolicy",
)
# On `<pipeline stack>-recovery` only, never the pipeline stack: a recovered copy gets the backup's stack policy
# and termination protection once created (a change set cannot carry them), and a copy whose creation failed
# and rolled back, or that only held a discarded plan's change set, is deleted (drcore.restore.stack_recovery).
# Neither holds resources, so deleting one needs no role of the stack's.
RECOVERY_STACK_ACTIONS = (
    "cloudformation:SetStackPolicy",
    "cloudformation:UpdateTerminationProtection",
    "cloudformation:DeleteStack",
)


def recovery_stack_name(settings: Settings) -> str:
    """The name `recover_stack` in mode "new" gives the recreated pipeline stack."""
    return f"{settings.pipeline_stack}{RECOVERY_STACK_SUFFIX}"


def restore_target_buckets(settings: Settings) -> list[str]:
    """Every bucket a restore may write: the data bucket, then the allow-list."""
    return list(dict.fromkeys([settings.data_bucket, *settings.recovery.restore_target_buckets]))


def restore_target_arns(scope: Construct, settings: Settings) -> list[str]:
    """The ARNs of `restore_target_buckets` (S3 bucket ARNs name neither region nor account); "<arn>/*" their
    objects."""
    partition = Stack.of(scope).partition
    return [f"arn:{partition}:s3:::{bucket}" for bucket in restore_target_buckets(settings)]


def restore_target_objects(settings: Settings) -> RegexAppliesTo:
    """cdk-nag's rendering of every object of every restore target, for the suppressions that explain it."""
    buckets = "|".join(re.escape(bucket) for bucket in restore_target_buckets(settings))
    return RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:s3:::({buckets})\/\*$/")


def restore_target_allow_list(settings: Settings) -> str:
    """The allow-list as the functions read it (RecoveryEnvVar.RESTORE_TARGET_BUCKETS): the data bucket is implied."""
    return ",".join(settings.recovery.restore_target_buckets)


def rpo_seconds(settings: Settings) -> dict[str, int]:
    """The recovery point objective of each backed-up component, as the recovery function's `status` judges
    the age of the last backup: the objectives table's RPO, and for the stack the window its RPO alarm
    watches (a real-time configuration RPO is met by backups on change plus a daily one)."""
    objectives = settings.recovery_objectives
    minutes = {
        Component.LAMBDA: objectives.lambda_function.rpo_minutes,
        Component.S3: objectives.s3_data.rpo_minutes,
        Component.STACK: rpo_window_minutes(settings, Component.STACK),
        Component.LOGS: objectives.cloudwatch_logs.rpo_minutes,
    }
    return {component.value: minutes[component] * 60 for component in Component}


class Recovery(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: ControllerFunctions,
        state_table: dynamodb.ITable,
        alerting: Alerting,
        alarms: LiveAliasAlarms,
        backup_bucket: BackupBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self.function = functions.add(
            "Recovery",
            handler=RECOVERY_HANDLER,
            description=(
                f"Operators' recovery console for {settings.protected_function}: rollback, releases, restores of "
                f"{settings.data_bucket}, recovery of the function and of {settings.pipeline_stack} from backups"
            ),
            environment=recovery_environment(settings, state_table, alerting, alarms, backup_bucket),
            memory_size=settings.recovery.memory_mb,
            timeout=RECOVERY_TIMEOUT,
            reserved_concurrency=settings.reserved_concurrency.recovery,
        )
        grant_alias_control(self.function, settings=settings, state_table=state_table, alerting=alerting, alarms=alarms)
        self._grant_bucket_restores(backup_bucket)
        self._grant_function_recovery()
        self._grant_stack_recovery()
        # A long restore invokes this very function.
        continue_in_new_invocations(self, "ContinueRestores", self.function)
        let_operators_invoke(self.function, settings)
        grant_preflight(self.function, settings, alerting)
        targets = restore_target_buckets(settings)
        grant_replication(self.function, settings, targets)
        grant_region_switch(self.function, settings, alarms, targets)
        grant_failover(self.function, settings)
        grant_failback(self.function, settings, targets)
        grant_validation(self.function, settings, alerting, backup_bucket)
        self._explain_wildcards(backup_bucket)

    # Permissions

    def _add(self, sid: str, actions: Sequence[str], resources: list[str], **conditions: dict[str, str]) -> None:
        self.function.add_to_role_policy(
            iam.PolicyStatement(sid=sid, actions=list(actions), resources=resources, conditions=conditions or None)
        )

    def _grant_bucket_restores(self, backup_bucket: BackupBucket) -> None:
        targets = restore_target_arns(self, self._settings)
        backups = backup_bucket.bucket
        self._add("ListRestoreTargets", TARGET_BUCKET_READS, targets)
        self._add("ReadRestoreTargetObjects", TARGET_OBJECT_READS, [f"{arn}/*" for arn in targets])
        self._add("RestoreObjectsByVersionsAndDeleteMarkers", TARGET_OBJECT_WRITES, [f"{arn}/*" for arn in targets])
        self._add("ListBackupBucket", BACKUP_BUCKET_READS, [backups.bucket_arn])
        self._add(
            "ReadBackups",
            STORED_BACKUP_READS,
            [backups.arn_for_objects(f"{prefix}*") for prefix in RECOVERY_READ_PREFIXES],
        )
        self._add(
            "WriteSafetySnapshotsAndRestoreRecords",
            BACKUP_OBJECT_WRITES,
            [backups.arn_for_objects(f"{prefix}*") for prefix in RECOVERY_WRITE_PREFIXES],
        )
        self._add("AbortFailedContentCopies", MULTIPART_ABORT, [backups.arn_for_objects(f"{content_prefix()}*")])
        # A safety snapshot's copies bring their tags to the content; a restore reads them back from there.
        self._add("TagAndReadTagsOfStoredContent", (*CONTENT_TAG_WRITES, *CONTENT_TAG_READS),
                  [backups.arn_for_objects(f"{content_prefix()}*")])
        self._add("UseBackupKey", BACKUP_KEY_USE, [backup_bucket.key.key_arn])

    def _grant_function_recovery(self) -> None:
        settings = self._settings
        function = protected_function_arn(self, settings)
        # A function restored beside the original must be named "<protected function>-<suffix>".
        beside = regional_arn(self, "lambda", "function", f"{settings.protected_function}-*")
        # Unqualified: a recovery leaves the aliases' and versions' own settings alone, and publishes a version.
        self._add("RecoverProtectedFunction", FUNCTION_RECOVERY_ACTIONS, [function])
        self._add("RestoreBesideProtectedFunction", (*NEW_FUNCTION_ACTIONS, *FUNCTION_RECOVERY_ACTIONS), [beside])
        grant_layers_and_roles(self.function, settings, "PassRoleToRecoveredFunctions")

    def _grant_stack_recovery(self) -> None:
        settings = self._settings
        pipeline_stack, recovery_stack = (
            Stack.of(self).format_arn(
                service="cloudformation",
                resource="stack",
                # The stack id after the name is assigned by CloudFormation.
                resource_name=f"{name}/*",
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
            for name in (settings.pipeline_stack, recovery_stack_name(settings))
        )
        self._add("RecoverPipelineStack", STACK_RECOVERY_ACTIONS, [pipeline_stack, recovery_stack])
        self._add("FinishOrClearRecoveryStack", RECOVERY_STACK_ACTIONS, [recovery_stack])
        if settings.recovery.stack_role_arn:
            self._add(
                "PassStackRoleToCloudFormation",
                ["iam:PassRole"],
                [settings.recovery.stack_role_arn],
                StringEquals={"iam:PassedToService": "cloudformation.amazonaws.com"},
            )

    def _explain_wildcards(self, backup_bucket: BackupBucket) -> None:
        settings = self._settings
        bucket_id = Stack.of(self).get_logical_id(default_resource(backup_bucket.bucket, s3.CfnBucket))
        prefixes = "|".join(prefix.rstrip("/") for prefix in RECOVERY_READ_PREFIXES)
        function = re.escape(settings.protected_function)
        stack_names = "|".join(re.escape(name) for name in (settings.pipeline_stack, recovery_stack_name(settings)))
        suppressions = [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Read-only Lambda actions on the protected function's published versions and aliases, "
                "which are addressed by qualifier and cannot be listed at synth time.",
                applies_to=[every_version_of(settings)],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="cloudwatch:GetMetricData and GetMetricStatistics, and the preflight's "
                "cloudtrail:DescribeTrails, support no resource-level permissions; all three only read.",
                applies_to=["Resource::*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="kms:GenerateDataKey* is what SNS needs from a publisher to a KMS-encrypted topic and S3 "
                "from a writer of SSE-KMS objects; it is granted on the alert topics' key and the backup key only.",
                applies_to=["Action::kms:GenerateDataKey*"],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="A restore reads and rewrites any object of the data bucket (or of an allow-listed target "
                "bucket), whose keys are the pipeline's uploads and cannot be listed at synth time. It removes "
                "only by delete markers: s3:DeleteObjectVersion is not granted.",
                applies_to=[restore_target_objects(settings)],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Backup object keys embed content digests and backup ids made at run time; access is held "
                "to the backup store's prefixes (reads of content/, snapshots/, backups/, restores/; writes of "
                "content/, snapshots/, restores/, never deletes), and Object Lock protects every object.",
                applies_to=[RegexAppliesTo(regex=rf"/^Resource::<{bucket_id}\.Arn>\/({prefixes})\/\*$/")],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="A function restored beside the protected one is named '<protected function>-<suffix>' "
                "by the operator at recovery time; only names with that prefix can be created or changed.",
                applies_to=[
                    RegexAppliesTo(
                        regex=rf"/^Resource::arn:[^:]+:lambda:[^:]+:<AWS::AccountId>:function:{function}-\*$/"
                    )
                ],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Change sets on the pipeline stack and its '-recovery' copy only (the copy's policy, "
                "protection and deletion on the copy alone); the stack id that follows the name in a stack ARN is "
                "assigned by CloudFormation at creation.",
                applies_to=[
                    RegexAppliesTo(
                        regex=rf"/^Resource::arn:[^:]+:cloudformation:[^:]+:<AWS::AccountId>:stack\/"
                        rf"({stack_names})\/\*$/"
                    )
                ],
            ),
        ]
        suppressions += layer_and_role_suppressions(settings)
        NagSuppressions.add_resource_suppressions(role_of(self.function), suppressions, apply_to_children=True)


def recovery_environment(
    settings: Settings,
    state_table: dynamodb.ITable,
    alerting: Alerting,
    alarms: LiveAliasAlarms,
    backup_bucket: BackupBucket,
) -> dict[str, str]:
    """The watchers' variables (drcore.core.config.EnvVar), the backup function's (BackupEnvVar) and the recovery
    function's own (RecoveryEnvVar), each built where its function's is."""
    recovery = settings.recovery
    own = {
        RecoveryEnvVar.RESTORE_TARGET_BUCKETS: restore_target_allow_list(settings),
        RecoveryEnvVar.RPO_SECONDS: json.dumps(rpo_seconds(settings), separators=(",", ":")),
        RecoveryEnvVar.PLAN_TTL_SECONDS: str(recovery.plan_ttl_minutes * 60),
        RecoveryEnvVar.STACK_ROLE_ARN: recovery.stack_role_arn or "",
        # No restore fans out unless the stack runs a restore fan-out, which names its state machine to the recovery
        # function (stacks/constructs/restore_fanout.py): the standby's and the drills' restores never fan out.
        RecoveryEnvVar.RESTORE_FANOUT_STATE_MACHINE: "",
    }
    # Plain strings for jsii.
    own_variables = {str(name.value): value for name, value in own.items()}
    # A variable the functions' side adds must be given a value here, not silently left to its default.
    unset = sorted(name.value for name in RecoveryEnvVar if name.value not in own_variables)
    if unset:
        raise ValueError(f"drcore.core.config.RecoveryEnvVar defines {', '.join(unset)}, which the stack does not set")

    environment: dict[str, str] = {}
    for variables in (
        controller_environment(settings, state_table, alerting, alarms),
        backup_environment(settings, state_table, backup_bucket),
        own_variables,
    ):
        for name, value in variables.items():
            # The sets share some names (the function, the table, the namespace); they must agree.
            if environment.setdefault(name, value) != value:
                raise ValueError(f"{name} would be set to both {environment[name]!r} and {value!r}")
    return environment
