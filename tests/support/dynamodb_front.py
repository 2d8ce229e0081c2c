"""A DynamoDB endpoint in front of moto that can throttle writes: every request is passed through,
except — while ``throttle_writes(table_part)`` is on — the item writes (PutItem, UpdateItem,
DeleteItem) to tables whose name contains ``table_part``, which are answered
``ProvisionedThroughputExceededException`` as DynamoDB answers them. For tests of a lease table
that throttles every write for a while. ``stop()`` shuts it down. Thread-safe."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler

import orjson

from tests.support.quiet_http import QuietHTTPServer

_WRITES = ("DynamoDB_20120810.PutItem", "DynamoDB_20120810.UpdateItem", "DynamoDB_20120810.DeleteItem")
_THROTTLED = orjson.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded (injected)",
    }
)


class DynamoDBFront:
    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._throttled_tables: str | None = None
        self.throttled = 0
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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
            if part is None or target not in _WRITES or part not in str(orjson.loads(body).get("TableName", "")):
                return False
            self.throttled += 1
            return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if front._throttles(target, body):
                    return self._reply(400, _THROTTLED, "application/x-amz-json-1.0")
                request = urllib.request.Request(
                    front._upstream + self.path,
                    data=body,
                    method="POST",
                    headers={name: value for name, value in self.headers.items() if name.lower() != "host"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, payload, kind = response.status, response.read(), response.headers["Content-Type"]
                except urllib.error.HTTPError as exc:
                    status, payload, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                self._reply(status, payload, kind or "application/x-amz-json-1.0")

            def _reply(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        return Handler
