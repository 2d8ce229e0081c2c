"""Every valid item is indexable (docs/mapping.md), on osmem-server and on a real OpenSearch node.

Items with every DynamoDB type, numbers of up to 38 digits, attributes that change type between
items and between versions of one item, heterogeneous lists and deep maps go through the real
``BatchProcessor`` into an index set up by ``ensure_index``: nothing is dead-lettered, the live index
equals the table exactly (numbers read back digit for digit), and numeric range queries find what
they should. Concurrent first writes of conflicting shapes lose nothing, and no number is coerced.
"""

from __future__ import annotations

import itertools
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.observability.metrics import Metrics
from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.mapping import MappingMode
from consumer.runtime.assembly import protected_fields
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.factories import stream_record
from tests.support.strategies import dynamo_decimals, spelling_of
from tests.support.tables import index_documents

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))
_indices = itertools.count()
SECOND = 1_800_000_000


@pytest.fixture(scope="module")
def client(search_engine) -> OpenSearch:
    return OpenSearch(hosts=[search_engine.url])


def pipeline(client: OpenSearch, dead_letters, mode: MappingMode = "managed") -> tuple[BatchProcessor, str, Metrics]:
    """A processor writing to a fresh index set up as a worker sets it up."""
    index = f"mapping-{next(_indices)}"
    ensure_index(client, index, f"{index}-live", SCHEMA, mode)
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(client, index, metrics, 0.01, 0.05, protected_fields=protected_fields(SCHEMA))
    return BatchProcessor(SCHEMA, sink, DeadLetterFile(dead_letters / f"{index}.jsonl"), metrics), index, metrics


# --- DynamoDB values of every type --------------------------------------------------------------------

numbers = dynamo_decimals().flatmap(spelling_of).map(lambda text: {"N": text})
scalars = st.one_of(
    st.text(max_size=12).map(lambda s: {"S": s}),
    numbers,
    st.binary(max_size=8).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.text(max_size=5), min_size=1, max_size=3, unique=True).map(lambda v: {"SS": v}),
    st.lists(dynamo_decimals().map(str), min_size=1, max_size=3, unique_by=lambda t: Decimal(t)).map(
        lambda v: {"NS": v}
    ),
    st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=3, unique=True).map(lambda v: {"BS": v}),
)
attribute_names = st.sampled_from(["amount", "status", "tags", "meta", "a.b", "_id", "_cdc_deleted"])
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(st.sampled_from(["x", "y", "amount", "a.b"]), inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=8,
)
amounts = st.one_of(numbers, st.text(max_size=5).map(lambda s: {"S": s}), st.just({"M": {"v": {"N": "1"}}}))


@st.composite
def items(draw: st.DrawFn, pk: str) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"N": "1"}, "amount": draw(amounts)}
    item.update(draw(st.dictionaries(attribute_names.filter(lambda n: n != "amount"), values, max_size=4)))
    return item


