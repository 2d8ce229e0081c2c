"""Sampling the probes of worker processes while something happens to them: ``/healthz`` and
``/readyz`` of each, every ``interval`` seconds, on a thread of its own (a context manager)."""

from __future__ import annotations

import threading
from typing import Any


class ProbeSampler:
    def __init__(self, workers: list[Any], interval: float = 0.5) -> None:
        self._workers = workers
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.samples: list[tuple[str, int, str]] = []  # (path, status, body)

    def __enter__(self) -> ProbeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def statuses(self, path: str) -> set[int]:
        return {status for seen, status, _ in self.samples if seen == path}

    def said(self, path: str, status: int, text: str) -> bool:
        """Whether ``path`` answered ``status`` with a body containing ``text`` at least once."""
        return any(seen == path and code == status and text in body for seen, code, body in self.samples)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            for worker in self._workers:
                for path in ("/healthz", "/readyz"):
                    self.samples.append((path, *worker.probe(path)))
