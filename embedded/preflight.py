"""`make preflight`: what a deploy and the controller will need, checked read-only against the configured account.

Reads cdk.json's "dr" settings (stacks.settings), then runs the recovery function's own checks
(drcore.restore.preflight) with the operator's credentials (the default boto3 chain: AWS_PROFILE, ...) in
the primary region. The alert topics are found among the deployed controller stack's resources; before the
first deploy that check says so. Prints one line per check, writes the whole answer as JSON with
`--report`, and exits non-zero unless every check passes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from drcore.aws.errors import stack_does_not_exist
from drcore.restore.preflight import Preflight, PreflightSettings, PreflightTarget
from stacks.constructs.controller_functions import RUNTIME, powertools_layer_parameter, powertools_version
from stacks.constructs.restore_grants import pipeline_stack_roles
from stacks.settings import CONTEXT_KEY, Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def deployed_topics(cloudformation: Any, controller_stack: str) -> tuple[str, ...] | None:
    """The controller stack's SNS topics (their physical ids are their ARNs); None if it is not deployed."""
    try:
        pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=controller_stack)
        return tuple(resource["PhysicalResourceId"] for page in pages for resource in page["StackResourceSummaries"]
                     if resource["ResourceType"] == "AWS::SNS::Topic")
    except ClientError as error:
        if stack_does_not_exist(error):
            return None
        raise


def run_preflight(settings: Settings, session: boto3.session.Session) -> dict[str, Any]:
    patterns = settings.recovery.function_role_arns
    if patterns is None:  # the default: the roles the pipeline stack creates in the operator's account
        caller = session.client("sts").get_caller_identity()
        partition = caller["Arn"].split(":")[1]
        patterns = (f"arn:{partition}:iam::{caller['Account']}:role/{pipeline_stack_roles(settings)}",)
    own = PreflightSettings(layer_parameter=powertools_layer_parameter(powertools_version()), runtime=RUNTIME.name,
                            function_role_patterns=patterns,
                            stack_role_arn=settings.recovery.stack_role_arn)
    topics = deployed_topics(session.client("cloudformation"), settings.controller_stack)
    target = PreflightTarget(own, settings.protected_function, settings.live_alias, settings.stable_alias,
                             settings.data_bucket, settings.pipeline_stack, topics)
    # The stubs type a client by its service's literal name; the checks ask for theirs by name.
    return Preflight(lambda service: session.client(service), target).run()  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--region", help="the region to check (default: dr.primary_region in cdk.json)")
    parser.add_argument("--report", type=Path, help="also write the answer as JSON here")
    args = parser.parse_args(argv)
    context = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"].get(CONTEXT_KEY)
    settings = Settings.from_context(context)
    region = args.region or settings.primary_region
    answer = run_preflight(settings, boto3.session.Session(region_name=region))
    for check in answer["checks"]:
        print(f"{'PASS' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}")
    print(f"preflight in {region}: {'ok' if answer['ok'] else 'NOT OK'}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"region": region, **answer}, indent=2))
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
