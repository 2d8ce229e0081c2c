"""What shapes the documents of an index generation, and its fingerprint (pure).

Two workers write the same documents for the same stream record only if they agree on everything
that turns an item into a document: the key schema and how ids are made, the mapping policy and
each route's template, the routes (their matches and index names), the field rules, the global
filter and TTL rules, each transform's identity and version, and the service's own document format
(``DOCUMENT_FORMAT``, raised whenever the service changes what it writes). ``document_shape`` lists
them as plain JSON; ``fingerprint`` is a digest of that JSON; ``differences`` names, in words, what
differs between two shapes, for the message that refuses a worker.

Secrets stay out: the masking key is represented by a short digest of it (``mask_key_id``), enough to
tell two keys apart and useless to recover a key of the length config demands.

Thread-safe (pure functions).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from consumer.pipeline.doc_ids import KeySchema
from consumer.pipeline.mapping import IndexTemplate, MappingMode
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.routes import Route, Routing

DOCUMENT_FORMAT = 1  # raise when the service changes the documents it writes for the same item
FINGERPRINT_HEX_DIGITS = 16

Shape = dict[str, Any]


def document_shape(routing: Routing, schema: KeySchema, mode: MappingMode) -> Shape:
    """Everything that shapes the documents ``routing`` writes, as JSON-ready values."""
    return {
        "document_format": DOCUMENT_FORMAT,
        "keys": [[attribute.name, attribute.type] for attribute in schema.attributes],
        "masked_keys": sorted(schema.masked),
        "mapping_mode": mode,
        "rules": _rules(routing.rules, with_fields=False),
        "routes": [_route(route) for route in routing.routes],
    }


def fingerprint(shape: Shape) -> str:
    """A digest of ``shape``: equal shapes, equal fingerprints."""
    return hashlib.sha256(_canonical(shape)).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def differences(recorded: Shape, current: Shape) -> list[str]:
    """What differs from ``recorded`` to ``current``, each as ``what: before → now``."""
    found: list[str] = []
    for name in sorted(set(recorded) | set(current)):
        if name == "routes":
            continue
        if recorded.get(name) != current.get(name):
            found.append(f"{name}: {_text(recorded.get(name))} → {_text(current.get(name))}")
    before = {route["name"]: route for route in recorded.get("routes", [])}
    now = {route["name"]: route for route in current.get("routes", [])}
    if list(before) != list(now):
        found.append(f"routes: {list(before)} → {list(now)}")
    for name in [name for name in now if name in before]:
        for field in sorted(set(before[name]) | set(now[name])):
            if before[name].get(field) != now[name].get(field):
                found.append(
                    f"route {name!r} {field}: {_text(before[name].get(field))} → {_text(now[name].get(field))}"
                )
    return found


def _route(route: Route) -> dict[str, Any]:
    return {
        "name": route.name,
        "index": route.index.text,
        "match": list(route.patterns),
        "read_alias": route.read_alias,
        "template": _template(route.template),
        "transform": None if route.transform is None else f"{route.transform.spec} {route.transform.version}",
        **_rules(route.rules, with_fields=True),
    }


def _rules(rules: ProjectionRules, with_fields: bool) -> dict[str, Any]:
    if with_fields:
        return {
            "include_fields": [path.text for path in rules.include_fields],
            "drop_fields": [path.text for path in rules.drop_fields],
            "mask_fields": [path.text for path in rules.mask_fields],
            "mask_key_id": _key_id(rules.mask_key) if rules.mask_fields else None,
        }
    return {
        "event_names": sorted(rules.event_names),
        "filter_patterns": list(rules.patterns),
        "filter_mode": rules.filter_mode,
        "ttl_deletes": rules.ttl_deletes,
    }


def _template(template: IndexTemplate) -> dict[str, Any]:
    return {"settings": template.settings, "mappings": template.mappings}


def _key_id(key: bytes | None) -> str | None:
    if key is None:
        return None
    return hashlib.sha256(b"cdc-mask-key-id\0" + key).hexdigest()[:8]


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _text(value: Any, limit: int = 200) -> str:
    text = _canonical(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"
