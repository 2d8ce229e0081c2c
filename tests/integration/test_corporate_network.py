"""Black box: a worker behind a corporate network. DynamoDB and its streams are reachable only
through an egress proxy (``HTTPS_PROXY``: CONNECT tunnels; their name resolves nowhere else) and
present a certificate of a private CA (a TLS-inspecting gateway's, given as ``AWS_CA_BUNDLE``). The
boto3 calls and the wire calls (GetRecords, every lease write) both go that way, and the index
converges to the table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import trustme

from tests.support.connect_proxy import ConnectProxy
from tests.support.emulators import MotoServer
from tests.support.tables import create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

AWS_NAME = "dynamodb.corp.internal"  # resolvable only by the proxy


@pytest.fixture
def tls_moto(tmp_path: Path) -> Iterator[tuple[MotoServer, Path]]:
    """A moto server over TLS with a certificate of a private CA; and that CA's PEM file."""
    ca = trustme.CA()
    certificate = ca.issue_cert(AWS_NAME, "127.0.0.1")
    paths = (tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    certificate.cert_chain_pems[0].write_to_path(str(paths[0]))
    certificate.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    server = MotoServer.start(tls=paths)
    yield server, paths[2]
    server.stop()


def test_a_worker_behind_an_egress_proxy_and_a_private_ca_converges(tls_moto, search_engine, table_name, start_worker):
    server, ca_bundle = tls_moto
    port = server.url.rsplit(":", 1)[1]
    proxy = ConnectProxy({AWS_NAME: "127.0.0.1"})
    try:
        # GIVEN a table with a stream, on an endpoint known by a name only the proxy resolves
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            verify=str(ca_bundle),
        )
        create_table(ddb, table_name)
        env = {
            "AWS_ENDPOINT_URL": f"https://{AWS_NAME}:{port}",
            "AWS_CA_BUNDLE": str(ca_bundle),
            "HTTPS_PROXY": proxy.url,
            "NO_PROXY": "",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CDC_TABLE_NAME": table_name,
            "CDC_OPENSEARCH_URL": search_engine.url,
            "CDC_FAILOVER_SECONDS": "3",
            "CDC_POLL_INTERVAL_SECONDS": "0.2",
        }

        # WHEN a worker starts there and the table changes
        worker = start_worker(env)
        write_random_history(ddb, table_name, changes=40, seed=41)

        # THEN the index converges to the table: GetRecords and the lease writes went through too
        wait_until(
            lambda: index_documents(search_engine.url, table_name) == table_documents(ddb, table_name),
            timeout=90,
            what="index to equal table",
        )
        # (progress rides on the lease's next renewal round: within a third of the failover)
        wait_until(lambda: worker.metric('cdc_checkpoints_total{outcome="ok"}') > 0, timeout=10, what="a checkpoint")
        assert worker.terminate() == 0
        # AND every connection to AWS was a tunnel through the proxy
        assert set(proxy.tunnels) == {f"{AWS_NAME}:{port}"}
    finally:
        proxy.stop()
