"""What the benchmarks share: the engine a run measures (osmem-server or a real OpenSearch node, started
for the run and stopped after it), a null OpenSearch that acknowledges ``_bulk`` at once, and
per-process CPU, RSS and thread counts read from ``/proc``.

``NullSink`` answers every request 200: ``_bulk`` with one ``201`` item per action (counted from the
body's action lines), reads (``_mget``, ``_search``) as an empty index would, anything else with
``{}`` (index exists, mapping, alias). It stands for a sink
infinitely faster than any real one, so what the benchmarks measure is the consumer's own cost.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

import urllib3
from opensearchpy import OpenSearch
from osmem_server import OsmemServer

from consumer.pipeline.doc_ids import KeySchema
from consumer.sink.index_setup import ensure_index
from tests.support.opensearch_node import OpenSearchNode
from tests.support.quiet_http import QuietHTTPServer

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


ENGINES = ("osmem", "opensearch")


@dataclass(frozen=True)
class Engine:
    url: str
    pid: int
    describe: str


@contextlib.contextmanager
def engine(name: str) -> Iterator[Engine]:
    """The engine to measure, ``osmem`` or ``opensearch``, started for this run and stopped after it."""
    if name == "osmem":
        server = OsmemServer.start(japanese=False)
        try:
            yield Engine(server.url, server.pid, "osmem-server (in-memory emulator of the REST API)")
        finally:
            server.close()
        return
    node = OpenSearchNode.start(jvm_options=("-XX:TieredStopAtLevel=4",))
    try:
        yield Engine(node.url, node.process.pid, "OpenSearch 2.19.6, one node, heap 512 MiB (-Xms/-Xmx), C2 on")
    finally:
        node.stop()


def raw_bulk_rate(
    url: str, index: str, schema: KeySchema, bodies: list[bytes], documents: int, keep_index: bool = False
) -> float:
    """Documents a second for ``bodies`` (pre-serialised ``_bulk`` bodies) POSTed one at a time into a
    fresh ``index`` set up as a worker sets it up: the engine's ceiling. Raises when any item fails.
    The index is deleted once measured (its segment merges would go on under the next measurement),
    unless ``keep_index`` (to compare with it)."""
    client = OpenSearch(hosts=[url])
    client.indices.delete(index=index, ignore_unavailable=True)
    ensure_index(client, index, f"{index}-live", schema)
    pool = urllib3.PoolManager(maxsize=1).connection_from_url(url)
    started = time.perf_counter()
    for body in bodies:
        answer = pool.urlopen("POST", "/_bulk", body=body, headers={"Content-Type": "application/x-ndjson"})
        if answer.status != 200 or b'"errors":true' in answer.data:
            raise RuntimeError(f"the ceiling's _bulk failed: {answer.status} {answer.data[:300]!r}")
    rate = documents / (time.perf_counter() - started)
    if not keep_index:
        client.indices.delete(index=index)
    return rate


class NullSink:
    """An HTTP server answering like an OpenSearch that accepts everything at once."""

    def __init__(self) -> None:
        self.actions = 0
        self._lock = threading.Lock()
        self._server = QuietHTTPServer(("127.0.0.1", 0), self._handler())  # a worker killed mid-request is expected
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "_bulk" in self.path:
                    count = body.count(b'{"index":{') + body.count(b'{"delete":{')
                    with sink._lock:
                        sink.actions += count
                    payload = (
                        b'{"took":0,"errors":false,"items":[' + b",".join([b'{"index":{"status":201}}'] * count) + b"]}"
                    )
                elif "_mget" in self.path:
                    payload = b'{"docs":[]}'  # nothing indexed
                elif "_search" in self.path and self.command != "DELETE":
                    payload = b'{"_scroll_id":"none","hits":{"total":{"value":0},"hits":[]}}'
                else:
                    payload = b"{}"
                status = 404 if self.command == "HEAD" and "_alias" in self.path else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                return

        return Handler


@dataclass(frozen=True)
class ProcessSample:
    cpu_seconds: float
    rss_bytes: int
    threads: int


def sample(pid: int) -> ProcessSample:
    """CPU time (user + system) so far, resident memory and thread count of process ``pid``."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/statm") as file:
        resident = int(file.read().split()[1])
    return ProcessSample((int(fields[11]) + int(fields[12])) / _TICKS, resident * _PAGE, int(fields[17]))


@contextlib.contextmanager
def cores_apart(engine_pid: int, consumer_pids: Iterable[int]) -> Iterator[str]:
    """Run the engine on one core and the consumer side on the others, as when OpenSearch runs on
    its own hosts: a catch-up then measures how close the consumer keeps the engine to its ceiling,
    not how much CPU the two take from each other on a shared machine. Every thread of each process
    is pinned (threads started later inherit it); undone on exit. Yields a description of the split;
    on a single core nothing is pinned."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        yield "engine and consumer share the only core"
        return
    engine_cores, consumer_cores = {cores[-1]}, set(cores[:-1])
    consumers = [os.getpid(), *consumer_pids]
    for pid in consumers:
        _pin(pid, consumer_cores)
    _pin(engine_pid, engine_cores)
    try:
        yield f"engine pinned to core {cores[-1]}, the consumer side (worker, stream server, moto) to {sorted(consumer_cores)}"
    finally:
        for pid in (*consumers, engine_pid):
            _pin(pid, set(cores))


def _pin(pid: int, cores: set[int]) -> None:
    """Set the CPU affinity of every thread of ``pid`` (a process that ended is skipped)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
                os.sched_setaffinity(int(thread), cores)
