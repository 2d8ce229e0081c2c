"""The DynamoDB Streams API as the consumer needs it, and its boto3 implementation.

``StreamApi`` is the port: AWS, moto server and the test-side stream server all sit behind the
boto3 implementation (they speak the same wire protocol); the contract tests hold them to it.
botocore errors are translated here, once, into the classes of ``consumer.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from consumer.aws.accounting import Observer, observed_call
from consumer.aws.clock import AwsClock
from consumer.errors import (
    StreamError,
)
from consumer.shards.raw_records import RawGetRecords
from consumer.shards.stream_errors import stream_error

AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"


@dataclass(frozen=True)
class Shard:
    """One shard as DescribeStream shows it."""

    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str
    ending_sequence_number: str | None

    @property
    def is_closed(self) -> bool:
        return self.ending_sequence_number is not None


@dataclass(frozen=True)
class RecordsPage:
    """One GetRecords answer; ``next_iterator`` is None at shard end; ``size_bytes`` of the answer."""

    records: list[dict[str, Any]]
    next_iterator: str | None
    size_bytes: int = 0


class StreamApi(Protocol):
    def list_shards(self, stream_arn: str) -> list[Shard]: ...

    def get_shard_iterator(
        self, stream_arn: str, shard_id: str, iterator_type: str, sequence_number: str | None = None
    ) -> str: ...

    def get_records(self, iterator: str, limit: int) -> RecordsPage: ...


class StreamsApi:
    """StreamApi over a boto3 ``dynamodbstreams`` client; GetRecords goes straight over the wire
    (``consumer.shards.raw_records``) unless ``raw_get_records`` is False. Thread-safe (boto3
    clients are, and the wire path keeps one connection per thread)."""

    def __init__(
        self,
        client: Any,
        observe: Observer | None = None,
        raw_get_records: bool = True,
        aws_clock: AwsClock | None = None,
    ) -> None:
        self._client = client
        self._observe = observe
        self._raw = RawGetRecords(client, observe=observe, aws_clock=aws_clock) if raw_get_records else None

    def list_shards(self, stream_arn: str) -> list[Shard]:
        """Every shard of the stream, following DescribeStream pagination to the end."""
        shards: list[Shard] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": stream_arn, "Limit": 100}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            description = self._call("describe_stream", **kwargs)["StreamDescription"]
            shards.extend(_shard(raw) for raw in description.get("Shards", []))
            start = description.get("LastEvaluatedShardId")
            if not start:
                return shards

    def get_shard_iterator(
        self, stream_arn: str, shard_id: str, iterator_type: str, sequence_number: str | None = None
    ) -> str:
        kwargs = {"StreamArn": stream_arn, "ShardId": shard_id, "ShardIteratorType": iterator_type}
        if sequence_number is not None:
            kwargs["SequenceNumber"] = sequence_number
        return self._call("get_shard_iterator", **kwargs)["ShardIterator"]

    def get_records(self, iterator: str, limit: int) -> RecordsPage:
        if self._raw is not None:
            return RecordsPage(*self._raw.get_records(iterator, limit))
        answer = self._call("get_records", ShardIterator=iterator, Limit=limit)
        return RecordsPage(answer.get("Records", []), answer.get("NextShardIterator"))

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return observed_call(self._client, operation, self._observe, **kwargs)
        except ClientError as exc:
            raise stream_error(operation, exc.response.get("Error", {}).get("Code", ""), exc) from exc
        except BotoCoreError as exc:
            raise StreamError(f"{operation} failed: {exc}") from exc


def _shard(raw: dict[str, Any]) -> Shard:
    sequence_range = raw.get("SequenceNumberRange", {})
    return Shard(
        shard_id=raw["ShardId"],
        parent_shard_id=raw.get("ParentShardId"),
        starting_sequence_number=sequence_range.get("StartingSequenceNumber", "0"),
        ending_sequence_number=sequence_range.get("EndingSequenceNumber"),
    )
