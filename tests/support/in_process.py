"""Workers run inside the test process, built exactly as ``consumer run`` builds them
(``consumer.runtime.assembly``), so a test can read their metrics and health, and wrap their seams
(``tests.support.faults``). Each runs ``Worker.run`` on a thread of its own until stopped."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.runtime.assembly import build_processor, build_worker, set_up_generation
from consumer.runtime.clients import aws_clients
from consumer.runtime.stream_source import resolve_stream
from consumer.runtime.worker import Worker, WorkerTimings
from consumer.sink.processor import BatchProcessor


@dataclass
class InProcessWorker:
    """One running worker: its metrics, health, and how it ended (``error``: what ``run`` raised)."""

    worker: Worker
    metrics: Metrics
    health: Health
    processor: BatchProcessor
    stop: threading.Event
    thread: threading.Thread
    error: BaseException | None = field(default=None)

    def halt(self, timeout: float = 30) -> None:
        """SIGTERM, as it were: stop, wait for the handoff, close the processor."""
        self.stop.set()
        self.thread.join(timeout)
        self.processor.close()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()


def start_worker(variables: dict[str, str], monkeypatch: Any, shutdown_timeout: float = 5) -> InProcessWorker:
    """A worker configured by ``variables`` (``CDC_*`` and ``AWS_*``; the latter are set in the
    environment through ``monkeypatch``, where boto3 reads them), started on its own thread."""
    for name, value in variables.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    settings, _ = load_settings(variables)
    aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
    source = resolve_stream(aws.dynamodb, aws.streams, settings.source_table, settings.stream_arn)
    metrics = Metrics(CollectorRegistry())
    health = Health(stall_after_seconds=60)
    stop = threading.Event()
    timings = WorkerTimings(
        failover=settings.failover_seconds,
        shard_sync_interval=settings.shard_sync_interval_seconds,
        shutdown_timeout=shutdown_timeout,
    )
    settings, catalog = set_up_generation(settings, source)
    processor = build_processor(settings, source, metrics, health, catalog.routing, catalog)
    worker = build_worker(settings, aws, source, processor, metrics, timings, stop, health)
    running = InProcessWorker(worker, metrics, health, processor, stop, threading.Thread(target=lambda: None))

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - kept for the test to assert on
            running.error = exc

    running.thread = threading.Thread(target=run, name=f"worker-{settings.worker_id}", daemon=True)
    running.thread.start()
    return running
