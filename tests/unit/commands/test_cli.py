"""The command line's own words: `--help` of the commands that take no arguments says how they are
configured, `--version`, and the hint a failure gets when its cause says where to look."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from consumer import __version__
from consumer.commands.cli import main
from consumer.commands.hints import what_to_do
from consumer.errors import ConsumerError, SinkError


@pytest.mark.parametrize("command", ["run", "kcl-processor"])
def test_the_help_of_a_command_without_arguments_points_at_its_settings(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    for pointer in ("CDC_TABLE_NAME", "CDC_OPENSEARCH_URL", "consumer config --check", "Configuration"):
        assert pointer in shown, pointer


def test_the_version_is_the_packages(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"consumer {__version__}"


def _raised(error: Exception, cause: BaseException) -> Exception:
    try:
        raise error from cause
    except Exception as raised:  # noqa: BLE001 - building a chain as the commands' errors carry it
        return raised


def test_a_failure_whose_cause_says_where_to_look_gets_a_hint():
    unreachable = _raised(ConsumerError("DescribeTable failed"), EndpointConnectionError(endpoint_url="http://x"))
    assert "AWS did not answer" in what_to_do(unreachable) and "HTTPS_PROXY" in what_to_do(unreachable)
    assert "no AWS credentials" in what_to_do(_raised(ConsumerError("Scan failed"), NoCredentialsError()))
    down = _raised(SinkError("search failed"), OpenSearchConnectionError("N/A", "refused", Exception("refused")))
    assert "CDC_OPENSEARCH_URL" in what_to_do(down)
    assert what_to_do(ConsumerError("a plain failure")) == ""
