"""What a DynamoDB call costs in capacity units, from its request and its answer, by DynamoDB's
published rules (the Developer Guide, "Read/write capacity mode"), so that a front can bill what
passes through it:

* a write (PutItem, UpdateItem, DeleteItem) costs one write unit per started KB of the item; a write
  refused by its condition costs the same. The front sees no stored item, so an UpdateItem or a
  DeleteItem is billed on the attributes it names (lease items are far below 1 KB: one unit);
* a read (GetItem, a Scan or a Query page) costs one read unit per started 4 KB of the items it read,
  half of that when eventually consistent; a Scan or Query page adds up its items' sizes first;
* describing, listing and creating tables costs nothing.

Item sizes follow DynamoDB's rule: each attribute's name plus its value (strings and binaries by
their bytes, numbers by about one byte per two digits plus one, sets and documents by their members
plus a few bytes of overhead). Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import math
from typing import Any

WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
READS = {"GetItem", "Scan", "Query"}


def value_size(value: dict[str, Any]) -> int:
    """The size DynamoDB counts for one AttributeValue."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return (len(content.lstrip("-").replace(".", "").strip("0")) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(content))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(member.encode()) for member in content)
    if kind == "NS":
        return sum(value_size({"N": member}) for member in content)
    if kind == "BS":
        return sum(len(base64.b64decode(member)) for member in content)
    if kind == "L":
        return 3 + sum(1 + value_size(member) for member in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(member) for name, member in content.items())
    raise ValueError(f"not an AttributeValue: {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def capacity_units(operation: str, request: dict[str, Any], answer: dict[str, Any]) -> tuple[float, float]:
    """(read units, write units) one call consumed."""
    if operation in WRITES:
        named = request.get("Item") or {
            **request.get("Key", {}),
            **{
                name: value
                for name, value in request.get("ExpressionAttributeValues", {}).items()
                if not name.startswith(":seen")
            },
        }
        return 0.0, float(max(1, math.ceil(item_size(named) / 1024)))
    if operation not in READS:
        return 0.0, 0.0
    items = [answer["Item"]] if "Item" in answer else answer.get("Items", [])
    units = max(1, math.ceil(sum(item_size(item) for item in items) / 4096))
    return (units if request.get("ConsistentRead") else units / 2), 0.0
