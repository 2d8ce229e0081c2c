"""The composition root: build a worker from settings, with its probes, and run it.

The probe server starts first, so ``/healthz`` answers from the first second. Resolving the
stream is retried while DynamoDB is unreachable (``/readyz`` says why it is not ready) instead of
crash-looping the container; a set-up error (missing table, no stream) still fails at once. Then the
index and its filtered read alias are set up (``consumer.sink.index_setup``), retried the same way
while OpenSearch is unreachable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import structlog
from prometheus_client import CollectorRegistry

from consumer import __version__
from consumer.backoff import backoff_delay
from consumer.clients import AwsClients, aws_clients, dead_letter_client, opensearch_client
from consumer.config import Settings
from consumer.doc_ids import KeySchema
from consumer.errors import ConfigError, ConsumerError
from consumer.leases.table import LeaseTable
from consumer.observability.health import Health
from consumer.observability.http import ObservabilityServer
from consumer.observability.metrics import Metrics
from consumer.processor import BatchProcessor
from consumer.projection import SERVICE_FIELDS, ProjectionRules
from consumer.rules import projection_rules
from consumer.shards.api import Boto3StreamApi
from consumer.shards.consumer import ReaderSettings
from consumer.sink.dlq import DeadLetterFile, DeadLetterObjects, DeadLetterQueue, DeadLetterSink
from consumer.sink.index_setup import ensure_index
from consumer.sink.mapping import NO_TEMPLATE
from consumer.sink.opensearch import NO_LIMITS, OpenSearchSink, RetryLimits
from consumer.sink.reaper import Reaper
from consumer.source import StreamSource, resolve_stream
from consumer.worker import Worker, WorkerTimings

log = structlog.get_logger(__name__)
T = TypeVar("T")


def run_worker(settings: Settings, stop: threading.Event) -> None:
    """Run one worker until ``stop`` is set. Raises ConfigError for a set-up it cannot run with."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.build_info.info({"version": __version__})
    timings = WorkerTimings(
        settings.failover_seconds, settings.shard_sync_interval_seconds, settings.shutdown_timeout_seconds
    )
    health = Health(stall_after_seconds=max(3 * timings.tick, settings.retry_max_delay_seconds) + 30)
    server = ObservabilityServer(
        settings.metrics_host, settings.metrics_port, registry, health.liveness, health.readiness
    )
    server.start()
    log.info("observability_listening", port=server.port, index=settings.index_name)
    processor = None
    try:
        aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
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
        client = opensearch_client(settings)
        index_created = _until_stopped(
            lambda: ensure_index(
                client,
                settings.index_name,
                settings.read_alias_name,
                source.key_schema,
                settings.mapping_mode,
                settings.index_template or NO_TEMPLATE,
            ),
            "index not set up",
            settings,
            stop,
            health,
        )
        if index_created is None:
            return
        processor = _processor(settings, source, metrics, health)
        worker = _worker(settings, aws, source, processor, metrics, timings, stop, health)
        worker.run(index_preexisted=not index_created)
    finally:
        server.stop()
        if processor is not None:
            processor.close()


def _until_stopped(
    step: Callable[[], T], what: str, settings: Settings, stop: threading.Event, health: Health
) -> T | None:
    """Run a start-up step until it succeeds (None if stopped first): transient failures are retried
    with backoff while ``/readyz`` says what is missing; set-up errors (ConfigError) are raised."""
    attempt = 0
    while not stop.is_set():
        try:
            return step()
        except ConfigError:
            raise
        except ConsumerError as exc:
            delay = backoff_delay(attempt, settings.retry_base_seconds, settings.retry_max_delay_seconds)
            health.beat(f"{what} yet: {exc}")
            log.warning("startup_step_failed", step=what, error=str(exc), retry_in_seconds=round(delay, 3))
            attempt += 1
            stop.wait(delay)
    return None


