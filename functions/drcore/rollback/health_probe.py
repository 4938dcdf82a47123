"""The health probe: health_watcher's tick asks what LIVE serves to answer the runbook's health check, and
publishes the answer for the health-probe alarm.

Two things set it apart from the rest of the tick:

- It is counted apart. It reads the LIVE alias and invokes each version LIVE routes to (a canary's and STABLE's)
  by its number, never through the alias. Lambda publishes an invocation through an alias under that alias
  (dimension Resource `<function>:<alias>`, with ExecutedVersion) and an invocation of a version under the
  version (Resource `<function>:<version>`): the bake's invocation count and the regression check's p99 read the
  alias's (drcore.aws.metrics.FunctionMetrics), so a probe never counts as a candidate's traffic and its duration
  never moves the p99. Subtracting the probes sent from the alias's count would fix the count, but nothing takes
  their durations back out of a percentile.
- It is bounded. The invocation goes through a client of its own that makes one attempt, with a connect and read
  timeout of the configured seconds, cut down to what the watcher's invocation has left once TICK_RESERVE_SECONDS
  are kept for the rest of the tick. A LIVE that answers slower, or never, is a failed probe (HealthProbeFailed
  1, HealthProbeLatency the time waited), and reconcile still runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from drcore.aws.aliases import AliasGateway, NoAnswer
from drcore.core.controller_settings import TICK_RESERVE_SECONDS
from drcore.core.metric_names import (
    ALIAS_DIMENSION,
    FUNCTION_DIMENSION,
    HEALTH_PROBE_LATENCY_METRIC,
    HEALTH_PROBE_METRIC,
)
from drcore.rollback.outcome import Outcome

# A child of the handler's Powertools logger: the same structured JSON, the same service.
logger = Logger(child=True)

HEALTH_PROBE_PAYLOAD = {"test": "health-check"}  # the runbook's health-check event

# An invoker of the protected function whose client gives up after the given whole seconds.
BoundedInvoker = Callable[[int], AliasGateway]


def probe_seconds(configured: int, remaining_ms: float | None, reserve_seconds: int = TICK_RESERVE_SECONDS) -> int:
    """The whole seconds the probe may wait for LIVE: the configured timeout, or what the invocation has left once
    the rest of the tick's reserve is kept, if that is less (0: not even a second is left to probe in)."""
    if remaining_ms is None:
        return configured
    return max(0, min(configured, int(remaining_ms / 1000 - reserve_seconds)))


@dataclass(frozen=True)
class VersionAnswer:
    """How one version LIVE routes to answered the health check."""

    version: str
    failure: str | None
    latency_ms: float


def probe_version(invoker: BoundedInvoker, version: str, seconds: int) -> VersionAnswer:
    """Invoke `version` with the health-check payload through a client that gives up after `seconds`: a function
    error, a status other than 200, no answer in time or no answer at all is a failure, never an exception."""
    started = time.monotonic()
    failure: str | None
    try:
        response = invoker(seconds).invoke(version, json.dumps(HEALTH_PROBE_PAYLOAD).encode())
        failure = (f"function error ({response['function_error']})" if response["function_error"]
                   else None if response["status_code"] == 200 else f"status {response['status_code']}")
    except NoAnswer as error:
        failure = f"timeout: no answer within {seconds}s ({error})"
    except Exception as error:  # noqa: BLE001  # any failure to get an answer is a failed probe, not a crashed tick
        failure = f"{type(error).__name__}: {error}"
    return VersionAnswer(version, failure, (time.monotonic() - started) * 1000)


@dataclass(frozen=True)
class ProbeAnswers:
    """What one probe found: each version's answer and the seconds it was given, or why nothing was probed."""

    answers: list[VersionAnswer]
    seconds: int
    not_probed: str | None = None

    @property
    def failure(self) -> str | None:
        """The failed versions and why, or None when every version answered."""
        return "; ".join(f"version {answer.version}: {answer.failure}"
                         for answer in self.answers if answer.failure is not None) or None


