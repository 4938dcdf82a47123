"""The functions' asset is what the tests ran: the pinned SDK, only the called services' models, and bytecode the
runtime's Python uses as it is (issue 11, item 8; issue 9, the cold imports)."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from drcore.aws.clients import SDK_SERVICES, ServiceNotBundled, client_factory, log_sdk_version
from stacks.constructs.controller_functions import RUNTIME
from stacks.function_asset import (
    RUNTIME_PYTHON,
    SDK_REQUIREMENTS,
    function_asset,
    runtime_python,
)
from tests.infra.support import Synthesized


def sdk_pins() -> dict[str, str]:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", SDK_REQUIREMENTS.read_text(), re.MULTILINE))
    assert {"boto3", "botocore"} <= set(pins), "requirements-lambda.txt must pin boto3 and botocore"
    return pins


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@pytest.fixture(scope="module")
def asset() -> Path:
    return function_asset()


def test_the_asset_ships_exactly_the_pinned_sdk_the_tests_run_with(asset: Path) -> None:
    shipped = {}
    for record in asset.glob("*.dist-info/METADATA"):
        fields = dict(re.findall(r"^(Name|Version): (\S+)$", record.read_text(), re.MULTILINE))
        shipped[normalized(fields["Name"])] = fields["Version"]
    pins = {normalized(name): version for name, version in sdk_pins().items()}
    assert shipped == pins
    # ...and the venv that ran the tests installed the same pins.
    assert {name: metadata.version(name) for name in pins} == pins


def test_the_runtime_python_loads_the_sdk_from_the_asset(asset: Path) -> None:
    probe = ("import json, boto3, botocore; "
             "print(json.dumps([boto3.__version__, botocore.__version__, botocore.__file__]))")
    answer = subprocess.run([runtime_python(), "-s", "-c", probe], env={"PYTHONPATH": str(asset)},
                            capture_output=True, text=True, check=True)
    boto3_version, botocore_version, botocore_file = json.loads(answer.stdout)
    assert (boto3_version, botocore_version) == (sdk_pins()["boto3"], sdk_pins()["botocore"])
    assert Path(botocore_file).is_relative_to(asset)


def test_every_module_has_bytecode_the_runtime_uses_without_recompiling(asset: Path) -> None:
    """Each .py has a pyc for the runtime's Python (its magic number), hash-based and unchecked (flags 1: used
    whatever the zip's timestamps), whose hash is that of the source shipped beside it; no other pyc ships."""
    check = r"""
import importlib.util, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
bad = []
sources = list(root.rglob("*.py"))
for source in sources:
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    if not cached.exists():
        bad.append(f"no bytecode: {source}")
        continue
    header = cached.read_bytes()[:16]
    if header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little") != 1 \
            or header[8:16] != importlib.util.source_hash(source.read_bytes()):
        bad.append(f"stale or checked bytecode: {cached}")
print(json.dumps({"sources": len(sources), "bad": bad[:10]}))
"""
    answer = subprocess.run([runtime_python(), "-s", "-c", check, str(asset)], capture_output=True, text=True,
                            check=True)
    result = json.loads(answer.stdout)
    assert result["sources"] > 200 and result["bad"] == []
    tag = f"cpython-{RUNTIME_PYTHON[0]}{RUNTIME_PYTHON[1]}"
    assert [pyc for pyc in asset.rglob("*.pyc") if f".{tag}." not in pyc.name] == []


def test_the_asset_keeps_the_models_of_the_called_services_only(asset: Path) -> None:
    models = {entry.name for entry in (asset / "botocore" / "data").iterdir() if entry.is_dir()}
    assert models == SDK_SERVICES
    assert (asset / "botocore" / "data" / "endpoints.json").exists()


def test_the_client_factory_refuses_a_service_the_asset_does_not_ship() -> None:
    clients = client_factory()
    with pytest.raises(ServiceNotBundled, match="ec2"):
        clients("ec2")
    assert clients("s3") is clients("s3")


def test_every_function_runs_the_runtime_the_bytecode_was_compiled_for(synth: Synthesized, asset: Path) -> None:
    assert RUNTIME.name == "python{}.{}".format(*RUNTIME_PYTHON)
    functions = [resource for resource in synth.resources.values() if resource["Type"] == "AWS::Lambda::Function"]
    controller = [function for function in functions if "S3Key" in function["Properties"]["Code"]]
    assert len(controller) >= 5
    assert {function["Properties"]["Runtime"] for function in controller} == {RUNTIME.name}
    asset_keys = {function["Properties"]["Code"]["S3Key"] for function in controller}
    assert len(asset_keys) == 1  # one asset for all of them


def test_a_cold_start_logs_the_sdk_it_runs_with(caplog: pytest.LogCaptureFixture) -> None:
    log_sdk_version.cache_clear()
    with caplog.at_level("INFO"):
        client_factory()
        client_factory()
    records = [record for record in caplog.records if record.getMessage() == "AWS SDK loaded"]
    assert len(records) == 1  # once per execution environment
    logged = records[0].__dict__
    assert (logged["boto3_version"], logged["botocore_version"]) == (sdk_pins()["boto3"], sdk_pins()["botocore"])
