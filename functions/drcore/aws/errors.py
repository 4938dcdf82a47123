"""AWS error codes, defined once: what each answer means to the controller, and one bounded retry.

botocore raises every service error as ClientError; the code sets below are the only place that says
which codes mean "not there", "slow down", "your condition failed" or "the source moved under you", so
every adapter decides the same way. Adapters translate what they expect into drcore.core.errors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from typing import TypeVar

from botocore.exceptions import ClientError

# Not there: an S3 key, version or bucket; a Lambda function, alias or version; a CloudFormation change set.
# HEAD requests carry no error body, only the status ("404", "NotFound").
NOT_FOUND = frozenset({"404", "NotFound", "NoSuchKey", "NoSuchVersion", "NoSuchBucket",
                       "ResourceNotFoundException", "ChangeSetNotFound", "ChangeSetNotFoundException"})
# Slow down: S3's SlowDown and 503s, the throttling codes of the JSON and query protocols.
THROTTLED = frozenset({"SlowDown", "ThrottlingException", "Throttling", "RequestLimitExceeded",
                       "TooManyRequestsException", "ServiceUnavailable", "503"})
# A conditional write lost: S3's If-Match / If-None-Match (412, or 409 while another conditional write
# is in flight), DynamoDB's ConditionExpression, Lambda's RevisionId.
PRECONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict",
                                 "ConditionalCheckFailedException", "PreconditionFailedException"})
# Not there, said of one S3 object (key or version) only: a missing bucket is a misconfiguration, not a
# missing object, and must not read as "no such backup".
OBJECT_NOT_FOUND = frozenset({"404", "NotFound", "NoSuchKey", "NoSuchVersion"})
# A bucket without a replication configuration (GetBucketReplication).
REPLICATION_NOT_CONFIGURED = frozenset({"ReplicationConfigurationNotFoundError"})
# The object version a copy was pinned to is gone or no longer matches: skip it, the next run sees it.
SOURCE_CHANGED = OBJECT_NOT_FOUND | {"412", "PreconditionFailed"}
# An S3 object in an archive storage class or tier: it cannot be read or copied before an S3 restore.
OBJECT_ARCHIVED = frozenset({"InvalidObjectState"})
# Lambda refuses an update while another is in progress; retried like throttling.
LAMBDA_BUSY = frozenset({"ResourceConflictException"})
# The endpoint does not implement the operation at all (an emulator, a partition without the feature).
NOT_IMPLEMENTED = frozenset({"501", "NotImplemented", "UnknownOperationException"})
# A quota reached; CloudWatch Logs answers so while another export task of the account runs.
LIMIT_EXCEEDED = frozenset({"LimitExceededException"})
# CloudFormation refuses a request as given: a template or parameter it rejects, a capability not
# granted, a change set name already taken.
CLOUDFORMATION_REFUSED = frozenset({"ValidationError", "InsufficientCapabilitiesException",
                                    "AlreadyExistsException"})

MAX_ATTEMPTS = 7
BASE_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 10.0

T = TypeVar("T")


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_not_found(error: ClientError) -> bool:
    return error_code(error) in NOT_FOUND


def is_throttled(error: ClientError) -> bool:
    return error_code(error) in THROTTLED or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 503


def is_precondition_failed(error: ClientError) -> bool:
    return error_code(error) in PRECONDITION_FAILED


def stack_does_not_exist(error: ClientError) -> bool:
    """CloudFormation answers a missing stack with a ValidationError that says so in its message."""
    return error_code(error) == "ValidationError" and "does not exist" in str(error)


def full_jitter(attempt: int) -> float:
    """The pause after failed attempt `attempt` (1, 2, ...): exponential backoff with full jitter, so
    concurrent callers throttled together do not retry together."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS * 2 ** (attempt - 1)))


def retrying(call: Callable[[], T], *, retry_on: Collection[str] = (), sleep: Callable[[float], None] = time.sleep,
             max_attempts: int = MAX_ATTEMPTS, backoff: Callable[[int], float] = full_jitter,
             on_retry: Callable[[ClientError, int, float], None] | None = None) -> T:
    """`call()`, retried on throttling (and on the codes in `retry_on`) after `backoff(attempt)` seconds, at
    most `max_attempts` times; any other error, or the last one, raises. `on_retry(error, attempt, pause)`
    hears of each retry before its pause."""
    attempt = 1
    while True:
        try:
            return call()
        except ClientError as error:
            if attempt >= max_attempts or not (is_throttled(error) or error_code(error) in retry_on):
                raise
            pause = backoff(attempt)
            if on_retry is not None:
                on_retry(error, attempt, pause)
            sleep(pause)
            attempt += 1
