"""GetRecords straight off the wire (``consumer.aws_json``): the records in the wire form that
``consumer.records.StreamRecord.from_wire`` reads, errors mapped exactly as ``consumer.shards.api``
maps botocore's.

Thread-safe.
"""

from __future__ import annotations

import time
from typing import Any

from consumer.aws_calls import THROTTLING_CODES, Observer
from consumer.aws_clock import AwsClock
from consumer.aws_json import WireCallError, WireClient, WireError
from consumer.errors import (
    IteratorExpiredError,
    ShardNotFoundError,
    StreamError,
    ThrottledError,
    TrimmedDataError,
)

_ERRORS = {
    "ExpiredIteratorException": IteratorExpiredError,
    "TrimmedDataAccessException": TrimmedDataError,
    "ResourceNotFoundException": ShardNotFoundError,
    **{code: ThrottledError for code in THROTTLING_CODES},
}


class RawGetRecords:
    """GetRecords through a boto3 ``dynamodbstreams`` client's endpoint and credentials."""

    def __init__(self, client: Any, observe: Observer | None = None, aws_clock: AwsClock | None = None) -> None:
        self._wire = WireClient(client, "DynamoDBStreams_20120810", aws_clock=aws_clock)
        self._observe = observe

    def get_records(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None, int]:
        """The page's records (wire form), its next iterator (None at shard end) and its size in bytes."""
        started = time.monotonic()
        try:
            answer, size = self._wire.call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
        except WireCallError as exc:
            error_class = _ERRORS.get(exc.code, StreamError)
            if error_class is ThrottledError:
                self._report("throttled", started)
            else:
                self._report("server_error" if exc.status >= 500 else "client_error", started)
            raise error_class(f"get_records failed: {exc.code or exc.status}: {exc.message}") from exc
        except WireError as exc:
            self._report(exc.outcome, started)
            raise StreamError(f"get_records failed: {exc}") from exc
        self._report("ok", started)
        return answer.get("Records", []), answer.get("NextShardIterator"), size

    def _report(self, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe("get_records", outcome, time.monotonic() - started)
