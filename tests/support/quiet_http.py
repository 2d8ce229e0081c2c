"""A threading HTTP server for test doubles that does not print tracebacks when a client hangs up.

Workers killed mid-request (SIGKILL, SIGSTOP) are part of the tests; their dropped connections
are expected, not errors worth a traceback on the test output.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ServedInThread:
    """A ``QuietHTTPServer`` on a free loopback port, served by a daemon thread of its own: the test
    doubles' lifecycle (``serve()`` once built, ``url``, ``stop()``). ``attributes`` are set on the
    server for the handler to find (``self.server.<name>``)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str, **attributes: Any) -> None:
        self._http = QuietHTTPServer(("127.0.0.1", 0), handler)
        for attribute, value in attributes.items():
            setattr(self._http, attribute, value)
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), name=name, daemon=True)

    def serve(self) -> None:
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)
