"""One place where every AWS call is made and its outcome counted.

``observed_call`` invokes a boto3 client operation, reports ``(operation, outcome)`` to an
observer (the metrics' ``cdc_aws_requests_total``) and re-raises botocore's exception untouched,
so each adapter keeps translating errors into its own domain errors. Outcomes are a small fixed
set, keeping label cardinality bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

Observer = Callable[[str, str], None]

THROTTLING_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"}
)


def observed_call(client: Any, operation: str, observe: Observer | None, **kwargs: Any) -> dict[str, Any]:
    """``client.<operation>(**kwargs)``, with its outcome reported to ``observe``."""
    try:
        response = getattr(client, operation)(**kwargs)
    except ClientError as exc:
        _report(observe, operation, client_error_outcome(exc))
        raise
    except BotoCoreError:
        _report(observe, operation, "network")
        raise
    _report(observe, operation, "ok")
    return response


def client_error_outcome(exc: ClientError) -> str:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in THROTTLING_CODES:
        return "throttled"
    if code == "ConditionalCheckFailedException":
        return "conditional_failed"
    return "server_error" if status >= 500 else "client_error"


def _report(observe: Observer | None, operation: str, outcome: str) -> None:
    if observe is not None:
        observe(operation, outcome)
