"""An HTTP proxy in front of OpenSearch that injects failures on ``_bulk``.

osmem-server keeps its index in memory, so an outage cannot be simulated by restarting it;
instead the proxy answers in its place. Faults are scripted per test:

* ``fail_requests(status, count, error_type)``: the next ``count`` bulk requests are answered
  ``status`` (count=None: until ``heal()``), without reaching the server;
* ``fail_items(status, count, error_type)``: the next ``count`` bulk requests are answered 200 with
  every item rejected with ``status`` and not applied (a busy node's 429 items, a write block's 403);
* ``reset_connections(count)``: bulk requests are answered by closing the connection;
* ``stall(seconds, count)``: bulk requests are answered only after ``seconds`` (a client timeout);
* ``limit_body(max_bytes)``: bulk bodies over ``max_bytes`` get 413, as ``http.max_content_length``;
* ``bad_answers(kinds, every, count)``: every ``every``-th bulk request is answered the way a
  misbehaving proxy or load balancer answers (``BAD_ANSWERS``: an HTML page with 200 or 502, an empty
  or non-bulk JSON body, a body cut short, an answer missing items, valid JSON labelled text/plain,
  a connection closed halfway through the body), the kinds taken in turn, ``count`` times in all;
  some of them after the request reached OpenSearch (its writes applied, the answer lost);
* ``refuse()``: the proxy stops listening (connection refused) until ``heal()``.

Other requests pass through untouched. Every bulk item that reached the server is appended to
``ledger`` as a ``LedgerEntry`` (document id, op, version, the document's ``revision`` attribute,
answered status), in the order answers arrived, so tests can check the order changes were applied
in. Thread-safe; ``stop()`` shuts it down.
"""

from __future__ import annotations

import json
import socket
import threading
import time
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


