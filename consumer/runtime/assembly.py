"""The builders of a worker's parts from its settings: the sink, the processor, the dead-letter
destination, and the worker itself with its lease table, shard sync, scheduler and executors.

Every object a worker uses is built here, once, from ``Settings`` and the resolved stream; nothing
here reads the environment or starts a thread (``Worker.run`` does).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from consumer.aws.accounting import count_retries
from consumer.config import Settings, routing
from consumer.errors import ConfigError, GenerationRefused
from consumer.leases.coordinator import LeaseCoordinator
from consumer.leases.table import LeaseTable
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.routes import Routing
from consumer.pipeline.service_fields import SERVICE_FIELDS
from consumer.runtime.clients import AwsClients, dead_letter_client, opensearch_client
from consumer.runtime.generations import bound_settings, generation_catalog, generation_store, resolve_generation
from consumer.runtime.stream_source import StreamSource, resolve_stream
from consumer.runtime.worker import Worker, WorkerParts, WorkerTimings
from consumer.shards.api import StreamsApi
from consumer.shards.budget import ByteBudget
from consumer.shards.scheduler import ShardScheduler
from consumer.shards.sync import ShardSync
from consumer.shards.task import ReaderSettings
from consumer.shards.throttle import ThrottleGate
from consumer.sink.dlq import DeadLetterFile, DeadLetterObjects, DeadLetterQueue, DeadLetterSink
from consumer.sink.index_catalog import IndexCatalog
from consumer.sink.opensearch import NO_LIMITS, OpenSearchSink, RetryLimits
from consumer.sink.processor import BatchProcessor
from consumer.sink.reaper import Reaper

log = structlog.get_logger(__name__)

LEASE_THREADS = 16  # concurrent lease-table writes per worker, per kind: takes and releases; renewals


def build_worker(
    settings: Settings,
    aws: AwsClients,
    source: StreamSource,
    processor: BatchProcessor,
    metrics: Metrics,
    timings: WorkerTimings,
    stop: threading.Event,
    health: Health,
) -> Worker:
    """A worker of the pool, ready to ``run()``."""
    leases = LeaseTable(
        aws.dynamodb,
        settings.lease_table_name,
        observe=metrics.observe_aws,
        stream_arn=source.stream_arn,
        aws_clock=aws.clock,
    )
    api = StreamsApi(aws.streams, observe=metrics.observe_aws, aws_clock=aws.clock)
    follow = None
    if settings.stream_arn is None:  # configured by table name: follow a replaced stream

        def follow() -> str:
            return resolve_stream(aws.dynamodb, aws.streams, source.table_name, None).stream_arn

    lease_executor = ThreadPoolExecutor(max_workers=LEASE_THREADS, thread_name_prefix="lease")
    indices = ",".join(processor.routing.index_patterns)
    reaper = Reaper(opensearch_client(settings), indices, settings.tombstone_retention_seconds)
    parts = WorkerParts(
        worker_id=settings.worker_id,
        leases=leases,
        sync=ShardSync(api, leases, source.stream_arn, settings.initial_position, metrics, follow),
        coordinator=LeaseCoordinator(
            leases,
            settings.worker_id,
            timings.failover,
            metrics,
            lease_executor,
            max_leases=settings.max_leases_per_worker,
        ),
        lease_executor=lease_executor,
        renew_executor=ThreadPoolExecutor(max_workers=LEASE_THREADS, thread_name_prefix="renew"),
        scheduler=ShardScheduler(settings.shard_threads),
        api=api,
        processor=processor,
        reader=ReaderSettings(
            max_records_per_read=settings.max_records_per_read,
            poll_interval_seconds=settings.poll_interval_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            retry_max_delay_seconds=settings.retry_max_delay_seconds,
            idle_poll_ceiling_seconds=settings.idle_poll_ceiling_seconds,
        ),
        throttle=ThrottleGate(settings.retry_base_seconds, settings.retry_max_delay_seconds),
        budget=ByteBudget(settings.max_buffered_bytes),
        prefetch=ThreadPoolExecutor(max_workers=settings.shard_threads, thread_name_prefix="prefetch"),
        metrics=metrics,
        health=health,
        timings=timings,
        stop=stop,
        aws_clock=aws.clock,
        reap=lambda: reaper.reap_once().more,
        reap_interval=settings.tombstone_reap_interval_seconds,
    )
    return Worker(parts)


def build_routing(settings: Settings, source: StreamSource) -> Routing:
    """The routes (``consumer.config.routing``), refused when the stream cannot carry what they need.

    Raises:
        ConfigError: naming the setting or route and the view type to use.
    """
    if settings.ttl_deletes == "mark" and source.view_type != "NEW_AND_OLD_IMAGES":
        raise ConfigError(
            f"CDC_TTL_DELETES=mark keeps the OldImage of expired items, but stream {source.stream_arn} is "
            f"{source.view_type}: use NEW_AND_OLD_IMAGES, or CDC_TTL_DELETES=delete or skip"
        )
    routes = routing(settings, source.key_schema)
    leaving = routes.image_routed_names
    if leaving and source.view_type != "NEW_AND_OLD_IMAGES":
        raise ConfigError(
            f"CDC_ROUTES route {', '.join(map(repr, leaving))} decides on attributes other than the keys, so an "
            f"item can leave it, and its document must then leave that index: that takes the item's state before "
            f"the change, which stream {source.stream_arn} ({source.view_type}) does not carry. Use "
            "NEW_AND_OLD_IMAGES, or routes that match and name indices by key attributes only (docs/routes.md)"
        )
    return routes


def set_up_generation(settings: Settings, source: StreamSource) -> tuple[Settings, IndexCatalog]:
    """For a process that writes without building generations (``consumer backfill``, the KCL
    processor): the settings bound to this configuration's generation (``consumer.runtime.generations``)
    and its catalog, with the fixed indices set up; the routes are ``catalog.routing``.

    Raises:
        ConfigError: no generation holds this configuration's shape (the message says what to run),
            or a set-up OpenSearch refuses.
        SinkError: OpenSearch did not answer.
    """
    routes = build_routing(settings, source)
    search = opensearch_client(settings)
    try:
        generation = resolve_generation(
            generation_store(search, settings), search, routes, source.key_schema, settings, may_create=False
        )
    except GenerationRefused as exc:
        raise ConfigError(str(exc)) from None
    catalog = generation_catalog(search, routes, source.key_schema, settings, generation)
    catalog.set_up()
    return bound_settings(settings, generation), catalog


def build_sink(
    settings: Settings,
    schema: KeySchema,
    metrics: Metrics,
    health: Health | None,
    catalog: IndexCatalog | None = None,
) -> OpenSearchSink:
    """The OpenSearch sink the settings describe, for the indices of a table keyed by ``schema``."""
    return OpenSearchSink(
        opensearch_client(settings),
        settings.index_name,
        metrics,
        settings.retry_base_seconds,
        settings.retry_max_delay_seconds,
        limits=retry_limits(settings),
        max_request_bytes=settings.bulk_max_bytes,
        protected_fields=protected_fields(schema),
        health=health,
        catalog=catalog,
    )


def build_processor(
    settings: Settings,
    source: StreamSource,
    metrics: Metrics,
    health: Health,
    routes: Routing,
    catalog: IndexCatalog,
) -> BatchProcessor:
    return BatchProcessor(
        source.key_schema,
        build_sink(settings, source.key_schema, metrics, health, catalog),
        build_dead_letters(settings, metrics),
        metrics,
        settings.parallelization_factor,
        routes,
        keep_raw_letters=settings.dead_letter_raw_records,
        health=health,
        concurrent_batches=settings.shard_threads,
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


def build_dead_letters(settings: Settings, metrics: Metrics) -> DeadLetterSink:
    """The configured destination; a missing queue or bucket raises ConfigError naming it."""
    destination = settings.dead_letters
    if destination.kind == "sqs":
        client = dead_letter_client("sqs", settings.aws_region)
        count_retries(client, metrics.count_aws_retries)
        sink: DeadLetterSink = DeadLetterQueue.connect(client, destination.location, metrics.observe_aws)
    elif destination.kind == "s3":
        client = dead_letter_client("s3", settings.aws_region)
        count_retries(client, metrics.count_aws_retries)
        sink = DeadLetterObjects.connect(client, destination.location, destination.prefix, metrics.observe_aws)
    else:
        sink = DeadLetterFile(Path(destination.location))
    log.info("dead_letter_destination", destination=str(destination))
    return sink
