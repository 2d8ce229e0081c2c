"""A stream record → the OpenSearch operation that projects it (pure, thread-safe).

INSERT and MODIFY index the record's NewImage as the whole document; REMOVE deletes. Both carry
the external version, so whatever order or number of times they arrive, the index ends at the
highest version of each document.
"""

from __future__ import annotations

from consumer.attributes import item_to_json
from consumer.doc_ids import KeySchema, document_id
from consumer.records import StreamRecord
from consumer.sink.bulk import BulkAction


def to_bulk_action(record: StreamRecord, schema: KeySchema, version: int) -> BulkAction:
    """The bulk action for ``record`` at ``version``. Raises RecordError for an unusable record."""
    doc_id = document_id(schema, record.keys)
    if record.event_name == "REMOVE":
        return BulkAction(record, doc_id, version, "delete", None)
    assert record.new_image is not None  # StreamRecord.from_wire guarantees it
    return BulkAction(record, doc_id, version, "index", item_to_json(record.new_image))
