"""The functions' code asset as Lambda runs it: `functions/`, the AWS SDK pinned in requirements-lambda.txt,
and the bytecode of both compiled by the runtime's own Python.

Why each part:
- The SDK ships with the code so that Lambda runs the botocore the tests ran (the runtime's own may predate
  calls the functions make, such as conditional copies), and only the models of the services the functions
  call (drcore.aws.clients.SDK_SERVICES): 4 MB instead of 32 MB to download at a cold start.
- /var/task is read-only: Python cannot cache bytecode there, so source shipped without it compiles at every
  cold start (botocore alone adds about 240 ms). The bytecode is compiled by a CPython of the runtime's minor
  version, in `unchecked-hash` mode, so it is used whatever timestamps the zip gives the sources.

Built without Docker: pip installs the pinned pure-Python wheels for the runtime's platform, a local CPython
of the runtime's version compiles. The result is kept under build/function-asset/<fingerprint>, so synthesizing
again (every infrastructure test does) rebuilds only when the code, the pins or this recipe change.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from drcore.aws.clients import SDK_SERVICES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_SOURCE = PROJECT_ROOT / "functions"
SDK_REQUIREMENTS = PROJECT_ROOT / "requirements-lambda.txt"
BUILD_ROOT = PROJECT_ROOT / "build" / "function-asset"
# The Lambda runtime's Python (stacks.constructs.controller_functions.RUNTIME is built from it) and the wheel
# platform of its arm64 architecture.
RUNTIME_PYTHON = (3, 13)
WHEEL_PLATFORM = "manylinux2014_aarch64"
# Set to a CPython of RUNTIME_PYTHON's version when none is found on PATH or under pyenv.
RUNTIME_PYTHON_VARIABLE = "LAMBDA_RUNTIME_PYTHON"
COMPLETE_MARKER = ".complete"
LAMBDA_TASK_ROOT = "/var/task"
# Bump when the recipe below changes what it builds from the same inputs.
RECIPE = "1"
# Caches of the local interpreters and tools, never shipped nor fingerprinted.
CACHE_FOLDERS = ("__pycache__", ".pytest_cache", ".mypy_cache")
_IGNORED = shutil.ignore_patterns(*CACHE_FOLDERS, "*.pyc")


class AssetBuildError(RuntimeError):
    """The asset cannot be built on this machine; the message says what is missing."""


def runtime_python() -> str:
    """A CPython of the runtime's minor version: $LAMBDA_RUNTIME_PYTHON, `python3.13` on PATH, or pyenv's."""
    wanted = "{}.{}".format(*RUNTIME_PYTHON)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [os.environ.get(RUNTIME_PYTHON_VARIABLE, ""), shutil.which(f"python{wanted}") or ""]
    candidates += sorted(glob.glob(str(pyenv_root / "versions" / f"{wanted}.*" / "bin" / f"python{wanted}")),
                         reverse=True)
    for candidate in filter(None, candidates):
        try:  # a pyenv shim is on PATH even where that version is not selected: ask the interpreter itself
            answer = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                    capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if answer.returncode == 0 and answer.stdout.strip() == str(RUNTIME_PYTHON):
            return candidate
    raise AssetBuildError(
        f"Compiling the functions' bytecode needs CPython {wanted}, the Lambda runtime's version, and none was "
        f"found: set {RUNTIME_PYTHON_VARIABLE} to one, or put python{wanted} on PATH (for example "
        f"`pyenv install {wanted}`)."
    )


def fingerprint() -> str:
    """What the asset is built from: our sources, the SDK pins, the services kept, and the recipe."""
    digest = hashlib.sha256(f"{RECIPE}|{RUNTIME_PYTHON}|{WHEEL_PLATFORM}|{sorted(SDK_SERVICES)}".encode())
    digest.update(SDK_REQUIREMENTS.read_bytes())
    for path in sorted(FUNCTIONS_SOURCE.rglob("*")):
        shipped = path.is_file() and path.suffix != ".pyc" and not set(path.parts) & set(CACHE_FOLDERS)
        if shipped:
            digest.update(str(path.relative_to(FUNCTIONS_SOURCE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def function_asset() -> Path:
    """The built asset's folder, built first if this fingerprint has not been built yet."""
    target = BUILD_ROOT / fingerprint()
    if (target / COMPLETE_MARKER).exists():
        return target
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=BUILD_ROOT))
    try:
        _build(staging / "asset")
        (staging / "asset" / COMPLETE_MARKER).touch()
        try:
            (staging / "asset").rename(target)
        except OSError:  # another process finished the same build first: theirs is as good as ours
            if not (target / COMPLETE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build(folder: Path) -> None:
    shutil.copytree(FUNCTIONS_SOURCE, folder, ignore=_IGNORED)
    _install_sdk(folder)
    _keep_only_called_services(folder / "botocore" / "data")
    _compile(folder)


def _install_sdk(folder: Path) -> None:
    """The pinned wheels for the runtime's platform; all are pure Python, so any host can install them."""
    # No bytecode from this (the venv's) Python: _compile writes the runtime's.
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--platform", WHEEL_PLATFORM,
               "--python-version", "{}.{}".format(*RUNTIME_PYTHON), "--target", str(folder),
               "--requirement", str(SDK_REQUIREMENTS)]
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        raise AssetBuildError(f"pip could not install {SDK_REQUIREMENTS.name} into the asset:\n{answer.stderr}")
    shutil.rmtree(folder / "bin", ignore_errors=True)  # console scripts Lambda never runs


def _keep_only_called_services(data: Path) -> None:
    """botocore's models of the services the functions call; the shared files (endpoints, partitions,
    retry and default configuration) stay."""
    missing = sorted(service for service in SDK_SERVICES if not (data / service).is_dir())
    if missing:
        raise AssetBuildError(f"botocore {SDK_REQUIREMENTS.name} pin has no model for {missing}")
    for entry in data.iterdir():
        if entry.is_dir() and entry.name not in SDK_SERVICES:
            shutil.rmtree(entry)


def _compile(folder: Path) -> None:
    # Tracebacks name the files where Lambda puts them, not where they were built.
    command = [runtime_python(), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
               "-s", str(folder), "-p", LAMBDA_TASK_ROOT, str(folder)]
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        raise AssetBuildError(f"compiling the asset failed:\n{answer.stdout}{answer.stderr}")
