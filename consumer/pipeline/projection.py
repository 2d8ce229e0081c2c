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

* FilterCriteria-style patterns (consumer.pipeline.filtering), in one of two modes:

  - ``state`` (the default): the index holds exactly the items whose *current state* matches.
    Patterns may only name ``dynamodb.NewImage`` and ``dynamodb.Keys``, and are judged on an item
    state. A change whose new state matches indexes it; one whose new state does not match writes a
    tombstone with its version, unless the item did not match before either (its OldImage, when the
    stream has one) or did not exist (INSERT): then nothing of it can be in the index. A REMOVE is
    judged on its OldImage the same way. So, whatever the order of delivery, the index converges to
    the filtered table (docs/operations.md, "Filters"); ``consumer audit`` applies the same filter.
  - ``events``: Lambda's behaviour: a record that does not match is dropped, nothing else.

  A record that writes nothing is *filtered*: checkpointed past, not written. Event names to apply
  (``CDC_EVENT_NAMES``) are an event-style filter, for the ``events`` mode;
* TTL deletes (REMOVE by the DynamoDB service principal): ``delete`` like any other (default),
  ``skip`` (keep the document), or ``mark`` (index the OldImage with ``"_ttl_expired": true``;
  needs NEW_AND_OLD_IMAGES);
* the fields to index (``include_fields``, an allow-list; the keys always), to drop, and to mask
  (``consumer.pipeline.shaping``: keyed digests), as field paths into maps and lists (``items[].email``).

An attribute whose name OpenSearch reserves (``_id``, ``_source``, ...) or the service uses
(``_cdc_deleted``, ...) is written in the typed form (``consumer.pipeline.drift``), so no item can pose
as a tombstone and none is refused for a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from consumer.errors import RecordError
from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.bulk import BulkAction
from consumer.pipeline.doc_ids import KeySchema, document_id
from consumer.pipeline.drift import TYPED_FIELD, divert, reserved_attributes
from consumer.pipeline.filtering import matches_any
from consumer.pipeline.records import EVENT_NAMES, StreamRecord
from consumer.pipeline.shaping import FieldPath, drop, include_only, mask

TtlMode = Literal["delete", "skip", "mark"]
FilterMode = Literal["state", "events"]
TTL_MARK_FIELD = "_ttl_expired"
DELETED_FIELD = "_cdc_deleted"
DELETED_AT_FIELD = "_cdc_deleted_at"
SERVICE_FIELDS = (DELETED_FIELD, DELETED_AT_FIELD, TTL_MARK_FIELD, TYPED_FIELD)


@dataclass(frozen=True)
class ProjectionRules:
    """What to project, and how. The defaults project everything as it is."""

    event_names: frozenset[str] = frozenset(EVENT_NAMES)
    patterns: tuple[dict[str, Any], ...] = ()
    filter_mode: FilterMode = "state"
    ttl_deletes: TtlMode = "delete"
    include_fields: tuple[FieldPath, ...] = ()
    drop_fields: tuple[FieldPath, ...] = ()
    mask_fields: tuple[FieldPath, ...] = ()
    mask_key: bytes | None = field(default=None, repr=False)
    key_names: frozenset[str] = frozenset()  # kept by include_fields whatever it lists

    def __post_init__(self) -> None:
        for name in ("include_fields", "drop_fields", "mask_fields"):  # paths may be given as text
            paths = tuple(FieldPath.parse(p) if isinstance(p, str) else p for p in getattr(self, name))
            object.__setattr__(self, name, paths)

    def state_matches(self, keys: dict[str, Any], image: dict[str, Any]) -> bool:
        """Whether an item state (AttributeValues) passes the patterns, as the ``state`` mode judges it."""
        return matches_any(self.patterns, {"dynamodb": {"Keys": keys, "NewImage": image}})

    @property
    def filters_state(self) -> bool:
        return self.filter_mode == "state" and bool(self.patterns)


