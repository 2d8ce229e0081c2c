"""A test-side DynamoDB Streams server: the real wire protocol over HTTP on loopback, with the
lineage and failure modes moto cannot produce (splits, rollovers, trimming, throttling, expired
iterators, the "open parent" DescribeStream page).

Tests point a boto3 ``dynamodbstreams`` client (and so ``StreamsApi`` and the worker) at
``server.url`` and script the stream in-process::

    server = StreamServer.start()
    arn = server.create_stream("orders", KEY_SCHEMA, shard_count=2)
    server.put_change(arn, "INSERT", {"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}})
    left, right = server.split(arn, server.shards(arn)[0].shard_id)
    server.throttle(1)
    ...
    server.stop()

It never ships: it lives in ``tests/`` and is checked against moto by ``tests/contract``.
Thread-safe: the HTTP server is threaded; the state behind it is locked (``stream_protocol``).
"""

from __future__ import annotations

import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import orjson
from botocore.config import Config

from tests.support.quiet_http import ServedInThread
from tests.support.stream_model import Appended, Clock, ShardInfo, StreamModel
from tests.support.stream_protocol import ServerStats, StreamProtocol

DEFAULT_KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}]
CONTENT_TYPE = "application/x-amz-json-1.0"


class StreamServer(ServedInThread):
    """A running server and its scripting API. ``start()`` binds a free port; ``stop()`` frees it."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._protocol = StreamProtocol(clock)
        super().__init__(_Handler, "stream-server", protocol=self._protocol)

    @classmethod
    def start(cls, clock: Clock = time.time) -> StreamServer:
        server = cls(clock)
        server.serve()
        return server

    def client(self, max_attempts: int = 1) -> Any:
        """A boto3 ``dynamodbstreams`` client for this server (no retries by default, so scripted
        faults reach the caller as they are)."""
        return streams_client(self.url, max_attempts)

    # -- streams and records ----------------------------------------------------------------------

    def create_stream(
        self,
        table_name: str,
        key_schema: list[dict[str, str]] | None = None,
        view_type: str = "NEW_AND_OLD_IMAGES",
        shard_count: int = 1,
    ) -> str:
        """A new stream of ``shard_count`` open shards splitting the hash space evenly; its ARN."""
        return self._protocol.create_stream(table_name, key_schema or DEFAULT_KEY_SCHEMA, view_type, shard_count).arn

    def stream(self, arn: str) -> StreamModel:
        """The model behind a stream, for inspection (``records``, ``shard_for``...)."""
        return self._protocol.stream(arn)

    def append(self, arn: str, record: dict[str, Any]) -> Appended:
        """Add a record (boto3 or wire form, e.g. from ``factories.stream_record``); the stream
        assigns its sequence number and shard."""
        return self.stream(arn).append(record)

    def put_change(
        self,
        arn: str,
        event_name: str,
        keys: dict[str, Any],
        new_image: dict[str, Any] | None = None,
        old_image: dict[str, Any] | None = None,
        second: float | None = None,
        ttl: bool = False,
    ) -> Appended:
        """Add one change of one item. ``second`` is its ApproximateCreationDateTime (default: now);
        ``ttl`` marks a REMOVE as a TTL delete (the DynamoDB service principal)."""
        body: dict[str, Any] = {"Keys": keys}
        if new_image is not None:
            body["NewImage"] = new_image
        if old_image is not None:
            body["OldImage"] = old_image
        if second is not None:
            body["ApproximateCreationDateTime"] = second
        record: dict[str, Any] = {"eventName": event_name, "dynamodb": body}
        if ttl:
            record["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
        return self.append(arn, record)

    def records(self, arn: str, shard_id: str | None = None) -> list[dict[str, Any]]:
        """Untrimmed records (wire form) of one shard or of all shards."""
        return self.stream(arn).records(shard_id)

    # -- topology ---------------------------------------------------------------------------------

    def shards(self, arn: str) -> list[ShardInfo]:
        return self.stream(arn).shards()

    def split(self, arn: str, shard_id: str) -> tuple[str, str]:
        return self.stream(arn).split(shard_id)

    def rollover(self, arn: str, shard_id: str) -> str:
        return self.stream(arn).rollover(shard_id)

    def vanish(self, arn: str, shard_id: str, listed: bool = True) -> None:
        """A closed shard's data is gone (ResourceNotFound); ``listed``: DescribeStream still shows it."""
        self._protocol.stream(arn).vanish(shard_id, listed)

    def close(self, arn: str, shard_id: str) -> None:
        self.stream(arn).close(shard_id)

    def trim(
        self,
        arn: str,
        before_sequence_number: str | int | None = None,
        *,
        count: int | None = None,
        older_than: float | None = None,
        drop_closed: bool = False,
    ) -> int:
        """See ``StreamModel.trim``; returns the number of records removed."""
        return self.stream(arn).trim(
            before_sequence_number, count=count, older_than=older_than, drop_closed=drop_closed
        )

    # -- faults and counters ----------------------------------------------------------------------

    def expire_iterators(self) -> None:
        """Every iterator issued so far answers ExpiredIteratorException from now on."""
        self._protocol.expire_iterators()

    def throttle(self, count: int, shard_id: str | None = None) -> None:
        """The next ``count`` GetRecords (on ``shard_id``, or on any shard) answer LimitExceededException."""
        self._protocol.throttle(count, shard_id)

    def open_parent_page(self, enabled: bool = True) -> None:
        """DescribeStream shows closed shards that have children without EndingSequenceNumber."""
        self._protocol.open_parent_page(enabled)

    def stats(self, arn: str | None = None) -> ServerStats:
        """Calls by operation, GetRecords calls and records served by shard (one stream, or all)."""
        return self._protocol.stats(arn)


def streams_client(url: str, max_attempts: int = 1) -> Any:
    """A boto3 ``dynamodbstreams`` client for an emulator endpoint; ``max_attempts`` counts the first
    call too (botocore's ``total_max_attempts``: its ``max_attempts`` counts retries only)."""
    return boto3.client(
        "dynamodbstreams",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts}, connect_timeout=5, read_timeout=10
        ),
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = self.server.protocol.respond(self.headers.get("X-Amz-Target", ""), body)  # type: ignore[attr-defined]
        payload = orjson.dumps(answer)
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", uuid.uuid4().hex.upper())
        self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return
