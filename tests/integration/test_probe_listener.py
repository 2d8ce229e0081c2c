"""The probe and metrics listener under clients that misbehave: idle and half-open connections,
a client dripping a byte at a time, a flood of connections. The kubelet's probe is answered
through all of it, and none of it costs a thread."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from consumer.observability.http import ObservabilityServer
from tests.support.worker_process import wait_until

TIMEOUT = 0.5


@pytest.fixture
def server() -> Iterator[ObservabilityServer]:
    server = ObservabilityServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        liveness=lambda: (True, "ok"),
        readiness=lambda: (False, "first shard sync not done"),
        request_timeout=TIMEOUT,
        max_connections=16,
    )
    server.start()
    yield server
    server.stop()


def get(server: ObservabilityServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def idle_connections(server: ObservabilityServer, count: int, first_bytes: bytes = b"") -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_idle_connections_cost_no_thread_and_never_lock_a_probe_out(server):
    # GIVEN many more idle and half-sent connections than the listener keeps open
    threads_before = threading.active_count()
    sockets = idle_connections(server, 50) + idle_connections(server, 50, b"GET /healthz HTTP/1.1\r\n")
    try:
        # WHEN a probe arrives THEN it is answered at once, and no thread was started for any of them
        assert get(server, "/healthz") == (200, "ok\n")
        assert get(server, "/readyz") == (503, "first shard sync not done\n")
        assert threading.active_count() <= threads_before
        assert server.open_connections <= 16
        # AND every idle connection is closed by the server within its request timeout
        assert all(closed_by_server(sock) for sock in sockets)
        wait_until(lambda: server.open_connections == 0, timeout=5, what="idle connections closed")
    finally:
        for sock in sockets:
            sock.close()


def test_a_client_dripping_its_request_is_cut_off_by_a_deadline_for_the_whole_head(server):
    # GIVEN a client sending its request a byte at a time, each byte well within the timeout
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    started = time.monotonic()
    try:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":
            sock.sendall(bytes([byte]))
            time.sleep(TIMEOUT / 10)
    except (BrokenPipeError, ConnectionResetError):
        pass
    # THEN the server closes it once the whole head is overdue, not after the drip ends
    assert closed_by_server(sock)
    assert time.monotonic() - started < TIMEOUT * 10
    sock.close()


def test_a_scraper_keeps_its_connection_between_requests(server):
    # GIVEN one connection WHEN two requests are sent on it THEN both are answered on it
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        first = connection.getresponse()
        assert first.status == 200
        first.read()
        sock = connection.sock
        connection.request("GET", "/healthz")
        second = connection.getresponse()
        assert (second.status, second.read()) == (200, b"ok\n")
        assert connection.sock is sock
    finally:
        connection.close()


def test_what_is_no_request_gets_a_400_and_unknown_paths_a_404(server):
    assert get(server, "/nope")[0] == 404
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with sock:
        sock.sendall(b"BREW /coffee HTCPCP/1.0\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")


def test_a_probe_whose_callback_fails_answers_500_and_the_listener_goes_on():
    def broken() -> tuple[bool, str]:
        raise RuntimeError("bug")

    server = ObservabilityServer("127.0.0.1", 0, CollectorRegistry(), liveness=lambda: (True, "ok"), readiness=broken)
    server.start()
    try:
        assert get(server, "/readyz") == (500, "probe failed: RuntimeError\n")
        assert get(server, "/healthz") == (200, "ok\n")
    finally:
        server.stop()
