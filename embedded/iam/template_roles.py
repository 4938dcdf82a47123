"""Each function's role as the synthesized template defines it, with the intrinsics resolved to the names
the embedded world gives what the stack would create.

The binding needs no table of names: the template passes its resources to the functions through
environment variables (`DR_BACKUP_BUCKET_NAME: {"Ref": "BackupBucket..."}`), and the recorder saw the
environment each handler ran with in the embedded world, so every such Ref takes the value the handler
really used. A function's own name is the one the scenario invoked it as. What neither gives (the KMS
keys, the log groups, the queue: nothing the handlers address by name) gets a stable stand-in built from
its logical id, so ARNs that name it still resolve consistently on both sides of the check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from embedded.iam.actions import WorldFacts

Statement = dict[str, Any]

# AWS managed policies a role may attach, as AWS publishes them (the template only names them).
AWS_MANAGED_POLICIES: dict[str, list[Statement]] = {
    "service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}],
}

# The property that names a resource of each type, and what its Ref and its Arn attribute return.
_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName", "AWS::SNS::Topic": "TopicName", "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName", "AWS::DynamoDB::GlobalTable": "TableName",
    "AWS::Lambda::Function": "FunctionName", "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName", "AWS::Events::Rule": "Name", "AWS::CloudWatch::Alarm": "AlarmName",
}
_ARN_FORMAT = {
    "AWS::S3::Bucket": "arn:{partition}:s3:::{name}",
    "AWS::SNS::Topic": "arn:{partition}:sns:{region}:{account}:{name}",
    "AWS::SQS::Queue": "arn:{partition}:sqs:{region}:{account}:{name}",
    "AWS::DynamoDB::Table": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    "AWS::DynamoDB::GlobalTable": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    "AWS::Lambda::Function": "arn:{partition}:lambda:{region}:{account}:function:{name}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{name}",
    "AWS::Logs::LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
    "AWS::Events::Rule": "arn:{partition}:events:{region}:{account}:rule/{name}",
    "AWS::CloudWatch::Alarm": "arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}",
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{name}",
}
_REF_IS_ARN = frozenset({"AWS::SNS::Topic"})


class UnresolvableTemplate(Exception):
    """An intrinsic or a resource the resolver does not know: extend it rather than guess."""


@dataclass(frozen=True)
class EmbeddedNames:
    """How the embedded world names what the template creates."""

    account: str
    region: str  # where the stack is deployed: its functions run there
    environments: Mapping[str, Mapping[str, str]]  # handler string -> the environment it ran with
    function_names: Mapping[str, str]  # handler string -> the name it was invoked as
    partition: str = "aws"


@dataclass(frozen=True)
class FunctionRole:
    handler: str  # "recovery.handler.handler"
    function_id: str  # the function's logical id
    role_arn: str
    statements: tuple[Statement, ...]  # every identity policy statement of its role, resolved


@dataclass(frozen=True)
class ResolvedTemplate:
    roles: dict[str, FunctionRole]  # by handler string
    resource_statements: tuple[Statement, ...]  # bucket, topic and queue policies, resolved
    key_policies: dict[str, tuple[Statement, ...]]  # KMS key ARN -> its key policy, resolved
    facts: WorldFacts = field(default_factory=lambda: WorldFacts(account=""))


class Resolver:
    """Resolves CloudFormation intrinsics against the embedded world's names."""

    def __init__(self, template: Mapping[str, Any], names: EmbeddedNames) -> None:
        self._resources: Mapping[str, Any] = template["Resources"]
        self._parameters: Mapping[str, Any] = template.get("Parameters", {})
        self._names = names
        self._bound: dict[str, str] = {}  # logical id -> Ref value seen in a handler's environment
        for logical_id, resource in self._resources.items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            handler = resource["Properties"]["Handler"]
            ran_with = names.environments.get(handler, {})
            template_environment = resource["Properties"].get("Environment", {}).get("Variables", {})
            for variable, value in template_environment.items():
                if isinstance(value, dict) and set(value) == {"Ref"} and variable in ran_with:
                    self._bind(value["Ref"], ran_with[variable])
            if handler in names.function_names:
                self._bind(logical_id, names.function_names[handler])

    def _bind(self, logical_id: str, value: str) -> None:
        if self._bound.setdefault(logical_id, value) != value:
            raise UnresolvableTemplate(f"{logical_id} is {self._bound[logical_id]!r} to one handler and "
                                       f"{value!r} to another")

    def _pseudo(self, name: str) -> str | None:
        return {"AWS::AccountId": self._names.account, "AWS::Region": self._names.region,
                "AWS::Partition": self._names.partition, "AWS::URLSuffix": "amazonaws.com"}.get(name)

    def _resource(self, logical_id: str) -> Mapping[str, Any]:
        if logical_id not in self._resources:
            raise UnresolvableTemplate(f"no resource {logical_id} in the template")
        resource: Mapping[str, Any] = self._resources[logical_id]
        return resource

    def name_of(self, logical_id: str) -> str:
        resource = self._resource(logical_id)
        bound = self._bound.get(logical_id)
        if bound is not None:
            return bound.rsplit(":", 1)[-1] if resource["Type"] in _REF_IS_ARN else bound
        named = resource.get("Properties", {}).get(_NAME_PROPERTY.get(resource["Type"], ""))
        # Unnamed and never addressed by a handler: a stand-in (lowercase, as a bucket name must be).
        return str(self.resolve(named)) if named is not None else logical_id.lower()

    def ref(self, name: str) -> str:
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self._parameters:
            return str(self._parameters[name].get("Default", name))
        resource_type = self._resource(name)["Type"]
        if resource_type in _REF_IS_ARN:
            return self.get_att(name, "Arn")
        if resource_type == "AWS::SQS::Queue":
            return f"https://sqs.{self._names.region}.amazonaws.com/{self._names.account}/{self.name_of(name)}"
        return self.name_of(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource_type = self._resource(logical_id)["Type"]
        if attribute in ("Arn", "TopicArn") and resource_type in _ARN_FORMAT:
            if resource_type in _REF_IS_ARN and logical_id in self._bound:
                return self._bound[logical_id]
            return _ARN_FORMAT[resource_type].format(partition=self._names.partition, region=self._names.region,
                                                     account=self._names.account, name=self.name_of(logical_id))
        if attribute in ("QueueName", "TopicName", "KeyId"):
            return self.name_of(logical_id)
        raise UnresolvableTemplate(f"Fn::GetAtt {logical_id}.{attribute} ({resource_type})")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not (set(value) == {"Ref"} or next(iter(value)).startswith("Fn::")):
            return {key: self.resolve(item) for key, item in value.items()}
        (function, argument), = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.get_att(logical_id, attribute)
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self.resolve(part)) for part in self.resolve(parts))
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self._sub(text, variables)
        if function == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if function == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        raise UnresolvableTemplate(f"intrinsic {function} is not resolved by the IAM harness")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _managed_policy(arn: str) -> list[Statement]:
    name = arn.split(":policy/", 1)[-1]
    if name not in AWS_MANAGED_POLICIES:
        raise UnresolvableTemplate(f"managed policy {arn}: add its document to AWS_MANAGED_POLICIES")
    return AWS_MANAGED_POLICIES[name]


