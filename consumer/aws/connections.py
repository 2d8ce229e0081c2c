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

The network it runs on: TLS is verified against the system's CAs or ``ca_bundle`` (``AWS_CA_BUNDLE``);
through an HTTP proxy (``proxy``: ``HTTPS_PROXY`` / ``HTTP_PROXY`` unless ``NO_PROXY`` names the host)
an https endpoint is reached through a ``CONNECT`` tunnel, an http one by absolute-form requests.

Failures:

* Connecting is bounded by ``connect_timeout``, each read by ``read_timeout`` and a whole call (the
  request sent and its answer read) by ``call_timeout``: a server dripping its answer a byte at a
  time cannot hold a call longer. An answer larger than ``max_answer_bytes`` is refused (AWS's
  answers here are at most about 1 MB). TCP_NODELAY is set.
* A reused connection the server closed while idle (keep-alive timeouts) fails before any byte of an
  answer arrives: that request is sent once more on a new connection. Any other failure closes the
  connection and raises ``ConnectionFailedError``; nothing else is retried here.
* A connection is closed after an answer that says so (``Connection: close``, HTTP/1.0, or a body
  delimited by the connection's end).

Thread-safe: connections are never shared between threads.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

_MAX_HEAD_BYTES = 64 * 1024  # status line and headers; AWS answers carry a few hundred bytes
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # GetRecords and Scan answer at most 1 MB of items
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
    """One socket and the bytes read from it past the last answer; reads end by ``deadline``."""

    def __init__(self, sock: socket.socket, read_timeout: float, max_answer_bytes: int) -> None:
        self.sock = sock
        self.buffer = b""
        self._chunk = bytearray(_READ_SIZE)
        self._read_timeout = read_timeout
        self.max_answer_bytes = max_answer_bytes
        self.deadline = float("inf")  # monotonic: the end of the call in progress

    def close(self) -> None:
        self.sock.close()

    def recv_into(self, buffer: bytearray | memoryview) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the answer did not arrive whole within the call's time")
        self.sock.settimeout(min(self._read_timeout, remaining))
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise TimeoutError("the answer did not arrive whole within the call's time") from None
            raise

    def fill(self) -> bool:
        """Read what has arrived into the buffer; False at the connection's end."""
        count = self.recv_into(self._chunk)
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
            got = self.recv_into(view[have:])
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
        """Everything until the connection's end (at most ``max_answer_bytes``)."""
        while len(self.buffer) <= self.max_answer_bytes and self.fill():
            pass
        if len(self.buffer) > self.max_answer_bytes:
            raise _MalformedAnswerError(f"an answer of more than {self.max_answer_bytes} bytes")
        data, self.buffer = self.buffer, b""
        return data


class KeepAliveConnections:
    """One persistent connection per calling thread to ``endpoint_url``'s host."""

    def __init__(
        self,
        endpoint_url: str,
        connect_timeout: float,
        read_timeout: float,
        *,
        call_timeout: float | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        ca_bundle: str | None = None,
        proxy: str | None = None,
    ) -> None:
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
        self._call_timeout = call_timeout if call_timeout is not None else 2 * read_timeout
        self._max_answer_bytes = max_answer_bytes
        self._tls = ssl.create_default_context(cafile=ca_bundle) if self._https else None
        self._proxy = urlsplit(proxy) if proxy else None
        if self._proxy is not None and (self._proxy.scheme != "http" or not self._proxy.hostname):
            raise ValueError("a proxy for the wire calls must be an http:// URL (as HTTPS_PROXY usually is)")
        # through a proxy without a tunnel (an http endpoint), the request names the whole URL
        self._target = f"http://{self._host_header}{self.path}" if self._proxy and not self._https else self.path
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
        via = f" via {self._proxy.hostname}:{self._proxy.port or 80}" if self._proxy else ""
        return ConnectionFailedError(f"POST {self._host}:{self._port}{via} failed: {exc!r}")

    def _post_once(self, headers: dict[str, str], body: bytes) -> Answer:
        connection = self._connection()
        try:
            connection.deadline = time.monotonic() + self._call_timeout
            connection.sock.settimeout(self._read_timeout)
            connection.sock.sendall(self._request(headers, body))
            answer, will_close = _read_answer(connection)
        except BaseException:
            self._drop(connection)
            raise
        if will_close:
            self._drop(connection)
        return answer

    def _request(self, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"POST {self._target} HTTP/1.1"]
        if not any(name.lower() == "host" for name in headers):
            lines.append(f"Host: {self._host_header}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(lines).encode("latin-1") + body

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            proxy = self._proxy
            address = (proxy.hostname, proxy.port or 80) if proxy is not None else (self._host, self._port)
            sock = socket.create_connection(address, timeout=self._connect_timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if proxy is not None and self._https:
                    self._tunnel(sock)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname=self._host)
            except BaseException:
                sock.close()
                raise
            connection = _Connection(sock, self._read_timeout, self._max_answer_bytes)
            self._local.connection = connection
        return connection

    def _tunnel(self, sock: socket.socket) -> None:
        """Ask the proxy for a tunnel to the endpoint (``CONNECT``); raises OSError when refused."""
        assert self._proxy is not None
        lines = [f"CONNECT {self._host}:{self._port} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        if self._proxy.username:
            user = f"{unquote(self._proxy.username)}:{unquote(self._proxy.password or '')}"
            lines.append(f"Proxy-Authorization: Basic {base64.b64encode(user.encode()).decode()}")
        sock.settimeout(self._connect_timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        reply = _Connection(sock, self._connect_timeout, _MAX_HEAD_BYTES)
        reply.deadline = time.monotonic() + self._connect_timeout
        _, status, _ = _read_head(reply)
        if status != 200 or reply.buffer:
            raise ConnectionRefusedError(f"the proxy refused a tunnel to {self._host}:{self._port}: HTTP {status}")

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
    if int(length) > connection.max_answer_bytes:
        raise _MalformedAnswerError(f"an answer of {length} bytes (at most {connection.max_answer_bytes} taken)")
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
    received = 0
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
        received += size
        if received > connection.max_answer_bytes:
            raise _MalformedAnswerError(f"an answer of more than {connection.max_answer_bytes} bytes")
        parts.append(connection.take(size))
        if connection.take(2) != b"\r\n":
            raise _MalformedAnswerError("a chunk did not end with CRLF")
