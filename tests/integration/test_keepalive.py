"""The wire calls' connections: kept alive, renewed when the server closed them while idle, and every
other failure reported, never retried blindly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from consumer.aws.connections import ConnectionFailedError, KeepAliveConnections
from tests.support.quiet_http import QuietHTTPServer

pytestmark = pytest.mark.integration


class Server:
    """A loopback HTTP/1.1 server that echoes POST bodies; ``mode`` says how it misbehaves."""

    def __init__(self) -> None:
        self.mode = "keep-alive"  # or: close-silently (after answering), drop (without answering), hang
        self.connections = 0
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                owner.connections += 1

            def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
                owner.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if owner.mode == "drop":
                    self.close_connection = True
                    return
                if owner.mode == "hang":
                    time.sleep(2)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if owner.mode == "close-silently":  # as a keep-alive timeout does: no Connection: close
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                return

        self.http = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def post(connections: KeepAliveConnections, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    answer = connections.post(headers, body)
    return answer.status, answer.body


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def test_calls_from_one_thread_share_one_connection(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    answers = [post(connections, {"Content-Type": "text/plain"}, f"call {n}".encode()) for n in range(5)]
    assert answers == [(200, f"call {n}".encode()) for n in range(5)]
    assert server.connections == 1


def test_threads_do_not_share_a_connection(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    answers: list[tuple[int, bytes]] = []
    threads = [
        threading.Thread(target=lambda n=n: answers.append(post(connections, {}, f"thread {n}".encode())))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(answers) == [(200, f"thread {n}".encode()) for n in range(4)]
    assert server.connections == 4


def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_call_succeeds(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    server.mode = "close-silently"
    assert post(connections, {}, b"first") == (200, b"first")
    time.sleep(0.1)  # the server has closed it by now
    assert post(connections, {}, b"second") == (200, b"second")
    assert server.connections == 2 and server.requests == 2


def test_a_fresh_connection_dropped_without_an_answer_is_an_error_sent_once(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    server.mode = "drop"
    with pytest.raises(ConnectionFailedError, match="127.0.0.1"):
        post(connections, {}, b"lost")
    assert server.requests == 1
    server.mode = "keep-alive"
    assert post(connections, {}, b"again") == (200, b"again")  # the broken connection was not kept


def test_an_answer_that_never_comes_is_an_error_after_the_read_timeout(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=0.3)
    server.mode = "hang"
    with pytest.raises(ConnectionFailedError, match="timed out"):
        post(connections, {}, b"slow")
    assert server.requests == 1


def test_nothing_listening_is_an_error_naming_the_endpoint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connections = KeepAliveConnections(f"http://127.0.0.1:{port}/", connect_timeout=1, read_timeout=1)
    with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port}"):
        post(connections, {}, b"anyone?")


def test_an_endpoint_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not an http"):
        KeepAliveConnections("ftp://example.com/", connect_timeout=1, read_timeout=1)


class ScriptedServer:
    """A loopback server answering every request with ``answer`` (raw bytes, written in pieces of
    ``piece`` bytes), then closing the connection when ``close`` is set; it records each request."""

    def __init__(self, answer: bytes, piece: int = 1 << 20, close: bool = False, pause: float = 0.001) -> None:
        self.answer, self.piece, self.close, self.pause = answer, piece, close, pause
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/api"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while self._answer_one(conn) and not self.close:
                    pass

    def _answer_one(self, conn: socket.socket) -> bool:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            request += chunk
        head, _, body = request.partition(b"\r\n\r\n")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        for start in range(0, len(self.answer), self.piece):
            try:
                conn.sendall(self.answer[start : start + self.piece])
            except (BrokenPipeError, ConnectionResetError):
                return False  # the client gave up on the answer (its deadline)
            if self.piece < len(self.answer):
                time.sleep(self.pause)
        return True

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[list[ScriptedServer]]:
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()


def _serve(scripted: list[ScriptedServer], answer: bytes, **options: Any) -> ScriptedServer:
    server = ScriptedServer(answer, **options)
    scripted.append(server)
    return server


def test_a_request_carries_the_path_the_callers_headers_a_host_and_the_body_length(
    scripted: list[ScriptedServer],
) -> None:
    server = _serve(scripted, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    assert post(connections, {"X-Amz-Target": "Streams.GetRecords"}, b'{"Limit":1}') == (200, b"{}")
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api HTTP/1.1"
    assert b"X-Amz-Target: Streams.GetRecords" in lines
    assert f"Host: 127.0.0.1:{server.url.split(':')[2].split('/')[0]}".encode() in lines
    assert b"Content-Length: 11" in lines and body == b'{"Limit":1}'


@pytest.mark.parametrize("piece", [1, 7, 1 << 20], ids=["byte-by-byte", "small-pieces", "one-write"])
def test_an_answer_is_read_whole_however_it_is_cut_into_segments(scripted: list[ScriptedServer], piece: int) -> None:
    payload = bytes(range(256)) * 8
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2048\r\n\r\n" + payload
    server = _serve(scripted, answer, piece=piece)
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=5)
    assert [post(connections, {}, b"x") for _ in range(2)] == [(200, payload)] * 2


def test_a_large_answer_arrives_intact() -> None:
    payload = b"0123456789abcdef" * (3 << 16)  # 3 MiB: a full GetRecords page is at most 1 MB
    server = ScriptedServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
    try:
        assert post(KeepAliveConnections(server.url, 2, 5), {}, b"x") == (200, payload)
    finally:
        server.stop()


def test_a_chunked_answer_is_reassembled_and_the_connection_kept(scripted: list[ScriptedServer]) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    server = _serve(scripted, answer, piece=3)
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    assert [post(connections, {}, b"x") for _ in range(2)] == [(200, b"hello world")] * 2
    assert len(server.requests) == 2


def test_an_answer_that_closes_the_connection_is_read_to_its_end_and_the_next_call_reconnects(
    scripted: list[ScriptedServer],
) -> None:
    server = _serve(scripted, b'HTTP/1.0 500 Internal Server Error\r\nServer: x\r\n\r\n{"message":"boom"}', close=True)
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    assert post(connections, {}, b"a") == (500, b'{"message":"boom"}')
    assert post(connections, {}, b"b") == (500, b'{"message":"boom"}')  # a new connection, not a stale-retry
    assert len(server.requests) == 2


def test_an_interim_100_continue_is_skipped(scripted: list[ScriptedServer]) -> None:
    server = _serve(scripted, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert post(KeepAliveConnections(server.url, 2, 2), {}, b"x") == (200, b"ok")


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "bytes before the body's end"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "inside the answer's headers"),
    ],
    ids=["not-http", "body-cut-short", "bad-length", "bad-chunk-size", "headers-cut-short"],
)
def test_a_malformed_answer_is_an_error_saying_what_was_wrong(
    scripted: list[ScriptedServer], answer: bytes, complaint: str
) -> None:
    server = _serve(scripted, answer, close=True)
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    with pytest.raises(ConnectionFailedError, match=complaint):
        post(connections, {}, b"x")
    assert len(server.requests) == 1  # sent once: only an answer that never began is retried, on a reused connection


def test_an_answer_dripped_a_byte_at_a_time_cannot_hold_a_call_past_its_deadline(
    scripted: list[ScriptedServer],
) -> None:
    # GIVEN a server that sends each byte well within the read timeout, but would take 10 s in all
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"x" * 200
    server = _serve(scripted, answer, piece=1, pause=0.05)
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=1, call_timeout=1.5)

    # WHEN a call is made THEN it fails once the call's time is up, not when the server is done
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match="within the call's time"):
        post(connections, {}, b"x")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n" + b"x" * 4096,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"800\r\n"
        + b"x" * 2048
        + b"\r\n" * 1
        + b"800\r\n"
        + b"x" * 2048
        + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 4096,
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_an_answer_larger_than_the_bound_is_refused_however_it_is_delimited(
    scripted: list[ScriptedServer], answer: bytes
) -> None:
    server = _serve(scripted, answer, close=True)
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2, max_answer_bytes=3000)
    with pytest.raises(ConnectionFailedError, match="bytes"):
        post(connections, {}, b"x")
    # AND one within the bound is read whole
    assert post(KeepAliveConnections(server.url, 2, 2, max_answer_bytes=5000), {}, b"x")[1] == b"x" * 4096
