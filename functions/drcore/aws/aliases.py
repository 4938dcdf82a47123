"""The protected function's aliases and versions, over the Lambda API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from drcore.aws.errors import is_not_found, is_precondition_failed
from drcore.core.errors import AliasChanged, InvalidRequest
from drcore.core.models import AliasState

if TYPE_CHECKING:  # the stubs are a development dependency: Lambda's runtime never imports them
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_lambda.type_defs import AliasConfigurationResponseTypeDef

LATEST = "$LATEST"


class NoAnswer(Exception):
    """A synchronous invocation was given up: no connection, or no answer, within the client's timeouts."""


class UnservableVersion(InvalidRequest):
    """An alias cannot be pointed at a version: it is $LATEST, or Lambda answered "not found" (the version, the
    alias or the function is gone). Nothing was changed; the caller finds out which, if it matters."""


def _alias_state(response: AliasConfigurationResponseTypeDef) -> AliasState:
    weights = (response.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return AliasState(
        name=response["Name"],
        version=response["FunctionVersion"],
        weights={version: float(weight) for version, weight in weights.items()},
        revision_id=response.get("RevisionId"),
    )


class AliasGateway:
    def __init__(self, lambda_client: LambdaClient, function_name: str) -> None:
        self._lambda = lambda_client
        self._function = function_name

    def read(self, alias: str) -> AliasState | None:
        try:
            return _alias_state(self._lambda.get_alias(FunctionName=self._function, Name=alias))
        except ClientError as error:
            if is_not_found(error):
                return None
            raise

    def point(
        self, alias: str, version: str, *, revision_id: str | None, weights: dict[str, float] | None = None
    ) -> AliasState:
        """Point `alias` at `version` (with optional canary weights; none clears them).

        With a RevisionId, Lambda refuses the update if the alias changed since it was read: that
        surfaces as AliasChanged, and the caller re-reads and decides again.
        """
        if version == LATEST:
            raise UnservableVersion(f"refusing to point {alias} at {LATEST}: aliases serve published versions only")
        request: dict[str, Any] = {
            "FunctionName": self._function,
            "Name": alias,
            "FunctionVersion": version,
            "RoutingConfig": {"AdditionalVersionWeights": weights or {}},
        }
        if revision_id:
            request["RevisionId"] = revision_id
        try:
            return _alias_state(self._lambda.update_alias(**request))
        except ClientError as error:
            if is_precondition_failed(error):
                raise AliasChanged(f"{alias} changed since revision {revision_id}") from error
            if is_not_found(error):
                raise UnservableVersion(f"{alias} cannot point at version {version}: {error}") from error
            raise

    def published_version_exists(self, version: str) -> bool:
        if version == LATEST or not version.isdigit():
            return False
        try:
            self._lambda.get_function_configuration(FunctionName=self._function, Qualifier=version)
        except ClientError as error:
            if is_not_found(error):
                return False
            raise
        return True

    def invoke(self, qualifier: str, payload: bytes) -> dict[str, Any]:
        """Invoke synchronously; returns status code, function error (if any) and the payload bytes. NoAnswer when
        the client's connect or read timeout ran out first (the answer's body is read within them too)."""
        try:
            response = self._lambda.invoke(
                FunctionName=self._function, Qualifier=qualifier, InvocationType="RequestResponse", Payload=payload
            )
            body = response["Payload"].read()
        except (ConnectTimeoutError, ReadTimeoutError) as error:
            raise NoAnswer(str(error)) from error
        return {
            "status_code": response.get("StatusCode"),
            "function_error": response.get("FunctionError"),
            "executed_version": response.get("ExecutedVersion"),
            "payload": body,
        }
