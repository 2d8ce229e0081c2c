"""Every YAML file under deploy/ passes yamllint with the repository's relaxed settings."""

from __future__ import annotations

from tests.deploy.helpers import DEPLOY, REPO, run, tool


def test_yamllint_passes():
    assert sorted(DEPLOY.rglob("*.yaml")), "no YAML found under deploy/"
    run(tool("yamllint"), "--strict", "--config-file", REPO / ".yamllint.yaml", DEPLOY)
