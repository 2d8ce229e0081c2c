"""The wire client's pure parts: an error answer read into code, message and outcome however it is
spelled, and the proxy chosen for an endpoint as botocore would choose it."""

from __future__ import annotations

import pytest

from consumer.aws.json_client import _error, proxy_for


@pytest.mark.parametrize(
    ("status", "body", "code", "message", "outcome"),
    [
        (
            400,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}',
            "ProvisionedThroughputExceededException",
            "slow down",
            "throttled",
        ),
        (
            400,
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","Message":"no"}',
            "ConditionalCheckFailedException",
            "no",
            "conditional_failed",
        ),
        (
            400,
            b'{"__type":"ExpiredIteratorException","message":"old"}',
            "ExpiredIteratorException",
            "old",
            "client_error",
        ),
        (503, b"<html>Service Unavailable</html>", "", "<html>Service Unavailable</html>", "server_error"),
        (500, b"[1, 2]", "", "[1, 2]", "server_error"),
    ],
)
def test_an_error_answer_is_read_into_its_code_message_and_outcome(status, body, code, message, outcome):
    error = _error("GetRecords", status, body)
    assert (error.status, error.code, error.message, error.outcome) == (status, code, message, outcome)
    client_error = error.as_client_error()
    assert client_error.response["Error"] == {"Code": code, "Message": message}
    assert client_error.operation_name == "GetRecords"


def test_the_proxy_is_the_clients_then_the_environments_unless_no_proxy_names_the_host(monkeypatch):
    endpoint = "https://streams.dynamodb.eu-west-1.amazonaws.com/"
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    for name in ("https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.corp:3128")
    assert proxy_for(endpoint) == "http://egress.corp:3128"
    assert proxy_for("http://127.0.0.1:8000/") is None  # HTTP_PROXY unset: an http endpoint goes direct
    # the client's own proxies config wins
    assert proxy_for(endpoint, {"https": "http://other:8080"}) == "http://other:8080"
    # NO_PROXY names the host (or its domain)
    monkeypatch.setenv("NO_PROXY", ".amazonaws.com")
    assert proxy_for(endpoint) is None
