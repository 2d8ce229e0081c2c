"""GetRecords straight off the wire (``consumer.aws.json_client``): the records in the wire form that
``consumer.pipeline.records.StreamRecord.from_wire`` reads, errors mapped by the same table as botocore's
(``consumer.shards.stream_errors``).

Thread-safe.
"""

from __future__ import annotations

from typing import Any

from consumer.aws.accounting import Observer
from consumer.aws.clock import AwsClock
from consumer.aws.json_client import WireCallError, WireClient, WireError
from consumer.errors import StreamError
from consumer.shards.stream_errors import stream_error


class RawGetRecords:
    """GetRecords through a boto3 ``dynamodbstreams`` client's endpoint; each call timed and its
    outcome reported as ``get_records`` (``consumer.aws.json_client``)."""

    def __init__(self, client: Any, observe: Observer | None = None, aws_clock: AwsClock | None = None) -> None:
        self._wire = WireClient(client, "DynamoDBStreams_20120810", aws_clock=aws_clock, observe=observe)

    def get_records(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None, int]:
        """The page's records (wire form), its next iterator (None at shard end) and its size in bytes."""
        request = {"ShardIterator": iterator, "Limit": limit}
        try:
            answer, size = self._wire.call("GetRecords", request, report_as="get_records")
        except WireCallError as exc:
            raise stream_error("get_records", exc.code or str(exc.status), exc.message) from exc
        except WireError as exc:
            raise StreamError(f"get_records failed: {exc}") from exc
        return answer.get("Records", []), answer.get("NextShardIterator"), size
