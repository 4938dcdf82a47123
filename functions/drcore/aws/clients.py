"""The boto3 clients every function builds: one retry and timeout policy, and the S3 client of snapshots and
restores. Clients are built on a function's first invocation, never at import time; botocore picks up
AWS_ENDPOINT_URL, which is how the embedded drill points the same code at a local moto server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp

# Standard retries back off on throttling; a short connect timeout keeps a rollback from hanging on
# one bad connection while Lambda's own retry and the tick remain as the safety net.
AWS_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)

ClientFactory = Callable[[str], Any]


def client_factory() -> ClientFactory:
    """Clients of one session, each with the shared retry policy, one per service however often asked for:
    botocore clients are thread-safe, and building one costs a cold start 10-20 ms."""
    session = boto3.session.Session()
    return cache(lambda service: session.client(service, config=AWS_CLIENT_CONFIG))


def _iso_timestamp(value: Any) -> datetime:
    """botocore's default timestamp parser goes through dateutil: about 37 µs a timestamp, a third of the
    time a listing page of 1,000 versions takes to parse, on a snapshot's critical path. S3's ISO 8601
    timestamps parse with the standard library in well under a microsecond; anything else goes to
    botocore's own parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


def s3_client(concurrency: int) -> Any:
    """The S3 client of snapshots and restores: a connection per concurrent copy (or copies would queue for
    the pool), and listings parsed without dateutil."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_iso_timestamp)
    return boto3.session.Session(botocore_session=session).client("s3", config=AWS_CLIENT_CONFIG.merge(
        Config(max_pool_connections=concurrency + 4)))
