"""The composition root: start the probes, resolve the stream, set up the index, build a worker
(``consumer.runtime.assembly``) and run it.

The probe server starts first, so ``/healthz`` answers from the first second. Resolving the
stream is retried while DynamoDB is unreachable (``/readyz`` says why it is not ready) instead of
crash-looping the container; a set-up error (missing table, no stream) still fails at once. Then the
index and its filtered read alias are set up (``consumer.sink.index_setup``), retried the same way
while OpenSearch is unreachable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import structlog
from prometheus_client import CollectorRegistry

from consumer import __version__
from consumer.aws.accounting import count_retries
from consumer.aws.backoff import backoff_delay
from consumer.config import Settings
from consumer.errors import ConfigError, ConsumerError
from consumer.leases.table import LeaseTable
from consumer.observability.emf import EmfEmitter
from consumer.observability.health import Health
from consumer.observability.http import ObservabilityServer
from consumer.observability.metrics import Metrics
from consumer.observability.routines import routine_failed
from consumer.pipeline import attributes
from consumer.runtime.assembly import build_processor, build_routing, build_worker
from consumer.runtime.backfill_job import build_runner, check_no_gap, ensure_segments
from consumer.runtime.clients import AwsClients, aws_clients, opensearch_client
from consumer.runtime.generation_watch import GenerationWatch
from consumer.runtime.generations import bound_settings, resolve_generation
from consumer.runtime.reindex import Prover, Reindex
from consumer.runtime.stream_source import StreamSource, describe_table, resolve_stream, with_document_ids
from consumer.runtime.worker import WorkerTimings
from consumer.shards.api import StreamsApi
from consumer.sink.index_catalog import IndexCatalog
from consumer.sink.processor import BatchProcessor

log = structlog.get_logger(__name__)
T = TypeVar("T")


def run_worker(settings: Settings, stop: threading.Event, prove: Prover | None = None) -> None:
    """Run one worker until ``stop`` is set. Raises ConfigError for a set-up it cannot run with.

    ``prove``: how a reindex proves a generation (``consumer.commands.reindex.prove``); with
    ``CDC_REINDEX=auto``, the workers of a generation being built run the reindex with it."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, per_shard=settings.shard_metrics == "on")
    converter = "compiled" if attributes.COMPILED else "python"
    metrics.build_info.info({"version": __version__, "commit": settings.build_commit, "item_converter": converter})
    timings = WorkerTimings(
        failover=settings.failover_seconds,
        shard_sync_interval=settings.shard_sync_interval_seconds,
        shutdown_timeout=settings.shutdown_timeout_seconds,
    )
    health = Health(stall_after_seconds=max(3 * timings.tick, settings.retry_max_delay_seconds) + 30)
    metrics.worker_ready.set_function(lambda: 1.0 if health.readiness()[0] else 0.0)
    server = ObservabilityServer(
        settings.metrics_host, settings.metrics_port, registry, health.liveness, health.readiness
    )
    server.start()
    log.info("observability_listening", port=server.port, index=settings.index_name)
    if settings.metrics_emf == "on":
        EmfEmitter(
            registry,
            settings.metrics_emf_namespace,
            {"Table": settings.source_table, "WorkerId": settings.worker_id},
            settings.metrics_emf_interval_seconds,
            stop,
        ).start()
    if not settings.opensearch_verify_certs:  # said once here and on /readyz; the per-request warnings are off
        log.warning(
            "opensearch_tls_unverified",
            action="anyone on the path can read and change what is indexed: set CDC_OPENSEARCH_CA_BUNDLE instead",
        )
        health.set_note("tls", "OpenSearch's TLS certificate is not verified (CDC_OPENSEARCH_VERIFY_CERTS=false)")
    processor = None
    try:
        aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
        count_retries(aws.dynamodb, metrics.count_aws_retries)
        metrics.host_clock_ahead.set_function(lambda: aws.clock.host_ahead_seconds or 0.0)
        source = _until_stopped(
            lambda: resolve_stream(aws.dynamodb, aws.streams, settings.source_table, settings.stream_arn),
            "stream not resolved",
            settings,
            stop,
            health,
        )
        if source is None:
            return
        log.info("stream_resolved", stream_arn=source.stream_arn, table=source.table_name)
        source = with_document_ids(settings, source)
        routes = build_routing(settings, source)
        search = opensearch_client(settings)
        reindex = Reindex(settings, aws, source, routes, search, metrics, stop)
        generation = _until_stopped(
            lambda: resolve_generation(
                reindex.store, search, routes, source.key_schema, settings, may_create=settings.reindex == "auto"
            ),
            "index generation not resolved",
            settings,
            stop,
            health,
        )
        if stop.is_set():
            return
        settings = bound_settings(settings, generation)
        catalog = reindex.catalog(generation)
        index_created = _until_stopped(catalog.set_up, "index not set up", settings, stop, health)
        if index_created is None:
            return
        processor = build_processor(settings, source, metrics, health, catalog.routing, catalog)
        worker = build_worker(settings, aws, source, processor, metrics, timings, stop, health)
        if generation is not None:
            log.info("generation_resolved", generation=generation.number, state=generation.state)
            GenerationWatch(reindex, generation, catalog, health, metrics, stop).start()
        if generation is not None and generation.state == "building" and settings.reindex == "auto" and prove:
            supervise("reindex", lambda: reindex.run(prove), settings, metrics, health, stop)
        elif settings.backfill == "on-new-index":
            start_backfill(settings, source, aws, metrics, health, stop, index_created, processor, catalog)
        worker.run(index_preexisted=not index_created)
    finally:
        server.stop()
        if processor is not None:
            processor.close()


