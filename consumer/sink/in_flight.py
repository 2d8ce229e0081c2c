"""Work done on a ``_bulk`` request's own thread while OpenSearch processes it.

A shard in catch-up has CPU work to do (decoding and preparing its next page) while OpenSearch
indexes the current one. Done on another thread of this process, that work holds the GIL (orjson
parsing a 1 MB GetRecords page holds it ~20 ms at a stretch) exactly when the request's thread needs
it to push the body out or to read the answer, and OpenSearch then waits for us: measured on one
core, a second thread busy for 45 ms per request doubled a 118 ms ``_bulk`` (the node idle half the
time). Done on the request's thread, after the body is sent and before the answer is read, the same
work overlaps OpenSearch's and delays nothing.

``while_in_flight(work)`` arms ``work`` for the next request the calling thread sends through an
``OverlappingConnection`` (opensearch-py's urllib3 connection, used by ``consumer.runtime.clients``): the
connection runs it between sending the request and reading its answer. Everything else (headers,
authentication, TLS, compression, timeouts, errors) is opensearch-py's and urllib3's, unchanged.
Work armed but not run (the request failed before it was sent, or another kind of connection) is
dropped when the ``with`` block ends: callers treat it as an optimisation, never a step they rely on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from opensearchpy import Urllib3HttpConnection
from urllib3.connection import HTTPConnection, HTTPSConnection

log = structlog.get_logger(__name__)

_armed = threading.local()


@dataclass
class ArmedWork:
    """Work armed for this thread's next request; ``seconds``: how long it ran (0 until it has), so a
    request's timing can leave it out."""

    work: Callable[[], None] | None
    seconds: float = 0.0


@contextlib.contextmanager
def while_in_flight(work: Callable[[], None] | None) -> Iterator[ArmedWork]:
    """Run ``work`` (at most once) while the next request this thread sends is in flight; None arms
    nothing."""
    armed = ArmedWork(work)
    _armed.current = armed
    try:
        yield armed
    finally:
        _armed.current = None


def _run_armed_work() -> None:
    armed: ArmedWork | None = getattr(_armed, "current", None)
    if armed is None or armed.work is None:
        return
    work, armed.work = armed.work, None
    started = time.perf_counter()
    try:
        work()
    except Exception:  # noqa: BLE001 - the request in flight must still be answered and settled
        log.exception("work_while_in_flight_failed")
    finally:
        armed.seconds = time.perf_counter() - started


class _RunsWorkBeforeAnswer:
    """urllib3 connection mixin: ``getresponse`` (called once the request is sent) runs the armed work first."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _run_armed_work()
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _OverlappingHTTPConnection(_RunsWorkBeforeAnswer, HTTPConnection):
    pass


class _OverlappingHTTPSConnection(_RunsWorkBeforeAnswer, HTTPSConnection):
    pass


_OVERLAPPING = {HTTPConnection: _OverlappingHTTPConnection, HTTPSConnection: _OverlappingHTTPSConnection}


class OverlappingConnection(Urllib3HttpConnection):
    """opensearch-py's urllib3 connection whose requests run the work armed by ``while_in_flight``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._overlap()

    def _create_urllib3_pool(self) -> None:  # opensearch-py's: a pool made again after close()
        super()._create_urllib3_pool()
        self._overlap()

    def _overlap(self) -> None:
        pool = self.pool
        if pool is not None:
            pool.ConnectionCls = _OVERLAPPING.get(pool.ConnectionCls, pool.ConnectionCls)
