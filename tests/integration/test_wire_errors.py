"""Every way a wire call (GetRecords, the lease table's items, the backfill's Scan) can fail leaves
the wire client as one ``WireError``, classified where it is received — an answer that is not the
service's JSON (a proxy's HTML page, a body cut short), credentials that cannot be refreshed — and
reaches the callers as their own retriable errors, counted by outcome. Against a loopback server
that answers as misbehaving proxies do, and a container credentials endpoint that fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest

from consumer.aws.json_client import BadAnswerError, CredentialsError, NoAnswerError, WireCallError, WireClient
from consumer.errors import LeaseTableError, StreamError
from consumer.leases.model import Lease
from consumer.leases.table import LeaseTable
from consumer.shards.raw_records import RawGetRecords
from tests.support.credentials_server import CredentialsServer
from tests.support.quiet_http import QuietHTTPServer

pytestmark = pytest.mark.integration

ANSWERS = {
    "html": (200, "text/html", b"<html><body>Sign in to the corporate proxy</body></html>"),
    "truncated": (200, "application/x-amz-json-1.0", b'{"Records": [{"eventID": "1", "dyna'),
    "array": (200, "application/x-amz-json-1.0", b"[1, 2]"),
    "bad_gateway": (502, "text/html", b"<html>502 Bad Gateway</html>"),
}


class Front:
    """Answers every POST with ``ANSWERS[mode]``."""

    def __init__(self) -> None:
        self.mode = "html"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, content_type, body = ANSWERS[owner.mode]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.http = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def front() -> Iterator[Front]:
    running = Front()
    yield running
    running.http.shutdown()
    running.http.server_close()


def client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("html", BadAnswerError),
        ("truncated", BadAnswerError),
        ("array", BadAnswerError),
        ("bad_gateway", WireCallError),
    ],
)
def test_an_answer_that_is_not_the_services_is_classified(front, mode, error):
    front.mode = mode
    with pytest.raises(error):
        WireClient(client("dynamodbstreams", front.url), "DynamoDBStreams_20120810").call("GetRecords", {})


def test_callers_turn_them_into_their_own_retriable_errors_counted_by_outcome(front):
    # GIVEN GetRecords and a lease write through a front answering a proxy's HTML page with 200
    outcomes: list[tuple[str, str]] = []
    observe = lambda operation, outcome, seconds: outcomes.append((operation, outcome))  # noqa: E731
    reader = RawGetRecords(client("dynamodbstreams", front.url), observe=observe)
    table = LeaseTable(client("dynamodb", front.url), "leases", observe=observe, stream_arn="arn")

    # WHEN they are called THEN each raises its own retriable error, counted as a bad answer
    with pytest.raises(StreamError) as read:
        reader.get_records("iterator", 100)
    with pytest.raises(LeaseTableError):
        table.renew(Lease("shard-1", "me", 1, "TRIM_HORIZON"))
    assert read.value.retriable
    assert outcomes == [("get_records", "bad_answer"), ("update_item", "bad_answer")]


def test_credentials_that_cannot_be_refreshed_are_a_retriable_error(monkeypatch, moto):
    # GIVEN clients whose credentials come from a container endpoint, due for a refresh at once
    credentials = CredentialsServer(lifetime=0.5)
    try:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", credentials.url)
        dynamodb = boto3.session.Session(region_name="us-east-1").client("dynamodb", endpoint_url=moto.url)
        outcomes: list[tuple[str, str]] = []
        table = LeaseTable(dynamodb, "leases", observe=lambda op, outcome, s: outcomes.append((op, outcome)))

        # WHEN the endpoint fails and the credentials are due
        credentials.fail()
        time.sleep(1)

        # THEN the wire call raises CredentialsError (classified), and the lease table a LeaseTableError
        with pytest.raises(CredentialsError):
            WireClient(dynamodb, "DynamoDB_20120810").call("GetItem", {"TableName": "leases", "Key": {}})
        with pytest.raises(LeaseTableError):
            table.get_lease("shard-1")
        assert outcomes == [("get_item", "credentials")]
    finally:
        credentials.stop()


def test_no_answer_at_all_is_no_answer_error():
    with pytest.raises(NoAnswerError):
        WireClient(client("dynamodb", "http://127.0.0.1:9"), "DynamoDB_20120810").call("GetItem", {})