PROJECT_ALL = ProjectionRules()


def to_bulk_action(
    record: StreamRecord, schema: KeySchema, version: int, rules: ProjectionRules = PROJECT_ALL
) -> BulkAction | None:
    """The bulk action for ``record`` at ``version``, or None when the rules filter it out.

    Raises RecordError for an unusable record.
    """
    if record.event_name not in rules.event_names or (record.is_ttl_delete and rules.ttl_deletes == "skip"):
        return None
    if rules.filter_mode == "events" and not matches_any(rules.patterns, record.raw):
        return None
    doc_id = document_id(schema, record.keys)
    if rules.filters_state and not _new_state_matches(record, rules):
        if not _may_be_indexed(record, rules):
            return None  # neither the new state nor the one before it can be in the index
        return BulkAction(record, doc_id, version, "index", _tombstone_of(record, rules))
    if record.event_name == "REMOVE" and not (record.is_ttl_delete and rules.ttl_deletes == "mark"):
        return BulkAction(record, doc_id, version, "index", _tombstone_of(record, rules))
    image = record.new_image if record.event_name != "REMOVE" else record.old_image
    if image is None:
        raise RecordError("TTL delete to mark has no OldImage: the stream must be NEW_AND_OLD_IMAGES")
    document = indexable(shape_document(item_to_json(image), rules))
    if record.event_name == "REMOVE":
        document[TTL_MARK_FIELD] = True
    return BulkAction(record, doc_id, version, "index", document)


def _new_state_matches(record: StreamRecord, rules: ProjectionRules) -> bool:
    """Whether the item's state after the change passes the filter (a deleted item does not, unless
    a TTL delete is kept as a marked document: then its last state counts)."""
    if record.event_name != "REMOVE":
        return record.new_image is not None and rules.state_matches(record.keys, record.new_image)
    if record.is_ttl_delete and rules.ttl_deletes == "mark" and record.old_image is not None:
        return rules.state_matches(record.keys, record.old_image)
    return False


def _may_be_indexed(record: StreamRecord, rules: ProjectionRules) -> bool:
    """Whether the index may hold the item from before this change: not after an INSERT (it did not
    exist), nor when the state before (the OldImage) did not match; yes when that is unknown."""
    if record.event_name == "INSERT":
        return False
    return record.old_image is None or rules.state_matches(record.keys, record.old_image)


def _tombstone_of(record: StreamRecord, rules: ProjectionRules) -> dict[str, Any]:
    keys = shape_document(item_to_json(record.keys), rules)
    return tombstone(indexable(keys), record.approximate_second)


def tombstone(keys: dict[str, Any], deleted_at: int) -> dict[str, Any]:
    """The document that stands for a deleted item: its key attributes (JSON), the deletion flag and
    the deletion time in Unix seconds (the record's ApproximateCreationDateTime)."""
    return {**keys, DELETED_FIELD: True, DELETED_AT_FIELD: int(deleted_at)}


def is_tombstone(document: dict[str, Any] | None) -> bool:
    """Whether a document (a ``_source``) is a tombstone."""
    return isinstance(document, dict) and document.get(DELETED_FIELD) is True


def shape_document(document: dict[str, Any], rules: ProjectionRules) -> dict[str, Any]:
    """Keep, drop and mask fields of a JSON document as the rules say; returns it (the same
    document, edited in place, unless an allow-list made a new one)."""
    if rules.include_fields:
        document = include_only(document, rules.include_fields, rules.key_names)
    for path in rules.drop_fields:
        drop(document, path)
    for path in rules.mask_fields:
        mask(document, path, rules.mask_key)
    return document


def indexable(document: dict[str, Any]) -> dict[str, Any]:
    """The document to write: attributes with reserved names diverted to the typed form."""
    reserved = reserved_attributes(document, SERVICE_FIELDS)
    return divert(document, reserved) if reserved else document
