"""The pure core of ``consumer audit`` and ``consumer redrive``: repair versions, drift and plans.

A repair writes the state an item had when it was read from the table (a consistent read) with the
external version ``repair_version(read_at)``. That version lies just below every version the stream
can give a change made after the read, so a repair fills a gap or replaces a wrong document but can
never overwrite a newer change (docs/versioning.md, "Repairs").

Pure and thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from consumer.errors import RecordError
from consumer.pipeline.bulk import ContentFromItem
from consumer.pipeline.doc_ids import KeySchema, document_id
from consumer.pipeline.projection import indexable, item_as_it_is, shaped_document, tombstone
from consumer.pipeline.routes import Placement, Routing
from consumer.pipeline.versioning import COUNTER_BITS, MAX_SECOND

Document = dict[str, Any]
Item = dict[str, dict[str, Any]]


def repair_version(read_at: float) -> int:
    """The external version of a write of the state read from the table at ``read_at``.

    ``read_at`` is a Unix time no later than the start of the read on DynamoDB's clock: callers
    take the local clock before reading, less a margin for clock skew.

    Why a repair never overwrites a newer change. Let ``r = floor(read_at)`` and ``R = r·2³¹ − 1``.
    A change made after the read happened at a time ``t ≥ read_at``; its ApproximateCreationDateTime
    is rounded down to the second, so ``s = floor(t) ≥ r``. Whatever clock value ``p`` preceded it on
    its lineage, its version is ``next_version(p, s) = max(p + 1, s·2³¹) ≥ r·2³¹ > R``. OpenSearch keeps
    the higher external version, so that change wins whether it is indexed before the repair (the
    repair gets a 409) or after (it overwrites the repair). A change made in the same second as the
    read but before it also has a version ``≥ r·2³¹`` and wins too: the repair is then reported
    *stale* (the index moved on concurrently; a second audit settles it). Hence every indexed
    version ``≤ R`` belongs to a change made before the read, whose effect the state read already
    includes: replacing it loses nothing.

    Raises:
        ValueError: when ``floor(read_at)`` is outside 1 … MAX_SECOND (the range of the clock).
    """
    second = math.floor(read_at)
    if not 1 <= second <= MAX_SECOND:
        raise ValueError(f"read time {read_at} is outside the version clock's range of seconds 1 … {MAX_SECOND}")
    return (second << COUNTER_BITS) - 1


@dataclass(frozen=True)
class Projected:
    """An item's document as a worker writes it (as the item has it: ``restore`` makes it indexable),
    the index it belongs in and the route that put it there."""

    index: str
    route: str
    document: Document


def project_item(schema: KeySchema, item: Item, routing: Routing) -> tuple[str, Projected | None]:
    """The document id, and the document a worker writes when a change leaves the item in this state
    with its index, shaped exactly as the worker shapes it; None when the item is in no index (the
    state filter leaves it out, no route takes it, or its route's transform leaves it out).

    Raises:
        RecordError: when the item lacks a key attribute or holds an unusable value (the transform's
            failures included).
    """
    doc_id, keys, placement = _placed(schema, item, routing)
    if placement is None:
        return doc_id, None
    document = shaped_document(placement, keys, item, None, routing)
    if document is None:
        return doc_id, None
    return doc_id, Projected(placement.index, placement.route.name, document)


def restore_item(schema: KeySchema, item: Item, routing: Routing, version: int) -> RepairAction | None:
    """The write that restores the item's document at ``version``, as ``restore`` makes it of
    ``project_item``'s document (None: the item is in no index). An item that
    its route writes as it is has its ``_bulk`` lines written straight from the item
    (``projection.item_as_it_is``), the document derived only when asked for.

    Raises:
        RecordError: as ``project_item``.
    """
    doc_id, keys, placement = _placed(schema, item, routing)
    if placement is None:
        return None
    lines = item_as_it_is(placement, item, doc_id, version)
    if lines is not None:
        return RepairAction(doc_id, version, "index", None, placement.index, item, lines)
    document = shaped_document(placement, keys, item, None, routing)
    return None if document is None else restore(doc_id, document, version, index=placement.index)


def _placed(schema: KeySchema, item: Item, routing: Routing) -> tuple[str, Item, Placement | None]:
    """The item's document id, its key attributes, and where it belongs."""
    doc_id = document_id(schema, item)
    keys = {attribute.name: item[attribute.name] for attribute in schema.attributes}
    return doc_id, keys, routing.place(keys, item)


@dataclass(frozen=True)
class Drift:
    """How the index differs from the table for some ids, in the order they were found.

    Attributes:
        missing: ids of items in the table without a live document.
        extra: ids of live documents without an item in the table (or of an item the state filter
            leaves out).
        different: ``(id, fields)`` of documents whose top-level fields (sorted) differ from the item's.
    """

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    different: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.missing or self.extra or self.different)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every drifted id: missing, then different, then extra."""
        return (*self.missing, *(doc_id for doc_id, _ in self.different), *self.extra)


def compare_page(expected: Mapping[str, Document], indexed: Mapping[str, Document]) -> Drift:
    """The drift of the live documents ``indexed`` (id → source) from the ``expected`` ones of a page
    of items: missing and different documents, in the order of ``expected``. Documents of other ids
    are not looked at (the index pass finds the extra ones: ``is_extra``)."""
    missing: list[str] = []
    different: list[tuple[str, tuple[str, ...]]] = []
    for doc_id, document in expected.items():
        if doc_id not in indexed:
            missing.append(doc_id)
            continue
        fields = differing_fields(document, indexed[doc_id])
        if fields:
            different.append((doc_id, fields))
    return Drift(tuple(missing), (), tuple(different))


def extra_ids(
    schema: KeySchema,
    index: str,
    documents: Mapping[str, Document],
    items: Mapping[str, Item],
    routing: Routing,
) -> list[str]:
    """Ids of the live ``documents`` of ``index`` that have no business there, given the items that
    exist (id → item) among those their key fields name: no item, an item in no index or in another
    one, or key fields that name an item of another id (or none at all)."""
    extra = []
    for doc_id, document in documents.items():
        key = key_of_document(schema, document)
        item = items.get(document_id(schema, key)) if key is not None else None
        if item is None:
            extra.append(doc_id)
            continue
        try:
            item_id, projected = project_item(schema, item, routing)
        except RecordError:
            projected = None  # an item no worker can index has no document anywhere
        if projected is None or projected.index != index or item_id != doc_id:
            extra.append(doc_id)
    return extra


def key_fields(schema: KeySchema, document: Document) -> Document:
    """The document's key fields (JSON), for the tombstone that replaces it."""
    return {attribute.name: document[attribute.name] for attribute in schema.attributes if attribute.name in document}


