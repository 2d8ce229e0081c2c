"""``consumer transform --check ITEM.json``: what the routes and the transform make of items, without
writing anything: for each item its route, index, document id and document, or why it is in no
index, or the error that would dead-letter its changes.

The file holds one item, a JSON array of items, or one item per line; an item is DynamoDB JSON
(``{"PK": {"S": "CUSTOMER#1"}}``, as ``aws dynamodb get-item`` prints it, under ``"Item"`` or not) or
plain JSON (``{"PK": "CUSTOMER#1"}``). The key attributes come from ``--key PK,SK`` (offline), or
else from the table (DescribeTable). Exit 0 when every item was shaped or left out, 3 when one
would be dead-lettered, 2 for a configuration error.
"""

from __future__ import annotations

import decimal
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from boto3.dynamodb.types import TypeSerializer

from consumer.config import Settings, document_key_schema, routing
from consumer.errors import ConfigError, RecordError
from consumer.pipeline.attributes import dumps_json
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.projection import indexable
from consumer.pipeline.repair import Item, project_item
from consumer.runtime.clients import aws_clients
from consumer.runtime.stream_source import read_key_schema

_TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


def read_items(path: Path) -> list[Item]:
    """The items of the file, as AttributeValues. Raises ConfigError naming what is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        parsed: Any = json.loads(text, parse_float=decimal.Decimal)
        bodies = parsed if isinstance(parsed, list) else [parsed]
    except ValueError:
        try:
            bodies = [json.loads(line, parse_float=decimal.Decimal) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise ConfigError(f"{path}: neither JSON nor JSON lines ({exc})") from None
    return [_item(body, path, n) for n, body in enumerate(bodies, 1)]


def _item(body: Any, path: Path, n: int) -> Item:
    if isinstance(body, dict) and isinstance(body.get("Item"), dict) and len(body) == 1:
        body = body["Item"]
    if not isinstance(body, dict) or not body:
        raise ConfigError(f"{path}: item {n} is not a JSON object of attributes")
    if all(isinstance(v, dict) and len(v) == 1 and next(iter(v)) in _TYPES for v in body.values()):
        return body  # DynamoDB JSON already
    serializer = TypeSerializer()
    try:
        return {name: serializer.serialize(value) for name, value in body.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: item {n} holds a value DynamoDB cannot store: {exc}") from None


def key_schema(settings: Settings, key: str | None, items: list[Item]) -> KeySchema:
    """``--key HASH[,RANGE]`` with the types the first item gives them, or the table's key schema."""
    if key is None:
        aws = aws_clients(settings.aws_region, settings.streams_endpoint_url)
        return document_key_schema(settings, read_key_schema(aws.dynamodb, settings.source_table))
    names = [name.strip() for name in key.split(",") if name.strip()]
    first = items[0] if items else {}
    attributes = []
    for name in names:
        value = first.get(name)
        kind = next(iter(value)) if isinstance(value, dict) and value else None
        if kind not in ("S", "N", "B"):
            raise ConfigError(f"--key {key}: the first item has no S, N or B attribute {name!r}")
        attributes.append(KeyAttribute(name, kind))
    try:
        return document_key_schema(settings, KeySchema(tuple(attributes)))
    except ValueError as exc:
        raise ConfigError(f"--key {key}: {exc}") from None


def check(settings: Settings, schema: KeySchema, items: list[Item]) -> Iterator[tuple[dict[str, Any], bool]]:
    """Per item: its report (route, index, id, document; or why none) and whether it is poison."""
    routes = routing(settings, schema)
    for n, item in enumerate(items, 1):
        report: dict[str, Any] = {"item": n}
        try:
            doc_id, projected = project_item(schema, item, routes)
        except RecordError as exc:
            yield {**report, "poison": str(exc)}, True
            continue
        report["id"] = doc_id
        if projected is None:
            keys = {attribute.name: item.get(attribute.name) for attribute in schema.attributes}
            placement = routes.place(keys, item)
            why = (
                "no route takes it"
                if placement is None
                else f"the transform of route {placement.route.name!r} left it out"
            )
            yield {**report, "index": None, "why": why}, False
            continue
        document = indexable(projected.document)
        yield {**report, "route": projected.route, "index": projected.index, "document": document}, False


def render(report: dict[str, Any]) -> str:
    n = report["item"]
    if "poison" in report:
        return f"item {n}: poison (its changes would be dead-lettered): {report['poison']}\n"
    if report.get("index") is None:
        return f"item {n} ({report['id']}): in no index: {report['why']}\n"
    head = f"item {n}: route {report['route']} → index {report['index']}, id {report['id']}\n"
    body = dumps_json(report["document"], option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return head + body + "\n"


def transform_command(settings: Settings, path: Path, key: str | None, as_json: bool) -> bool:
    """Print what the routes and the transform make of each item; True when one is poison."""
    items = read_items(path)
    schema = key_schema(settings, key, items)
    poison = False
    reports = []
    for report, bad in check(settings, schema, items):
        poison = poison or bad
        reports.append(report)
        if not as_json:
            sys.stdout.write(render(report))
    if as_json:
        sys.stdout.write(dumps_json(reports, option=orjson.OPT_INDENT_2).decode() + "\n")
    return poison
