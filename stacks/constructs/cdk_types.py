"""Narrowing what jsii types as optional where the controller's own constructs always have a value: the
CloudFormation resource behind a construct, and the role of a function created with one."""

from __future__ import annotations

from typing import TypeVar

from aws_cdk import CfnElement
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

Resource = TypeVar("Resource", bound=CfnElement)


def default_resource(construct: IConstruct, resource_type: type[Resource]) -> Resource:
    """The CloudFormation resource a construct wraps (`node.default_child`, which jsii types as optional because
    a construct need not wrap one), checked to be a `resource_type`."""
    child = construct.node.default_child
    if not isinstance(child, resource_type):
        raise TypeError(f"{construct.node.path} wraps {type(child).__name__}, not a {resource_type.__name__}")
    return child


def role_of(function: lambda_.IFunction) -> iam.IRole:
    """A function's execution role. jsii types it as optional because an imported function may not know its
    role; every controller function is created with its own (ControllerFunctions.add)."""
    role = function.role
    if role is None:
        raise TypeError(f"{function.node.path} has no execution role")
    return role
