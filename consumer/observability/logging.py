"""structlog set-up: JSON lines by default, a readable console renderer on request.

Every event carries ``worker_id`` (one process is one worker: added to every event, from every
thread, the bulk pool and the reaper included) and, inside a shard consumer, ``shard_id``;
record-level events add ``sequence_number``. Event names are past-tense snake_case
(``lease_taken``, ``shard_ended``).

The standard library's loggers (botocore, urllib3, opensearch-py) go through the same renderer, so
an outage never turns the log stream into unparseable text. They log at WARNING and above whatever
``CDC_LOG_LEVEL`` says: at DEBUG botocore writes every request's signed headers (a session token among
them) and opensearch-py every body. ``CDC_LOG_LIBRARY_DEBUG=true`` (with ``CDC_LOG_LEVEL=DEBUG``)
lets them through for a debugging session.

Every line, ours and the libraries', passes ``consumer.observability.redaction.redact_event`` last:
no credential, token, signature or registered secret reaches the log pipeline.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import orjson
import structlog

from consumer.observability.redaction import redact_event

_CHATTY_LIBRARIES = ("botocore", "boto3", "urllib3", "opensearch", "s3transfer")


def configure_logging(
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    worker_id: str | None = None,
    library_debug: bool = False,
) -> None:
    """Configure structlog and the standard library's logging process-wide; safe to call more than once.

    ``auto``: a readable console format on a terminal, JSON lines otherwise (containers).
    ``library_debug``: the libraries' DEBUG lines too, when ``level`` is DEBUG (redacted all the same).
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
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.processors.format_exc_info],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_event, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    libraries = logging.DEBUG if library_debug and level.upper() == "DEBUG" else logging.WARNING
    for library in _CHATTY_LIBRARIES:
        logging.getLogger(library).setLevel(libraries)


def _with_worker_id(worker_id: str) -> structlog.typing.Processor:
    def add(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("worker_id", worker_id)
        return event

    return add
