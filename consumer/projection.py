"""A stream record → the OpenSearch operation that projects it (pure, thread-safe).

INSERT and MODIFY index the record's NewImage as the whole document; REMOVE indexes a *tombstone*
(``tombstone``: ``"_cdc_deleted": true``, the deletion time and the item's key attributes), never a
``_bulk`` delete: OpenSearch forgets a delete's version after ``index.gc_deletes`` (60 s), after
which a stale replay would resurrect the item, whereas a tombstone is a document that keeps its
version until ``consumer.sink.reaper`` removes it after the retention (docs/versioning.md,
"Deletes"). Applications search the filtered read alias, which hides tombstones
(``consumer.sink.index_setup``). Every operation carries the external version, so whatever order or
number of times they arrive, the index ends at the highest version of each document.

``ProjectionRules`` shape what is projected (all configured by ``CDC_*`` variables):

* event names to apply, and FilterCriteria-style patterns (consumer.filtering); a record that
  does not pass is *filtered*: not written, but still checkpointed past;
* TTL deletes (REMOVE by the DynamoDB service principal): ``delete`` like any other (default),
  ``skip`` (keep the document), or ``mark`` (index the OldImage with ``"_ttl_expired": true``;
  needs NEW_AND_OLD_IMAGES);
* fields to drop, or to mask (replaced by ``"sha256:<hex>"`` of their JSON value, so masked
  values can still be matched for equality), as dotted paths into maps (``customer.email``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from consumer.attributes import item_to_json
from consumer.doc_ids import KeySchema, document_id
from consumer.errors import RecordError
from consumer.filtering import matches_any
from consumer.records import EVENT_NAMES, StreamRecord
from consumer.sink.bulk import BulkAction

TtlMode = Literal["delete", "skip", "mark"]
TTL_MARK_FIELD = "_ttl_expired"
DELETED_FIELD = "_cdc_deleted"
DELETED_AT_FIELD = "_cdc_deleted_at"


@dataclass(frozen=True)
class ProjectionRules:
    """What to project, and how. The defaults project everything as it is."""

    event_names: frozenset[str] = frozenset(EVENT_NAMES)
    patterns: tuple[dict[str, Any], ...] = ()
    ttl_deletes: TtlMode = "delete"
    drop_fields: tuple[str, ...] = ()
    mask_fields: tuple[str, ...] = ()

    def admits(self, record: StreamRecord) -> bool:
        """Whether the record passes the event-name filter, the patterns and the TTL rule."""
        if record.event_name not in self.event_names:
            return False
        if record.is_ttl_delete and self.ttl_deletes == "skip":
            return False
        return matches_any(self.patterns, record.raw)


PROJECT_ALL = ProjectionRules()


def to_bulk_action(
    record: StreamRecord, schema: KeySchema, version: int, rules: ProjectionRules = PROJECT_ALL
) -> BulkAction | None:
    """The bulk action for ``record`` at ``version``, or None when the rules filter it out.

    Raises RecordError for an unusable record.
    """
    if not rules.admits(record):
        return None
    doc_id = document_id(schema, record.keys)
    if record.event_name == "REMOVE" and not (record.is_ttl_delete and rules.ttl_deletes == "mark"):
        keys = shape_document(item_to_json(record.keys), rules)
        return BulkAction(record, doc_id, version, "index", tombstone(keys, record.approximate_second))
    image = record.new_image if record.event_name != "REMOVE" else record.old_image
    if image is None:
        raise RecordError("TTL delete to mark has no OldImage: the stream must be NEW_AND_OLD_IMAGES")
    document = shape_document(item_to_json(image), rules)
    if record.event_name == "REMOVE":
        document[TTL_MARK_FIELD] = True
    return BulkAction(record, doc_id, version, "index", document)


def tombstone(keys: dict[str, Any], deleted_at: int) -> dict[str, Any]:
    """The document that stands for a deleted item: its key attributes (JSON), the deletion flag and
    the deletion time in Unix seconds (the record's ApproximateCreationDateTime)."""
    return {**keys, DELETED_FIELD: True, DELETED_AT_FIELD: int(deleted_at)}


def is_tombstone(document: dict[str, Any] | None) -> bool:
    """Whether a document (a ``_source``) is a tombstone."""
    return isinstance(document, dict) and document.get(DELETED_FIELD) is True


def shape_document(document: dict[str, Any], rules: ProjectionRules) -> dict[str, Any]:
    """Drop and mask fields of a JSON document (in place) as the rules say; returns it."""
    for path in rules.drop_fields:
        _edit(document, path.split("."), lambda parent, key: parent.pop(key))
    for path in rules.mask_fields:
        _edit(document, path.split("."), _mask)
    return document


def _edit(document: dict[str, Any], path: list[str], change: Any) -> None:
    parent: Any = document
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if isinstance(parent, dict) and path[-1] in parent:
        change(parent, path[-1])


def _mask(parent: dict[str, Any], key: str) -> None:
    digest = hashlib.sha256(orjson.dumps(parent[key], option=orjson.OPT_SORT_KEYS)).hexdigest()
    parent[key] = f"sha256:{digest}"
