"""A DynamoDB endpoint in front of moto, scripted by the test. It forwards every call to moto
unchanged, except:

* ``DescribeTable`` of a table given to ``point(table, arn)`` answers with that stream-server stream
  as ``LatestStreamArn`` (enabled), or with no stream at all after ``point(table, None)``: what a
  worker configured by table name sees while a stream is disabled and re-enabled (moto cannot
  replace a table's stream: after ``StreamEnabled=false`` it keeps the old stream's label and
  refuses to enable a new one; the test-side stream server can hold several streams for one table);
* while ``throttle_writes(table_part)`` is on, item writes (PutItem, UpdateItem, DeleteItem) to
  tables whose name contains ``table_part`` are answered ``ProvisionedThroughputExceededException``,
  as DynamoDB answers them: a lease table that throttles every write.

Every call it forwards is billed in ``bills``: when, the table, the item's ``leaseKey`` (for item
calls), and the read and write units DynamoDB would charge (``tests.support.capacity``).

Thread-safe; ``stop()`` shuts it down.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.support.capacity import capacity_units
from tests.support.quiet_http import QuietHTTPServer

_UNSET = object()
_WRITES = ("DynamoDB_20120810.PutItem", "DynamoDB_20120810.UpdateItem", "DynamoDB_20120810.DeleteItem")
_THROTTLED = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded (injected)",
    }
).encode()


@dataclass(frozen=True)
class Bill:
    at: float  # time.monotonic()
    table: str
    lease_key: str | None  # the item's leaseKey, for item calls on a lease table
    read_units: float
    write_units: float


class TableFacade:
    def __init__(self, moto_url: str) -> None:
        self._moto = moto_url.rstrip("/")
        self._lock = threading.Lock()
        self._streams: dict[str, str | None] = {}
        self._throttled_tables: str | None = None
        self.throttled = 0
        self.calls: list[tuple[str, str]] = []  # (operation, its TableName or StreamArn, or "*") of every call
        self.bills: list[Bill] = []
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def point(self, table: str, stream_arn: str | None) -> None:
        """Make DescribeTable of ``table`` name ``stream_arn`` (None: the stream is disabled)."""
        with self._lock:
            self._streams[table] = stream_arn

    def throttle_writes(self, table_part: str | None) -> None:
        """Throttle item writes to tables whose name contains ``table_part`` (None: stop)."""
        with self._lock:
            self._throttled_tables = table_part

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _throttles(self, target: str, body: bytes) -> bool:
        with self._lock:
            part = self._throttled_tables
            if part is None or target not in _WRITES or part not in str(json.loads(body).get("TableName", "")):
                return False
            self.throttled += 1
            return True

    def _patched(self, body: bytes, answer: bytes) -> bytes:
        table = json.loads(body or b"{}").get("TableName")
        with self._lock:
            arn = self._streams.get(table, _UNSET)
        if arn is _UNSET:
            return answer
        description = json.loads(answer)
        patched = description["Table"]
        if arn is None:
            patched["StreamSpecification"] = {"StreamEnabled": False}
        else:
            patched["LatestStreamArn"] = arn
            patched["LatestStreamLabel"] = arn.rsplit("/", 1)[-1]
            patched["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        return json.dumps(description).encode()

    def _bill(self, operation: str, request: dict, status: int, answer: bytes) -> None:
        refused_by_condition = status == 400 and b"ConditionalCheckFailed" in answer
        if status != 200 and not refused_by_condition:
            return  # throttled or failed: not billed
        reads, writes = capacity_units(operation, request, json.loads(answer) if status == 200 else {})
        if reads or writes:
            key = request.get("Key", request.get("Item", {})).get("leaseKey", {}).get("S")
            self.bills.append(Bill(time.monotonic(), request.get("TableName", ""), key, reads, writes))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        facade = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                request = json.loads(body or b"{}")
                resource = request.get("TableName") or request.get("StreamArn") or "*"
                if request.get("IndexName"):  # a Query of a secondary index: IAM names the index
                    resource += f"/index/{request['IndexName']}"
                if target.endswith((".BatchGetItem", ".BatchWriteItem")):
                    resource = ",".join(sorted(request.get("RequestItems", {})))
                facade.calls.append((target.rsplit(".", 1)[-1], resource))
                if facade._throttles(target, body):
                    status, answer = 400, _THROTTLED
                else:
                    status, answer = self._forward(body)
                if status == 200 and target.endswith(".DescribeTable"):
                    answer = facade._patched(body, answer)
                facade._bill(target.rsplit(".", 1)[-1], request, status, answer)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _forward(self, body: bytes) -> tuple[int, bytes]:
                headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
                request = urllib.request.Request(facade._moto + self.path, data=body, method="POST", headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        return response.status, response.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read()

            def log_message(self, *args: object) -> None:
                return

        return Handler
