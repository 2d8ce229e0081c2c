"""One place where every AWS call is made and its outcome counted.

``observed_call`` invokes a boto3 client operation, reports ``(operation, outcome, seconds)`` to an
observer (the metrics' ``cdc_aws_requests_total`` and ``cdc_aws_request_duration_seconds``; the
duration includes botocore's own retries) and re-raises botocore's exception untouched,
so each adapter keeps translating errors into its own domain errors. Outcomes are a small fixed
set, keeping label cardinality bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    RefreshWithMFAUnsupportedError,
)

Observer = Callable[[str, str, float], None]  # (operation, outcome, seconds)

THROTTLING_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}
)
# What botocore raises when it cannot get or refresh credentials, and the calls it makes to refresh
# them (IRSA, an assumed role, SSO): their ClientErrors surface from the call being signed.
CREDENTIAL_ERRORS = (
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    RefreshWithMFAUnsupportedError,
)
CREDENTIAL_OPERATIONS = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetRoleCredentials"}
)


def observed_call(client: Any, operation: str, observe: Observer | None, **kwargs: Any) -> dict[str, Any]:
    """``client.<operation>(**kwargs)``, with its outcome and duration reported to ``observe``."""
    started = time.monotonic()
    try:
        response = getattr(client, operation)(**kwargs)
    except ClientError as exc:
        _report(observe, operation, client_error_outcome(exc), started)
        raise
    except BotoCoreError as exc:
        _report(observe, operation, "credentials" if isinstance(exc, CREDENTIAL_ERRORS) else "network", started)
        raise
    _report(observe, operation, "ok", started)
    return response


def client_error_outcome(exc: ClientError) -> str:
    if exc.operation_name in CREDENTIAL_OPERATIONS:
        return "credentials"
    code = exc.response.get("Error", {}).get("Code", "")
    return error_outcome(code, exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def error_outcome(code: str, status: int) -> str:
    """The outcome of an error answer with this code and HTTP status."""
    if code in THROTTLING_CODES:
        return "throttled"
    if code == "ConditionalCheckFailedException":
        return "conditional_failed"
    return "server_error" if status >= 500 else "client_error"


def _report(observe: Observer | None, operation: str, outcome: str, started: float) -> None:
    if observe is not None:
        observe(operation, outcome, time.monotonic() - started)


def count_retries(client: Any, record: Callable[[str, int], None]) -> None:
    """Report botocore's own retries of every call of ``client`` as ``record(operation, retries)``:
    an ``after-call`` event hook (emitted for error answers too) reading ``RetryAttempts``."""

    def after_call(parsed: Any = None, model: Any = None, **_: Any) -> None:
        retries = (parsed or {}).get("ResponseMetadata", {}).get("RetryAttempts", 0) if isinstance(parsed, dict) else 0
        if retries and model is not None:
            record(model.name, int(retries))

    client.meta.events.register("after-call.*.*", after_call)