def start_backfill(
    settings: Settings,
    source: StreamSource,
    aws: AwsClients,
    metrics: Metrics,
    health: Health,
    stop: threading.Event,
    index_created: bool,
    processor: BatchProcessor,
    catalog: IndexCatalog,
) -> threading.Thread:
    """CDC_BACKFILL=on-new-index: the worker that created the index creates the backfill's segments;
    every worker then shares them, once the stream's leases leave no gap (``consumer.runtime.backfill_job``)."""

    leases = LeaseTable(aws.dynamodb, settings.lease_table_name, observe=metrics.observe_aws, aws_clock=aws.clock)
    api = StreamsApi(aws.streams, observe=metrics.observe_aws, aws_clock=aws.clock)

    def wait_for_no_gap() -> bool:
        attempt = 0
        while not stop.is_set():
            try:
                if index_created:
                    size = int(describe_table(aws.dynamodb, source.table_name).get("TableSizeBytes", 0))
                    ensure_segments(leases, settings.backfill_segments, size, restart=False)
                check_no_gap(leases.list_leases(), api.list_shards(source.stream_arn))
                return True
            except ConsumerError as exc:
                health.set_note("backfill", f"backfill waiting: {exc}")
                attempt += 1
                stop.wait(backoff_delay(attempt, 1.0, 10.0))
        return False

    def backfill() -> None:
        if not wait_for_no_gap():
            return
        runner = build_runner(
            settings,
            source,
            aws.dynamodb,
            leases,
            metrics,
            processor.routing,
            catalog,
            health,
            lambda tally: health.set_note("backfill", f"backfill running: {tally.items} items by this worker"),
            aws_clock=aws.clock,
        )
        progress = runner.run(stop)
        health.set_note("backfill", f"backfill: {progress.done}/{progress.total} segments done")
        log.info("backfill_finished", segments_done=progress.done, segments=progress.total, items=runner.tally.items)

    return supervise("backfill", backfill, settings, metrics, health, stop)


def supervise(
    name: str,
    routine: Callable[[], object],
    settings: Settings,
    metrics: Metrics,
    health: Health,
    stop: threading.Event,
) -> threading.Thread:
    """Run ``routine`` in a thread until it returns: a failure nobody anticipated is said and counted,
    and the routine runs again after a pause (the backfill and the reindex resume from what they
    recorded); a set-up error stops it, said so on ``/readyz``."""

    def run() -> None:
        structlog.contextvars.bind_contextvars(worker_id=settings.worker_id)
        failures = 0
        while not stop.is_set():
            try:
                routine()
                return
            except ConfigError as exc:
                log.error(f"{name}_stopped", error=str(exc))
                health.set_note(name, f"{name} stopped: {exc}")
                return
            except Exception as exc:  # noqa: BLE001 - supervised: what it recorded stands; resumed below
                health.set_note(name, f"{routine_failed(metrics, name, exc)}; resumed shortly")
                failures += 1
                stop.wait(backoff_delay(failures, 1.0, 30.0))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def _until_stopped(
    step: Callable[[], T], what: str, settings: Settings, stop: threading.Event, health: Health
) -> T | None:
    """Run a start-up step until it succeeds (None if stopped first): every other failure, a transient
    one or one nobody anticipated, is retried with backoff while ``/readyz`` says what is missing;
    set-up errors (ConfigError) are raised."""
    attempt = 0
    while not stop.is_set():
        try:
            return step()
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a ConsumerError, or what no one named: tried again, loudly
            delay = backoff_delay(attempt, settings.retry_base_seconds, settings.retry_max_delay_seconds)
            health.beat(f"{what} yet: {type(exc).__name__}: {exc}")
            log.warning(
                "startup_step_failed",
                step=what,
                error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConsumerError) else str(exc),
                retry_in_seconds=round(delay, 3),
                exc_info=not isinstance(exc, ConsumerError),
            )
            attempt += 1
            stop.wait(delay)
    return None
