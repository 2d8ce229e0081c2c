"""Command line: ``consumer run`` starts a worker; ``consumer kcl-processor`` serves one shard under
the KCL MultiLangDaemon; ``consumer leases`` prints the lease table; ``consumer config [--check]`` prints (and checks) the
configuration; ``consumer transform --check`` shows what the routes and the transform make of items;
``consumer audit`` compares the
table with the index (``--repair`` fixes the drift); ``consumer backfill`` copies the table's items
into the index; ``consumer redrive`` applies dead-lettered items again from their current state in
the table.

Exit codes: 0 after a clean stop (SIGTERM / SIGINT), a printed table, an audit without drift or a
redrive of every entry; 3 when an audit found drift or a redrive left entries needing attention
(unreadable keys, still rejected); 2 for a configuration or set-up error (the message says what to
change); 130 when interrupted (Ctrl-C); 1 for anything else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import structlog

from consumer import __version__
from consumer.commands.audit import audit_command
from consumer.commands.backfill import backfill_command
from consumer.commands.hints import what_to_do
from consumer.commands.leases_report import generation_heading, lease_rows, render_json, render_table
from consumer.commands.redrive import redrive_command
from consumer.commands.reindex import prove, reindex_command
from consumer.commands.show_config import config_command
from consumer.commands.transform_check import transform_command
from consumer.config import Settings, load_settings
from consumer.errors import ConfigError, ConsumerError
from consumer.leases.model import Lease, shard_leases
from consumer.leases.table import LeaseTable
from consumer.observability.logging import configure_logging
from consumer.observability.redaction import register_secrets
from consumer.pipeline.generations import Generation
from consumer.runtime.app import run_worker
from consumer.runtime.clients import aws_clients, opensearch_client
from consumer.runtime.garbage_collection import tune_collector
from consumer.runtime.generations import generation_store

log = structlog.get_logger("consumer")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_ATTENTION, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_AUDIT_EPILOG = (
    "Exit codes: 0 no drift; 3 drift found (with --repair too: run audit again to confirm the repair); "
    "2 configuration error; 1 other failure. A repair writes each document with the external version "
    "(floor(read time) << 31) - 1, below that of any change made after the table was read, so it never "
    "overwrites a newer change (docs/versioning.md)."
)
_REDRIVE_EPILOG = (
    "Exit codes: 0 every entry planned (dry run) or applied / stale; 3 some entries need attention "
    "(unreadable keys, still rejected); 2 configuration error or no such source; 1 other failure. "
    "Files and S3 objects are only read, never changed: archive them once redriven. An SQS message is "
    "deleted once its entry is applied or stale; the others stay in the queue."
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_command()
    if args.command == "kcl-processor":
        return kcl_command()
    if args.command == "config":
        return _run_command(
            lambda settings: config_command(settings, os.environ, args.json, args.check), require_opensearch=args.check
        )
    if args.command == "leases":
        return leases_command(as_json=args.json)
    if args.command == "audit":
        return operator_command(
            lambda settings: _until_signal(
                lambda stop: audit_command(settings, args.json, args.repair, args.limit, stop)
            )
        )
    if args.command == "backfill":
        return operator_command(
            lambda settings: _until_signal(
                lambda stop: backfill_command(settings, args.segments, args.restart, stop, args.json)
            )
        )
    if args.command == "reindex":
        action = next((name for name in ("rollback", "retire", "abandon", "status") if getattr(args, name)), "reindex")
        return operator_command(
            lambda settings: _until_signal(
                lambda stop: reindex_command(settings, action, args.force or args.now, args.json, stop)
            )
        )
    if args.command == "transform":
        return _run_command(
            lambda settings: transform_command(settings, args.check, args.key, args.json), require_opensearch=False
        )
    if args.command == "redrive":
        source = args.source or (str(args.file) if args.file else None)
        return operator_command(
            lambda settings: _until_signal(
                lambda stop: redrive_command(settings, source, args.apply, args.visibility_timeout, stop, args.json)
            )
        )
    return EXIT_FAILED


_SETTINGS_EPILOG = """\
settings (environment variables; the README's "Configuration" table lists them all):
  CDC_TABLE_NAME or CDC_STREAM_ARN   the source
  CDC_OPENSEARCH_URL                 the sink (CDC_OPENSEARCH_AUTH: sigv4, basic or none)
  CDC_DEAD_LETTER_DESTINATION        s3://bucket/prefix, sqs:<queue> or a file
  AWS_REGION                         and the usual AWS credential chain

`consumer config` prints the effective settings and where each comes from;
`consumer config --check` also checks that the table, the stream, the lease table,
OpenSearch and the dead-letter destination answer.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consumer", description="DynamoDB Streams → OpenSearch consumer.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="run one worker until SIGTERM/SIGINT (configured by CDC_* variables)",
        description=textwrap.fill(
            "Run one worker: it leases shards of the table's stream from the lease table (shared with the other "
            "workers), applies their changes to OpenSearch and serves /metrics, /healthz and /readyz. It takes no "
            "arguments: every setting is a CDC_* environment variable."
        ),
        epilog=_SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_parser(
        "kcl-processor",
        help="serve one shard as a record processor of the KCL MultiLangDaemon (its executableName; deploy/kcl)",
        description=textwrap.fill(
            "Serve one shard for the KCL MultiLangDaemon, which starts this command as its executableName (one "
            "process per shard) and speaks the multilang protocol on its stdin and stdout; logs go to stderr. The "
            "launcher in deploy/kcl tells each child its lease table (CDC_KCL_LEASE_TABLE); under another daemon, "
            "set it to that daemon's applicationName (docs/kcl.md)."
        ),
        epilog=_SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config = commands.add_parser(
        "config",
        help="print the effective configuration (secrets redacted) and where each value comes from",
        epilog="Exit codes: 0 valid (and, with --check, everything reachable); 3 a check failed; 2 invalid configuration.",
    )
    config.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    config.add_argument(
        "--check",
        action="store_true",
        help="also check the table, its stream, the lease table, OpenSearch, the index and the dead-letter destination",
    )
    leases = commands.add_parser("leases", help="print the lease table: owner, checkpoint, age and lag of each shard")
    leases.add_argument("--json", action="store_true", help="print a JSON array of leases instead of a table")
    audit = commands.add_parser(
        "audit",
        help="compare the table with the index: missing, extra and different documents",
        description="Scan the table (consistent reads) and the whole index, and report the documents missing "
        "for an item, extra (no item) and different, with examples. --repair writes the table's state for each.",
        epilog=_AUDIT_EPILOG,
    )
    audit.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    audit.add_argument("--repair", action="store_true", help="fix the drift from the table's state (safe: see below)")
    audit.add_argument("--limit", type=_count, default=10, metavar="N", help="examples shown per kind (default 10)")
    backfill = commands.add_parser(
        "backfill",
        help="copy every item of the table into the index while the stream flows (resumable, shared)",
        description="Scan the table in parallel segments (leases in the lease table, shared by every process "
        "running this command) and index each item as the workers would, with a version that never overwrites "
        "a newer change (docs/versioning.md, 'Backfill'). Refuses to start until the workers' leases cover every "
        "open shard, so nothing falls between the scan and the stream. Interrupted, it resumes from each "
        "segment's checkpoint.",
        epilog="Exit codes: 0 every segment done; 3 stopped before every segment was done (run it again); "
        "2 configuration or set-up error; 130 interrupted; 1 other failure.",
    )
    backfill.add_argument(
        "--segments",
        type=_count,
        default=None,
        metavar="N",
        help="Scan segments (default: CDC_BACKFILL_SEGMENTS, or one per 256 MiB of table, 1 … 64)",
    )
    backfill.add_argument("--restart", action="store_true", help="forget a previous backfill's checkpoints: scan again")
    backfill.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    reindex = commands.add_parser(
        "reindex",
        help="build an index generation for this configuration and swap the read aliases to it (resumable)",
        description="Create the next index generation (<index>-g<N>) for the documents this configuration writes, "
        "fill it with the backfill while workers of this configuration apply the stream to it, prove it with the "
        "audit, then move <index>-live and <index> to it in one atomic request. The previous generation is kept "
        "for rollback for CDC_GENERATION_RETENTION_SECONDS. Interrupted, it resumes when run again "
        "(docs/generations.md).",
        epilog="Exit codes: 0 done (or nothing to do); 3 stopped before the swap (run it again); 2 configuration "
        "error, refused (another reindex under way, a previous generation kept) or not proven; 130 interrupted; "
        "1 other failure.",
    )
    steps = reindex.add_mutually_exclusive_group()
    steps.add_argument("--status", action="store_true", help="print the generations and stop")
    steps.add_argument("--rollback", action="store_true", help="make the previous generation live again")
    steps.add_argument("--retire", action="store_true", help="delete the previous generation (after its retention)")
    steps.add_argument("--abandon", action="store_true", help="delete the generation being built")
    reindex.add_argument("--force", action="store_true", help="--rollback: even when no worker keeps it current")
    reindex.add_argument("--now", action="store_true", help="--retire: before its retention ends")
    reindex.add_argument("--json", action="store_true", help="--status: as JSON")
    redrive = commands.add_parser(
        "redrive",
        help="apply dead-lettered items again from their current state in the table (dry run unless --apply)",
        description="For each dead letter, read the item's current state from the table (consistent GetItem) and "
        "index it, or delete its document when the item is gone. Without --apply, only print what would be done.",
        epilog=_REDRIVE_EPILOG,
    )
    redrive.add_argument(
        "source",
        nargs="?",
        help="where the dead letters are: a file path, file://PATH, s3://BUCKET[/PREFIX or /KEY] or sqs:QUEUE "
        "(a name or URL); default: CDC_DEAD_LETTER_DESTINATION (or CDC_DEAD_LETTER_PATH)",
    )
    mode = redrive.add_mutually_exclusive_group()
    mode.add_argument("--apply", action="store_true", help="write to the index (default: print the plan only)")
    mode.add_argument("--dry-run", action="store_true", help="print the plan only, change nothing (the default)")
    redrive.add_argument("--file", type=Path, metavar="PATH", help="a dead-letter file (same as giving its path)")
    redrive.add_argument(
        "--json", action="store_true", help="print one JSON object per dead letter, then one with the summary"
    )
    redrive.add_argument(
        "--visibility-timeout",
        type=_count,
        default=300,
        metavar="SECONDS",
        help="SQS: how long received messages stay hidden while redrive settles them (default 300)",
    )
    transform = commands.add_parser(
        "transform",
        help="show what the routes and the transform make of items (route, index, id, document); writes nothing",
        description="Read items from a file (one item, a JSON array, or JSON lines; DynamoDB JSON as "
        "`aws dynamodb get-item` prints it, or plain JSON) and print, for each, the route it takes, its index, "
        "document id and document, exactly as the workers would write it: or why it is in no index, or the error "
        "that would dead-letter its changes. Uses CDC_ROUTES, CDC_TRANSFORM and the field rules (docs/routes.md).",
        epilog="Exit codes: 0 every item shaped or left out; 3 an item would be dead-lettered; 2 configuration error.",
    )
    transform.add_argument("--check", type=Path, required=True, metavar="ITEMS.json", help="the items to shape")
    transform.add_argument(
        "--key", metavar="HASH[,RANGE]", help="the key attributes (default: read from the table with DescribeTable)"
    )
    transform.add_argument("--json", action="store_true", help="print a JSON array of reports instead of text")
    return parser


def _configure_logging(
    settings: Settings, fmt: Literal["auto", "json", "console"], worker_id: str | None = None
) -> None:
    """Logging as the settings say, with this process's secrets registered for redaction first."""
    register_secrets(settings.secret_values)
    configure_logging(settings.log_level, fmt, worker_id, library_debug=settings.log_library_debug)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, got {text!r}")
    return int(text)


def run_command() -> int:
    try:
        settings, warnings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings, settings.log_format, settings.worker_id)
    for warning in warnings:
        log.warning("config_warning", detail=warning)
    tune_collector(settings.gc_young_threshold)
    stop = threading.Event()
    _install_signal_handlers(stop)
    try:
        run_worker(settings, stop, prove=lambda generation, on_audited: prove(settings, generation, stop, on_audited))
    except ConfigError as exc:
        log.error("startup_failed", error=str(exc))
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConsumerError as exc:
        log.error("worker_failed", error=str(exc), error_type=type(exc).__name__)
        return EXIT_FAILED
    return EXIT_OK


def kcl_command() -> int:
    """``consumer kcl-processor``: logs are JSON lines on stderr (stdout is the daemon's protocol)."""
    try:
        settings, warnings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _configure_logging(settings, "json")
    for warning in warnings:
        log.warning("config_warning", detail=warning)
    tune_collector(settings.gc_young_threshold)
    try:
        from consumer.kcl.command import kcl_processor_command  # needs the [kcl] extra: not for every command
    except ImportError as exc:
        log.error("kcl_processor_startup_failed", error=f"{exc}: install the kcl extra (pip install '.[kcl]')")
        return EXIT_CONFIG
    try:
        kcl_processor_command(settings)
    except ConfigError as exc:
        log.error("kcl_processor_startup_failed", error=str(exc))
        return EXIT_CONFIG
    except ConsumerError as exc:
        log.error("kcl_processor_failed", error=str(exc), error_type=type(exc).__name__)
        return EXIT_FAILED
    return EXIT_OK


def leases_command(as_json: bool) -> int:
    """Print the lease table read with the worker's settings; OpenSearch settings are not needed."""

    def body(settings: Settings) -> bool:
        now = time.time()
        if settings.index_generations == "off":
            rows = lease_rows(read_leases(settings), now=now, failover_seconds=settings.failover_seconds)
            sys.stdout.write(render_json(rows) if as_json else render_table(rows))
            return False
        sections = []
        for generation in read_generations(settings):
            leases = read_leases(settings, generation.lease_table)
            rows = lease_rows(leases, now=now, failover_seconds=settings.failover_seconds, generation=generation.number)
            sections.append((generation_heading(generation, now), rows))
        if as_json:
            sys.stdout.write(render_json([row for _, rows in sections for row in rows]))
        else:
            sys.stdout.write("\n".join(f"{heading}\n{render_table(rows)}" for heading, rows in sections))
        return False

    return _run_command(body, require_opensearch=False)


def operator_command(body: Callable[[Settings], bool]) -> int:
    """Run an operator command with the workers' settings (OpenSearch included): ``body`` prints its
    report and says whether it found something needing attention (exit 3)."""

    def logged(settings: Settings) -> bool:
        _configure_logging(settings, settings.log_format)  # on stderr: stdout is the report's
        return body(settings)

    return _run_command(logged, require_opensearch=True)


def _run_command(body: Callable[[Settings], bool], require_opensearch: bool) -> int:
    """Load settings, run ``body``, and map its outcome and errors to the documented exit codes."""
    try:
        settings, warnings = load_settings(os.environ, require_opensearch=require_opensearch)
        for warning in warnings:
            print(f"consumer: warning: {warning}", file=sys.stderr)
        tune_collector(settings.gc_young_threshold)
        attention = body(settings)
    except ConfigError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ConsumerError as exc:
        hint = what_to_do(exc)
        print(f"consumer: {exc}" + (f"\n  {hint}" if hint else ""), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("consumer: interrupted; writes already made are safe to keep, run the command again", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_ATTENTION if attention else EXIT_OK


def _until_signal(body: Callable[[threading.Event], bool]) -> bool:
    """Run ``body`` with an event that SIGTERM / SIGINT set."""
    stop = threading.Event()
    _install_signal_handlers(stop)
    return body(stop)


def read_generations(settings: Settings) -> list[Generation]:
    """The index generations recorded for this deployment, oldest first. Raises ConfigError when
    OpenSearch, which holds their registry, is not configured or none is recorded."""
    if not settings.opensearch_url:
        raise ConfigError(
            "with CDC_INDEX_GENERATIONS=on the lease tables are per generation, listed in OpenSearch: set "
            "CDC_OPENSEARCH_URL (and its credentials) for `consumer leases`"
        )
    registry = generation_store(opensearch_client(settings), settings).read()[0]
    if not registry.generations:
        raise ConfigError(
            "no index generation is recorded yet: a worker records the first on its first start (docs/generations.md)"
        )
    return sorted(registry.generations, key=lambda generation: generation.number)


def read_leases(settings: Settings, lease_table: str | None = None) -> list[Lease]:
    """Every lease in ``lease_table`` (the configured one by default). Raises ConfigError when that
    table does not exist."""
    table = LeaseTable(
        aws_clients(settings.aws_region, settings.streams_endpoint_url).dynamodb,
        lease_table or settings.lease_table_name,
    )
    if not table.exists():
        raise ConfigError(
            f"lease table {table.name!r} does not exist: a worker creates it on its first start; "
            "if workers are running, check CDC_LEASE_TABLE or CDC_TABLE_NAME"
        )
    return shard_leases(table.list_leases())


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("shutdown_forced", signal=signal.Signals(signum).name)
            os._exit(EXIT_FAILED)
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
