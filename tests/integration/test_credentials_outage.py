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
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.credentials_server import CredentialsServer
from tests.support.tables import index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

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
    probes: list[tuple[str, int, str]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.5):
            for worker in workers:
                probes.append(("/healthz", *worker.probe("/healthz")))
                probes.append(("/readyz", *worker.probe("/readyz")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    # WHEN the endpoint fails for a minute, while the table keeps changing
    credentials.fail()
    started = time.monotonic()
    seed = 100
    while time.monotonic() - started < OUTAGE_SECONDS:
        write_random_history(ddb, table_name, changes=10, seed=seed)
        seed += 1
        time.sleep(1)
    credentials.heal()
    lineage.feed.wait_caught_up(timeout=60)

    # THEN the index converges to the table
    wait_until(
        lambda: index_documents(osmem.url, table_name) == table_documents(ddb, table_name),
        timeout=120,
        what="index to equal table after the outage",
    )
    sampling.set()
    sampler.join(10)
    # AND no worker died, none ever reported a dead routine, and readiness said what was wrong
    assert [worker.process.poll() for worker in workers] == [None, None]
    assert credentials.refused > 0
    assert {status for path, status, _ in probes if path == "/healthz"} == {200}
    assert any(path == "/readyz" and status == 503 and "credentials" in body for path, status, body in probes), [
        body for path, status, body in probes if path == "/readyz"
    ][-4:]
    assert sum(worker.metric('cdc_aws_requests_total{operation="scan",outcome="credentials"}') for worker in workers)
    assert [worker.terminate() for worker in workers] == [0, 0]
