"""structlog set-up: JSON lines by default, a readable console renderer on request.

Every event carries ``worker_id`` (one process is one worker: added to every event, from every
thread, the bulk pool and the reaper included) and, inside a shard consumer, ``shard_id``;
record-level events add ``sequence_number``. Event names are past-tense snake_case
(``lease_taken``, ``shard_ended``).

The standard library's loggers (botocore, urllib3, opensearch-py) go through the same renderer, so
an outage never turns the log stream into unparseable text; their chatty INFO lines (one per
OpenSearch request) are kept out unless the level is DEBUG.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import orjson
import structlog

_CHATTY_LIBRARIES = ("botocore", "boto3", "urllib3", "opensearch", "s3transfer")


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto", worker_id: str | None = None
) -> None:
    """Configure structlog and the standard library's logging process-wide; safe to call more than once.

    ``auto``: a readable console format on a terminal, JSON lines otherwise (containers).
    """
    renderer: structlog.typing.Processor
    if fmt == "console" or (fmt == "auto" and sys.stderr.isatty()):
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode()
        )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if worker_id is not None:
        shared.append(_with_worker_id(worker_id))
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.processors.format_exc_info],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for library in _CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


def _with_worker_id(worker_id: str) -> structlog.typing.Processor:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("worker_id", worker_id)
        return event

    return add
