"""DynamoDB and DynamoDB Streams calls straight off the wire: a SigV4-signed JSON 1.0 POST whose
answer is parsed once with orjson.

botocore turns every answer into Python objects through its shape parser, which costs about 0.6 ms
of CPU per item or record (measured): most of the consumer's cost on its hot calls, GetRecords
(``consumer.shards.raw_records``), the backfill's Scan (``consumer.backfill.scan``) and the lease
table's item reads and writes (``consumer.leases.table``). This sends
the same request, signed by ``consumer.sigv4`` with the boto3 client's own credentials chain,
endpoint and region, and gives back the answer in wire form (binary values as base64 text,
timestamps as epoch seconds). Callers map ``WireCallError`` to their own errors.

Thread-safe: each thread has its own connection (``consumer.keepalive``), and credentials are
frozen per request.
"""

from __future__ import annotations

from typing import Any

import orjson
from botocore.exceptions import ClientError

from consumer.keepalive import KeepAliveConnections
from consumer.sigv4 import JsonRequestSigner


class WireCallError(Exception):
    """The service answered with an error (``status``, the code after ``#`` in ``__type``, its message)."""

    def __init__(self, operation: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code or status}: {message}")
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message

    def as_client_error(self) -> ClientError:
        """The same error as botocore raises it, for callers written against boto3's errors."""
        return ClientError(
            {
                "Error": {"Code": self.code, "Message": self.message},
                "ResponseMetadata": {"HTTPStatusCode": self.status},
            },
            self.operation,
        )


class WireClient:
    """JSON 1.0 calls through a boto3 client's endpoint, region and credentials.

    Raises (from ``call``): ``WireCallError`` for an error answer, ``consumer.keepalive.TransportError``
    when the request did not get one.
    """

    def __init__(
        self,
        client: Any,
        target_prefix: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        self._endpoint = client.meta.endpoint_url.rstrip("/") + "/"
        self._region = client.meta.region_name
        self._credentials = client._request_signer._credentials  # the client's own (refreshable) chain
        self._prefix = target_prefix
        self._signer = JsonRequestSigner(self._endpoint, self._region, "dynamodb")
        self._http = KeepAliveConnections(self._endpoint, connect_timeout, read_timeout)

    def call(self, operation: str, request: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The answer to ``operation`` (e.g. ``GetRecords``) and its size in bytes."""
        body = orjson.dumps(request)
        credentials = self._credentials.get_frozen_credentials()
        headers = self._signer.headers(
            f"{self._prefix}.{operation}", body, credentials.access_key, credentials.secret_key, credentials.token
        )
        status, data = self._http.post(headers, body)
        if status != 200:
            raise _error(operation, status, data)
        return orjson.loads(data), len(data)


def _error(operation: str, status: int, data: bytes) -> WireCallError:
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    code = str(answer.get("__type", "")).rsplit("#", 1)[-1]
    message = answer.get("message") or answer.get("Message") or data[:200].decode(errors="replace")
    return WireCallError(operation, status, code, str(message))
