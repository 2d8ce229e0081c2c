"""Smoke tests of the real OpenSearch node launcher (tests/support/opensearch_node.py): it starts,
keeps external versions, takes a per-index gc_deletes, and fails with a clear reason (instead of
hanging) when its tools are missing or the JVM dies. The overloaded node's 429s are in
test_opensearch_backpressure.py."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from opensearchpy import ConflictError, OpenSearch

from tests.support.opensearch_node import OpenSearchNode, OpenSearchNodeError, cache_root, ensure_built

pytestmark = pytest.mark.integration


def test_external_versions_and_per_index_gc_deletes(opensearch: OpenSearchNode) -> None:
    node = opensearch
    client = OpenSearch(hosts=[node.url])
    client.indices.create(index="smoke", body={"settings": {"index.gc_deletes": "0s"}})
    client.indices.create(index="other")

    created = client.index(index="smoke", id="k", body={"n": 1}, version=5, version_type="external")
    assert (created["result"], created["_version"]) == ("created", 5)
    with pytest.raises(ConflictError) as conflict:
        client.index(index="smoke", id="k", body={"n": 2}, version=5, version_type="external")
    assert conflict.value.status_code == 409
    assert client.get(index="smoke", id="k")["_source"] == {"n": 1}

    client.indices.put_settings(index="other", body={"index": {"gc_deletes": "5s"}})
    settings = client.indices.get_settings(index="smoke,other", name="index.gc_deletes")
    assert settings["smoke"]["settings"]["index"]["gc_deletes"] == "0s"
    assert settings["other"]["settings"]["index"]["gc_deletes"] == "5s"
    assert node.health("green", index="smoke")["status"] == "green"  # replicas default to 0 here


def _bin_with(tmp_path: Path, **tools: str) -> dict[str, str]:
    """An environment whose PATH holds only the given tools (name → script body or real program)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in tools.items():
        if target.startswith("#!"):
            (bin_dir / name).write_text(target)
            (bin_dir / name).chmod(0o755)
        else:
            (bin_dir / name).symlink_to(target)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def test_missing_java_fails_with_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(OpenSearchNodeError, match=r"`java` is not on PATH.*openjdk-17-jdk-headless"):
        OpenSearchNode.start(env=_bin_with(tmp_path))


def test_missing_maven_fails_with_what_to_install_when_a_build_is_needed(tmp_path: Path) -> None:
    env = _bin_with(tmp_path, java=shutil.which("java") or "/usr/bin/java")
    env["CDC_OPENSEARCH_NODE_CACHE"] = str(tmp_path / "empty-cache")
    with pytest.raises(OpenSearchNodeError, match=r"`mvn` is not on PATH.*apt-get install maven"):
        OpenSearchNode.start(env=env)


def test_a_jvm_that_exits_at_once_fails_with_its_output(tmp_path: Path, monkeypatch) -> None:
    ensure_built()  # with the real tools, so only the bogus java below can fail
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the failed node's folder and log stay here
    env = _bin_with(tmp_path, java="#!/bin/sh\necho 'no JVM here' >&2\nexit 3\n")
    env["CDC_OPENSEARCH_NODE_CACHE"] = str(cache_root())
    with pytest.raises(OpenSearchNodeError, match=r"(?s)exited early \(exit 3\).*node\.log.*no JVM here"):
        OpenSearchNode.start(env=env)
