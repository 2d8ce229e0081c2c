"""The _bulk body and the classification of its per-item results."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.pipeline.bulk import (
    BulkAction,
    Outcome,
    RequestFailure,
    classify_item,
    classify_request_failure,
    encode_action,
)
from consumer.pipeline.records import StreamRecord
from tests.support.bulk_bodies import bulk_of
from tests.support.factories import stream_record


def action(op: str = "index", doc_id: str = "item-1", version: int = 7, document: dict | None = None) -> BulkAction:
    record = StreamRecord.from_wire(stream_record("REMOVE" if op == "delete" else "MODIFY"))
    if op == "index" and document is None:
        document = {"pk": "item-1", "payload": "new"}
    return BulkAction(record, doc_id, version, op, document)  # type: ignore[arg-type]


def test_the_body_is_ndjson_with_a_document_line_only_for_index_actions():
    # GIVEN an index, a delete and another index, in shard order
    actions = [
        action("index", "a", 10, {"pk": "a", "n": 1}),
        action("delete", "b", 2**63 - 1),
        action("index", "c|1", 12, {"pk": "c", "nested": {"l": [1, "x", None]}}),
    ]

    # WHEN they are encoded
    body = bulk_of("orders", actions)

    # THEN each index is a metadata line plus its document, each delete only a metadata line, all with
    # external versions, in order, and the body ends with the newline _bulk requires
    assert body.endswith(b"\n")
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert lines == [
        {"index": {"_index": "orders", "_id": "a", "version": 10, "version_type": "external"}},
        {"pk": "a", "n": 1},
        {"delete": {"_index": "orders", "_id": "b", "version": 2**63 - 1, "version_type": "external"}},
        {"index": {"_index": "orders", "_id": "c|1", "version": 12, "version_type": "external"}},
        {"pk": "c", "nested": {"l": [1, "x", None]}},
    ]


def test_a_document_with_newlines_in_its_strings_stays_on_one_line():
    # GIVEN a document whose text contains newlines WHEN encoded THEN it is still one NDJSON line
    body = bulk_of("i", [action(document={"text": "line 1\nline 2\r\n"})])
    assert len(body.splitlines()) == 2
    assert orjson.loads(body.splitlines()[1]) == {"text": "line 1\nline 2\r\n"}


@settings(max_examples=200, deadline=None)
@given(
    op=st.sampled_from(["index", "delete"]),
    index=st.text(st.characters(codec="utf-8"), min_size=1, max_size=10),
    doc_id=st.text(st.characters(codec="utf-8"), max_size=20),
    version=st.integers(0, 2**63 - 1),
)
@example(op="index", index="orders", doc_id='a"\\|\n\x00é', version=2**63 - 1)
def test_the_metadata_line_is_what_orjson_writes_of_it(op, index, doc_id, version):
    # GIVEN any operation, index name, id (quotes, backslashes, control characters, non-ASCII) and version
    # WHEN its metadata line is encoded
    line = encode_action(index, action(op, doc_id, version)).split(b"\n")[0] + b"\n"
    # THEN byte for byte what orjson writes of the metadata object
    meta = {"_index": index, "_id": doc_id, "version": version, "version_type": "external"}
    assert line == orjson.dumps({op: meta}) + b"\n"


@pytest.mark.parametrize(
    ("item", "outcome"),
    [
        ({"index": {"status": 201, "result": "created"}}, Outcome.APPLIED),
        ({"index": {"status": 200, "result": "updated"}}, Outcome.APPLIED),
        ({"delete": {"status": 200, "result": "deleted"}}, Outcome.APPLIED),
        ({"delete": {"status": 404, "result": "not_found"}}, Outcome.APPLIED),
        ({"index": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}, Outcome.STALE),
        ({"delete": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}, Outcome.STALE),
        ({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}, Outcome.RETRY),
        ({"index": {"status": 500, "error": {"type": "internal_server_error"}}}, Outcome.RETRY),
        ({"index": {"status": 503, "error": {"type": "unavailable_shards_exception"}}}, Outcome.RETRY),
        ({"index": {"error": "no status at all"}}, Outcome.RETRY),
        ({"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}, Outcome.REFUSED),
        ({"index": {"status": 404, "error": {"type": "index_not_found_exception"}}}, Outcome.BLOCKED),
        ({"delete": {"status": 404, "error": {"type": "index_not_found_exception"}}}, Outcome.BLOCKED),
        ({"index": {"status": 403, "error": {"type": "cluster_block_exception"}}}, Outcome.BLOCKED),
        ({"index": {"status": 403, "error": {"type": "security_exception"}}}, Outcome.BLOCKED),
        ({"index": {"status": 401, "error": {"type": "security_exception"}}}, Outcome.BLOCKED),
        ({"index": {"status": 422, "error": {"type": "something_else"}}}, Outcome.POISON),
    ],
)
def test_each_item_status_has_its_outcome(item, outcome):
    # GIVEN one item of a _bulk response WHEN classified
    # THEN 2xx and a delete's 404 are applied; 409 under external versioning is stale (an equal or
    # newer version is there); 429 and 5xx are retried; 401/403/404-index are the sink's outage
    # (blocked), a 400 is a refusal of the document (diverted when drift explains it), the rest poison
    assert classify_item(item)[0] is outcome


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (None, RequestFailure.OUTAGE),
        (500, RequestFailure.OUTAGE),
        (503, RequestFailure.OUTAGE),
        (401, RequestFailure.OUTAGE),
        (403, RequestFailure.OUTAGE),
        (404, RequestFailure.OUTAGE),
        (429, RequestFailure.THROTTLED),
        (413, RequestFailure.TOO_LARGE),
        (400, RequestFailure.REJECTED),
    ],
)
def test_each_request_failure_has_its_remedy(status, failure):
    # GIVEN a _bulk request that failed as a whole WHEN classified
    # THEN only a 413 (split) and other 4xx (bisect) are about the request's contents; the rest wait
    assert classify_request_failure(status) is failure


def test_a_poison_item_carries_the_error_type_and_reason_for_the_dead_letter():
    # GIVEN a mapping error WHEN classified THEN the error text says what OpenSearch refused and why
    item = {
        "index": {
            "status": 400,
            "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [price] of type [long]"},
        }
    }
    assert classify_item(item) == (
        Outcome.REFUSED,
        "400 mapper_parsing_exception: failed to parse field [price] of type [long]",
    )


def test_an_applied_item_has_no_error_text():
    assert classify_item({"index": {"status": 201}}) == (Outcome.APPLIED, None)


def test_an_action_holds_exactly_its_fields_and_stays_frozen():
    # GIVEN an action (its __init__ sets every field at once, not the dataclass's generated one)
    made = action("index", "a", 10, {"pk": "a"})
    # THEN it holds its dataclass fields and nothing else, compares and copies by them, and is frozen
    assert list(vars(made)) == [field.name for field in dataclasses.fields(BulkAction)]
    assert dataclasses.replace(made, version=11) == BulkAction(made.record, "a", 11, "index", {"pk": "a"}) != made
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.version = 12  # type: ignore[misc]
