"""The DynamoDB Streams JSON 1.0 protocol over ``StreamModel``s, with scripted faults. No sockets.

``StreamProtocol.respond(target, body)`` takes an ``X-Amz-Target`` value and a raw request body and
returns ``(status, answer)``: what the real service would send, errors included
(``{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": ...}`` with HTTP 400), so boto3
raises ``ClientError`` with the real ``Error.Code``.

Iterator tokens look like DynamoDB's (``<stream arn>|1|<opaque>``); the opaque part encodes the
shard, the read position, the issue time and the expiry epoch. A token expires 15 minutes after it
was issued (by the injected clock) or at the next ``expire_iterators()``.

Faults a test scripts: ``throttle`` (the next GetRecords answer LimitExceededException),
``expire_iterators``, ``open_parent_page`` (DescribeStream shows closed parents that have children
as still open, as a page read before the split would). Calls are counted per stream for ``stats``.

Thread-safe: one lock guards the registry, the faults and the counters; each model has its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.stream_model import (
    MAX_READ_BYTES,
    MAX_READ_RECORDS,
    Clock,
    ShardInfo,
    StreamModel,
    StreamModelError,
)
from tests.support.stream_records import stream_label

TARGET_PREFIX = "DynamoDBStreams_20120810."
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
ITERATOR_TTL_SECONDS = 15 * 60
MAX_SHARDS_PER_PAGE = 100


class WireError(Exception):
    """An error answer: ``code`` goes into ``__type``, the message into ``message``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class ServerStats:
    """Calls answered, by operation; GetRecords calls and records served, by shard."""

    calls: Mapping[str, int]
    get_records_by_shard: Mapping[str, int]
    records_by_shard: Mapping[str, int]
    starts_by_shard: Mapping[str, int]  # answers that served the shard's first record: reads from its start


@dataclass(frozen=True)
class _Token:
    arn: str
    shard_id: str
    position: int
    issued_at: float
    epoch: int