def _role_statements(resources: Mapping[str, Any], role_id: str, resolver: Resolver) -> list[Statement]:
    role = resources[role_id]["Properties"]
    statements: list[Statement] = []
    for policy in role.get("Policies", []):
        statements += resolver.resolve(policy["PolicyDocument"])["Statement"]
    for arn in resolver.resolve(role.get("ManagedPolicyArns", [])):
        statements += _managed_policy(arn)
    for resource in resources.values():
        attached = {"Ref": role_id} in resource.get("Properties", {}).get("Roles", [])
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and attached:
            statements += resolver.resolve(resource["Properties"]["PolicyDocument"])["Statement"]
    return statements


def role_statements(template: Mapping[str, Any], role_id: str, names: EmbeddedNames) -> tuple[Statement, ...]:
    """Every identity policy statement of the role `role_id`, resolved: how a role no function runs as (a state
    machine's) is checked."""
    return tuple(_role_statements(template["Resources"], role_id, Resolver(template, names)))


_RESOURCE_POLICIES = ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")


def resolve_template(template: Mapping[str, Any], names: EmbeddedNames) -> ResolvedTemplate:
    """Every function's role, the resource and key policies, and the encryption of buckets and topics."""
    resolver = Resolver(template, names)
    resources: Mapping[str, Any] = template["Resources"]
    roles = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            properties = resource["Properties"]
            role_id = properties["Role"]["Fn::GetAtt"][0]
            roles[properties["Handler"]] = FunctionRole(
                handler=properties["Handler"], function_id=logical_id, role_arn=resolver.get_att(role_id, "Arn"),
                statements=tuple(_role_statements(resources, role_id, resolver)))
    resource_statements = tuple(
        statement for resource in resources.values() if resource["Type"] in _RESOURCE_POLICIES
        for statement in resolver.resolve(resource["Properties"]["PolicyDocument"])["Statement"])
    key_policies = {resolver.get_att(logical_id, "Arn"): tuple(resolver.resolve(resource["Properties"]["KeyPolicy"])
                                                                ["Statement"])
                    for logical_id, resource in resources.items() if resource["Type"] == "AWS::KMS::Key"}
    bucket_keys, topic_keys = {}, {}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::S3::Bucket":
            for rule in properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                default = rule.get("ServerSideEncryptionByDefault", {})
                if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get("KMSMasterKeyID"):
                    bucket_keys[resolver.ref(logical_id)] = str(resolver.resolve(default["KMSMasterKeyID"]))
        if resource["Type"] == "AWS::SNS::Topic" and properties.get("KmsMasterKeyId"):
            key = str(resolver.resolve(properties["KmsMasterKeyId"]))
            if key.startswith("arn:"):  # an AWS managed key ("alias/aws/sns") needs no permission of the caller
                topic_keys[resolver.ref(logical_id)] = key
    facts = WorldFacts(account=names.account, partition=names.partition, bucket_keys=bucket_keys, topic_keys=topic_keys)
    return ResolvedTemplate(roles=roles, resource_statements=resource_statements, key_policies=key_policies,
                            facts=facts)
