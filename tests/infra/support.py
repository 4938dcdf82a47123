"""Readable views of synthesized CloudFormation."""

from __future__ import annotations

from typing import Any

TOPIC_KEY = "Encrypts the DR controller's alert and emergency topics"


def arn_text(value: Any) -> Any:
    """An ARN built with Fn::Join as one string, pseudo parameters as ${AWS::...}, e.g.
    "arn:aws:lambda:us-east-1:${AWS::AccountId}:function:apilados-pipeline-ingest:LIVE"."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(arn_text(part) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"].startswith("AWS::"):
        return "${" + value["Ref"] + "}"
    return value


def rendered(value: Any) -> Any:
    """Any value with its intrinsics written out as text: Fn::Join joined, {"Ref": X} as "${X}" and
    {"Fn::GetAtt": [X, A]} as "${X.A}", e.g. a dashboard body that names alarm ARNs."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(str(rendered(part)) for part in parts)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if isinstance(value, dict):
        return {key: rendered(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rendered(item) for item in value]
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def logical_id(resources: dict[str, dict[str, Any]], resource_type: str, **properties: Any) -> str:
    """The one resource of `resource_type` whose properties include `properties`."""
    matches = [
        name
        for name, resource in resources.items()
        if resource["Type"] == resource_type
        and all(resource["Properties"].get(key) == value for key, value in properties.items())
    ]
    assert len(matches) == 1, f"expected one {resource_type} with {properties}, found {matches}"
    return matches[0]


def role_statements(resources: dict[str, dict[str, Any]], function_logical_id: str) -> list[dict[str, Any]]:
    """Every policy statement attached to the execution role of a function."""
    role = resources[function_logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    inline = resources[role]["Properties"].get("Policies", [])
    for policy in inline:
        statements += policy["PolicyDocument"]["Statement"]
    return statements


def statements_granting(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [statement for statement in statements if action in as_list(statement["Action"])]


def scratch_bucket_id(resources: dict[str, dict[str, Any]]) -> str:
    """The drills' scratch bucket: the one whose lifecycle expires drill copies."""
    matches = [name for name, resource in resources.items() if resource["Type"] == "AWS::S3::Bucket"
               and any(rule.get("Id") == "ExpireDrillCopies"
                       for rule in resource["Properties"].get("LifecycleConfiguration", {}).get("Rules", []))]
    assert len(matches) == 1, matches
    return matches[0]
