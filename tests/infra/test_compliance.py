"""cdk-nag, cfn-lint, and a synth that needs neither Docker nor network."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]  # cfn-lint ships no type information

from stacks.function_asset import RUNTIME_PYTHON
from tests.infra.support import Synthesized

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# The app as cdk.json describes it, and with every optional setting used (operators, restore targets, roles
# to pass), which adds permissions and wildcards of its own.
APPS = ["synth", "tuned"]


# Both stacks of the app: the controller in the primary region and the standby in the secondary.
STACKS = ["controller", "standby"]


def _stack(synth: Synthesized, which: str) -> cdk.Stack:
    return synth.stack if which == "controller" else synth.standby_stack


@pytest.mark.parametrize("which", STACKS)
@pytest.mark.parametrize("fixture", APPS)
def test_cdk_nag_finds_no_unsuppressed_error_or_warning(fixture: str, which: str, request):
    # Given the app with AwsSolutionsChecks applied / When it is synthesized
    synth: Synthesized = request.getfixturevalue(fixture)
    annotations = Annotations.from_stack(_stack(synth, which))
    # Then no AwsSolutions rule reports an error or a warning, and nothing else errs either
    assert annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*")) == []
    assert annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*")) == []
    assert annotations.find_error("*", Match.any_value()) == []


def _suppressions(synth: Synthesized, which: str | None = None) -> list[dict]:
    """The cdk-nag suppressions of one stack, or of both."""
    resources = {"controller": synth.resources, "standby": synth.standby_resources}
    return [
        rule
        for stack in ([which] if which else STACKS)
        for resource in resources[stack].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]


@pytest.mark.parametrize("which", STACKS)
@pytest.mark.parametrize("fixture", APPS)
def test_every_suppression_is_narrow_and_explained(fixture: str, which: str, request):
    # Given every cdk-nag suppression in the template
    suppressions = _suppressions(request.getfixturevalue(fixture), which)
    assert suppressions
    for suppression in suppressions:
        # Then it says why, specifically
        assert len(suppression["reason"]) >= 60, suppression
        # And a wildcard suppression names the wildcards it allows, never all of them
        if suppression["id"] == "AwsSolutions-IAM5":
            assert suppression.get("applies_to"), suppression


def test_suppressed_rules_are_only_the_ones_accounted_for(synth: Synthesized):
    # Given the suppressions / Then they are the dead-letter queue's own DLQ, the unavoidable IAM wildcards, and
    # the runtime one behind the newest (the asset's bytecode is compiled by a local CPython of its version)
    assert {suppression["id"] for suppression in _suppressions(synth)} == {
        "AwsSolutions-SQS3",
        "AwsSolutions-IAM5",
        "AwsSolutions-L1",
    }


@pytest.fixture(scope="module")
def assembly(synth: Synthesized):
    return synth.app.synth()


@pytest.fixture(scope="module")
def tuned_assembly(tuned: Synthesized):
    return tuned.app.synth()


@pytest.mark.parametrize("which", STACKS)
@pytest.mark.parametrize("fixture", APPS)
def test_every_suppression_suppresses_a_finding(fixture: str, which: str, request):
    # Given cdk-nag's report of the synthesized stack
    synth: Synthesized = request.getfixturevalue(fixture)
    assembly = request.getfixturevalue("assembly" if fixture == "synth" else "tuned_assembly")
    (report_path,) = Path(assembly.directory).glob(f"AwsSolutions-*{_stack(synth, which).stack_name}-NagReport.csv")
    with report_path.open() as report:
        suppressed = [row for row in csv.DictReader(report) if row["Compliance"] == "Suppressed"]
    # Then each suppression (rule and reason) answers at least one finding: none is left over from code since
    # changed, claiming an exception nothing needs
    for suppression in _suppressions(synth, which):
        assert any(
            row["Rule ID"] == suppression["id"] and row["Exception Reason"].endswith(suppression["reason"])
            for row in suppressed
        ), suppression


@pytest.mark.parametrize("assembly_fixture", ["assembly", "tuned_assembly"])
def test_cfn_lint_reports_no_error_in_any_template(assembly_fixture: str, request):
    # Given every synthesized template
    stacks = request.getfixturevalue(assembly_fixture).stacks_recursively
    assert stacks
    for stack in stacks:
        # When cfn-lint checks it for the stack's region
        matches = lint_file(Path(stack.template_full_path), config=ManualArgs(regions=[stack.environment.region]))
        # Then it finds no error, and not even a warning
        assert [str(match) for match in matches] == [], stack.stack_name


def test_synth_needs_no_docker_image_no_bundling_and_no_lookup(assembly):
    # Given the cloud assembly's two stacks
    stacks = assembly.stacks_recursively
    assert len(stacks) == 2
    for stack in stacks:
        assets = json.loads(Path(stack.template_full_path).with_name(f"{stack.stack_name}.assets.json").read_text())
        # Then nothing is built in Docker: the only file asset besides the template is the functions' asset, zipped
        assert assets["dockerImages"] == {}
        code = [asset for asset in assets["files"].values() if asset["source"]["packaging"] == "zip"]
        assert len(code) == 1
        copied = Path(assembly.directory) / code[0]["source"]["path"]
        assert (copied / "drcore" / "core" / "config.py").is_file()
        # with bytecode for the runtime only (tests/infra/test_function_asset.py checks it further)
        assert {pyc.suffixes[0] for pyc in copied.rglob("*.pyc")} == {".cpython-{}{}".format(*RUNTIME_PYTHON)}
    # And no context lookup was needed: the Powertools layer is resolved by CloudFormation at deploy time
    manifest = json.loads((Path(assembly.directory) / "manifest.json").read_text())
    assert "missing" not in manifest


def test_python_app_py_synthesizes_without_docker_or_credentials(tmp_path: Path):
    # Given no Docker binary, no AWS credentials and unusable proxies
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) and key not in {"CDK_CONTEXT_JSON"}
    }
    environment |= {
        "CDK_OUTDIR": str(tmp_path),
        "CDK_DOCKER": "/bin/false",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    # When `python app.py` runs as the CDK CLI would run it
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    # Then it writes the controller's template and the standby's
    assert result.returncode == 0, result.stderr
    for stack in ("ApiladosDrController", "ApiladosDrStandby"):
        template = json.loads((tmp_path / f"{stack}.template.json").read_text())
        assert template["Resources"]


def test_python_app_py_fails_with_the_settings_problem(tmp_path: Path):
    # Given the CDK CLI passes a bad setting as context
    environment = dict(os.environ) | {
        "CDK_OUTDIR": str(tmp_path),
        "CDK_CONTEXT_JSON": json.dumps({"dr": {"bake_minutes": -5}}),
    }
    # When `python app.py` runs
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    # Then it exits non-zero with the key and the problem, not a stack trace
    assert result.returncode != 0
    assert "dr.bake_minutes: Input should be greater than or equal to 0" in result.stderr
    assert "Traceback" not in result.stderr
