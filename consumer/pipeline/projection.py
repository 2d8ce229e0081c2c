"""A stream record → the OpenSearch operations that project it (pure, thread-safe).

The routes (``consumer.pipeline.routes``) say which index an item's state belongs in; the document
is the state as JSON, through the route's transform (``consumer.pipeline.transforms``) and field
rules. A record whose item moves to another route or index (its state before the change, the
OldImage, belongs elsewhere) also writes a tombstone in the old index, at the same version, so
every index holds exactly the items of its route (docs/routes.md).

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

from types import MappingProxyType
from typing import Any

from consumer.errors import RecordError
from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.bulk import BulkAction, image_lines, item_lines, meta_head
from consumer.pipeline.doc_ids import KeySchema, document_id
from consumer.pipeline.drift import METADATA_FIELDS, divert, reserved_attributes
from consumer.pipeline.filtering import matches_any
from consumer.pipeline.projection_rules import ProjectionRules
from consumer.pipeline.records import ImageText, StreamRecord
from consumer.pipeline.routes import Placement, Routing
from consumer.pipeline.service_fields import DELETED_AT_FIELD, DELETED_FIELD, SERVICE_FIELDS, TTL_MARK_FIELD
from consumer.pipeline.shaping import drop, include_only, mask
from consumer.pipeline.transforms import TransformContext

_NONE = object()
RESERVED_NAMES = METADATA_FIELDS | frozenset(SERVICE_FIELDS)  # attribute names ``indexable`` diverts


def to_bulk_actions(record: StreamRecord, schema: KeySchema, version: int, routing: Routing) -> list[BulkAction]:
    """The bulk actions for ``record`` at ``version``: none when the rules filter it out; the document
    (or tombstone) in the index its new state belongs in; and a tombstone in the index its state
    before the change was in, when that is another one (the item changed route or index).

    Raises RecordError for an unusable record.
    """
    rules = routing.rules
    if record.event_name not in rules.event_names or (record.is_ttl_delete and rules.ttl_deletes == "skip"):
        return []
    if rules.filter_mode == "events" and not matches_any(rules.patterns, record.raw):
        return []
    doc_id = document_id(schema, record.keys)
    marked = record.event_name == "REMOVE" and record.is_ttl_delete and rules.ttl_deletes == "mark"
    if marked and record.old_image is None:
        raise RecordError("TTL delete to mark has no OldImage: the stream must be NEW_AND_OLD_IMAGES")
    if routing.everywhere is not None:  # every state in one place: the item never changes index
        # whether there is a state, without parsing an image the answer left as text
        state = record.old_image_as_read if marked else record.new_image_as_read
        new = routing.everywhere if state is not None else None
        old = None if record.event_name == "INSERT" else routing.everywhere
    else:
        image = record.old_image if marked else record.new_image
        new = routing.place(record.keys, image) if image is not None else None
        old = _placement_before(record, routing, image, new)
    actions = []
    if new is not None:
        lines = None if marked else _new_image_as_it_is(new, record, doc_id, version)
        if lines is not None:
            actions.append(BulkAction(record, doc_id, version, "index", None, new.index, new.route.name, False, lines))
        else:
            image = record.old_image if marked else record.new_image
            document = _document(record, new, image, marked, routing)  # type: ignore[arg-type]
            actions.append(BulkAction(record, doc_id, version, "index", document, new.index, new.route.name))
    if old is not None and (new is None or old.index != new.index):
        tombstone_ = _tombstone_of(record, old)
        actions.append(
            BulkAction(record, doc_id, version, "index", tombstone_, old.index, old.route.name, bool(actions))
        )
    return actions


def item_as_it_is(placement: Placement, image: dict[str, Any], doc_id: str, version: int) -> bytes | None:
    """The ``_bulk`` lines indexing the item in its placement, its document's text written straight
    from the item, when its route writes items as they are and no attribute has a name ``indexable``
    diverts; else None: the document is built."""
    if not placement.route.as_they_are:
        return None
    return item_lines(image, RESERVED_NAMES, meta_head("index", placement.index), doc_id, version)


def _new_image_as_it_is(placement: Placement, record: StreamRecord, doc_id: str, version: int) -> bytes | None:
    """``item_as_it_is`` of the record's NewImage, written from its text when the answer left it as
    text (``bulk.image_lines``); parsed only when the text is not a plain image."""
    image = record.new_image_as_read
    if type(image) is ImageText and placement.route.as_they_are:
        lines = image_lines(image.text, RESERVED_NAMES, meta_head("index", placement.index), doc_id, version)
        if lines is not None:
            return lines
    return item_as_it_is(placement, record.new_image, doc_id, version)  # type: ignore[arg-type]


def _document(
    record: StreamRecord, placement: Placement, image: dict[str, Any], marked: bool, routing: Routing
) -> dict[str, Any]:
    """The document of the item in state ``image`` in ``placement``, or its tombstone when the route's
    transform leaves the item out."""
    shaped = shaped_document(placement, record.keys, image, record.event_name, routing)
    if shaped is None:
        return _tombstone_of(record, placement)
    document = indexable(shaped)
    if marked:
        document[TTL_MARK_FIELD] = True
    return document


def _placement_before(
    record: StreamRecord, routing: Routing, image: dict[str, Any] | None, placed: Placement | None
) -> Placement | None:
    """Where the index may hold the item from before this change: nowhere after an INSERT (it did not
    exist); where its OldImage belongs, when the stream has one (``placed``, the placement of
    ``image``, when the two agree on every attribute a placement reads); else where its keys alone put
    it (key-only routes: the global filter, which cannot be judged, is then taken to have passed)."""
    if record.event_name == "INSERT":
        return None
    if record.old_image is not None:
        if image is not None and routing.places_alike(image, record.old_image):
            return placed
        return routing.place(record.keys, record.old_image)
    return routing.route(record.keys, record.keys)


def shaped_document(
    placement: Placement,
    keys: dict[str, Any],
    image: dict[str, Any],
    event_name: str | None,
    routing: Routing,
) -> dict[str, Any] | None:
    """The document of an item in state ``image`` in ``placement``: its JSON, through the route's
    transform (None when the transform leaves the item out), shaped by the route's field rules (as the
    item has it: ``indexable`` makes it the document to write)."""
    route = placement.route
    document = item_to_json(image)
    if route.transform is not None:
        key_fields = {name: document[name] for name in keys if name in document}
        context = TransformContext(routing.table, route.name, event_name, MappingProxyType(key_fields))
        transformed = route.transform(document, context)
        if transformed is None:
            return None
        for name, value in key_fields.items():
            if transformed.get(name, _NONE) != value:  # the keys are the item's, whatever the transform did
                transformed = {**transformed, **key_fields}
                break
        document = transformed
    return shape_document(document, route.rules)


def _tombstone_of(record: StreamRecord, placement: Placement) -> dict[str, Any]:
    keys = shape_document(item_to_json(record.keys), placement.route.rules)
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
