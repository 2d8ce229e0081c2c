"""POSTs to one endpoint over one keep-alive HTTP/1.1 connection per thread.

The wire calls (``consumer.aws_json``) are small POSTs, hundreds a second at a thousand shards.
urllib3's pool manager costs about 0.3 ms of CPU per call on top of ``http.client`` (measured: a
GetRecords of an idle shard, 0.85 ms through urllib3 against 0.55 ms through this, server included);
each calling thread here simply keeps its own ``http.client`` connection.

* Connecting is bounded by ``connect_timeout``, each answer by ``read_timeout``; TCP_NODELAY is set.
* A connection the server has closed while idle (keep-alive timeouts) fails on its next use before
  the request was read: that request is sent once more on a new connection. Any other failure closes
  the connection and raises ``TransportError``; nothing else is retried here.
* A connection is closed after an answer that says so (``Connection: close``).

Thread-safe: connections are never shared between threads.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from urllib.parse import urlsplit

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class TransportError(Exception):
    """The request got no answer (connection refused, reset, timed out, malformed answer)."""


class KeepAliveConnections:
    """One persistent connection per calling thread to ``endpoint_url``'s host."""

    def __init__(self, endpoint_url: str, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self.path = parts.path or "/"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = ssl.create_default_context() if self._https else None
        self._local = threading.local()

    def post(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """The answer's status and body. Raises TransportError when there is none."""
        reused = getattr(self._local, "connection", None) is not None
        try:
            return self._post_once(headers, body)
        except _STALE as exc:
            if not reused:
                raise TransportError(f"POST {self._host}:{self._port} failed: {exc!r}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"POST {self._host}:{self._port} failed: {exc!r}") from exc
        try:
            return self._post_once(headers, body)  # the server had closed the idle connection
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"POST {self._host}:{self._port} failed: {exc!r}") from exc

    def _post_once(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        connection = self._connection()
        try:
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            self._drop(connection)
            raise
        if response.will_close:
            self._drop(connection)
        return response.status, data

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._tls is not None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._connect_timeout, context=self._tls
                )
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
            try:
                connection.connect()
            except BaseException:
                connection.close()
                raise
            assert connection.sock is not None
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.sock.settimeout(self._read_timeout)
            self._local.connection = connection
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None
