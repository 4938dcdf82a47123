"""The boto3 clients every function builds: one retry and timeout policy, and the S3 client of snapshots and
restores. Clients are built when first used, never at import time; botocore picks up AWS_ENDPOINT_URL, which
is how the embedded drill points the same code at a local moto server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from functools import cache, partial
from typing import Any

import boto3
import botocore
import botocore.session
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.utils import parse_timestamp

logger = Logger(child=True)

# Standard retries back off on throttling; a short connect timeout keeps a rollback from hanging on
# one bad connection while Lambda's own retry and the tick remain as the safety net.
AWS_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
# A single-attempt client's share of its time for connecting: a healthy endpoint connects in milliseconds.
SINGLE_ATTEMPT_CONNECT_SECONDS = 1.0

ClientFactory = Callable[[str], Any]

# The services the functions call. The asset ships botocore's models of these and no others
# (stacks/function_asset.py), so the factory refuses any other: a new call fails in the tests, not in Lambda.
SDK_SERVICES = frozenset(
    {"cloudformation", "cloudtrail", "cloudwatch", "dynamodb", "lambda", "logs", "s3", "sns", "sqs", "ssm",
     "stepfunctions"}
)


class ServiceNotBundled(ValueError):
    """A client was asked for a service whose model the asset does not ship."""


def _require_bundled(service: str) -> None:
    if service not in SDK_SERVICES:
        raise ServiceNotBundled(f"{service} is not in drcore.aws.clients.SDK_SERVICES: the asset lacks its model")


class _BuiltOnFirstUse:
    """Stands for a client until its first use, then passes every attribute to it."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:  # only asked for what the stand-in itself lacks: the client's own
        if self._client is None:
            self._client = self._build()
        return getattr(self._client, name)


def client_factory(region: str | None = None) -> ClientFactory:
    """Clients of one session, each with the shared retry policy: one per service however often asked for
    (botocore clients are thread-safe), each built on its first use. Building one costs a cold start tens of
    milliseconds (loading its service's model), so a watcher starting cold to roll back builds the clients of
    its claim and its flip first, and those of its alert and gauge once LIVE has flipped. A boto3 session is
    not thread-safe: builds take turns. The clients act in `region`, the function's own when None (another
    region's resources, such as the replica bucket, are addressed through a factory of their own)."""
    log_sdk_version()
    session = boto3.session.Session(region_name=region)
    turns = threading.Lock()
    built: dict[str, Any] = {}

    def build(service: str) -> Any:
        with turns:
            if service not in built:
                # The stubs type a client by its service's literal name; this factory serves any name.
                built[service] = session.client(service, config=AWS_CLIENT_CONFIG)  # type: ignore[call-overload]
            return built[service]

    @cache
    def client(service: str) -> Any:
        _require_bundled(service)
        return _BuiltOnFirstUse(partial(build, service))

    return client


@cache
def log_sdk_version() -> None:
    """Once per execution environment: which SDK this code runs with, and from where (the asset's pinned one
    under /var/task, unless the asset was built wrong)."""
    logger.info("AWS SDK loaded", extra={"boto3_version": boto3.__version__,
                                         "botocore_version": botocore.__version__,
                                         "botocore_path": str(botocore.__file__)})


def single_attempt_clients(service: str, region: str | None = None) -> Callable[[int], Any]:
    """Clients of `service` for a call whose slowness is itself the answer (the health probe's invoke of the
    protected function), by the whole seconds they may take: one attempt, since a retry would only spend the time
    the rest of the invocation needs, and a connect and a read timeout that together stay within those seconds.
    Built on first use per number of seconds, in a session of their own (the shared one takes turns building), acting
    in `region` (the function's own when None: another region's function is probed through a factory of its own)."""
    _require_bundled(service)
    session = boto3.session.Session(region_name=region)
    turns = threading.Lock()
    built: dict[int, Any] = {}

    def within(seconds: int) -> Any:
        with turns:
            if seconds not in built:
                connect = min(SINGLE_ATTEMPT_CONNECT_SECONDS, seconds / 4)
                config = Config(retries={"mode": "standard", "total_max_attempts": 1},
                                connect_timeout=connect, read_timeout=seconds - connect)
                built[seconds] = session.client(service, config=config)  # type: ignore[call-overload]  # as above
            return built[seconds]

    return within


def bounded_client_factory(region: str, seconds: int) -> ClientFactory:
    """Clients acting in `region` whose every call gives up within about `seconds`: one attempt, a connect and a
    read timeout within them. For another region that may be down (a failover reads the primary): its failure is
    an answer to report, and waiting out the standard retries against a dead endpoint would spend the minutes the
    failover has."""
    session = boto3.session.Session(region_name=region)
    connect = min(SINGLE_ATTEMPT_CONNECT_SECONDS, seconds / 4)
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=connect,
                    read_timeout=seconds - connect)
    turns = threading.Lock()

    def build(service: str) -> Any:
        with turns:
            return session.client(service, config=config)  # type: ignore[call-overload]  # as in client_factory

    @cache
    def client(service: str) -> Any:
        _require_bundled(service)
        return _BuiltOnFirstUse(partial(build, service))

    return client


def _iso_timestamp(value: Any) -> datetime:
    """botocore's default timestamp parser goes through dateutil: about 37 µs a timestamp, a third of the
    time a listing page of 1,000 versions takes to parse, on a snapshot's critical path. S3's ISO 8601
    timestamps parse with the standard library in well under a microsecond; anything else goes to
    botocore's own parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


def s3_client(concurrency: int, region: str | None = None) -> Any:
    """The S3 client of snapshots and restores: a connection per concurrent copy (or copies would queue for
    the pool), and listings parsed without dateutil; acting in `region` (the function's own when None)."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_iso_timestamp)
    config = AWS_CLIENT_CONFIG.merge(Config(max_pool_connections=concurrency + 4))
    return boto3.session.Session(botocore_session=session, region_name=region).client("s3", config=config)
