"""Every OpenSearch failure has its documented outcome (docs/operations.md, "Sink failures").

One row per failure, injected by the fault proxy in front of each engine: an *outage* pauses the
batch (nothing dead-lettered, ``cdc_sink_available`` 0 and readiness saying why) and resumes by
itself once the cause is gone; a 429 is waited out without calling the sink unavailable; a 413 is
split into smaller requests; a refusal the mapping explains is diverted; only a refusal of the
record itself is poison; a 409 is stale. After each, the index holds exactly what it should.
"""

from __future__ import annotations

import threading

import pytest
from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.runtime.assembly import protected_fields
from consumer.runtime.clients import opensearch_client
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import ensure_index
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.factories import stream_record, unindexable_image
from tests.support.tables import index_documents
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines]
SCHEMA = KeySchema((KeyAttribute("pk", "S"),))


class Pipeline:
    """A processor writing through the proxy, with its metrics and probes, as a worker has them."""

    def __init__(self, proxy, search_engine, table_name, tmp_path, **env: str) -> None:
        ensure_index(OpenSearch(hosts=[search_engine.url]), table_name, f"{table_name}-live", SCHEMA)
        settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": proxy.url, **env})
        self.metrics = Metrics(CollectorRegistry())
        self.health = Health(stall_after_seconds=60)
        self.health.mark_synced()
        self.health.beat()
        sink = OpenSearchSink(
            opensearch_client(settings),
            table_name,
            self.metrics,
            retry_base_seconds=0.02,
            retry_cap_seconds=0.1,
            max_request_bytes=settings.bulk_max_bytes,
            protected_fields=protected_fields(SCHEMA),
            health=self.health,
        )
        self.dead_letters = tmp_path / "dead-letters.jsonl"
        self.processor = BatchProcessor(SCHEMA, sink, DeadLetterFile(self.dead_letters), self.metrics)
        self.results: list = []

    def start(self, records: list[dict]) -> threading.Thread:
        thread = threading.Thread(target=lambda: self.results.append(self.processor.process("s", records, 0, STOP)))
        thread.start()
        return thread

    def value(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(name) or 0.0


STOP = threading.Event()


def items(count: int, prefix: str = "item") -> list[dict]:
    return [
        stream_record("INSERT", keys={"pk": {"S": f"{prefix}-{i}"}}, second=1_800_000_000 + i) for i in range(count)
    ]


def expected(records: list[dict]) -> set[str]:
    return {record["dynamodb"]["Keys"]["pk"]["S"] for record in records}


OUTAGES = {
    "connection-refused": lambda proxy: proxy.refuse(),
    "connection-reset": lambda proxy: proxy.reset_connections(None),
    "timeout": lambda proxy: proxy.stall(2.0, None),
    "5xx": lambda proxy: proxy.fail_requests(503, None, "unavailable_shards_exception"),
    "401-credentials": lambda proxy: proxy.fail_requests(401, None, "security_exception"),
    "403-permission": lambda proxy: proxy.fail_requests(403, None, "security_exception"),
    "404-index-missing": lambda proxy: proxy.fail_requests(404, None, "index_not_found_exception"),
    "403-write-block": lambda proxy: proxy.fail_items(403, None, "cluster_block_exception"),
    "404-item-index-missing": lambda proxy: proxy.fail_items(404, None, "index_not_found_exception"),
}


@pytest.mark.parametrize("fault", sorted(OUTAGES))
def test_an_outage_pauses_the_batch_loses_nothing_and_resumes_by_itself(
    fault, proxy, search_engine, table_name, tmp_path
):
    # GIVEN OpenSearch failing in this way for as long as it takes
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path, CDC_OPENSEARCH_TIMEOUT_SECONDS="0.5")
    OUTAGES[fault](proxy)
    records = items(20)

    # WHEN a batch is processed
    thread = pipeline.start(records)

    # THEN it waits: the sink is reported unavailable, readiness says why, nothing is dead-lettered
    wait_until(lambda: pipeline.value("cdc_sink_available") == 0, timeout=30, what="the sink reported unavailable")
    wait_until(lambda: pipeline.value("cdc_sink_retries_total") >= 40, timeout=30, what="a few retries")
    ready, reason = pipeline.health.readiness()
    assert not ready and reason.startswith("OpenSearch unavailable")
    assert thread.is_alive() and not pipeline.dead_letters.exists()

    # WHEN the cause is fixed THEN the batch settles by itself, every record applied (or found
    # already applied: a request healed in flight may land after its 0.5 s read timeout, and its
    # resend then meets those versions, 409 — stale, not lost)
    proxy.heal()
    thread.join(timeout=30)
    assert pipeline.results
    outcomes = pipeline.results[0].outcomes
    assert outcomes[("INSERT", "applied")] + outcomes[("INSERT", "stale")] == 20, outcomes
    assert set(index_documents(search_engine.url, table_name)) == expected(records)
    assert pipeline.value("cdc_sink_available") == 1 and pipeline.health.readiness() == (True, "ok")
    assert pipeline.value("cdc_records_dead_lettered_total") == 0


