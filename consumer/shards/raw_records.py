"""GetRecords straight off the wire: a SigV4-signed POST, answered JSON parsed once with orjson.

botocore turns every GetRecords answer into Python objects through its shape parser, which costs
about 0.6 ms of CPU per record (measured: most of a record's end-to-end cost). This is the same
request (DynamoDB Streams' JSON 1.0 protocol), signed with botocore's SigV4 signer and the same
credentials, endpoint and region as the boto3 client, and its answer is parsed with orjson into the
wire form that ``consumer.records.StreamRecord.from_wire`` reads (timestamps as epoch seconds,
binary as base64 text). Errors are mapped exactly as ``consumer.shards.api`` maps botocore's.

Thread-safe: urllib3's pool manager is, and credentials are frozen per request.
"""

from __future__ import annotations

from typing import Any

import orjson
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from consumer.aws_calls import THROTTLING_CODES, Observer
from consumer.errors import (
    IteratorExpiredError,
    ShardNotFoundError,
    StreamError,
    ThrottledError,
    TrimmedDataError,
)

_TARGET = "DynamoDBStreams_20120810.GetRecords"
_ERRORS = {
    "ExpiredIteratorException": IteratorExpiredError,
    "TrimmedDataAccessException": TrimmedDataError,
    "ResourceNotFoundException": ShardNotFoundError,
    **{code: ThrottledError for code in THROTTLING_CODES},
}


class RawGetRecords:
    """GetRecords through a boto3 ``dynamodbstreams`` client's endpoint and credentials."""

    def __init__(
        self,
        client: Any,
        pool_size: int = 32,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        observe: Observer | None = None,
    ) -> None:
        self._endpoint = client.meta.endpoint_url.rstrip("/") + "/"
        self._region = client.meta.region_name
        self._credentials = client._request_signer._credentials  # the client's own (refreshable) chain
        self._observe = observe
        self._http = urllib3.PoolManager(
            maxsize=pool_size,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
        )

    def get_records(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None, int]:
        """The page's records (wire form), its next iterator (None at shard end) and its size in bytes."""
        body = orjson.dumps({"ShardIterator": iterator, "Limit": limit})
        request = AWSRequest(
            method="POST",
            url=self._endpoint,
            data=body,
            headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": _TARGET},
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), "dynamodb", self._region).add_auth(request)
        try:
            response = self._http.request(
                "POST", self._endpoint, body=body, headers=dict(request.headers.items()), preload_content=True
            )
        except urllib3.exceptions.HTTPError as exc:
            self._report("network")
            raise StreamError(f"get_records failed: {exc}") from exc
        if response.status != 200:
            raise self._error(response.status, response.data)
        self._report("ok")
        answer = orjson.loads(response.data)
        return answer.get("Records", []), answer.get("NextShardIterator"), len(response.data)

    def _error(self, status: int, data: bytes) -> StreamError:
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            answer = {}
        code = str(answer.get("__type", "")).rsplit("#", 1)[-1] if isinstance(answer, dict) else ""
        message = answer.get("message") or answer.get("Message") or data[:200].decode(errors="replace")
        error_class = _ERRORS.get(code, StreamError)
        outcome = (
            "throttled" if error_class is ThrottledError else ("server_error" if status >= 500 else "client_error")
        )
        self._report(outcome)
        return error_class(f"get_records failed: {code or status}: {message}")

    def _report(self, outcome: str) -> None:
        if self._observe is not None:
            self._observe("get_records", outcome)
