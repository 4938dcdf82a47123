"""Fixtures shared by the recovery tests."""

from __future__ import annotations

import boto3
import pytest

from embedded.sample_system import SampleSystem, add_buckets, add_controller_function
from tests.support import RECOVERY_FUNCTION


@pytest.fixture
def world(system: SampleSystem, monkeypatch: pytest.MonkeyPatch) -> SampleSystem:
    add_buckets(system, boto3.session.Session(region_name="us-east-1"), objects=20)
    system.clients["s3"].create_bucket(Bucket="apilados-scratch-restore")
    system.clients["s3"].put_bucket_versioning(Bucket="apilados-scratch-restore",
                                               VersioningConfiguration={"Status": "Enabled"})
    add_controller_function(system, RECOVERY_FUNCTION)
    environment = {**system.environment(), **system.backup_environment(),
                   "DR_RESTORE_TARGET_BUCKETS": "apilados-scratch-restore"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return system
