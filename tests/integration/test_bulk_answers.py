"""What the sink reads of a ``_bulk`` answer, on both engines. The sink settles an answer whose
``errors`` is false without reading its items (every action APPLIED); that is right only if the flag
is false exactly when every item is one ``classify_item`` calls APPLIED: created, updated, or a
delete of a document that is not there. Random histories of index and delete operations at random
external versions hold the engine's flag to the items' classification, and the sink's results to it."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.observability.metrics import Metrics
from consumer.pipeline.bulk import Outcome, bulk_body, classify_item, encode_action
from consumer.pipeline.repair import RepairAction
from consumer.sink.opensearch import _BULK_RESPONSE_FILTER, OpenSearchSink

pytestmark = [pytest.mark.integration, pytest.mark.engines]

_names = itertools.count()

OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["index", "delete"]), st.integers(1, 4)),
    min_size=1,
    max_size=6,
)


def _action(doc_id: str, op: str, version: int, index: str) -> RepairAction:
    return RepairAction(doc_id, version, op, {"v": version} if op == "index" else None, index)  # type: ignore[arg-type]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(OPERATIONS, min_size=1, max_size=4))
def test_the_errors_flag_is_false_exactly_when_every_item_is_applied(search_engine, table_name, requests):
    # GIVEN a fresh index on the engine
    client = OpenSearch(hosts=[search_engine.url])
    index = f"{table_name}-{next(_names)}"
    client.indices.create(index=index)
    try:
        for operations in requests:
            # WHEN a request of random index and delete operations at random external versions is sent
            # (stale ones, deletes of missing documents and repeats among them)
            body = bulk_body(encode_action(index, _action(doc_id, op, v, index)) for doc_id, op, v in operations)
            answer = client.bulk(body=body, filter_path=_BULK_RESPONSE_FILTER)  # what the sink asks for
            # THEN its errors flag is false exactly when classify_item calls every item APPLIED
            outcomes = [classify_item(item)[0] for item in answer["items"]]
            assert len(outcomes) == len(operations)
            assert answer["errors"] is (outcomes.count(Outcome.APPLIED) != len(outcomes)), (operations, answer)
    finally:
        client.indices.delete(index=index)


def test_the_sink_settles_an_answer_without_errors_and_reads_one_with_them(search_engine, table_name):
    # GIVEN the sink writing to a fresh index
    client = OpenSearch(hosts=[search_engine.url])
    client.indices.create(index=table_name)
    sink = OpenSearchSink(client, table_name, Metrics(CollectorRegistry()))
    stop = threading.Event()
    fresh = [_action("a", "index", 2, table_name), _action("b", "delete", 2, table_name)]
    # WHEN new versions are applied (a delete of a missing document among them) THEN all are APPLIED
    assert [outcome for outcome, _ in sink.apply(fresh, stop)] == [Outcome.APPLIED, Outcome.APPLIED]
    # AND WHEN an older version comes with a newer one THEN the older is STALE, the newer APPLIED
    mixed = [_action("a", "index", 1, table_name), _action("a", "index", 3, table_name)]
    assert [outcome for outcome, _ in sink.apply(mixed, stop)] == [Outcome.STALE, Outcome.APPLIED]
    assert client.get(index=table_name, id="a")["_source"] == {"v": 3}
