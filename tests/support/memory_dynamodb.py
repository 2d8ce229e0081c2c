"""An in-memory DynamoDB for lease tables: the tables created through it live in its memory and are
served over DynamoDB's real JSON protocol; every request for any other table goes to ``upstream``
(moto), so a worker pointed at it finds its source table there as before.

moto answers a few hundred lease-table writes a second and scans about 500 items a second. A pool of
thousands of leases renews more than a thousand a second, so against moto a benchmark measures moto.
This double answers the calls ``consumer.leases.table`` makes (CreateTable, DescribeTable,
DeleteTable, GetItem, PutItem, UpdateItem, DeleteItem and a paginated Scan, with the condition and
update expressions of ``tests.support.dynamodb_expressions``) in tens of microseconds, and refuses what
it does not implement by name. ``tests/contract/test_lease_table_contract.py`` runs one suite against
it and against moto, so the two cannot drift apart where the consumer relies on them.

Run in process (``MemoryDynamoDB.start(upstream)``, the contract tests) or as a process of its own
(``python -m tests.support.memory_dynamodb --upstream URL``, which prints its URL; the scale
benchmark, so that its threads do not share the benchmark's interpreter). Thread-safe: one lock
guards the tables. Never ships.
"""

from __future__ import annotations

import argparse
import bisect
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson
import urllib3

from tests.support.capacity import capacity_units, item_size
from tests.support.dynamodb_expressions import ExpressionError, Placeholders, parse_condition, parse_update
from tests.support.processes import stop_process
from tests.support.quiet_http import ServedInThread

PREFIX = "DynamoDB_20120810."
PAGE_BYTES = 1 << 20  # a Scan page holds at most 1 MB of items
CONTENT_TYPE = "application/x-amz-json-1.0"
ACCOUNT = "123456789012"


