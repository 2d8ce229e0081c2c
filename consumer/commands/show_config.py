"""``consumer config``: the effective configuration, each value with its source, secrets redacted;
``consumer config --check``: that configuration checked against the world without starting a worker.

Sources: ``env`` (a ``CDC_*`` variable), ``derived`` (computed from others: the index from the
table, the lease table, the read alias; the worker id from ECS task metadata), ``default``.

``--check`` reads what a worker needs: the table and its stream (view type), the lease table (a
missing one is fine: the first worker creates it), OpenSearch and the index (likewise), and the
dead-letter destination. One line per check; exit 0 when everything answered as a worker needs,
3 when something is missing or unreachable (the line says what to do), 2 for an invalid
configuration (before any check).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from consumer.commands.hints import what_to_do
from consumer.config import ENV_PREFIX, SECRET_SETTINGS, Settings
from consumer.errors import ConfigError, ConsumerError
from consumer.leases.table import LeaseTable
from consumer.observability.redaction import REDACTED, redact
from consumer.runtime.clients import aws_clients, opensearch_client, resolved_region
from consumer.runtime.stream_source import resolve_stream, with_document_ids

DERIVED = {
    "index_name": "opensearch_index",
    "read_alias_name": "opensearch_read_alias",
    "lease_table_name": "lease_table",
    "source_table": "table_name",
}


@dataclass(frozen=True)
class Entry:
    variable: str
    value: str
    source: str


def effective(settings: Settings, environ: Mapping[str, str]) -> list[Entry]:
    """Every setting's value and source, secrets redacted; derived names after the settings."""
    entries = []
    for field, value in settings.model_dump(exclude={"aws_region", "streams_endpoint_url", "build_commit"}).items():
        variable = ENV_PREFIX + field.upper()
        if variable in environ:
            source = "env"
        elif field == "worker_id" and environ.get("ECS_CONTAINER_METADATA_URI_V4"):
            source = "derived (ECS task id)"
        else:
            source = "default"
        if field == "routes" and value:
            value = [f"{route['name']}→{route['index']}" for route in value]
        shown = REDACTED if field in SECRET_SETTINGS and value is not None else redact(_text(value))
        entries.append(Entry(variable, shown, source))
    for name, field in DERIVED.items():
        given = ENV_PREFIX + field.upper() in environ
        entries.append(Entry(f"({name})", str(getattr(settings, name)), "env" if given else "derived"))
    entries.append(Entry("(dead_letters)", str(settings.dead_letters), "derived"))
    entries.append(Entry("AWS_REGION", settings.aws_region or "(not set)", "env" if settings.aws_region else "-"))
    return entries


def render(entries: list[Entry], as_json: bool) -> str:
    if as_json:
        rows = [{"variable": e.variable, "value": e.value, "source": e.source} for e in entries]
        return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n"
    width = max(len(e.variable) for e in entries)
    return "".join(f"{e.variable:<{width}}  {e.value:<40}  {e.source}\n" for e in entries)


def _text(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


def check(settings: Settings) -> list[tuple[str, bool, str]]:
    """(what, ok, detail) for each resource a worker needs, in the order a worker meets them."""
    results: list[tuple[str, bool, str]] = []

    def probe(what: str, attempt: Callable[[], str]) -> bool:
        try:
            results.append((what, True, attempt()))
        except (ConsumerError, OSError, ValueError) as exc:
            results.append((what, False, redact(str(exc)) + _hint(exc)))
            return False
        except Exception as exc:  # noqa: BLE001 - a client error of any library is a failed check, named
            results.append((what, False, redact(f"{type(exc).__name__}: {exc}") + _hint(exc)))
            return False
        return True

    aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
    source: list[Any] = []

    def stream() -> str:
        source.append(resolve_stream(aws.dynamodb, aws.streams, settings.source_table, settings.stream_arn))
        return f"{source[0].stream_arn} ({source[0].view_type})"

    probe(f"table {settings.source_table} and its stream", stream)

    def routes() -> str:
        from consumer.runtime.assembly import build_routing

        if not source:
            raise ConfigError("needs the stream (its view type and key schema): see the check above")
        routing = build_routing(settings, with_document_ids(settings, source[0]))
        transforms = sorted({route.transform.spec for route in routing.routes if route.transform is not None})
        imported = f"; transform {', '.join(transforms)} imported" if transforms else ""
        return f"{len(routing.routes)} to {', '.join(routing.index_patterns)}{imported}"

    probe("routes and transforms", routes)

    def leases() -> str:
        table = LeaseTable(aws.dynamodb, settings.lease_table_name)
        return "exists" if table.exists() else "missing: the first worker creates it (needs dynamodb:CreateTable)"

    probe(f"lease table {settings.lease_table_name}", leases)
    client = opensearch_client(settings)

    def index() -> str:
        info = client.info()
        version = info.get("version", {}).get("number", "?")
        exists = client.indices.exists(index=settings.index_name)
        state = "exists" if exists else "missing: the first worker creates it with the managed mapping"
        return f"OpenSearch {version}; index {state}"

    probe(f"OpenSearch {settings.opensearch_url} and index {settings.index_name}", index)

    def dead_letters() -> str:
        from consumer.observability.metrics import Metrics
        from consumer.runtime.assembly import build_dead_letters

        build_dead_letters(settings, Metrics(CollectorRegistry()))  # connects: a missing queue or bucket fails
        return "reachable"

    probe(f"dead-letter destination {settings.dead_letters}", dead_letters)
    return results


def _hint(exc: BaseException) -> str:
    """The failure's what-to-do, on its own line under the FAIL line."""
    hint = what_to_do(exc)
    return f"\n{' ' * 8}{hint}" if hint else ""


def config_command(settings: Settings, environ: Mapping[str, str], as_json: bool, run_checks: bool) -> bool:
    """Print the configuration (and the checks); True when a check failed. Raises ConfigError before
    printing anything when the checks cannot run (no AWS region)."""
    if run_checks:
        resolved_region(settings.aws_region)
    sys.stdout.write(render(effective(settings, environ), as_json))
    if not run_checks:
        return False
    results = check(settings)
    sys.stdout.write("\nchecks:\n")
    for what, ok, detail in results:
        sys.stdout.write(f"  {'ok  ' if ok else 'FAIL'}  {what}: {detail}\n")
    return not all(ok for _, ok, _ in results)