@pytest.mark.parametrize("where", ["request", "items"])
def test_throttling_is_waited_out_without_calling_the_sink_unavailable(
    where, proxy, search_engine, table_name, tmp_path
):
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path)
    if where == "request":
        proxy.fail_requests(429, 3, "rejected_execution_exception")
    else:
        proxy.fail_items(429, 3, "rejected_execution_exception")
    records = items(10)
    pipeline.start(records).join(timeout=30)
    assert pipeline.results[0].outcomes[("INSERT", "applied")] == 10
    assert pipeline.value("cdc_sink_retries_total") == 30 and pipeline.value("cdc_sink_available") == 1
    assert set(index_documents(search_engine.url, table_name)) == expected(records)


def test_requests_are_bounded_by_bytes_and_a_413_splits_them(proxy, search_engine, table_name, tmp_path):
    # GIVEN OpenSearch taking bodies of at most 100 KB, records of ~1 KB, and a 64 KiB request bound
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path, CDC_BULK_MAX_BYTES=str(64 * 1024))
    proxy.limit_body(100_000)
    records = [
        stream_record("INSERT", keys={"pk": {"S": f"p-{i}"}}, new_image={"pk": {"S": f"p-{i}"}, "t": {"S": "x" * 900}})
        for i in range(300)
    ]
    # WHEN the batch is processed THEN no request exceeded the bound, so none was refused, all applied
    pipeline.start(records).join(timeout=60)
    assert proxy.too_large == 0 and proxy.bulk_requests >= 5
    assert pipeline.results[0].outcomes[("INSERT", "applied")] == 300

    # GIVEN a bound above what OpenSearch takes WHEN processed THEN 413s split requests until they fit
    proxy.limit_body(20_000)
    split = Pipeline(proxy, search_engine, table_name, tmp_path)
    more = [
        stream_record("INSERT", keys={"pk": {"S": f"q-{i}"}}, new_image={"pk": {"S": f"q-{i}"}, "t": {"S": "y" * 900}})
        for i in range(100)
    ]
    split.start(more).join(timeout=60)
    assert proxy.too_large > 0 and split.results[0].outcomes[("INSERT", "applied")] == 100
    assert set(index_documents(search_engine.url, table_name)) == expected(records) | expected(more)


def test_a_single_document_over_the_size_limit_is_poison(proxy, search_engine, table_name, tmp_path):
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path)
    proxy.limit_body(5_000)
    big = stream_record("INSERT", keys={"pk": {"S": "big"}}, new_image={"pk": {"S": "big"}, "t": {"S": "z" * 10_000}})
    pipeline.start([big, *items(3)]).join(timeout=30)
    assert pipeline.value("cdc_records_dead_lettered_total") == 1
    assert "larger than OpenSearch accepts" in pipeline.dead_letters.read_text()
    assert set(index_documents(search_engine.url, table_name)) == {"item-0", "item-1", "item-2"}


def test_refusals_are_diverted_when_the_mapping_explains_them_and_poison_only_when_nothing_does(
    proxy, search_engine, table_name, tmp_path
):
    # GIVEN an item whose "n" is a map where the index maps "n" as a value, and one no index can hold
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path)
    first = stream_record("INSERT", keys={"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}, "n": {"N": "1"}})
    drifted = stream_record("INSERT", keys={"pk": {"S": "b"}}, new_image={"pk": {"S": "b"}, "n": {"M": {}}})
    poison = stream_record("INSERT", keys={"pk": {"S": "c"}}, new_image=unindexable_image({"pk": {"S": "c"}}))
    pipeline.start([first]).join(timeout=30)
    pipeline.start([drifted, poison]).join(timeout=30)
    # THEN the drifted one is indexed (typed form), the other dead-lettered with OpenSearch's reason
    assert pipeline.value("cdc_documents_diverted_total") == 1
    assert set(index_documents(search_engine.url, table_name)) == {"a", "b"}
    assert index_documents(search_engine.url, table_name)["b"]["n"] == {}
    assert "Limit of total fields" in pipeline.dead_letters.read_text()


def test_a_write_block_on_the_real_index_is_an_outage_until_it_is_lifted(proxy, search_engine, table_name, tmp_path):
    # GIVEN the index set read-only (what OpenSearch does to a full disk: index.blocks.write)
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path)
    client = OpenSearch(hosts=[search_engine.url])
    client.indices.put_settings(index=table_name, body={"index.blocks.write": True})
    records = items(10)
    thread = pipeline.start(records)
    wait_until(lambda: pipeline.value("cdc_sink_available") == 0, timeout=30, what="the write block seen")
    assert thread.is_alive() and not pipeline.dead_letters.exists()
    # WHEN it is lifted THEN every record is applied
    client.indices.put_settings(index=table_name, body={"index.blocks.write": False})
    thread.join(timeout=30)
    assert set(index_documents(search_engine.url, table_name)) == expected(records)
    assert pipeline.value("cdc_sink_available") == 1


def test_an_older_version_is_stale(proxy, search_engine, table_name, tmp_path):
    pipeline = Pipeline(proxy, search_engine, table_name, tmp_path)
    records = items(5)
    pipeline.start(records).join(timeout=30)
    pipeline.start(records).join(timeout=30)  # a replay: the same versions again
    assert pipeline.results[1].outcomes[("INSERT", "stale")] == 5
    assert pipeline.value("cdc_records_dead_lettered_total") == 0
