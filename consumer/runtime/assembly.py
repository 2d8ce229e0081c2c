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
from opensearchpy import OpenSearch

from consumer.aws.accounting import count_retries
from consumer.config import Settings, projection_rules
from consumer.errors import ConfigError
from consumer.leases.coordinator import LeaseCoordinator
from consumer.leases.table import LeaseTable
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.mapping import NO_TEMPLATE
from consumer.pipeline.projection import SERVICE_FIELDS, ProjectionRules
from consumer.runtime.clients import AwsClients, dead_letter_client, opensearch_client
from consumer.runtime.stream_source import StreamSource, resolve_stream
from consumer.runtime.worker import Worker, WorkerParts, WorkerTimings
from consumer.shards.api import StreamsApi
from consumer.shards.budget import ByteBudget
from consumer.shards.scheduler import ShardScheduler
from consumer.shards.sync import ShardSync
from consumer.shards.task import ReaderSettings
from consumer.shards.throttle import ThrottleGate
from consumer.sink.dlq import DeadLetterFile, DeadLetterObjects, DeadLetterQueue, DeadLetterSink
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import NO_LIMITS, OpenSearchSink, RetryLimits
from consumer.sink.processor import BatchProcessor
from consumer.sink.reaper import Reaper

log = structlog.get_logger(__name__)

LEASE_THREADS = 16  # concurrent lease-table writes per worker, per kind: takes and releases; renewals; checkpoints


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
    reaper = Reaper(opensearch_client(settings), settings.index_name, settings.tombstone_retention_seconds)
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
        checkpoints=ThreadPoolExecutor(max_workers=LEASE_THREADS, thread_name_prefix="checkpoint"),
        metrics=metrics,
        health=health,
        timings=timings,
        stop=stop,
        aws_clock=aws.clock,
        reap=lambda: reaper.reap_once().more,
        reap_interval=settings.tombstone_reap_interval_seconds,
    )
    return Worker(parts)


def _rules(settings: Settings, source: StreamSource) -> ProjectionRules:
    if settings.ttl_deletes == "mark" and source.view_type != "NEW_AND_OLD_IMAGES":
        raise ConfigError(
            f"CDC_TTL_DELETES=mark keeps the OldImage of expired items, but stream {source.stream_arn} is "
            f"{source.view_type}: use NEW_AND_OLD_IMAGES, or CDC_TTL_DELETES=delete or skip"
        )
    return projection_rules(settings, source.key_schema)


def build_sink(settings: Settings, schema: KeySchema, metrics: Metrics, health: Health | None) -> OpenSearchSink:
    """The OpenSearch sink the settings describe, for the index of a table keyed by ``schema``."""
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
    )


def build_processor(settings: Settings, source: StreamSource, metrics: Metrics, health: Health) -> BatchProcessor:
    return BatchProcessor(
        source.key_schema,
        build_sink(settings, source.key_schema, metrics, health),
        build_dead_letters(settings, metrics),
        metrics,
        settings.parallelization_factor,
        _rules(settings, source),
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


def set_up_index(settings: Settings, schema: KeySchema, client: OpenSearch | None = None) -> bool:
    """The index, its mapping and its read alias as the settings describe them
    (``consumer.sink.index_setup.ensure_index``); True when the index was created."""
    return ensure_index(
        client or opensearch_client(settings),
        settings.index_name,
        settings.read_alias_name,
        schema,
        settings.mapping_mode,
        settings.index_template or NO_TEMPLATE,
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
