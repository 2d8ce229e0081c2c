"""A DynamoDB endpoint for the backfill benchmark: ``Scan`` and ``BatchGetItem`` of its tables answered
from memory over the real wire protocol, every other request passed through to moto.

moto scans at a few hundred items a second (its own cost, not the consumer's): a backfill against it
would measure moto. In front of it, the table's pages come back as fast as DynamoDB sends them, so
the benchmark measures the consumer and the sink. Segments (``Segment`` / ``TotalSegments``),
``ExclusiveStartKey`` / ``LastEvaluatedKey``, ``Limit`` and ``ReturnConsumedCapacity`` behave as
DynamoDB's do; a page holds at most 1 MB of items, as DynamoDB's does. It counts the requests by
their ``X-Amz-Target`` (``calls``), for the benchmarks that measure reads per shard. Never ships.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson
import urllib3

from tests.support.quiet_http import QuietHTTPServer

PAGE_BYTES = 1 << 20
SCAN_TARGET = "DynamoDB_20120810.Scan"
BATCH_GET_TARGET = "DynamoDB_20120810.BatchGetItem"


class _Table:
    """One table's items, pre-serialised, and where each key sits."""

    def __init__(self, name: str, items: list[dict[str, Any]], key_names: tuple[str, ...]) -> None:
        self.name = name
        self.encoded = [orjson.dumps(item) for item in items]
        self.keys = [{key: item[key] for key in key_names} for item in items]
        self.position = {orjson.dumps(key, option=orjson.OPT_SORT_KEYS): i for i, key in enumerate(self.keys)}

    def scan(self, request: dict[str, Any]) -> bytes:
        """One page of the segment, from after ``ExclusiveStartKey``."""
        segment, total = int(request.get("Segment", 0)), int(request.get("TotalSegments", 1))
        start = request.get("ExclusiveStartKey")
        position = 0 if start is None else self.position[orjson.dumps(start, option=orjson.OPT_SORT_KEYS)] + 1
        limit = int(request.get("Limit") or len(self.encoded))
        chosen: list[bytes] = []
        size, last = 0, None
        while position < len(self.encoded) and len(chosen) < limit and size < PAGE_BYTES:
            if position % total == segment:
                chosen.append(self.encoded[position])
                size += len(self.encoded[position])
                last = position
            position += 1
        more = any(p % total == segment for p in range(position, min(position + total, len(self.encoded))))
        body = b'{"Count":%d,"ScannedCount":%d,"Items":[' % (len(chosen), len(chosen)) + b",".join(chosen) + b"]"
        if more and last is not None:
            body += b',"LastEvaluatedKey":' + orjson.dumps(self.keys[last])
        if request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
            units = size / 4096 / (1 if request.get("ConsistentRead") else 2)
            body += b',"ConsumedCapacity":' + orjson.dumps({"TableName": self.name, "CapacityUnits": units})
        return body + b"}"

    def batch_get(self, keys: list[dict[str, Any]]) -> list[bytes]:
        """The items under ``keys`` that exist, as ``BatchGetItem`` returns them."""
        found = (self.position.get(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)) for key in keys)
        return [self.encoded[position] for position in found if position is not None]


class TableFront:
    """Serves the Scan of the tables added to it (wire-format items); forwards the rest to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.tables: dict[str, _Table] = {}
        self.calls: Counter[str] = Counter()  # requests by X-Amz-Target, e.g. "DynamoDBStreams_20120810.GetRecords"
        self._calls_lock = threading.Lock()
        self._upstream = urllib3.PoolManager(maxsize=8).connection_from_url(upstream)
        self._server = QuietHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.front = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, table: str, items: list[dict[str, Any]], key_names: tuple[str, ...]) -> None:
        self.tables[table] = _Table(table, items, key_names)

    def count(self, target: str) -> None:
        with self._calls_lock:
            self.calls[target] += 1

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        answer = self._upstream.urlopen("POST", path, body=body, headers=headers, retries=False)
        return answer.status, dict(answer.headers), answer.data


def _batch_get(front: TableFront, requested: dict[str, Any]) -> bytes | None:
    """The answer to a ``BatchGetItem`` of the front's tables only (None: one is not the front's),
    with no unprocessed key."""
    if not all(name in front.tables for name in requested):
        return None
    responses = {name: front.tables[name].batch_get(wanted["Keys"]) for name, wanted in requested.items()}
    listed = b",".join(orjson.dumps(name) + b":[" + b",".join(found) + b"]" for name, found in responses.items())
    return b'{"Responses":{' + listed + b'},"UnprocessedKeys":{}}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
        front: TableFront = self.server.front  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        front.count(self.headers.get("X-Amz-Target", ""))
        if self.headers.get("X-Amz-Target") == SCAN_TARGET:
            request = orjson.loads(body)
            table = front.tables.get(request.get("TableName"))
            if table is not None:
                self._send(200, {"Content-Type": "application/x-amz-json-1.0"}, table.scan(request))
                return
        if self.headers.get("X-Amz-Target") == BATCH_GET_TARGET:
            request = orjson.loads(body)
            answer = _batch_get(front, request["RequestItems"])
            if answer is not None:
                self._send(200, {"Content-Type": "application/x-amz-json-1.0"}, answer)
                return
        status, headers, data = front.forward(self.path, dict(self.headers), body)
        self._send(status, {"Content-Type": headers.get("Content-Type", "application/x-amz-json-1.0")}, data)

    def log_message(self, *args: object) -> None:
        return

    def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
