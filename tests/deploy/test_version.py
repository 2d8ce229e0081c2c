"""One version: consumer.__version__ (pyproject.toml reads it) is what the image, the manifests, the
chart and the changelog name."""

from __future__ import annotations

import json
import re

from consumer import __version__
from tests.deploy.helpers import DEPLOY, REPO, consumer_container, yaml_file


def test_every_artefact_names_the_packages_version():
    assert f'org.opencontainers.image.version="{__version__}"' in (DEPLOY / "Dockerfile").read_text()
    assert consumer_container()["image"].endswith(f":{__version__}")
    (task,) = json.loads((DEPLOY / "ecs" / "task-definition.json").read_text())["containerDefinitions"]
    assert task["image"].endswith(f":{__version__}")
    chart = yaml_file(DEPLOY / "helm" / "cdc-consumer" / "Chart.yaml")
    assert chart["appVersion"] == chart["version"] == __version__
    first = re.search(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert first is not None and first.group(1) == __version__
    assert 'dynamic = ["version"]' in (REPO / "pyproject.toml").read_text()
