"""A single-table design, its routes and transform, random histories over it, and an independent
model of what each index must hold: the fixture of the routing tests on every path.

The ``shop`` table keys items by ``PK`` / ``SK``: customers (``CUSTOMER#n`` / ``PROFILE``), orders
(``CUSTOMER#n`` / ``ORDER#m``) and order lines (``ORDER#m`` / ``LINE#k``), told apart by a ``type``
attribute, each of a tenant. The routes (``routes``), first match wins:

* ``lines``: key-only, ``SK`` starting with ``LINE#`` → ``shop-lines``, ``note`` dropped;
* ``customers``: ``type`` = customer → ``shop-customers``, ``email`` masked, a display name;
* ``orders``: ``type`` = order → ``shop-orders-${tenant}`` (templated; a tenant ``Globex Corp`` makes
  ``shop-orders-globex_corp``), the order's total from its lines, left out when ``hidden``;
* ``archive``: ``type`` = archived → ``shop-archive``;

and an item of any other type is in no index. ``expected_indices`` says, without the service's code
(but its masking digest), what each index holds for a table state.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.shaping import masked
from tests.support.factories import stream_record
from tests.support.tables import create_table

TABLE = "shop"
KEY_SCHEMA = KeySchema((KeyAttribute("PK", "S"), KeyAttribute("SK", "S")))
MASK_KEY = "single-table-masking-key-0123456789"
TRANSFORM = "tests.support.single_table:shape"
TENANTS = ("acme", "Globex Corp", "initech")
TYPES = ("customer", "order", "archived", "note")  # an item of type note takes no route
KEYS = (
    ("CUSTOMER#1", "PROFILE"),
    ("CUSTOMER#2", "PROFILE"),
    ("CUSTOMER#1", "ORDER#1"),
    ("CUSTOMER#2", "ORDER#2"),
    ("ORDER#1", "LINE#1"),
    ("ORDER#1", "LINE#2"),
)


def routes(prefix: str = "shop") -> list[dict[str, Any]]:
    """The routes, their indices named ``<prefix>-…`` (a fresh prefix: fresh indices)."""
    return [
        {
            "name": "lines",
            "match": {"dynamodb": {"Keys": {"SK": {"S": [{"prefix": "LINE#"}]}}}},
            "index": f"{prefix}-lines",
            "drop_fields": ["note"],
        },
        {
            "name": "customers",
            "match": {"dynamodb": {"NewImage": {"type": {"S": ["customer"]}}}},
            "index": f"{prefix}-customers",
            "mask_fields": ["email"],
        },
        {
            "name": "orders",
            "match": {"dynamodb": {"NewImage": {"type": {"S": ["order"]}}}},
            "index": f"{prefix}-orders-${{tenant}}",
            "max_indices": 10,
            "read_alias": f"{prefix}-orders",
        },
        {
            "name": "archive",
            "match": {"dynamodb": {"NewImage": {"type": {"S": ["archived"]}}}},
            "index": f"{prefix}-archive",
        },
    ]


def route_settings(prefix: str = "shop") -> dict[str, str]:
    """The ``CDC_*`` variables of the routes, the global transform and the masking key."""
    return {
        "CDC_ROUTES": json.dumps(routes(prefix)),
        "CDC_TRANSFORM": TRANSFORM,
        "CDC_MASK_KEY": MASK_KEY,
    }


def shape(item: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """The transform: a customer's display name; an order's total (in cents) from its lines, and
    nothing for a hidden order; everything else as it is. Deterministic: a function of the item."""
    if context.route == "customers":
        return {**item, "display_name": f"{item.get('name', '?')} ({item.get('tenant', '?')})"}
    if context.route == "orders":
        if item.get("hidden"):
            return None
        lines = item.get("lines") or []
        return {**item, "total_cents": sum(int(line["qty"]) * int(line["price_cents"]) for line in lines)}
    return item


@dataclass(frozen=True)
class Put:
    """A whole-item write (the table's state after it is ``attributes``), or a delete when None."""

    key: tuple[str, str]
    attributes: dict[str, Any] | None
    second: int


def item_state(choose: Callable[[Sequence[Any]], Any]) -> dict[str, Any]:
    """An item's attributes beside its keys, as the JSON an application sees (not AttributeValues);
    ``choose`` picks one of the options (hypothesis's draw, or a seeded random's choice)."""
    state: dict[str, Any] = {
        "type": choose(TYPES),
        "tenant": choose(TENANTS),
        "name": choose(("Ada", "Grace", "Linus")),
        "email": choose(("a@example.com", "b@example.com")),
        "revision": choose(range(10_000)),
    }
    if choose((True, False)):
        lines = range(choose(range(4)))
        state["lines"] = [{"qty": choose(range(1, 6)), "price_cents": choose(range(1, 1000))} for _ in lines]
    if choose(range(5)) == 0:
        state["hidden"] = True
    if choose((True, False)):
        state["note"] = "internal"
    return state


def next_change(choose: Callable[[Sequence[Any]], Any], second: int) -> Put:
    """One write or delete (one in five) of a random item, at ``second``."""
    key = choose(KEYS)
    return Put(key, None if choose(range(5)) == 0 else item_state(choose), second)


@st.composite
def shop_histories(draw: st.DrawFn, max_changes: int = 40) -> list[Put]:
    """Writes and deletes in order; items change type and tenant freely; seconds often repeat."""

    def choose(options: Sequence[Any]) -> Any:
        return draw(st.sampled_from(options))

    second = 1_800_000_000
    changes = []
    for _ in range(draw(st.integers(1, max_changes))):
        second += choose((0, 0, 1))
        changes.append(next_change(choose, second))
    return changes


def random_changes(count: int, seed: int, second: int = 1_800_000_000) -> list[Put]:
    """``count`` random changes (seeded), a few to a second."""
    rng = random.Random(seed)
    return [next_change(rng.choice, second + n // 3) for n in range(count)]


def write_changes(ddb: Any, table: str, count: int, seed: int) -> list[Put]:
    """Write ``count`` random changes to the table, one at a time; returns them in write order."""
    changes = random_changes(count, seed)
    for change in changes:
        key = {"PK": {"S": change.key[0]}, "SK": {"S": change.key[1]}}
        if change.attributes is None:
            ddb.delete_item(TableName=table, Key=key)
        else:
            ddb.put_item(TableName=table, Item=to_item(change.key, change.attributes))
    return changes


def create_shop_table(ddb: Any, name: str, view_type: str | None = "NEW_AND_OLD_IMAGES") -> None:
    """A table keyed (PK: S, SK: S) with a stream of ``view_type`` (None: no stream yet)."""
    create_table(ddb, name, view_type, keys=(("PK", "S"), ("SK", "S")))


def to_item(key: tuple[str, str], attributes: dict[str, Any]) -> dict[str, Any]:
    """The item as AttributeValues (as the stream and boto3's low-level client carry it)."""
    return {"PK": {"S": key[0]}, "SK": {"S": key[1]}, **{name: _value(v) for name, v in attributes.items()}}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [_value(element) for element in value]}
    return {"M": {name: _value(element) for name, element in value.items()}}


def records_of(changes: list[Put], wire: bool = False) -> list[dict[str, Any]]:
    """The stream records of the changes on a NEW_AND_OLD_IMAGES stream (no record for a delete of a
    missing item: DynamoDB writes none), as boto3 gives them (``wire``: as the wire JSON has them)."""
    state: dict[tuple[str, str], dict[str, Any]] = {}
    records = []
    for change in changes:
        keys = {"PK": {"S": change.key[0]}, "SK": {"S": change.key[1]}}
        old = state.get(change.key)
        if change.attributes is None:
            if old is not None:
                records.append(
                    stream_record("REMOVE", keys=keys, old_image=old, second=change.second, wire_timestamp=wire)
                )
                del state[change.key]
            continue
        new = to_item(change.key, change.attributes)
        event = "MODIFY" if old is not None else "INSERT"
        records.append(
            stream_record(event, keys=keys, new_image=new, old_image=old, second=change.second, wire_timestamp=wire)
        )
        state[change.key] = new
    return records


def shards_of(records: list[dict[str, Any]], split_at: int | None) -> list[list[dict[str, Any]]]:
    """[parent] or [parent, left child, right child]: after a split each item's changes go to one child."""
    if split_at is None:
        return [records]

    def child(record: dict[str, Any]) -> int:
        keys = record["dynamodb"]["Keys"]
        return zlib.crc32(f"{keys['PK']['S']}|{keys['SK']['S']}".encode()) % 2

    after = records[split_at:]
    return [records[:split_at], [r for r in after if child(r) == 0], [r for r in after if child(r) == 1]]


def final_state(changes: list[Put]) -> dict[tuple[str, str], dict[str, Any]]:
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for change in changes:
        if change.attributes is None:
            state.pop(change.key, None)
        else:
            state[change.key] = change.attributes
    return state


def expected_indices(
    state: dict[tuple[str, str], dict[str, Any]], prefix: str = "shop"
) -> dict[str, dict[str, dict[str, Any]]]:
    """What each index holds for a table state (index → id → document), by the routes' rules as
    written above, not by the service's code."""
    indices: dict[str, dict[str, dict[str, Any]]] = {}
    for (pk, sk), attributes in state.items():
        document: dict[str, Any] | None = {"PK": pk, "SK": sk, **attributes}
        kind = attributes["type"]
        if sk.startswith("LINE#"):
            index = f"{prefix}-lines"
            document.pop("note", None)
        elif kind == "customer":
            index = f"{prefix}-customers"
            document["display_name"] = f"{attributes['name']} ({attributes['tenant']})"
            document["email"] = masked(attributes["email"], MASK_KEY.encode())
        elif kind == "order":
            index = f"{prefix}-orders-" + attributes["tenant"].lower().replace(" ", "_")
            lines = attributes.get("lines") or []
            document["total_cents"] = sum(line["qty"] * line["price_cents"] for line in lines)
            document = None if attributes.get("hidden") else document
        elif kind == "archived":
            index = f"{prefix}-archive"
        else:
            continue
        if document is not None:
            indices.setdefault(index, {})[f"{pk}|{sk}"] = document
    return indices