@given(data=st.data())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_valid_item_is_indexed_exactly_whatever_its_attributes_hold(client, search_engine, tmp_path, data):
    # GIVEN items whose attributes hold any type, change type between items and between versions of
    # one item (an "amount" that is a number, a string or a map; lists mixing maps and values; names
    # OpenSearch reserves), written as a stream of changes
    processor, index, metrics = pipeline(client, tmp_path)
    keys = [f"item-{i}" for i in range(data.draw(st.integers(2, 6), label="items"))]
    history = [(pk, data.draw(items(pk), label=pk)) for pk in data.draw(st.lists(st.sampled_from(keys), max_size=14))]
    records = [
        stream_record("MODIFY", keys={"pk": image["pk"], "sk": image["sk"]}, new_image=image, second=SECOND + i // 3)
        for i, (_, image) in enumerate(history)
    ]
    final = {pk: image for pk, image in history}

    # WHEN they are applied in batches
    version = 0
    for start in range(0, len(records), 5):
        version = processor.process("shard", records[start : start + 5], version, threading.Event()).version

    # THEN nothing is dead-lettered, and the live index equals the table, every value exact
    try:
        assert metrics.registry.get_sample_value("cdc_records_dead_lettered_total") == 0
        documents = index_documents(search_engine.url, index)
        assert documents == {f"{pk}|1": item_to_json(image) for pk, image in final.items()}
        # AND a numeric range query on the drifting "amount" finds exactly the items holding a number there
        low, high = -1000.0, 1e6  # compared as OpenSearch compares: as doubles
        expected = {
            f"{pk}|1"
            for pk, image in final.items()
            if "N" in image["amount"] and low <= float(image["amount"]["N"]) <= high
        }
        assert amount_between(client, index, low, high) == expected
    finally:
        processor.close()
        client.indices.delete(index=index)


def letters(directory, index: str) -> str:
    """The dead letters written for ``index``, for an assertion's message."""
    path = directory / f"{index}.jsonl"
    return path.read_text()[:2000] if path.exists() else "(none)"


def amount_between(client: OpenSearch, index: str, low: float, high: float) -> set[str]:
    """Ids of live documents whose "amount" is a number in [low, high], wherever the policy put it."""
    client.indices.refresh(index=index)
    bounds = {"gte": low, "lte": high}
    query = {
        "bool": {
            "should": [{"range": {"amount.number": bounds}}, {"range": {"_cdc_typed.amount.n.number": bounds}}],
            "minimum_should_match": 1,
            "must_not": {"term": {"_cdc_deleted": True}},
        }
    }
    hits = client.search(index=index, body={"query": query, "_source": False}, size=1000)["hits"]["hits"]
    return {hit["_id"] for hit in hits}


def test_a_change_conflicting_with_mappings_made_earlier_in_its_own_batch_is_indexed(client, search_engine, tmp_path):
    # GIVEN one item changed five times in one batch, each change reshaping attributes the earlier ones
    # mapped (a number becomes a map and back; an empty map, then text, in two attributes at once):
    # found by the property test above
    processor, index, metrics = pipeline(client, tmp_path)
    key = {"pk": {"S": "item-0"}, "sk": {"N": "1"}}
    images = [
        {**key, "amount": {"N": "0"}, "status": {"L": [{"L": []}, {"M": {}}]}},
        {**key, "amount": {"M": {"v": {"N": "1"}}}},
        {**key, "amount": {"N": "0"}},
        {**key, "amount": {"N": "0"}, "status": {"M": {}}, "tags": {"M": {}}},
        {**key, "amount": {"N": "0"}, "status": {"S": ""}, "tags": {"S": ""}},
    ]
    records = [stream_record("MODIFY", keys=key, new_image=image, second=SECOND) for image in images]

    # WHEN they are applied as one batch
    processor.process("shard", records, 0, threading.Event())

    # THEN nothing is dead-lettered: each refusal is answered with what the mapping shows after the
    # request that refused it, and the index holds the last change, exactly
    assert metrics.registry.get_sample_value("cdc_records_dead_lettered_total") == 0
    assert index_documents(search_engine.url, index) == {
        "item-0|1": {"pk": "item-0", "sk": 1, "amount": 0, "status": "", "tags": ""}
    }


@pytest.mark.parametrize("mode", ["managed", "dynamic"])
def test_concurrent_first_writes_of_conflicting_shapes_lose_nothing(client, search_engine, tmp_path, mode):
    # GIVEN two workers (processors on threads) whose first documents give "total" a long, a double,
    # a string and a map, released at the same moment against a fresh index, ten times over
    for round_ in range(10):
        processor, index, metrics = pipeline(client, tmp_path, mode)
        shapes = [{"N": "1"}, {"N": "12.5"}, {"S": "n/a"}, {"M": {"net": {"N": "3"}}}]
        batches = [
            [
                stream_record(
                    "INSERT",
                    keys={"pk": {"S": f"w{worker}-{i}"}, "sk": {"N": "1"}},
                    new_image={"pk": {"S": f"w{worker}-{i}"}, "sk": {"N": "1"}, "total": shapes[(worker + i) % 4]},
                )
                for i in range(8)
            ]
            for worker in range(2)
        ]
        barrier = threading.Barrier(2)

        def write(batch: list[dict], barrier: threading.Barrier = barrier, processor: BatchProcessor = processor):
            barrier.wait()
            processor.process("shard", batch, 0, threading.Event())

        threads = [threading.Thread(target=write, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        # THEN every document is indexed, with its value as written, and nothing is dead-lettered
        try:
            assert metrics.registry.get_sample_value("cdc_records_dead_lettered_total") == 0, letters(tmp_path, index)
            documents = index_documents(search_engine.url, index)
            expected = {
                f"{r['dynamodb']['Keys']['pk']['S']}|1": item_to_json(r["dynamodb"]["NewImage"])
                for batch in batches
                for r in batch
            }
            assert documents == expected, f"round {round_}"
        finally:
            processor.close()
            client.indices.delete(index=index)


@pytest.mark.parametrize("mode", ["managed", "dynamic"])
def test_a_fraction_is_never_truncated_into_an_integer_field(client, search_engine, tmp_path, mode):
    # GIVEN an index whose "total" first received an integer
    processor, index, _ = pipeline(client, tmp_path, mode)
    first = stream_record(
        "INSERT",
        keys={"pk": {"S": "a"}, "sk": {"N": "1"}},
        new_image={"pk": {"S": "a"}, "sk": {"N": "1"}, "total": {"N": "1"}},
    )
    fraction = stream_record(
        "INSERT",
        keys={"pk": {"S": "b"}, "sk": {"N": "1"}},
        new_image={"pk": {"S": "b"}, "sk": {"N": "1"}, "total": {"N": "12.5"}},
    )
    try:
        processor.process("shard", [first], 0, threading.Event())
        # WHEN a fraction follows
        processor.process("shard", [fraction], 0, threading.Event())

        # THEN no query sees 12: a numeric query for 12.5 finds b (in the managed policy's number field,
        # or in the typed form where a dynamic "long" field could not take it), and one for 12 finds nothing
        client.indices.refresh(index=index)
        field = "total.number" if mode == "managed" else "_cdc_typed.total.n.number"
        hits = client.search(index=index, body={"query": {"term": {field: 12.5}}})["hits"]["hits"]
        assert [hit["_id"] for hit in hits] == ["b|1"]
        for exact in ("total", "total.number"):
            found = client.search(index=index, body={"query": {"term": {exact: 12}}})["hits"]["hits"]
            assert found == []
        assert index_documents(search_engine.url, index)["b|1"]["total"] == 12.5
    finally:
        processor.close()
        client.indices.delete(index=index)
