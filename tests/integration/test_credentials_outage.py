"""Black box: credentials that cannot be refreshed for a minute. The workers take their credentials
from a container credentials endpoint on loopback (as on ECS, or EKS Pod Identity), which hands out
keys due for a refresh every few seconds and then answers 500 for a minute. Every AWS call the
workers make fails meanwhile — lease renewals, the tick's reads, GetRecords — through botocore and
through the wire calls alike. Two worker processes read a two-shard stream while a writer changes
the table. They must live through it: no process exits, ``/healthz`` stays 200 (no routine died),
``/readyz`` says what is wrong, the failures are counted as ``credentials``; once the endpoint
answers again, the index converges to the table."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.credentials_server import CredentialsServer
from tests.support.probes import ProbeSampler
from tests.support.tables import index_documents, keep_writing, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.long]

OUTAGE_SECONDS = float(os.environ.get("CDC_TEST_CREDENTIAL_OUTAGE_SECONDS", "60"))


@pytest.fixture
def credentials() -> Iterator[CredentialsServer]:
    server = CredentialsServer(lifetime=3.0)
    yield server
    server.stop()


def test_workers_live_through_a_minute_without_credentials(
    ddb, osmem, fed_stream, table_name, start_worker, credentials
):
    # GIVEN two workers whose credentials come from the endpoint (no keys in their environment)
    lineage = fed_stream(2)
    env = {k: v for k, v in lineage.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    workers = [start_worker({**env, **credentials.env()}, f"w{i}") for i in range(2)]
    write_random_history(ddb, table_name, changes=40, seed=3)
    lineage.feed.wait_caught_up(timeout=60)
    wait_until(
        lambda: index_documents(osmem.url, table_name) == table_documents(ddb, table_name),
        timeout=60,
        what="a first convergence",
    )

    # WHEN the endpoint fails for a minute, while the table keeps changing
    with ProbeSampler(workers) as probes:
        credentials.fail()
        keep_writing(ddb, table_name, OUTAGE_SECONDS, first_seed=100)
        credentials.heal()
        lineage.feed.wait_caught_up(timeout=60)

        # THEN the index converges to the table
        wait_until(
            lambda: index_documents(osmem.url, table_name) == table_documents(ddb, table_name),
            timeout=120,
            what="index to equal table after the outage",
        )
    # AND no worker died, none ever reported a dead routine, and readiness said what was wrong
    assert [worker.process.poll() for worker in workers] == [None, None]
    assert credentials.refused > 0
    assert probes.statuses("/healthz") == {200}
    assert probes.said("/readyz", 503, "credentials"), probes.samples[-4:]
    assert sum(worker.metric('cdc_aws_requests_total{operation="scan",outcome="credentials"}') for worker in workers)
    assert [worker.terminate() for worker in workers] == [0, 0]
