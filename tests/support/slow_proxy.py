"""An HTTP proxy that passes every request through unchanged (headers included, so AWS's JSON
protocols work) and can answer late: ``slow(seconds)`` delays each request by that long before
forwarding it, ``heal()`` stops delaying. For DynamoDB / Streams answering slowly (moto behind it)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler

import urllib3

from tests.support.quiet_http import QuietHTTPServer


class SlowProxy:
    def __init__(self, upstream: str) -> None:
        self.delay = 0.0
        self._upstream = urllib3.PoolManager(maxsize=32).connection_from_url(upstream)
        self._server = QuietHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.proxy = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def slow(self, seconds: float) -> None:
        self.delay = seconds

    def heal(self) -> None:
        self.delay = 0.0

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def _forward(self) -> None:
        proxy: SlowProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if proxy.delay:
            time.sleep(proxy.delay)
        headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
        answer = proxy._upstream.urlopen(self.command, self.path, body=body or None, headers=headers, retries=False)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.data)))
        self.end_headers()
        self.wfile.write(answer.data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

    def log_message(self, *args: object) -> None:
        return