def key_of_document(schema: KeySchema, document: Document) -> Item | None:
    """The item key a document's key fields stand for, as boto3 takes it; None when a key field is
    missing or holds a value no key of its type can have (the document then has no item)."""
    key: Item = {}
    for attribute in schema.attributes:
        value = document.get(attribute.name)
        if attribute.type == "S" and isinstance(value, str):
            key[attribute.name] = {"S": value}
        elif attribute.type == "N" and _is_number(value):
            key[attribute.name] = {"N": str(_decimal(value))}
        elif attribute.type == "B" and isinstance(value, str):
            try:
                key[attribute.name] = {"B": base64.b64decode(value, validate=True)}
            except binascii.Error:
                return None
        else:
            return None
    return key


def differing_fields(expected: Document, actual: Document) -> tuple[str, ...]:
    """Top-level fields present in only one document or holding different JSON values, sorted."""
    return tuple(
        sorted(
            name
            for name in expected.keys() | actual.keys()
            if name not in expected or name not in actual or not same_json(expected[name], actual[name])
        )
    )


def same_json(a: Any, b: Any) -> bool:
    """JSON equality that tells types apart (``True`` is not ``1``, ``"1"`` is not ``1``) and compares
    numbers by their exact decimal value (``12.5``, ``Decimal("12.5")``: a float is read as its
    shortest text, which the number policy makes exact)."""
    if _is_number(a) and _is_number(b):
        return _decimal(a) == _decimal(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _decimal(value: int | float | decimal.Decimal) -> decimal.Decimal:
    return decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)


@dataclass(frozen=True)
class RepairAction(ContentFromItem):
    """Bring one document of one index (None: the sink's own) to the table's state: a
    ``consumer.pipeline.bulk.BulkOperation``. ``content`` is the document (or its JSON text), or None
    when ``lines`` hold the text of ``item`` written straight from it (``restore_item``;
    ``ContentFromItem``)."""

    doc_id: str
    version: int
    op: Literal["index", "delete"]
    content: Document | bytes | None = None
    index: str | None = None
    item: Item | None = field(default=None, repr=False, compare=False)
    lines: bytes | None = field(default=None, repr=False, compare=False)

    def _content_item(self) -> Item | None:
        return self.item


def restore(
    doc_id: str, document: Document | None, version: int, keys: Document | None = None, index: str | None = None
) -> RepairAction:
    """Index ``document`` under ``doc_id`` in ``index``, or, when the item is gone from it (None), a
    tombstone (with the item's JSON ``keys`` when known) deleted at the read time that ``version`` was
    derived from."""
    if document is None:
        deleted_at = (version + 1) >> COUNTER_BITS  # floor(read_at): see repair_version
        return RepairAction(doc_id, version, "index", tombstone(indexable(keys or {}), deleted_at), index)
    return RepairAction(doc_id, version, "index", indexable(dict(document)), index)


def plan_repair(
    drift: Drift, expected: Mapping[str, Document], version: int, index: str | None = None
) -> list[RepairAction]:
    """Index missing and different documents of ``index`` from the table's state, tombstone the extra ones."""
    return [restore(doc_id, expected.get(doc_id), version, index=index) for doc_id in drift.ids]
