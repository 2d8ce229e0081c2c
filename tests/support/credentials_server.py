"""The container credentials endpoint (what ECS and EKS Pod Identity serve at
``AWS_CONTAINER_CREDENTIALS_FULL_URI``), on loopback, for tests of credentials that cannot be
refreshed: botocore's credential chain reads it as it reads the real one.

It hands out keys that expire ``lifetime`` seconds after the 10 minutes within which botocore
insists on a refresh, so a client refreshes every ``lifetime`` seconds; ``fail()`` makes it answer
500 until ``heal()``, as an endpoint that is briefly unreachable or broken. moto accepts any keys.
``stop()`` shuts it down. Thread-safe.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler

from tests.support.quiet_http import QuietHTTPServer

_MANDATORY_REFRESH_SECONDS = 600  # botocore refreshes credentials expiring within 10 minutes, or fails


class CredentialsServer:
    def __init__(self, lifetime: float = 5.0) -> None:
        self._lifetime = lifetime
        self._failing = False
        self._lock = threading.Lock()
        self.served = 0
        self.refused = 0
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/credentials"

    def env(self) -> dict[str, str]:
        """The variables that point an SDK at this endpoint (and at nothing else for credentials)."""
        return {"AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url}

    def fail(self) -> None:
        with self._lock:
            self._failing = True

    def heal(self) -> None:
        with self._lock:
            self._failing = False

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self) -> tuple[int, bytes]:
        with self._lock:
            if self._failing:
                self.refused += 1
                return 500, b'{"message": "credentials endpoint unavailable"}'
            self.served += 1
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=_MANDATORY_REFRESH_SECONDS + self._lifetime)
        body = {
            "AccessKeyId": "ASIATESTING",
            "SecretAccessKey": "testing",
            "Token": "testing-session-token",
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return 200, json.dumps(body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                status, body = server._answer()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        return Handler
