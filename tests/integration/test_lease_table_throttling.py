"""Black box: a lease table that throttles every write for 30 s. Two worker processes read a two-shard
stream through a DynamoDB front (``tests.support.table_facade``) that answers every PutItem,
UpdateItem and DeleteItem on the lease table ``ProvisionedThroughputExceededException``, while a
writer changes the table: renewals, checkpoints and takes all fail. The workers live through it
(no exit, ``/healthz`` 200), say so (``/readyz``, ``cdc_aws_requests_total{outcome="throttled"}``),
and once writes are taken again the index converges to the table."""

from __future__ import annotations

import os

import pytest

from tests.support.probes import ProbeSampler
from tests.support.tables import index_documents, keep_writing, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

THROTTLE_SECONDS = float(os.environ.get("CDC_TEST_LEASE_THROTTLE_SECONDS", "30"))


def test_workers_live_through_a_lease_table_that_throttles_every_write(
    ddb, osmem, fed_stream, table_name, start_worker, dynamodb_front
):
    front = dynamodb_front
    # GIVEN two workers whose DynamoDB calls go through the front
    lineage = fed_stream(2)
    env = {**lineage.env, "AWS_ENDPOINT_URL_DYNAMODB": front.url}
    workers = [start_worker(env, f"w{i}") for i in range(2)]
    write_random_history(ddb, table_name, changes=40, seed=5)
    lineage.feed.wait_caught_up(timeout=60)
    wait_until(
        lambda: index_documents(osmem.url, table_name) == table_documents(ddb, table_name),
        timeout=60,
        what="a first convergence",
    )

    # WHEN every write to the lease table is throttled for 30 s, while the table keeps changing
    with ProbeSampler(workers) as probes:
        front.throttle_writes("-cdc-leases")
        keep_writing(ddb, table_name, THROTTLE_SECONDS, first_seed=200)
        front.throttle_writes(None)
        lineage.feed.wait_caught_up(timeout=60)

        # THEN the index converges to the table
        wait_until(
            lambda: index_documents(osmem.url, table_name) == table_documents(ddb, table_name),
            timeout=120,
            what="index to equal table after the throttling",
        )
    # AND no worker died or reported a dead routine, and readiness and the metrics said what was wrong
    assert [worker.process.poll() for worker in workers] == [None, None]
    assert front.throttled > 0
    assert probes.statuses("/healthz") == {200}
    assert probes.said("/readyz", 503, "lease"), probes.samples[-4:]
    assert sum(
        worker.metric('cdc_aws_requests_total{operation="update_item",outcome="throttled"}') for worker in workers
    )
    assert [worker.terminate() for worker in workers] == [0, 0]