class DynamoDBError(Exception):
    """An error answer: its ``__type`` code and message, status 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Table:
    """One table: its description and its items, by hash key (string keys only, as lease tables have)."""

    def __init__(self, name: str, request: dict[str, Any], region: str) -> None:
        schema = request.get("KeySchema") or []
        if len(schema) != 1 or schema[0].get("KeyType") != "HASH":
            raise DynamoDBError("ValidationException", "the double implements tables with a hash key only")
        self.key = schema[0]["AttributeName"]
        self.items: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # the keys, sorted: a Scan's order, so a cursor stays valid across writes
        self.description = {
            "TableName": name,
            "TableArn": f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}",
            "TableId": f"memory-{name}",
            "TableStatus": "ACTIVE",
            "KeySchema": schema,
            "AttributeDefinitions": request.get("AttributeDefinitions", []),
            "BillingModeSummary": {"BillingMode": request.get("BillingMode", "PROVISIONED")},
            "CreationDateTime": time.time(),
            "ProvisionedThroughput": {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0},
        }

    def describe(self) -> dict[str, Any]:
        size = sum(item_size(item) for item in self.items.values())
        return {**self.description, "ItemCount": len(self.items), "TableSizeBytes": size}

    def key_of(self, key: dict[str, Any]) -> str:
        if set(key) != {self.key} or "S" not in key[self.key]:
            raise DynamoDBError("ValidationException", "The provided key element does not match the schema")
        return key[self.key]["S"]

    def put(self, key: str, item: dict[str, Any]) -> None:
        if key not in self.items:
            bisect.insort(self.order, key)
        self.items[key] = item

    def delete(self, key: str) -> None:
        if self.items.pop(key, None) is not None:
            del self.order[bisect.bisect_left(self.order, key)]

    def scan(self, request: dict[str, Any]) -> dict[str, Any]:
        start = request.get("ExclusiveStartKey")
        position = 0 if start is None else bisect.bisect_right(self.order, self.key_of(start))
        limit = request.get("Limit")
        if limit is not None and int(limit) < 1:
            raise DynamoDBError("ValidationException", "1 validation error detected: Limit must be at least 1")
        chosen: list[dict[str, Any]] = []
        size = 0
        while position < len(self.order) and (limit is None or len(chosen) < int(limit)) and size < PAGE_BYTES:
            item = self.items[self.order[position]]
            chosen.append(item)
            size += item_size(item)
            position += 1
        answer: dict[str, Any] = {"Items": chosen, "Count": len(chosen), "ScannedCount": len(chosen)}
        if position < len(self.order) and chosen:
            answer["LastEvaluatedKey"] = {self.key: chosen[-1][self.key]}
        return answer


class MemoryDynamoDB(ServedInThread):
    """The tables created through this front, and the forwarding of every other request."""

    def __init__(self, upstream: str, region: str = "us-east-1") -> None:
        super().__init__(_Handler, "memory-dynamodb", front=self)
        self._calls: Counter[str] = Counter()  # operations answered from memory, e.g. "UpdateItem"
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()
        self._region = region
        self._upstream = urllib3.PoolManager(maxsize=8).connection_from_url(upstream)

    @classmethod
    def start(cls, upstream: str, region: str = "us-east-1") -> MemoryDynamoDB:
        front = cls(upstream, region)
        front.serve()
        return front

    def calls_so_far(self) -> dict[str, int]:
        """The operations answered from memory so far, by name."""
        with self._lock:
            return dict(self._calls)

    def serves(self, operation: str, request: dict[str, Any]) -> bool:
        """Whether this front answers the request itself: a table it holds, or one to create here."""
        if operation == "CreateTable":
            return True
        with self._lock:
            return request.get("TableName") in self._tables

    def respond(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one request for a table of this front. Raises DynamoDBError."""
        handler = _OPERATIONS.get(operation)
        if handler is None:
            raise DynamoDBError("UnknownOperationException", f"the double does not implement {operation} on its tables")
        with self._lock:
            self._calls[operation] += 1
            try:
                answer = handler(self, request)
            except ExpressionError as exc:
                raise DynamoDBError("ValidationException", str(exc)) from exc
        if request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
            reads, writes = capacity_units(operation, request, answer)
            answer["ConsumedCapacity"] = {"TableName": request["TableName"], "CapacityUnits": reads + writes}
        return answer

    def forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        answer = self._upstream.urlopen("POST", path, body=body, headers=headers, retries=False)
        return answer.status, answer.headers.get("Content-Type", CONTENT_TYPE), answer.data

    # -- operations (called under the lock) ---------------------------------------------------------

    def _create_table(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TableName"]
        if name in self._tables:
            raise DynamoDBError("ResourceInUseException", f"Table already exists: {name}")
        self._tables[name] = _Table(name, request, self._region)
        return {"TableDescription": self._tables[name].describe()}

    def _describe_table(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"Table": self._table(request).describe()}

    def _delete_table(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._tables.pop(self._table(request).description["TableName"])
        return {"TableDescription": {**table.describe(), "TableStatus": "DELETING"}}

    def _get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._table(request)
        item = table.items.get(table.key_of(request["Key"]))
        return {} if item is None else {"Item": item}

    def _put_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._table(request)
        item = request["Item"]
        key = table.key_of({name: value for name, value in item.items() if name == table.key})
        self._check_condition(request, table.items.get(key))
        table.put(key, item)
        return {}

    def _update_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._table(request)
        key = table.key_of(request["Key"])
        placeholders = _placeholders(request)
        update = parse_update(request.get("UpdateExpression", ""), placeholders)
        if table.key in update.set or table.key in update.remove:
            raise DynamoDBError(
                "ValidationException", f"Cannot update attribute {table.key}. This attribute is part of the key"
            )
        condition = _condition(request, placeholders)
        placeholders.check_all_used()
        current = table.items.get(key)
        if condition is not None and not condition(current or {}):
            raise DynamoDBError("ConditionalCheckFailedException", "The conditional request failed")
        if request.get("ReturnValues", "NONE") != "NONE":
            raise DynamoDBError("ValidationException", "the double implements ReturnValues NONE only")
        table.put(key, update.apply(current or dict(request["Key"])))
        return {}

    def _delete_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._table(request)
        key = table.key_of(request["Key"])
        self._check_condition(request, table.items.get(key))
        table.delete(key)
        return {}

    def _scan(self, request: dict[str, Any]) -> dict[str, Any]:
        unsupported = {"FilterExpression", "ProjectionExpression", "Segment", "IndexName"} & set(request)
        if unsupported:
            raise DynamoDBError("ValidationException", f"the double does not implement Scan with {sorted(unsupported)}")
        return self._table(request).scan(request)

    def _table(self, request: dict[str, Any]) -> _Table:
        table = self._tables.get(request.get("TableName", ""))
        if table is None:
            raise DynamoDBError("ResourceNotFoundException", "Requested resource not found")
        return table

    def _check_condition(self, request: dict[str, Any], current: dict[str, Any] | None) -> None:
        placeholders = _placeholders(request)
        condition = _condition(request, placeholders)
        placeholders.check_all_used()
        if condition is not None and not condition(current or {}):
            raise DynamoDBError("ConditionalCheckFailedException", "The conditional request failed")


def _placeholders(request: dict[str, Any]) -> Placeholders:
    return Placeholders(request.get("ExpressionAttributeNames", {}), request.get("ExpressionAttributeValues", {}))


def _condition(request: dict[str, Any], placeholders: Placeholders) -> Any:
    expression = request.get("ConditionExpression")
    return None if expression is None else parse_condition(expression, placeholders)


_OPERATIONS = {
    "CreateTable": MemoryDynamoDB._create_table,
    "DescribeTable": MemoryDynamoDB._describe_table,
    "DeleteTable": MemoryDynamoDB._delete_table,
    "GetItem": MemoryDynamoDB._get_item,
    "PutItem": MemoryDynamoDB._put_item,
    "UpdateItem": MemoryDynamoDB._update_item,
    "DeleteItem": MemoryDynamoDB._delete_item,
    "Scan": MemoryDynamoDB._scan,
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
        front: MemoryDynamoDB = self.server.front  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(PREFIX)
        try:
            request = orjson.loads(body) if target.startswith(PREFIX) else None
        except orjson.JSONDecodeError:
            self._send(400, CONTENT_TYPE, _error("SerializationException", "the request body is not JSON"))
            return
        if not isinstance(request, dict) or not front.serves(operation, request):
            self._send(*front.forward(self.path, dict(self.headers), body))
            return
        try:
            answer = orjson.dumps(front.respond(operation, request))
        except DynamoDBError as exc:
            self._send(400, CONTENT_TYPE, _error(exc.code, str(exc)))
            return
        self._send(200, CONTENT_TYPE, answer)

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        """``/calls``: the operations answered from memory so far, by name (for the benchmarks)."""
        front: MemoryDynamoDB = self.server.front  # type: ignore[attr-defined]
        if self.path != "/calls":
            self._send(404, "text/plain", b"only /calls\n")
            return
        self._send(200, "application/json", orjson.dumps(front.calls_so_far()))

    def log_message(self, *args: object) -> None:
        return

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "memory-dynamodb")
        self.end_headers()
        self.wfile.write(data)


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; the first line on stdout is the URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="where requests for other tables go (moto)")
    args = parser.parse_args(argv)
    front = MemoryDynamoDB.start(args.upstream)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(front.url, flush=True)
    while not stop.wait(1.0):
        pass
    front.stop()


class MemoryDynamoDBProcess:
    """``main`` in a process of its own: ``start(upstream)`` waits for its URL; ``stop()`` ends it."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    def start(cls, upstream: str) -> MemoryDynamoDBProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.memory_dynamodb", "--upstream", upstream],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            process.kill()
            raise RuntimeError(f"the in-memory DynamoDB did not start (exit {process.wait()})")
        return cls(process, url)

    def calls(self) -> dict[str, int]:
        """The operations it answered from memory so far, by name (``UpdateItem``, ``Scan``, …)."""
        answer = urllib3.request("GET", f"{self.url}/calls", timeout=10)
        return dict(orjson.loads(answer.data))

    def stop(self) -> None:
        stop_process(self.process)


if __name__ == "__main__":
    main()
