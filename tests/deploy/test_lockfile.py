"""deploy/requirements*.lock: the image installs exactly these versions (with hashes); they must
satisfy pyproject.toml, or the image would ship something the project never declared.
`make lock` rewrites them."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.helpers import DEPLOY, REPO

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", re.MULTILINE)


def pins(path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(path.read_text())}


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(("lock", "extras"), [("requirements.lock", ()), ("requirements-kcl.lock", ("kcl",))])
def test_every_declared_dependency_is_pinned_at_a_version_it_allows(lock, extras):
    pinned = pins(DEPLOY / lock)
    for requirement in declared(extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is missing from deploy/{lock}: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"deploy/{lock} pins {name}=={pinned[name]}, outside {requirement}: run make lock"
        )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-kcl.lock"])
def test_every_pin_carries_hashes_and_no_machine_specific_index(lock):
    text = (DEPLOY / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text)[1:]  # the header comes first
    assert len(entries) == len(pins(DEPLOY / lock)) > 0
    assert all("--hash=sha256:" in entry for entry in entries)
    assert "--find-links" not in text and "--index-url" not in text
