"""Black box: no secret in any output, and no two live workers under one id.

A worker is given every secret it can hold (an OpenSearch password, a masking key, an AWS session
token) and the chattiest logging there is (DEBUG, the libraries' DEBUG too: botocore writes every
request's signed headers), while OpenSearch answers 403 with a body naming the IAM role. Its log
lines, its probes and metrics, and ``consumer config`` (``--check`` too) show none of the secrets,
and ``/readyz`` says what is wrong in our words, not OpenSearch's. Two workers started with one
``CDC_WORKER_ID`` do not share leases silently: one of them stops, exit code 2, naming the cause. A
masked key attribute shows in no document id, tombstone or log line, and audit still agrees."""

from __future__ import annotations

import base64

import pytest
from opensearchpy import OpenSearch

from tests.support.commands import consumer
from tests.support.probes import ProbeSampler
from tests.support.tables import COMPOSITE_KEY, create_table, index_documents, table_documents, write_random_history
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

PASSWORD = "pw-Zq81-correct-horse-battery"
MASK_KEY = "mask-key-1f3a9c0e7b2d4c6e"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr-session-token-0123456789abcdef"
ROLE = "arn:aws:iam::123456789012:role/cdc-worker"
SECRETS = (PASSWORD, MASK_KEY, SESSION_TOKEN, base64.b64encode(f"cdc:{PASSWORD}".encode()).decode())


def test_no_secret_reaches_a_log_line_a_probe_or_a_command(
    ddb, proxy, fed_stream, table_name, start_worker, search_engine
):
    # GIVEN a worker holding every kind of secret, logging everything it can, over unverified TLS
    lineage = fed_stream(
        2,
        CDC_OPENSEARCH_AUTH="basic",
        CDC_OPENSEARCH_USERNAME="cdc",
        CDC_OPENSEARCH_PASSWORD=PASSWORD,
        CDC_OPENSEARCH_ALLOW_PLAINTEXT_AUTH="true",
        CDC_OPENSEARCH_VERIFY_CERTS="false",
        CDC_MASK_FIELDS="secret_note",
        CDC_MASK_KEY=MASK_KEY,
        CDC_LOG_LEVEL="DEBUG",
        CDC_LOG_LIBRARY_DEBUG="true",
        CDC_RETRY_MAX_DELAY_SECONDS="0.3",
        AWS_SESSION_TOKEN=SESSION_TOKEN,
    )
    # AND an OpenSearch that refuses the first bulk requests with a body naming the role
    reason = f"no permissions for [indices:data/write/bulk] and User [name={ROLE}, backend_roles=[{ROLE}]]"
    proxy.fail_requests(403, count=6, error_type="security_exception", reason=reason)
    worker = start_worker(lineage.env)
    with ProbeSampler([worker], interval=0.1) as probes:
        # WHEN the table changes
        write_random_history(ddb, table_name, changes=40, seed=27)
        lineage.feed.wait_caught_up(timeout=60)
        wait_until(
            lambda: len(index_documents(search_engine.url, table_name)) == len(table_documents(ddb, table_name)),
            timeout=120,
            what="every item indexed once the 403s are over",
        )

    # THEN readiness said what was wrong in our words, without the role OpenSearch named
    assert probes.said("/readyz", 503, "permission denied (403)"), probes.samples[-5:]
    assert not any(ROLE in body for _, _, body in probes.samples)
    # AND it said that OpenSearch's certificate goes unverified
    assert "not verified" in worker.probe("/readyz")[1]
    outputs = {
        "log": worker.log_path.read_text(errors="replace"),
        "/metrics": worker.probe("/metrics")[1],
        "/healthz": worker.probe("/healthz")[1],
        "/readyz": worker.probe("/readyz")[1],
    }
    assert worker.terminate() == 0
    # AND the log held what would have leaked (botocore's signed headers), redacted
    assert '"logger":"botocore' in outputs["log"] and "<redacted>" in outputs["log"]
    for command in (["config"], ["config", "--json"], ["config", "--check"]):
        answer = consumer(lineage.env, *command)
        outputs[" ".join(command)] = answer.stdout + answer.stderr
    # AND a URL holding credentials is refused without being shown
    refused = consumer({**lineage.env, "CDC_OPENSEARCH_URL": f"http://cdc:{PASSWORD}@127.0.0.1:9"}, "config")
    assert refused.returncode == 2 and "CDC_OPENSEARCH_USERNAME" in refused.stderr
    outputs["config with a URL holding credentials"] = refused.stdout + refused.stderr

    # THEN no output shows any secret
    leaks = [(where, secret) for where, text in outputs.items() for secret in SECRETS if secret in text]
    assert not leaks, leaks


