"""A threading HTTP server for test doubles that does not print tracebacks when a client hangs up.

Workers killed mid-request (SIGKILL, SIGSTOP) are part of the tests; their dropped connections
are expected, not errors worth a traceback on the test output.
"""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