# How misbehaving proxies and load balancers answer; those marked True let the request through first.
BAD_ANSWERS = {
    "html_200": False,
    "html_502": False,
    "empty_200": False,
    "not_bulk": False,
    "truncated": True,
    "items_missing": True,
    "text_plain": True,
    "cut_connection": True,
}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self._upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._request_faults: tuple[int, int | None, str] | None = None
        self._request_fault_reason = "fault proxy"
        self._item_faults: tuple[int, int | None, str] | None = None
        self._resets: int | None = 0
        self._stall: tuple[float, int | None] | None = None
        self._max_body: int | None = None
        self._bad: tuple[list[str], int, int | None] | None = None  # kinds, every, count left
        self.bad_answered: list[str] = []
        self.too_large = 0
        self._in_flight = 0
        self.max_in_flight = 0  # the most bulk requests forwarded upstream at once
        self.bulk_requests = 0
        self.failed_requests = 0
        self.ledger: list[LedgerEntry] = []
        self.bulk_headers: list[dict[str, str]] = []  # lower-cased headers of every bulk request
        self.requests: list[tuple[str, str]] = []  # (method, path without its query) of every request
        self._port = 0
        self._server: QuietHTTPServer | None = None
        self._listen()

    def _listen(self) -> None:
        self._server = QuietHTTPServer(("127.0.0.1", self._port), self._handler())
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def fail_requests(
        self, status: int, count: int | None = None, error_type: str = "injected", reason: str = "fault proxy"
    ) -> None:
        with self._lock:
            self._request_faults = (status, count, error_type)
            self._request_fault_reason = reason

    def fail_items(self, status: int, count: int | None, error_type: str = "injected") -> None:
        with self._lock:
            self._item_faults = (status, count, error_type)

    def reset_connections(self, count: int | None = None) -> None:
        with self._lock:
            self._resets = count

    def stall(self, seconds: float, count: int | None = None) -> None:
        with self._lock:
            self._stall = (seconds, count)

    def bad_answers(self, kinds: list[str], every: int = 2, count: int | None = None) -> None:
        with self._lock:
            self._bad = (list(kinds), every, count)

    def limit_body(self, max_bytes: int | None) -> None:
        with self._lock:
            self._max_body = max_bytes

    def refuse(self) -> None:
        """Stop listening: connections are refused until ``heal()`` listens again on the same port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def heal(self) -> None:
        with self._lock:
            self._request_faults = None
            self._item_faults = None
            self._resets = 0
            self._stall = None
            self._bad = None
        if self._server is None:
            self._listen()

    def stop(self) -> None:
        self.refuse()

    def _take_fault(self, size: int) -> tuple[str, int, str] | None:
        with self._lock:
            self.bulk_requests += 1
            if self._resets is None or self._resets > 0:
                self._resets = None if self._resets is None else self._resets - 1
                self.failed_requests += 1
                return "reset", 0, ""
            if self._stall is not None:
                seconds, count = self._stall
                self._stall = None if count == 1 else (seconds, None if count is None else count - 1)
                return "stall", int(seconds * 1000), ""
            if self._bad is not None and self.bulk_requests % self._bad[1] == 0:
                kinds, every, count = self._bad
                kind = kinds[len(self.bad_answered) % len(kinds)]
                self.bad_answered.append(kind)
                left = None if count is None else count - 1
                self._bad = None if left == 0 else (kinds, every, left)
                return "bad", 0, kind
            if self._max_body is not None and size > self._max_body:
                self.too_large += 1
                return "request", 413, "content_too_long"
            if self._request_faults:
                status, count, error_type = self._request_faults
                left = None if count is None else count - 1
                self._request_faults = None if left == 0 else (status, left, error_type)
                self.failed_requests += 1
                return "request", status, error_type
            if self._item_faults:
                status, count, error_type = self._item_faults
                left = None if count is None else count - 1
                self._item_faults = None if left == 0 else (status, left, error_type)
                return "items", status, error_type
            return None

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

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
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path.split("?", 1)[0]))
                if "/_bulk" in self.path:
                    proxy.bulk_headers.append({name.lower(): value for name, value in self.headers.items()})
                fault = proxy._take_fault(len(body)) if "/_bulk" in self.path else None
                if fault and fault[0] == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if fault and fault[0] == "request":
                    error = {"error": {"type": fault[2], "reason": proxy._request_fault_reason}, "status": fault[1]}
                    return self._reply(fault[1], json.dumps(error).encode())
                if fault and fault[0] == "items":
                    return self._reply(200, _rejected_items(body, fault[1], fault[2]))
                if fault and fault[0] == "bad":
                    return self._bad_answer(fault[2], body)
                bulk = "/_bulk" in self.path
                if bulk:
                    proxy._enter()
                try:
                    if fault and fault[0] == "stall":
                        time.sleep(fault[1] / 1000)
                    status, payload = self._upstream(body)
                finally:
                    if bulk:
                        proxy._leave()
                if bulk and status == 200:
                    proxy._record(body, payload)
                self._reply(status, payload)

            def _bad_answer(self, kind: str, body: bytes) -> None:
                payload = self._upstream(body)[1] if BAD_ANSWERS[kind] else b""
                if kind == "html_200":
                    return self._reply(200, b"<html><body>Welcome to the proxy</body></html>", "text/html")
                if kind == "html_502":
                    return self._reply(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
                if kind == "empty_200":
                    return self._reply(200, b"")
                if kind == "not_bulk":
                    return self._reply(200, b'{"acknowledged": true}')
                if kind == "truncated":
                    return self._reply(200, payload[: len(payload) // 2])
                if kind == "items_missing":
                    answer = json.loads(payload)
                    answer["items"] = answer.get("items", [])[:-1]
                    return self._reply(200, json.dumps(answer).encode())
                if kind == "text_plain":
                    return self._reply(200, payload, "text/plain")
                # cut_connection: the whole length announced, half of it sent, then the connection closed
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None

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

            def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
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


def _rejected_items(body: bytes, status: int, error_type: str = "injected") -> bytes:
    """A bulk answer rejecting every action of ``body`` with ``status``."""
    error = {"type": error_type, "reason": "injected by the fault proxy"}
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