def test_two_live_workers_with_one_id_do_not_share_leases_silently(ddb, fed_stream, table_name, start_worker, proxy):
    # GIVEN a worker holding every lease of a four-shard stream
    lineage = fed_stream(4, CDC_WORKER_ID="same-id")
    first = start_worker(lineage.env)
    wait_until(lambda: first.metric("cdc_leases_held") == 4, timeout=60, what="the first worker to hold every lease")

    # WHEN a second worker starts with the same id (two containers, pid 1 each, one host name)
    second = start_worker(lineage.env)

    # THEN one of them sees its id renewing leases it does not hold, and stops: exit 2, saying why
    stopped = wait_until(
        lambda: [worker for worker in (first, second) if worker.process.poll() is not None],
        timeout=90,
        what="a worker to stop on the duplicated id",
    )
    assert [worker.process.returncode for worker in stopped] == [2] * len(stopped)
    assert all(worker.events("worker_id_duplicated") for worker in stopped)
    # AND while one of them lives on, every change still reaches the index
    survivors = [worker for worker in (first, second) if worker not in stopped]
    if survivors:
        write_random_history(ddb, table_name, changes=30, seed=4)
        lineage.feed.wait_caught_up(timeout=60)
        wait_until(
            lambda: index_documents(proxy.url, table_name) == table_documents(ddb, table_name),
            timeout=90,
            what="index to equal table",
        )


def test_a_masked_key_attribute_shows_nowhere_and_audit_still_agrees(
    ddb, search_engine, table_name, worker_env, start_worker
):
    # GIVEN a table keyed by an email, and a worker told to mask that key attribute
    create_table(ddb, table_name)
    emails = [f"customer{i}@example.com" for i in range(12)]
    for email in emails:
        ddb.put_item(TableName=table_name, Item={"pk": {"S": email}, "sk": {"N": "1"}, "plan": {"S": "gold"}})
    for email in emails[:4]:
        ddb.delete_item(TableName=table_name, Key={"pk": {"S": email}, "sk": {"N": "1"}})
    env = {**worker_env, "CDC_MASK_FIELDS": "pk", "CDC_MASK_KEY": MASK_KEY}
    worker = start_worker(env)

    # WHEN it has applied every change (ids as the masked schema makes them)
    masked = COMPOSITE_KEY.masking(frozenset({"pk"}), MASK_KEY.encode())
    wait_until(
        lambda: set(index_documents(search_engine.url, table_name)) == set(table_documents(ddb, table_name, masked)),
        timeout=60,
        what="every live item indexed under its masked id",
    )
    assert worker.terminate() == 0

    # THEN no document id, no tombstone and no log line holds an email; each id is the digest that
    # stands for the email in the document
    client = OpenSearch(hosts=[search_engine.url])
    client.indices.refresh(index=table_name)
    hits = client.search(index=table_name, body={"query": {"match_all": {}}}, size=100)["hits"]["hits"]
    assert len(hits) == len(emails)  # eight documents and four tombstones
    assert all(hit["_id"] == f"{hit['_source']['pk']}|1" for hit in hits)
    assert all(hit["_source"]["pk"].startswith("hmac-sha256:") for hit in hits)
    assert "@example.com" not in str(hits) + worker.log_path.read_text()
    assert worker.events("document_ids_masked")
    # AND an audit with the same settings finds the index equal to the table
    audit = consumer(env, "audit")
    assert audit.returncode == 0, audit.stdout
