"""An HTTP proxy in front of osmem-server that injects OpenSearch failures on ``_bulk``.

osmem-server keeps its index in memory, so an outage cannot be simulated by restarting it;
instead the proxy answers in its place. Faults are scripted per test:

* ``fail_requests(status, count)``: the next ``count`` bulk requests are answered ``status``
  (count=None: until ``heal()``), without reaching the server;
* ``fail_items(status, count)``: the next ``count`` bulk requests are answered 200 with every
  item rejected with ``status`` and not applied (what a busy node's 429 items look like).

Other requests pass through untouched. Every bulk item that reached the server is appended to
``ledger`` as a ``LedgerEntry`` (document id, op, version, the document's ``revision`` attribute,
answered status), in the order answers arrived, so tests can check the order changes were applied
in. Thread-safe; ``stop()`` shuts it down.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from tests.support.quiet_http import QuietHTTPServer


class LedgerEntry(NamedTuple):
    doc_id: str
    op: str
    version: int
    revision: Any
    status: int


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._request_faults: tuple[int, int | None] | None = None
        self._item_faults: tuple[int, int] | None = None
        self.bulk_requests = 0
        self.failed_requests = 0
        self.ledger: list[LedgerEntry] = []
        self.bulk_headers: list[dict[str, str]] = []  # lower-cased headers of every bulk request
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_requests(self, status: int, count: int | None = None) -> None:
        with self._lock:
            self._request_faults = (status, count)

    def fail_items(self, status: int, count: int) -> None:
        with self._lock:
            self._item_faults = (status, count)

    def heal(self) -> None:
        with self._lock:
            self._request_faults = None
            self._item_faults = None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self) -> tuple[str, int] | None:
        with self._lock:
            self.bulk_requests += 1
            if self._request_faults:
                status, count = self._request_faults
                self._request_faults = None if count == 1 else (status, None if count is None else count - 1)
                self.failed_requests += 1
                return "request", status
            if self._item_faults:
                status, count = self._item_faults
                self._item_faults = None if count == 1 else (status, count - 1)
                return "items", status
            return None

    def _record(self, body: bytes, payload: bytes) -> None:
        items = json.loads(payload).get("items", [])
        entries = [
            LedgerEntry(meta["_id"], op, int(meta["version"]), (document or {}).get("revision"), result["status"])
            for (op, meta, document), item in zip(_actions(body), items, strict=True)
            for result in item.values()
        ]
        with self._lock:
            self.ledger.extend(entries)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/_bulk" in self.path:
                    proxy.bulk_headers.append({name.lower(): value for name, value in self.headers.items()})
                fault = proxy._take_fault() if "/_bulk" in self.path else None
                if fault and fault[0] == "request":
                    error = {"error": {"type": "injected", "reason": "fault proxy"}, "status": fault[1]}
                    return self._reply(fault[1], json.dumps(error).encode())
                if fault and fault[0] == "items":
                    return self._reply(200, _rejected_items(body, fault[1]))
                status, payload = self._upstream(body)
                if "/_bulk" in self.path and status == 200:
                    proxy._record(body, payload)
                self._reply(status, payload)

            def _upstream(self, body: bytes) -> tuple[int, bytes]:
                request = urllib.request.Request(
                    proxy._upstream + self.path,
                    data=body if body else None,
                    method=self.command,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        return response.status, response.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read()

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

            def log_message(self, *args: object) -> None:
                return

        return Handler


def _actions(body: bytes) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(op, metadata, document or None) for each action of a bulk body."""
    actions = []
    lines = iter(line for line in body.splitlines() if line.strip())
    for line in lines:
        ((op, meta),) = json.loads(line).items()
        document = json.loads(next(lines)) if op in ("index", "create", "update") else None
        actions.append((op, meta, document))
    return actions


def _rejected_items(body: bytes, status: int) -> bytes:
    """A bulk answer rejecting every action of ``body`` with ``status``."""
    error = {"type": "es_rejected_execution_exception", "reason": "injected"}
    items = [
        {op: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": status, "error": error}}
        for op, meta, _ in _actions(body)
    ]
    return json.dumps({"took": 0, "errors": True, "items": items}).encode()


def assert_versions_follow_write_order(ledger: list[LedgerEntry]) -> None:
    """For every document, ordering its index operations by version orders them by write
    (``revision``, the writer's counter): whatever reached OpenSearch, in whatever order, the
    higher version is always the later change. Tombstones (deletes, which carry no ``revision``)
    are left out, as ``_bulk`` deletes were."""
    by_doc = defaultdict(list)
    for entry in ledger:
        if entry.op == "index" and entry.revision is not None:
            by_doc[entry.doc_id].append((entry.version, entry.revision))
    for doc_id, writes in by_doc.items():
        revisions = [revision for _, revision in sorted(set(writes))]
        assert revisions == sorted(revisions), f"{doc_id}: versions disagree with write order"
