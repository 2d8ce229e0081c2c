"""Our SigV4 signature of a JSON 1.0 POST is exactly botocore's, for the same request and instant."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest.mock import patch

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from consumer.aws.sigv4 import JsonRequestSigner

ENDPOINTS = [
    "https://streams.dynamodb.eu-west-1.amazonaws.com",
    "https://dynamodb.us-east-1.amazonaws.com:443/",
    "http://127.0.0.1:4566",
    "http://localhost:80",
    "http://[::1]:8000/",
]


def botocore_headers(url: str, region: str, target: str, body: bytes, credentials: Credentials, now: datetime) -> dict:
    """The headers botocore's signer gives the same request at ``now`` (its clock patched)."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    with patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        SigV4Auth(credentials, "dynamodb", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("url", ENDPOINTS)
@given(
    body=st.binary(max_size=300),
    token=st.one_of(st.none(), st.text("ABCxyz019+/=", min_size=1, max_size=40)),
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)),
    region=st.sampled_from(["eu-west-1", "us-east-1", "ap-southeast-2"]),
)
def test_the_signature_equals_botocores(
    url: str, body: bytes, token: str | None, moment: datetime, region: str
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    now = moment.replace(microsecond=0, tzinfo=UTC)
    target = "DynamoDBStreams_20120810.GetRecords"

    ours = JsonRequestSigner(url, region, "dynamodb").headers(
        target, body, credentials.access_key, credentials.secret_key, token, now
    )
    theirs = botocore_headers(url, region, target, body, credentials, now)

    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")


def test_a_new_day_or_secret_derives_a_new_key() -> None:
    signer = JsonRequestSigner("https://dynamodb.eu-west-1.amazonaws.com", "eu-west-1", "dynamodb")
    day_one = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)
    day_two = datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC)
    first = signer.headers("T.X", b"{}", "AK", "secret-1", None, day_one)["Authorization"]
    assert "20261201/eu-west-1/dynamodb/aws4_request" in first
    assert (
        "20261202/eu-west-1/dynamodb/aws4_request"
        in signer.headers("T.X", b"{}", "AK", "secret-1", None, day_two)["Authorization"]
    )
    assert signer.headers("T.X", b"{}", "AK", "secret-2", None, day_one)["Authorization"] != first
