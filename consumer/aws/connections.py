"""POSTs to one endpoint over one keep-alive HTTP/1.1 connection per thread.

The wire calls (``consumer.aws.json_client``) are small POSTs, hundreds a second at a thousand shards, and
each one's client-side CPU is most of what an idle shard costs. ``http.client`` parses every answer's
headers with the ``email`` package and writes a request in several pieces (measured: 200 µs of
client CPU per empty GetRecords, about half of it headers); urllib3's pool adds 0.3 ms on top. This
module speaks the small part of HTTP/1.1 these calls use, on a plain (or TLS) socket:

* a request is one write: request line, the caller's headers, ``Content-Length``, the body;
* an answer is read whole: status line, headers (only ``Content-Length``, ``Transfer-Encoding`` and
  ``Connection`` matter), then a body delimited by its length, by chunks, or by the connection's end;
  ``1xx`` answers are skipped; anything else malformed is an error.

Failures:

* Connecting is bounded by ``connect_timeout``, each read by ``read_timeout``; TCP_NODELAY is set.
* A reused connection the server closed while idle (keep-alive timeouts) fails before any byte of an
  answer arrives: that request is sent once more on a new connection. Any other failure closes the
  connection and raises ``ConnectionFailedError``; nothing else is retried here.
* A connection is closed after an answer that says so (``Connection: close``, HTTP/1.0, or a body
  delimited by the connection's end).

Thread-safe: connections are never shared between threads.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import NamedTuple
from urllib.parse import urlsplit

_MAX_HEAD_BYTES = 64 * 1024  # status line and headers; AWS answers carry a few hundred bytes
_READ_SIZE = 64 * 1024  # each read goes into the connection's own buffer of this size: no allocation a read


class Answer(NamedTuple):
    """An HTTP answer: status, body, and the ``Date`` and ``Content-Type`` headers (None / "" when absent)."""

    status: int
    body: bytes
    date: str | None
    content_type: str


class ConnectionFailedError(Exception):
    """The request got no answer (connection refused, reset, timed out, malformed answer)."""


class _ClosedBeforeAnswerError(ConnectionError):
    """The connection ended before any byte of the answer: on a reused connection, a keep-alive
    timeout the server did not announce."""


class _MalformedAnswerError(Exception):
    pass


# How a reused connection the server closed while idle fails (over TLS: a close without close_notify)
_STALE = (_ClosedBeforeAnswerError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLEOFError)


class _Connection:
    """One socket and the bytes read from it past the last answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self._chunk = bytearray(_READ_SIZE)

    def close(self) -> None:
        self.sock.close()

    def fill(self) -> bool:
        """Read what has arrived into the buffer; False at the connection's end."""
        count = self.sock.recv_into(self._chunk)
        self.buffer += self._chunk[:count]
        return count > 0

    def take(self, count: int) -> bytes:
        """Exactly ``count`` bytes."""
        if len(self.buffer) >= count:
            data, self.buffer = self.buffer[:count], self.buffer[count:]
            return data
        out = bytearray(count)
        view = memoryview(out)
        have = len(self.buffer)
        view[:have] = self.buffer
        self.buffer = b""
        while have < count:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise _MalformedAnswerError(f"the connection ended {count - have} bytes before the body's end")
            have += got
        return bytes(out)

    def line(self) -> bytes:
        """The next CRLF-terminated line, without its CRLF."""
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > _MAX_HEAD_BYTES or not self.fill():
                raise _MalformedAnswerError("a chunk size line was too long or cut short")
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def rest(self) -> bytes:
        """Everything until the connection's end."""
        while self.fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


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
        self._host_header = parts.netloc.rsplit("@", 1)[-1]
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = ssl.create_default_context() if self._https else None
        self._local = threading.local()

    def post(self, headers: dict[str, str], body: bytes) -> Answer:
        """The answer. Raises ConnectionFailedError when there is none."""
        reused = getattr(self._local, "connection", None) is not None
        try:
            return self._post_once(headers, body)
        except _STALE as exc:
            if not reused:
                raise self._failed(exc) from exc
        except (OSError, _MalformedAnswerError) as exc:
            raise self._failed(exc) from exc
        try:
            return self._post_once(headers, body)  # the server had closed the idle connection
        except (OSError, _MalformedAnswerError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> ConnectionFailedError:
        return ConnectionFailedError(f"POST {self._host}:{self._port} failed: {exc!r}")

    def _post_once(self, headers: dict[str, str], body: bytes) -> Answer:
        connection = self._connection()
        try:
            connection.sock.sendall(self._request(headers, body))
            answer, will_close = _read_answer(connection)
        except BaseException:
            self._drop(connection)
            raise
        if will_close:
            self._drop(connection)
        return answer

    def _request(self, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1"]
        if not any(name.lower() == "host" for name in headers):
            lines.append(f"Host: {self._host_header}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(lines).encode("latin-1") + body

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=self._host)
                sock.settimeout(self._read_timeout)
            except BaseException:
                sock.close()
                raise
            connection = _Connection(sock)
            self._local.connection = connection
        return connection

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._local.connection = None


def _read_answer(connection: _Connection) -> tuple[Answer, bool]:
    """The answer, and whether the connection must be closed after it."""
    while True:
        version, status, fields = _read_head(connection)
        if not 100 <= status < 200:
            break
    closing = fields.get("connection", "").lower()
    will_close = "close" in closing or (version == "HTTP/1.0" and "keep-alive" not in closing)
    date, content_type = fields.get("date"), fields.get("content-type", "")
    if status in (204, 304):
        return Answer(status, b"", date, content_type), will_close
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return Answer(status, _read_chunks(connection), date, content_type), will_close
    length = fields.get("content-length")
    if length is None:
        return Answer(status, connection.rest(), date, content_type), True
    if not length.isdigit():
        raise _MalformedAnswerError(f"Content-Length {length!r}")
    return Answer(status, connection.take(int(length)), date, content_type), will_close


def _read_head(connection: _Connection) -> tuple[str, int, dict[str, str]]:
    """The status line's version and code, and the header fields (names in lower case)."""
    while (end := connection.buffer.find(b"\r\n\r\n")) < 0:
        if len(connection.buffer) > _MAX_HEAD_BYTES:
            raise _MalformedAnswerError(f"no end of the answer's headers within {_MAX_HEAD_BYTES} bytes")
        started = bool(connection.buffer)
        if not connection.fill():
            if started:
                raise _MalformedAnswerError("the connection ended inside the answer's headers")
            raise _ClosedBeforeAnswerError("the connection ended before an answer")
    head = connection.buffer[:end].decode("latin-1")
    connection.buffer = connection.buffer[end + 4 :]
    status_line, *header_lines = head.split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise _MalformedAnswerError(f"not an HTTP/1.x status line: {status_line[:100]!r}")
    fields: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    return version, int(code), fields


def _read_chunks(connection: _Connection) -> bytes:
    parts = []
    while True:
        size_text = connection.line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _MalformedAnswerError(f"chunk size {size_text[:20]!r}") from None
        if size == 0:
            while connection.line():  # trailer fields, up to the empty line
                pass
            return b"".join(parts)
        parts.append(connection.take(size))
        if connection.take(2) != b"\r\n":
            raise _MalformedAnswerError("a chunk did not end with CRLF")
