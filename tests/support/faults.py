"""A fault injector for in-process workers: at every seam where the consumer meets the outside
world, it raises — at random, in short bursts — the failures that seam is known for *and* failures
of kinds no code there anticipates (``ValueError``, ``KeyError``, ``MemoryError``, opensearch-py's
``SerializationError``, a custom ``Boom``). Some faults strike after the real call went through (a
write that landed, whose answer was lost); some return a garbled answer instead of raising.

Each seam wraps the real call (the class attribute is patched for the duration of a test, through a
``pytest.MonkeyPatch``): when no fault is drawn, the call is the real one, against the real servers.
Faults are transient, as a network's are: a seam fails at most ``burst`` calls in a row on one
thread (a caller that tries again at once gets through; a record that fails every time is another
matter, tested on its own). Only calls made off the test's main thread (the workers' threads) are
touched. Thread-safe.
"""

from __future__ import annotations

import errno
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.credentials
from botocore.exceptions import ClientError, CredentialRetrievalError
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import SerializationError

import consumer.sink.opensearch
import consumer.sink.processor
from consumer.errors import LeaseTableError, StreamError
from consumer.leases.table import LeaseTable
from consumer.shards.api import StreamsApi
from consumer.sink.dlq import DeadLetterFile


class Boom(Exception):
    """A failure of a kind no code anticipates."""


def _sts_refused() -> ClientError:
    return ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "injected"}}, "AssumeRoleWithWebIdentity")


def _no_credentials() -> CredentialRetrievalError:
    return CredentialRetrievalError(provider="container-role", error_msg="injected: endpoint unreachable")


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device (injected)")


_UNKNOWN: list[Callable[[], BaseException]] = [
    lambda: ValueError("injected"),
    lambda: KeyError("injected"),
    lambda: MemoryError(),
    lambda: Boom("injected"),
]


@dataclass(frozen=True)
class Seam:
    """Where to inject: ``owner.name`` is wrapped; ``faults`` are what it may raise; ``after``: some
    faults strike once the real call went through; ``garbage``: answers that may replace the real one."""

    owner: Any
    name: str
    faults: tuple[Callable[[], BaseException], ...]
    after: bool = False
    garbage: tuple[Any, ...] = ()


SEAMS: dict[str, Seam] = {
    "get_records": Seam(
        StreamsApi,
        "get_records",
        (lambda: StreamError("injected"), _no_credentials, *_UNKNOWN),
        after=True,  # read, then lost while parsing
    ),
    "projection": Seam(consumer.sink.processor, "to_bulk_actions", tuple(_UNKNOWN)),
    "bulk": Seam(
        OpenSearch,
        "bulk",
        (
            lambda: OpenSearchConnectionError("N/A", "injected", Exception("injected")),
            lambda: SerializationError("Unknown mimetype, unable to deserialize: text/html"),
            lambda: SerializationError("Expecting value: line 1 column 4097 (char 4096)"),
            *_UNKNOWN,
        ),
        after=True,  # indexed, answer lost
        garbage=("<html><body>502 Bad Gateway</body></html>", {"took": 3, "errors": False}, {"items": [{"index": 1}]}),
    ),
    "bulk_answer": Seam(consumer.sink.opensearch, "classify_item", tuple(_UNKNOWN)),  # a bug reading the answer
    "checkpoint": Seam(
        LeaseTable,
        "checkpoint",
        (lambda: LeaseTableError("injected"), _no_credentials, _sts_refused, *_UNKNOWN),
        after=True,  # written, answer lost
    ),
    "renew": Seam(LeaseTable, "renew", (lambda: LeaseTableError("injected"), _no_credentials, *_UNKNOWN), after=True),
    "lease_read": Seam(LeaseTable, "scan_page", (lambda: LeaseTableError("injected"), *_UNKNOWN)),
    "credentials": Seam(
        botocore.credentials.Credentials,
        "get_frozen_credentials",
        (_no_credentials, _sts_refused, lambda: Boom("injected")),
    ),
    "dead_letters": Seam(DeadLetterFile, "write", (_disk_full, lambda: Boom("injected"))),
}


class Injector:
    """Draws faults for the wrapped seams while ``active``; ``injected`` counts them by seam and kind."""

    def __init__(self, seed: int, rate: float, burst: int = 2) -> None:
        self._rng = random.Random(seed)
        self._rate = rate
        self._burst = burst
        self._lock = threading.Lock()
        self._streak: Counter[tuple[str, int]] = Counter()  # (seam, thread) → faults in a row
        self.active = False
        self.injected: Counter[tuple[str, str]] = Counter()

    def install(self, patch: Any, seams: dict[str, Seam] = SEAMS) -> None:
        """Wrap every seam (``patch``: a ``pytest.MonkeyPatch``, which undoes it)."""
        for seam_name, seam in seams.items():
            patch.setattr(seam.owner, seam.name, self._wrap(seam_name, seam, getattr(seam.owner, seam.name)))

    def _wrap(self, seam_name: str, seam: Seam, real: Callable[..., Any]) -> Callable[..., Any]:
        injector = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            when = injector._draw(seam_name, seam)
            if when == "before":
                raise injector._fault(seam_name, seam)
            if when == "garbage":
                injector._count(seam_name, "garbage")
                return injector._rng.choice(seam.garbage)
            result = real(*args, **kwargs)
            if when == "after":
                raise injector._fault(seam_name, seam)
            return result

        return wrapped

    def _draw(self, seam_name: str, seam: Seam) -> str | None:
        if not self.active or threading.current_thread() is threading.main_thread():
            return None
        streak = (seam_name, threading.get_ident())
        with self._lock:
            if self._streak[streak] >= self._burst or self._rng.random() >= self._rate:
                self._streak[streak] = 0
                return None
            self._streak[streak] += 1
            kinds = ["before"] + (["after"] if seam.after else []) + (["garbage"] if seam.garbage else [])
            return self._rng.choice(kinds)

    def _fault(self, seam_name: str, seam: Seam) -> BaseException:
        with self._lock:
            fault = self._rng.choice(seam.faults)()
        self._count(seam_name, type(fault).__name__)
        return fault

    def _count(self, seam_name: str, kind: str) -> None:
        with self._lock:
            self.injected[(seam_name, kind)] += 1
