"""The embedded world the drill and the benchmarks run in: moto with its gaps filled, served on a
loopback port, and this process's environment pointed at it (restored afterwards).

One endpoint serves every region, as moto keeps a backend per region: the sample system's secondary region
(embedded/sample_regions.py) lives beside the primary, and `behaviour.invocations` records which region's
pipeline processed which upload (embedded/s3_notifications.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from embedded.moto_gaps import VersionBehaviour, moto_gaps_filled
from embedded.server import RequestCounter, embedded_aws

REGION = "us-east-1"


@dataclass(frozen=True)
class EmbeddedWorld:
    endpoint: str
    counter: RequestCounter
    behaviour: VersionBehaviour


@contextmanager
def embedded_world() -> Iterator[EmbeddedWorld]:
    with ExitStack() as stack:
        behaviour = stack.enter_context(moto_gaps_filled())
        endpoint, counter = stack.enter_context(embedded_aws())
        saved = dict(os.environ)

        def restore_environment() -> None:
            os.environ.clear()
            os.environ.update(saved)

        stack.callback(restore_environment)
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "drill",
                           "AWS_SECRET_ACCESS_KEY": "drill", "AWS_DEFAULT_REGION": REGION,
                           "POWERTOOLS_LOG_LEVEL": "WARNING"})
        yield EmbeddedWorld(endpoint, counter, behaviour)
