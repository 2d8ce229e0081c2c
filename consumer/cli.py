"""Command line: ``consumer run`` starts a worker; ``consumer leases`` prints the lease table.

Exit codes: 0 after a clean stop (SIGTERM / SIGINT) or a printed table, 2 for a configuration or
stream set-up error or a missing lease table (the message says what to change), 1 for anything else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

import structlog

from consumer import __version__
from consumer.app import run_worker
from consumer.clients import aws_clients
from consumer.config import Settings, load_settings
from consumer.errors import ConfigError, ConsumerError
from consumer.leases.model import Lease
from consumer.leases.report import lease_rows, render_json, render_table
from consumer.leases.table import LeaseTable
from consumer.observability.logging import configure_logging

log = structlog.get_logger("consumer")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="consumer", description="DynamoDB Streams → OpenSearch consumer.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run one worker until SIGTERM/SIGINT (configured by CDC_* variables)")
    leases = commands.add_parser("leases", help="print the lease table: owner, checkpoint, age and lag of each shard")
    leases.add_argument("--json", action="store_true", help="print a JSON array of leases instead of a table")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_command()
    if args.command == "leases":
        return leases_command(as_json=args.json)
    return EXIT_FAILED


def run_command() -> int:
    try:
        settings, warnings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    for warning in warnings:
        log.warning("config_warning", detail=warning)
    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        run_worker(settings, stop)
    except ConfigError as exc:
        log.error("startup_failed", error=str(exc))
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConsumerError as exc:
        log.error("worker_failed", error=str(exc), error_type=type(exc).__name__)
        return EXIT_FAILED
    return EXIT_OK


def leases_command(as_json: bool) -> int:
    """Print the lease table read with the worker's settings; OpenSearch settings are not needed."""
    try:
        settings, warnings = load_settings(os.environ, require_opensearch=False)
        for warning in warnings:
            print(f"consumer: warning: {warning}", file=sys.stderr)
        leases = read_leases(settings)
    except ConfigError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConsumerError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    rows = lease_rows(leases, now=time.time(), failover_seconds=settings.failover_seconds)
    sys.stdout.write(render_json(rows) if as_json else render_table(rows))
    return EXIT_OK


def read_leases(settings: Settings) -> list[Lease]:
    """Every lease in the configured lease table. Raises ConfigError when that table does not exist."""
    table = LeaseTable(
        aws_clients(settings.aws_region, settings.streams_endpoint_url).dynamodb, settings.lease_table_name
    )
    if not table.exists():
        raise ConfigError(
            f"lease table {table.name!r} does not exist: a worker creates it on its first start; "
            "if workers are running, check CDC_LEASE_TABLE or CDC_TABLE_NAME"
        )
    return table.list_leases()


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("shutdown_forced", signal=signal.Signals(signum).name)
            os._exit(EXIT_FAILED)
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
