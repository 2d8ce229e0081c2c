"""GetRecords straight off the wire (``consumer.aws.json_client``): the records in the wire form that
``consumer.pipeline.records.StreamRecord.from_wire`` reads, errors mapped by the same table as botocore's
(``consumer.shards.stream_errors``).

Thread-safe.
"""

from __future__ import annotations

import time
from typing import Any

from consumer.aws.accounting import Observer
from consumer.aws.clock import AwsClock
from consumer.aws.json_client import WireCallError, WireClient, WireError
from consumer.errors import StreamError, ThrottledError
from consumer.shards.stream_errors import stream_error


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
            error = stream_error("get_records", exc.code or str(exc.status), exc.message)
            if isinstance(error, ThrottledError):
                self._report("throttled", started)
            else:
                self._report("server_error" if exc.status >= 500 else "client_error", started)
            raise error from exc
        except WireError as exc:
            self._report(exc.outcome, started)
            raise StreamError(f"get_records failed: {exc}") from exc
        self._report("ok", started)
        return answer.get("Records", []), answer.get("NextShardIterator"), size

    def _report(self, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe("get_records", outcome, time.monotonic() - started)
