"""Black box: an OpenSearch front that answers ``_bulk`` the ways misbehaving proxies and load
balancers do (``tests.support.fault_proxy.BAD_ANSWERS``: HTML with 200 or 502, empty or non-bulk
JSON, bodies cut short, answers missing items, JSON labelled text/plain, a connection closed halfway
through the body), some of them after OpenSearch applied the request. Two worker processes read a
four-shard stream while a writer changes the table. Every such answer is the sink's failure: waited
out and said so (``/readyz``, ``cdc_sink_available``, ``cdc_bulk_requests_total{outcome="outage"}``),
never a skipped page and never a dead letter. The index ends equal to the table, on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fault_proxy import BAD_ANSWERS
from tests.support.probes import ProbeSampler
from tests.support.tables import index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines]


def test_every_kind_of_bad_answer_is_waited_out_and_nothing_is_lost(
    ddb, search_engine, proxy, fed_stream, table_name, start_worker
):
    # GIVEN two workers on a four-shard stream, writing through a front that answers every other
    # bulk request wrongly, each kind of wrong answer in turn, twice
    lineage = fed_stream(4, CDC_RETRY_MAX_DELAY_SECONDS="0.3")
    proxy.bad_answers(list(BAD_ANSWERS), every=2, count=2 * len(BAD_ANSWERS))
    workers = [start_worker(lineage.env, f"w{i}") for i in range(2)]
    with ProbeSampler(workers, interval=0.1) as probes:
        # WHEN a writer changes the table meanwhile, until every bad answer was given
        for round_ in range(40):
            write_random_history(ddb, table_name, changes=30, seed=round_)
            lineage.feed.wait_caught_up(timeout=60)
            if len(proxy.bad_answered) == 2 * len(BAD_ANSWERS):
                break
        assert len(proxy.bad_answered) == 2 * len(BAD_ANSWERS)

        # THEN the index converges to the table, with no dead letter
        wait_until(
            lambda: index_documents(search_engine.url, table_name) == table_documents(ddb, table_name),
            timeout=120,
            what="index to equal table",
        )
    assert sum(worker.metric("cdc_records_dead_lettered_total") for worker in workers) == 0
    letters = Path(lineage.env["CDC_DEAD_LETTER_PATH"])
    assert not letters.exists() or letters.read_bytes() == b""
    # AND while it lasted, it was an outage said so: readiness named OpenSearch, the outages were counted
    assert probes.said("/readyz", 503, "OpenSearch"), probes.samples[-5:]
    assert sum(worker.metric('cdc_bulk_requests_total{outcome="outage"}') for worker in workers) >= len(BAD_ANSWERS)
    assert all(worker.probe("/readyz")[0] == 200 for worker in workers)
    assert [worker.terminate() for worker in workers] == [0, 0]
