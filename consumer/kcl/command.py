"""``consumer kcl-processor``: the record processor the KCL MultiLangDaemon starts per shard (its
``executableName``), configured by the same ``CDC_*`` variables as the workers plus
``CDC_KCL_LEASE_TABLE`` (the daemon's ``applicationName``).

stdout carries the protocol and nothing else: anything else printed there would corrupt it, so
``sys.stdout`` is pointed at stderr for the rest of the process and logs go to stderr as JSON
lines. Exit codes: 0 when the daemon closes stdin; 1 when a batch could not be settled, a
checkpoint's version could not be stored, or the daemon sent a line that is no protocol message;
2 for a configuration error. The daemon stops when a child exits, so a non-zero exit restarts the
whole daemon, which resumes every shard from its last checkpoint.
"""

from __future__ import annotations

import sys

import structlog
from prometheus_client import CollectorRegistry

from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.kcl.processor import ShardProcessor
from consumer.kcl.protocol import StrictKCLProcess
from consumer.kcl.versions import KclVersionStore
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.runtime.assembly import build_processor, set_up_generation
from consumer.runtime.clients import aws_clients
from consumer.runtime.stream_source import resolve_stream, with_document_ids

log = structlog.get_logger(__name__)


def kcl_processor_command(settings: Settings) -> None:
    """Serve the protocol on stdin / stdout until the daemon closes stdin."""
    if not settings.kcl_lease_table:
        raise ConfigError(
            "CDC_KCL_LEASE_TABLE is required for kcl-processor: the KCL daemon's lease table. The launcher in "
            "deploy/kcl sets it for each child; under another daemon, set it to that daemon's applicationName"
        )
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # nothing but protocol lines may reach the daemon's pipe
    aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
    source = with_document_ids(
        settings, resolve_stream(aws.dynamodb, aws.streams, settings.source_table, settings.stream_arn)
    )
    settings, catalog = set_up_generation(settings, source)
    # No /metrics in this mode (one process per shard, started by the daemon): the KCL publishes its own.
    metrics, health = Metrics(CollectorRegistry()), Health(stall_after_seconds=3600)
    batches = build_processor(settings, source, metrics, health, catalog.routing, catalog)
    try:
        processor = ShardProcessor(
            batches,
            KclVersionStore(aws.dynamodb, settings.kcl_lease_table),
            settings.kcl_batch_timeout_seconds,
            retry_base=settings.retry_base_seconds,
        )
        StrictKCLProcess(processor, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr).run()
    finally:
        batches.close()
    log.info("kcl_processor_exited", reason="the daemon closed stdin")
