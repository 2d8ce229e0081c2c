"""Work armed for a ``_bulk`` request runs on the caller's thread after the request reached OpenSearch
and before its answer is read (``consumer.sink.in_flight``), on the worker's own client."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from consumer.config import load_settings
from consumer.observability.metrics import Metrics
from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.runtime.clients import opensearch_client
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.support.factories import stream_record
from tests.support.tables import index_documents
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

SCHEMA = KeySchema((KeyAttribute("pk", "S"),))


def _processor(proxy, table_name, tmp_path, parallelism=1):
    settings, _ = load_settings({"CDC_TABLE_NAME": table_name, "CDC_OPENSEARCH_URL": proxy.url})
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(opensearch_client(settings), table_name, metrics, retry_base_seconds=0.05)
    return BatchProcessor(SCHEMA, sink, DeadLetterFile(tmp_path / "dlq.jsonl"), metrics, parallelism=parallelism)


def _batch(items: int):
    return [stream_record("INSERT", keys={"pk": {"S": f"item-{n}"}}) for n in range(items)]


@pytest.mark.parametrize("parallelism", [1, 3])
def test_the_work_runs_while_the_request_is_in_flight_on_the_callers_thread(
    proxy, osmem, table_name, tmp_path, parallelism
):
    # GIVEN OpenSearch (behind a proxy) answering each _bulk a second after receiving it
    processor = _processor(proxy, table_name, tmp_path, parallelism)
    proxy.stall(1.0, None)
    seen = []

    def work():  # the request reaches OpenSearch while this runs on the thread that sent it
        received = wait_until(lambda: proxy.bulk_requests >= 1, timeout=10, what="the request", interval=0.01)
        seen.append((threading.current_thread(), received, len(proxy.ledger)))

    # WHEN a batch is applied with work armed for its request
    try:
        result = processor.apply(processor.prepare("shard-1", _batch(30), 0), threading.Event(), work)
    finally:
        processor.close()

    # THEN the work ran once, on this thread, when OpenSearch had received the request and answered
    # none (with parallelism, the other partitions go out at once from other threads); and the batch
    # was applied
    assert len(seen) == 1
    thread, received, answered = seen[0]
    assert thread is threading.current_thread()
    assert received
    assert answered == 0
    assert result.outcomes[("INSERT", "applied")] == 30
    assert len(index_documents(osmem.url, table_name)) == 30


def test_a_failing_work_does_not_fail_the_request(proxy, osmem, table_name, tmp_path):
    # GIVEN work that raises
    processor = _processor(proxy, table_name, tmp_path)

    def work():
        raise RuntimeError("a bug in the work")

    # WHEN a batch is applied with it
    result = processor.apply(processor.prepare("shard-1", _batch(5), 0), threading.Event(), work)

    # THEN the batch is applied once, as without it
    assert result.outcomes[("INSERT", "applied")] == 5
    assert proxy.bulk_requests == 1


def test_the_work_runs_once_when_its_request_fails_and_is_sent_again(proxy, osmem, table_name, tmp_path):
    # GIVEN OpenSearch dropping the connection of the first request, once it has read it
    processor = _processor(proxy, table_name, tmp_path)
    proxy.reset_connections(1)
    runs = []

    # WHEN a batch is applied with work armed
    result = processor.apply(processor.prepare("shard-1", _batch(5), 0), threading.Event(), lambda: runs.append(1))

    # THEN the batch is applied by the second request, and the work ran during the first only
    assert result.outcomes[("INSERT", "applied")] == 5
    assert proxy.bulk_requests == 2
    assert runs == [1]
