"""The HTTP endpoint beside the worker: ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` answers from a liveness callback that must not depend on DynamoDB or OpenSearch
(an outage of those must not turn into a restart storm); ``/readyz`` from a readiness callback.
``start()`` returns once the socket listens; ``stop()`` shuts it down. Thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.errors import ConfigError

Probe = Callable[[], tuple[bool, str]]


class ObservabilityServer:
    """Serves metrics and probes on one port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, liveness: Probe, readiness: Probe) -> None:
        """Raises ConfigError when the address cannot be listened on (the port in use, a bad host)."""
        handler = _make_handler(registry, liveness, readiness)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"CDC_METRICS_HOST={host} CDC_METRICS_PORT={port}: cannot listen there ({exc.strerror or exc}): "
                "another process holds the port, or the address is not this host's; choose another "
                "CDC_METRICS_PORT (0 picks a free one)"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="observability-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(registry: CollectorRegistry, liveness: Probe, readiness: Probe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, detail = (liveness if path == "/healthz" else readiness)()
                self._reply(200 if ok else 503, (detail + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: keep logs quiet
            return

    return Handler
