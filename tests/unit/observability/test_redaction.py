"""No output shows a secret: the redaction rule on the texts secrets hide in, and every log line
(ours and the libraries') passing through it; the libraries' DEBUG lines only on request."""

from __future__ import annotations

import base64
import logging

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from consumer.observability import redaction
from consumer.observability.logging import configure_logging
from consumer.observability.redaction import REDACTED, redact, register_secrets

TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCWV1LXdlc3QtMSJHMEUCIQD"
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.setattr(redaction, "_secrets", ())


@pytest.mark.parametrize(
    "text",
    [
        f"https://admin:{TOKEN}@search.example.com:443/orders",
        f"{{'X-Amz-Security-Token': b'{TOKEN}', 'X-Amz-Date': b'20261206T091500Z'}}",
        f'{{"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/eu-west-1/es/aws4_request, '
        f'SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"}}',
        f"Authorization: Basic {base64.b64encode(f'cdc:{TOKEN}'.encode()).decode()}",
        f"GET /?X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIGNATURE}",
        f"password={TOKEN}&user=cdc",
        f"aws_session_token = {TOKEN}",
    ],
)
def test_each_place_a_secret_hides_in_is_redacted(text):
    shown = redact(text)
    assert TOKEN not in shown and SIGNATURE not in shown
    assert base64.b64encode(f"cdc:{TOKEN}".encode()).decode() not in shown
    assert REDACTED in shown


def test_what_is_not_secret_is_left_as_it_was():
    text = "POST https://search.example.com/_bulk 403 security_exception: no permissions for ShardIterator=AAAA"
    assert redact(text) == text
    assert redact("X-Amz-Date: 20261206T091500Z") == "X-Amz-Date: 20261206T091500Z"


@given(st.text(min_size=4, max_size=40).filter(lambda s: s.strip() == s and len(s) >= 4), st.text(max_size=40))
def test_a_registered_secret_is_never_shown_whatever_surrounds_it(secret, around):
    register_secrets([secret])
    assert secret not in redact(f"{around}{secret}{around}") or secret in REDACTED


def test_every_log_line_is_redacted_and_library_debug_needs_an_opt_in(capsys):
    register_secrets(["hunter2-the-password", None, b"mask-key-0123456789"])
    configure_logging("DEBUG", "json")
    botocore = logging.getLogger("botocore.endpoint")

    # WHEN our code and a library log secrets, at DEBUG without the library opt-in
    structlog.get_logger("t").warning("attempt", error="login with hunter2-the-password", key="mask-key-0123456789")
    botocore.debug("Sending http request: {'X-Amz-Security-Token': b'%s'}", TOKEN)
    botocore.warning("Retrying https://user:%s@host/", TOKEN)
    lines = capsys.readouterr().err

    # THEN no secret is shown, and the library's DEBUG line is not written at all
    assert "hunter2-the-password" not in lines and "mask-key-0123456789" not in lines and TOKEN not in lines
    assert lines.count(REDACTED) == 3
    assert "Sending http request" not in lines

    # WHEN the library opt-in is given THEN its DEBUG lines come, redacted too
    configure_logging("DEBUG", "json", library_debug=True)
    botocore.debug("Sending http request: {'X-Amz-Security-Token': b'%s'}", TOKEN)
    lines = capsys.readouterr().err
    assert "Sending http request" in lines and TOKEN not in lines


@pytest.fixture(autouse=True)
def _logging_as_before():
    """The logging set here writes to pytest's capture: later tests must not log into it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level
    for library in ("botocore", "boto3", "urllib3", "opensearch", "s3transfer"):
        logging.getLogger(library).setLevel(logging.NOTSET)
