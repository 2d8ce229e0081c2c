"""What to do about a failure whose cause says where to look (AWS or OpenSearch unreachable, no AWS
credentials): the hint the commands print after the error, and ``config --check`` after a failed check."""

from __future__ import annotations

from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, NoCredentialsError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError


def what_to_do(exc: BaseException) -> str:
    """A hint for a failure whose cause says where to look: AWS or OpenSearch unreachable, no AWS
    credentials (``""`` when the cause says nothing more than the message). One line of text; the
    caller places it under its own message."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (EndpointConnectionError, ConnectTimeoutError)):
            return (
                "AWS did not answer: check the network path from here (VPC endpoints, a NAT gateway, "
                "HTTPS_PROXY / NO_PROXY), AWS_REGION, and AWS_ENDPOINT_URL if you set one"
            )
        if isinstance(cause, NoCredentialsError):
            return (
                "no AWS credentials: give the pod or task its role (IRSA, Pod Identity, a task role) or set a profile"
            )
        if isinstance(cause, OpenSearchConnectionError):
            return (
                "OpenSearch did not answer: check CDC_OPENSEARCH_URL, the network path to it (security groups, "
                "a VPC domain's subnets) and, for https, its certificate (CDC_OPENSEARCH_CA_BUNDLE)"
            )
        cause = cause.__cause__ or cause.__context__
    return ""
