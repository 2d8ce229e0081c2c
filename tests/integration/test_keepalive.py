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

from consumer.keepalive import KeepAliveConnections, TransportError
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


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def test_calls_from_one_thread_share_one_connection(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    answers = [connections.post({"Content-Type": "text/plain"}, f"call {n}".encode()) for n in range(5)]
    assert answers == [(200, f"call {n}".encode()) for n in range(5)]
    assert server.connections == 1


def test_threads_do_not_share_a_connection(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    answers: list[tuple[int, bytes]] = []
    threads = [
        threading.Thread(target=lambda n=n: answers.append(connections.post({}, f"thread {n}".encode())))
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
    assert connections.post({}, b"first") == (200, b"first")
    time.sleep(0.1)  # the server has closed it by now
    assert connections.post({}, b"second") == (200, b"second")
    assert server.connections == 2 and server.requests == 2


def test_a_fresh_connection_dropped_without_an_answer_is_an_error_sent_once(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=2)
    server.mode = "drop"
    with pytest.raises(TransportError, match="127.0.0.1"):
        connections.post({}, b"lost")
    assert server.requests == 1
    server.mode = "keep-alive"
    assert connections.post({}, b"again") == (200, b"again")  # the broken connection was not kept


def test_an_answer_that_never_comes_is_an_error_after_the_read_timeout(server: Server) -> None:
    connections = KeepAliveConnections(server.url, connect_timeout=2, read_timeout=0.3)
    server.mode = "hang"
    with pytest.raises(TransportError, match="timed out"):
        connections.post({}, b"slow")
    assert server.requests == 1


def test_nothing_listening_is_an_error_naming_the_endpoint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connections = KeepAliveConnections(f"http://127.0.0.1:{port}/", connect_timeout=1, read_timeout=1)
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        connections.post({}, b"anyone?")


def test_an_endpoint_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not an http"):
        KeepAliveConnections("ftp://example.com/", connect_timeout=1, read_timeout=1)