class StreamProtocol:
    """Answers DynamoDB Streams operations for the streams registered with it."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._streams: dict[str, StreamModel] = {}
        self._lock = threading.Lock()
        self._throttles: Counter[str | None] = Counter()
        self._epoch = 0
        self._open_parent = False
        self._calls: Counter[tuple[str | None, str]] = Counter()
        self._reads: Counter[tuple[str, str]] = Counter()
        self._served: Counter[tuple[str, str]] = Counter()
        self._starts: Counter[tuple[str, str]] = Counter()
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "DescribeStream": self._describe_stream,
            "ListStreams": self._list_streams,
            "GetShardIterator": self._get_shard_iterator,
            "GetRecords": self._get_records,
        }

    # -- registry and scripting -------------------------------------------------------------------

    def create_stream(
        self, table_name: str, key_schema: list[dict[str, str]], view_type: str, shard_count: int
    ) -> StreamModel:
        """Register a new stream; its label (and so its ARN) is unique even within one millisecond."""
        with self._lock:
            now = self._clock()
            labels = {model.label for model in self._streams.values() if model.table_name == table_name}
            label = stream_label(now)
            while label in labels:
                now += 0.001
                label = stream_label(now)
            model = StreamModel(table_name, key_schema, view_type, shard_count, clock=self._clock, label=label)
            self._streams[model.arn] = model
            return model

    def stream(self, arn: str) -> StreamModel:
        with self._lock:
            model = self._streams.get(arn)
        if model is None:
            raise WireError("ResourceNotFoundException", f"Requested resource not found: Stream: {arn} not found")
        return model

    def throttle(self, count: int, shard_id: str | None = None) -> None:
        with self._lock:
            self._throttles[shard_id] += count

    def expire_iterators(self) -> None:
        with self._lock:
            self._epoch += 1

    def open_parent_page(self, enabled: bool) -> None:
        with self._lock:
            self._open_parent = enabled

    def stats(self, arn: str | None = None) -> ServerStats:
        """Counters for one stream, or for all (ListStreams counts under no stream)."""
        with self._lock:
            calls: Counter[str] = Counter()
            for (stream, operation), count in self._calls.items():
                if arn is None or stream == arn:
                    calls[operation] += count
            reads = {shard: n for (stream, shard), n in self._reads.items() if arn in (None, stream)}
            served = {shard: n for (stream, shard), n in self._served.items() if arn in (None, stream)}
            starts = {shard: n for (stream, shard), n in self._starts.items() if arn in (None, stream)}
            return ServerStats(dict(calls), reads, served, starts)

    # -- the wire ---------------------------------------------------------------------------------

    def respond(self, target: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON answer for one request."""
        try:
            operation = self._operation(target)
            body = _parse_body(raw_body)
            return 200, operation(body)
        except WireError as exc:
            return exc.status, {"__type": ERROR_PREFIX + exc.code, "message": str(exc)}
        except StreamModelError as exc:
            return 400, {"__type": ERROR_PREFIX + exc.code, "message": str(exc)}
        except Exception as exc:  # a bug in the test server: say so on the wire instead of hanging up
            message = "".join(traceback.format_exception_only(exc)).strip()
            return 500, {"__type": ERROR_PREFIX + "InternalServerError", "message": message}

    def _operation(self, target: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        name = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
        operation = self._operations.get(name)
        if operation is None:
            raise WireError("UnknownOperationException", f"Unknown operation {target!r}")
        return operation

    def _count(self, arn: str | None, operation: str) -> None:
        with self._lock:
            self._calls[(arn, operation)] += 1

    # -- operations -------------------------------------------------------------------------------

    def _describe_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        model = self.stream(_required(body, "StreamArn"))
        self._count(model.arn, "DescribeStream")
        limit = _limit(body, MAX_SHARDS_PER_PAGE)
        shards = _filtered(model.shards(), body.get("ShardFilter"))
        start = body.get("ExclusiveStartShardId")
        if start:
            shards = [shard for shard in shards if shard.shard_id > start]
        page = shards[:limit]
        with self._lock:
            open_parent = self._open_parent
        description: dict[str, Any] = {
            "StreamArn": model.arn,
            "StreamLabel": model.label,
            "StreamStatus": "ENABLED",
            "StreamViewType": model.view_type,
            "CreationRequestDateTime": round(model.created_at, 3),
            "TableName": model.table_name,
            "KeySchema": model.key_schema,
            "Shards": [_shard_json(shard, open_parent) for shard in page],
        }
        if len(page) == limit:  # a full page: the caller must ask again (the next page may be empty)
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    def _list_streams(self, body: dict[str, Any]) -> dict[str, Any]:
        self._count(None, "ListStreams")
        limit = _limit(body, 100)
        with self._lock:
            models = sorted(self._streams.values(), key=lambda model: model.arn)
        table = body.get("TableName")
        start = body.get("ExclusiveStartStreamArn")
        chosen = [m for m in models if (table is None or m.table_name == table) and (not start or m.arn > start)]
        answer: dict[str, Any] = {
            "Streams": [{"StreamArn": m.arn, "TableName": m.table_name, "StreamLabel": m.label} for m in chosen[:limit]]
        }
        if len(chosen) > limit:
            answer["LastEvaluatedStreamArn"] = chosen[limit - 1].arn
        return answer

    def _get_shard_iterator(self, body: dict[str, Any]) -> dict[str, Any]:
        model = self.stream(_required(body, "StreamArn"))
        self._count(model.arn, "GetShardIterator")
        shard_id = _required(body, "ShardId")
        iterator_type = _required(body, "ShardIteratorType")
        position = model.iterator_position(shard_id, iterator_type, body.get("SequenceNumber"))
        return {"ShardIterator": self._issue(model.arn, shard_id, position)}

    def _get_records(self, body: dict[str, Any]) -> dict[str, Any]:
        token = _decode_token(_required(body, "ShardIterator"))
        limit = _limit(body, MAX_READ_RECORDS)
        model = self.stream(token.arn)
        self._count(model.arn, "GetRecords")
        model.shard(token.shard_id)  # ResourceNotFoundException for a shard that is gone (or whose data is)
        self._check_faults(token)
        result = model.read(token.shard_id, token.position, limit, MAX_READ_BYTES)
        first = model.first_sequence(token.shard_id)
        with self._lock:
            self._served[(token.arn, token.shard_id)] += len(result.records)
            if result.records and first is not None and result.records[0]["dynamodb"]["SequenceNumber"] == str(first):
                self._starts[(token.arn, token.shard_id)] += 1
        answer: dict[str, Any] = {"Records": result.records}
        if result.next_position is not None:
            answer["NextShardIterator"] = self._issue(token.arn, token.shard_id, result.next_position)
        return answer

    def _check_faults(self, token: _Token) -> None:
        """Count the read, then answer a scripted throttle or an expired iterator."""
        with self._lock:
            self._reads[(token.arn, token.shard_id)] += 1
            for scope in (token.shard_id, None):
                if self._throttles[scope] > 0:
                    self._throttles[scope] -= 1
                    raise WireError("LimitExceededException", "Too many requests for this shard: slow down (scripted)")
            expired = token.epoch < self._epoch or self._clock() - token.issued_at > ITERATOR_TTL_SECONDS
        if expired:
            raise WireError(
                "ExpiredIteratorException", f"Iterator expired. The iterator was created at time {token.issued_at}"
            )

    def _issue(self, arn: str, shard_id: str, position: int) -> str:
        with self._lock:
            epoch = self._epoch
        payload = json.dumps([shard_id, str(position), self._clock(), epoch], separators=(",", ":"))
        return f"{arn}|1|{base64.b64encode(payload.encode()).decode('ascii')}"


def _shard_json(shard: ShardInfo, open_parent: bool) -> dict[str, Any]:
    sequence_range = {"StartingSequenceNumber": shard.starting_sequence_number}
    hide_end = open_parent and shard.child_shard_ids
    if shard.ending_sequence_number is not None and not hide_end:
        sequence_range["EndingSequenceNumber"] = shard.ending_sequence_number
    answer: dict[str, Any] = {"ShardId": shard.shard_id, "SequenceNumberRange": sequence_range}
    if shard.parent_shard_id:
        answer["ParentShardId"] = shard.parent_shard_id
    return answer


def _filtered(shards: list[ShardInfo], shard_filter: dict[str, Any] | None) -> list[ShardInfo]:
    """DescribeStream's ShardFilter: only CHILD_SHARDS of one shard exists."""
    if not shard_filter:
        return shards
    if shard_filter.get("Type") != "CHILD_SHARDS" or not shard_filter.get("ShardId"):
        raise WireError("ValidationException", "ShardFilter needs Type CHILD_SHARDS and a ShardId")
    return [shard for shard in shards if shard.parent_shard_id == shard_filter["ShardId"]]


def _decode_token(token: str) -> _Token:
    try:
        arn, version, opaque = token.split("|", 2)
        shard_id, position, issued_at, epoch = json.loads(base64.b64decode(opaque, validate=True))
        if version != "1":
            raise ValueError(version)
        return _Token(arn, str(shard_id), int(position), float(issued_at), int(epoch))
    except (ValueError, TypeError, binascii.Error):
        raise WireError("ValidationException", "Invalid ShardIterator") from None


def _parse_body(raw_body: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw_body or b"{}")
    except ValueError:
        raise WireError("SerializationException", "Start of structure or map found where not expected") from None
    if not isinstance(body, dict):
        raise WireError("SerializationException", "the request body must be a JSON object")
    return body


def _required(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value in (None, ""):
        member = name[0].lower() + name[1:]
        raise WireError(
            "ValidationException",
            f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null",
        )
    return value


def _limit(body: dict[str, Any], maximum: int) -> int:
    limit = body.get("Limit", maximum)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise WireError(
            "ValidationException",
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
            f"Member must have value between 1 and {maximum}",
        )
    return limit
