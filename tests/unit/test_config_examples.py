"""The example env files in config/ stay valid as settings evolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import load_settings

EXAMPLES = sorted((Path(__file__).parents[2] / "config").glob("*.env"))


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_an_example_env_file_loads_without_errors_or_warnings(path):
    settings, warnings = load_settings(read_env_file(path))
    assert warnings == []
    assert settings.source_table == "orders"


def test_there_are_local_and_production_examples():
    assert {path.name for path in EXAMPLES} >= {"local.env", "production.env"}