class HealthProbe:
    """Invokes each version LIVE serves with the runbook's health-check payload and publishes the outcome.

    Unlike the runbook's `aws lambda invoke` exit-code test, a function error counts as a failure, and so does no
    answer within the timeout.
    """

    def __init__(self, aliases: AliasGateway, invoker: BoundedInvoker, cloudwatch_client: Any, namespace: str,
                 function_name: str, alias: str, timeout_seconds: int) -> None:
        self._aliases = aliases
        self._invoker = invoker
        self._cloudwatch = cloudwatch_client
        self._namespace = namespace
        self._function = function_name
        self._alias = alias
        self._timeout_seconds = timeout_seconds

    def run(self, remaining_ms: float | None = None) -> Outcome:
        """Probe what LIVE serves within the time the invocation can spare (`remaining_ms`: what it has left), and
        publish the answer for the health-probe alarm."""
        probed = self.probe(remaining_ms)
        if probed.not_probed is not None:
            # Publishing nothing leaves the alarm's datapoint missing: neither a healthy LIVE nor a failed one.
            logger.warning("no time left to probe", extra={"remaining_ms": remaining_ms})
            return Outcome("not_probed", probed.not_probed)
        return self._publish(probed.answers, probed.seconds)

    def probe(self, remaining_ms: float | None = None) -> ProbeAnswers:
        """How each version LIVE serves answered, published nowhere: the post-recovery validation asks this
        (drcore.restore.validation_function) without feeding the alarm that rolls LIVE back."""
        started = time.monotonic()
        try:
            live = self._aliases.read(self._alias)
        except Exception as error:  # noqa: BLE001  # no version to probe is a failed probe, not a crashed tick
            return ProbeAnswers([VersionAnswer(self._alias, f"reading {self._alias}: {type(error).__name__}: "
                                               f"{error}", (time.monotonic() - started) * 1000)], 0)
        if live is None:
            return ProbeAnswers([VersionAnswer(self._alias, f"alias {self._alias} does not exist", 0.0)], 0)
        spent_ms = (time.monotonic() - started) * 1000
        seconds = probe_seconds(self._timeout_seconds, None if remaining_ms is None else remaining_ms - spent_ms)
        if seconds < 1:
            return ProbeAnswers([], 0, f"the invocation has too little time left to probe {self._alias} and keep "
                                f"{TICK_RESERVE_SECONDS}s for the rest of the tick")
        versions = [live.version, *live.weights]
        if len(versions) == 1:
            answers = [self._probe(versions[0], seconds)]
        else:  # a canary: its version and STABLE's, side by side, so both fit in the same seconds
            with ThreadPoolExecutor(max_workers=len(versions), thread_name_prefix="health-probe") as pool:
                answers = list(pool.map(lambda version: self._probe(version, seconds), versions))
        return ProbeAnswers(answers, seconds)

    def _probe(self, version: str, seconds: int) -> VersionAnswer:
        return probe_version(self._invoker, version, seconds)

    def _publish(self, answers: list[VersionAnswer], seconds: int) -> Outcome:
        failed = [answer for answer in answers if answer.failure is not None]
        latency_ms = max(answer.latency_ms for answer in answers)
        dimensions = [
            {"Name": FUNCTION_DIMENSION, "Value": self._function},
            {"Name": ALIAS_DIMENSION, "Value": self._alias},
        ]
        self._cloudwatch.put_metric_data(
            Namespace=self._namespace,
            MetricData=[
                {"MetricName": HEALTH_PROBE_METRIC, "Dimensions": dimensions, "Value": 1 if failed else 0,
                 "Unit": "Count"},
                {"MetricName": HEALTH_PROBE_LATENCY_METRIC, "Dimensions": dimensions, "Value": latency_ms,
                 "Unit": "Milliseconds"},
            ],
        )
        failure = ProbeAnswers(answers, seconds).failure
        facts = {"healthy": not failed, "failure": failure, "latency_ms": round(latency_ms, 1),
                 "timeout_seconds": seconds,
                 "versions": {answer.version: answer.failure or "answered" for answer in answers}}
        if failure is None:
            return Outcome("probed", f"{self._alias} answered the health check", facts=facts)
        logger.warning("health probe failed", extra={"alias": self._alias, "failure": failure})
        return Outcome("probed", failure, facts=facts)
