"""Document ``_id`` from an item's primary key.

Guarantee: for one table, ``document_id`` is injective — different keys never share an id — and
equal keys always give the same id.

* Key attributes are taken in key-schema order (hash, then range), never in map order.
* The attribute types are fixed by the table's key schema, so a position always holds one type;
  a record whose key type disagrees with the schema is rejected, not coerced.
* ``S`` values escape ``\\`` as ``\\\\`` and ``|`` as ``\\|``; parts are joined with ``|``. An
  unescaped ``|`` therefore only ever separates parts.
* ``N`` values use their canonical decimal text (``1.50`` and ``1.5`` are one DynamoDB key, so one
  id); ``B`` values use base64, whose alphabet has no ``|`` or ``\\``.
* OpenSearch caps ``_id`` at 512 bytes while DynamoDB keys reach 3 KB. A longer id is replaced by
  ``#sha256:<hex of the readable id>``. Readable ids never start with ``#`` (a leading ``#`` is
  escaped as ``\\#``), so hashed and readable ids cannot meet; two hashed ids meet only on a
  SHA-256 collision.

Single-attribute string keys stay readable: the id of ``{"pk": {"S": "order-1"}}`` is ``order-1``.

A masked key attribute (``CDC_MASK_FIELDS`` names it) is never readable in an id: its part is the
same digest that stands for it in ``_source`` (``consumer.pipeline.shaping.masked``: HMAC-SHA256 with
the masking key, of the value's JSON; for ``N`` keys, of their canonical text). A digest has no ``|``
or ``\\`` and never starts with ``#``, so ids stay injective (short of an HMAC collision) and stable
for as long as the key does.

Where the build had a C compiler the readable id of plain keys (S, plainly spelt N, B as base64 text,
nothing masked) is written in C (``consumer/pipeline/_attributes_ids.c``); every other case is this
module's Python, which remains the definition. Pure and thread-safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from consumer.errors import RecordError
from consumer.pipeline.attributes import binary_to_text, canonical_number
from consumer.pipeline.shaping import masked

try:
    from consumer.pipeline._attributes import readable_id as compiled_readable_id
except ImportError:  # built without a C compiler: the Python below serves
    compiled_readable_id = None

MAX_ID_BYTES = 512
HASHED_ID_PREFIX = "#sha256:"


@dataclass(frozen=True)
class KeyAttribute:
    """One attribute of a table's primary key: its name and scalar type (S, N or B)."""

    name: str
    type: str


@dataclass(frozen=True)
class KeySchema:
    """A table's primary key: the hash attribute, then the optional range attribute; and which of
    them are masked in document ids (``masking``)."""

    attributes: tuple[KeyAttribute, ...]
    masked: frozenset[str] = frozenset()
    mask_key: bytes | None = field(default=None, repr=False, compare=False)
    # (name, type) of each attribute, for the compiled ids; None when an attribute is masked
    plain: tuple[tuple[str, str], ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.attributes) <= 2:
            raise ValueError("a key schema has a hash attribute and at most one range attribute")
        for attribute in self.attributes:
            if attribute.type not in ("S", "N", "B"):
                raise ValueError(f"key attribute {attribute.name} has non-scalar type {attribute.type}")
        plain = None if self.masked else tuple((attribute.name, attribute.type) for attribute in self.attributes)
        object.__setattr__(self, "plain", plain)

    @classmethod
    def from_table_description(cls, table: dict[str, Any]) -> KeySchema:
        """Build from a DescribeTable ``Table`` dict (KeySchema + AttributeDefinitions)."""
        types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
        ordered = sorted(table["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
        return cls(tuple(KeyAttribute(k["AttributeName"], types[k["AttributeName"]]) for k in ordered))

    def masking(self, names: frozenset[str], key: bytes | None) -> KeySchema:
        """This schema with the key attributes among ``names`` masked in ids (``key``: the masking
        key; None: unkeyed digests, ``CDC_MASK_UNKEYED``)."""
        masked = frozenset(attribute.name for attribute in self.attributes if attribute.name in names)
        return replace(self, masked=masked, mask_key=key if masked else None)


def document_id(schema: KeySchema, keys: dict[str, dict[str, Any]]) -> str:
    """The document id of the item with these key attributes (a record's ``dynamodb.Keys``)."""
    if compiled_readable_id is not None and schema.plain is not None:
        readable = compiled_readable_id(keys, schema.plain)
        if readable is not None:
            return readable
    return python_document_id(schema, keys)


def python_document_id(schema: KeySchema, keys: dict[str, dict[str, Any]]) -> str:
    """``document_id`` in Python throughout: the definition, and the path of every case C leaves to it."""
    parts = [_key_part(attribute, keys, schema) for attribute in schema.attributes]
    readable = "|".join(parts)
    if readable.startswith("#"):
        readable = "\\" + readable
    if len(readable.encode("utf-8")) <= MAX_ID_BYTES:
        return readable
    return HASHED_ID_PREFIX + hashlib.sha256(readable.encode("utf-8")).hexdigest()


def _key_part(attribute: KeyAttribute, keys: dict[str, dict[str, Any]], schema: KeySchema) -> str:
    value = keys.get(attribute.name)
    if value is None:
        raise RecordError(f"record keys lack key attribute {attribute.name!r}: got {sorted(keys)}")
    if attribute.type not in value:
        raise RecordError(f"key attribute {attribute.name!r} should be of type {attribute.type}, got {sorted(value)}")
    raw = value[attribute.type]
    if attribute.name in schema.masked:
        return masked(canonical_number(raw) if attribute.type == "N" else raw, schema.mask_key)
    if attribute.type == "S":
        return raw.replace("\\", "\\\\").replace("|", "\\|")
    if attribute.type == "N":
        return canonical_number(raw)
    return binary_to_text(raw)
