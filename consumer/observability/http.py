"""The HTTP endpoint beside the worker: ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` answers from a liveness callback that must not depend on DynamoDB or OpenSearch
(an outage of those must not turn into a restart storm); ``/readyz`` from a readiness callback.

The kubelet's probes must be answered whatever else connects, so the listener is bounded:

* one thread (an asyncio loop) serves every connection: an idle or slow client costs a socket, never
  a thread;
* a request's head must arrive whole within ``request_timeout`` seconds (not per read: a client
  sending a byte a second is cut off too), and an answer must be taken within it; idle keep-alive
  connections are closed after it;
* at most ``max_connections`` are open: a new connection beyond that closes the oldest idle one, so
  a flood of idle connections can never lock a probe out.

``start()`` returns once the socket listens; ``stop()`` shuts it down. Thread-safe.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.errors import ConfigError
from consumer.observability.redaction import redact

Probe = Callable[[], tuple[bool, str]]
_MAX_HEAD_BYTES = 8 * 1024
_TEXT = "text/plain; charset=utf-8"


class ObservabilityServer:
    """Serves metrics and probes on one port."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        liveness: Probe,
        readiness: Probe,
        request_timeout: float = 5.0,
        max_connections: int = 64,
    ) -> None:
        """Raises ConfigError when the address cannot be listened on (the port in use, a bad host)."""
        try:
            self._socket = socket.create_server((host, port), backlog=128)
        except OSError as exc:
            raise ConfigError(
                f"CDC_METRICS_HOST={host} CDC_METRICS_PORT={port}: cannot listen there ({exc.strerror or exc}): "
                "another process holds the port, or the address is not this host's; choose another "
                "CDC_METRICS_PORT (0 picks a free one)"
            ) from exc
        self._routes = _Routes(registry, liveness, readiness)
        self._timeout = request_timeout
        self._max_connections = max_connections
        self._idle: dict[int, asyncio.StreamWriter] = {}  # connections waiting for a request, oldest first
        self._writers: set[asyncio.StreamWriter] = set()
        self._ids = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="observability-http", daemon=True)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive() and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=5)
        self._socket.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(self._connected, sock=self._socket, limit=_MAX_HEAD_BYTES)
        async with server:
            await self._stopped.wait()
            server.close()
            for writer in list(self._writers):
                writer.close()
            await asyncio.sleep(0)  # the handlers see their connections end

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self._max_connections and self._idle:
            oldest = self._idle.pop(next(iter(self._idle)))
            oldest.close()  # its handler sees the end and lets go of the connection
        self._writers.add(writer)
        try:
            await self._serve_connection(reader, writer, next(self._ids))
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that left, stalled or sent what is no request: its connection is closed
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: int) -> None:
        """Answer requests on one connection (keep-alive) until the client closes it or stalls."""
        while True:
            self._idle[key] = writer
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._timeout)
            finally:
                self._idle.pop(key, None)
            keep_alive = _keeps_alive(head)
            method, path = _request(head)
            try:
                status, body, content_type = self._routes.answer(path)
            except Exception as exc:  # noqa: BLE001 - a failing probe callback is an answer too, never a dead loop
                status, body, content_type = 500, f"probe failed: {type(exc).__name__}\n".encode(), _TEXT
            writer.write(_response(status, body, content_type, keep_alive, with_body=method != "HEAD"))
            await asyncio.wait_for(writer.drain(), self._timeout)
            if not keep_alive:
                return


class _Routes:
    """What each path answers."""

    def __init__(self, registry: CollectorRegistry, liveness: Probe, readiness: Probe) -> None:
        self._registry = registry
        self._liveness = liveness
        self._readiness = readiness

    def answer(self, path: str | None) -> tuple[int, bytes, str]:
        if path is None:
            return 400, b"bad request\n", _TEXT
        if path == "/metrics":
            return 200, generate_latest(self._registry), CONTENT_TYPE_LATEST
        if path in ("/healthz", "/readyz"):
            ok, detail = (self._liveness if path == "/healthz" else self._readiness)()
            return (200 if ok else 503), (redact(detail) + "\n").encode(), _TEXT
        return 404, b"not found: try /metrics, /healthz or /readyz\n", _TEXT


def _request(head: bytes) -> tuple[str, str | None]:
    """The method and path (without its query) of a request line; None for a path that is not a
    GET's or HEAD's."""
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or parts[0] not in ("GET", "HEAD") or not parts[2].startswith("HTTP/1."):
        return "", None
    return parts[0], parts[1].split("?", 1)[0]


def _keeps_alive(head: bytes) -> bool:
    text = head.decode("latin-1").lower()
    if "\r\nconnection: close" in text:
        return False
    return not text.split("\r\n", 1)[0].endswith("http/1.0") or "\r\nconnection: keep-alive" in text


def _response(status: int, body: bytes, content_type: str, keep_alive: bool, with_body: bool) -> bytes:
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + (body if with_body else b"")
