"""`--help` of the commands that take no arguments still says how they are configured."""

from __future__ import annotations

import pytest

from consumer import __version__
from consumer.commands.cli import main


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