def _rules(settings: Settings, source: StreamSource) -> ProjectionRules:
    if settings.ttl_deletes == "mark" and source.view_type != "NEW_AND_OLD_IMAGES":
        raise ConfigError(
            f"CDC_TTL_DELETES=mark keeps the OldImage of expired items, but stream {source.stream_arn} is "
            f"{source.view_type}: use NEW_AND_OLD_IMAGES, or CDC_TTL_DELETES=delete or skip"
        )
    return projection_rules(settings, source.key_schema)


def _processor(settings: Settings, source: StreamSource, metrics: Metrics, health: Health) -> BatchProcessor:
    sink = OpenSearchSink(
        opensearch_client(settings),
        settings.index_name,
        metrics,
        settings.retry_base_seconds,
        settings.retry_max_delay_seconds,
        limits=retry_limits(settings),
        max_request_bytes=settings.bulk_max_bytes,
        protected_fields=protected_fields(source.key_schema),
        health=health,
    )
    return BatchProcessor(
        source.key_schema,
        sink,
        _dead_letters(settings, metrics),
        metrics,
        settings.parallelization_factor,
        _rules(settings, source),
        keep_raw_letters=settings.dead_letter_raw_records,
        health=health,
    )


def retry_limits(settings: Settings) -> RetryLimits:
    """The limits that end an outage, only when the user opted in (CDC_DEAD_LETTER_ON_OUTAGE)."""
    if not settings.dead_letter_on_outage:
        return NO_LIMITS
    return RetryLimits(
        max_attempts=settings.max_retry_attempts if settings.max_retry_attempts >= 0 else None,
        max_record_age_seconds=settings.max_record_age_seconds if settings.max_record_age_seconds >= 0 else None,
    )


def protected_fields(schema: KeySchema) -> frozenset[str]:
    """Top-level fields never diverted to the typed form: the keys (the document's identity, mapped
    explicitly) and the service's own fields."""
    return frozenset(attribute.name for attribute in schema.attributes) | frozenset(SERVICE_FIELDS)


def _dead_letters(settings: Settings, metrics: Metrics) -> DeadLetterSink:
    """The configured destination; a missing queue or bucket raises ConfigError naming it."""
    destination = settings.dead_letters
    if destination.kind == "sqs":
        client = dead_letter_client("sqs", settings.aws_region)
        sink: DeadLetterSink = DeadLetterQueue.connect(client, destination.location, metrics.observe_aws)
    elif destination.kind == "s3":
        client = dead_letter_client("s3", settings.aws_region)
        sink = DeadLetterObjects.connect(client, destination.location, destination.prefix, metrics.observe_aws)
    else:
        sink = DeadLetterFile(Path(destination.location))
    log.info("dead_letter_destination", destination=str(destination))
    return sink


def _worker(
    settings: Settings,
    aws: AwsClients,
    source: StreamSource,
    processor: BatchProcessor,
    metrics: Metrics,
    timings: WorkerTimings,
    stop: threading.Event,
    health: Health,
) -> Worker:
    reaper = Reaper(opensearch_client(settings), settings.index_name, settings.tombstone_retention_seconds)
    reader = ReaderSettings(
        settings.max_records_per_read,
        settings.poll_interval_seconds,
        settings.retry_base_seconds,
        settings.retry_max_delay_seconds,
    )
    return Worker(
        worker_id=settings.worker_id,
        source=source,
        lease_table=LeaseTable(aws.dynamodb, settings.lease_table_name, observe=metrics.observe_aws),
        stream_api=Boto3StreamApi(aws.streams, observe=metrics.observe_aws),
        processor=processor,
        metrics=metrics,
        reader_settings=reader,
        timings=timings,
        initial_position=settings.initial_position,
        stop_event=stop,
        health=health,
        reap=lambda: reaper.reap_once().more,
        reap_interval=settings.tombstone_reap_interval_seconds,
    )
