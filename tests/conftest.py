"""Session fixtures: the emulators and the real OpenSearch node start once, on loopback, only when a
test needs them, and stop at the end of the session.

The sink: tests take ``search_engine`` (anything with a ``url``). It is osmem-server, unless the test
is marked ``engines``: then it runs once per engine, on osmem-server and on a real OpenSearch node
(``tests/support/opensearch_node.py``), so everything the sink relies on is checked on both.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulators import MotoServer, aws_env, emulator_client, start_osmem
from tests.support.opensearch_node import OpenSearchNode
from tests.support.stream_server import StreamServer
from tests.support.worker_process import WorkerProcess

_names = itertools.count()

# The emulators' credentials, for this process's default credential chain too: the service signs its
# wire calls with the default chain's credentials, as every client it builds uses (the test helpers'
# boto3 clients name the same keys explicitly).
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by parameters
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked ``long`` first, each whole: pytest-xdist hands modules out in this order, so
    the long ones start at once and the short ones fill in beside them, rather than one of them running
    alone at the end. (``search_engine`` costs nothing to switch: the engines are fixtures of their own.)"""
    items.sort(key=lambda item: (1, "") if item.get_closest_marker("long") is None else (0, item.nodeid.split("::")[0]))


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def osmem() -> Iterator[Any]:
    server = start_osmem()
    yield server
    server.close()


@pytest.fixture(scope="session")
def opensearch() -> Iterator[OpenSearchNode]:
    """A real OpenSearch node (2.19, 512 MiB heap), built on first use and cached between runs."""
    node = OpenSearchNode.start()
    yield node
    node.stop()


ENGINES = ("osmem", "opensearch")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "search_engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("engines"):
        metafunc.parametrize("search_engine", ENGINES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def search_engine(request: pytest.FixtureRequest) -> Any:
    """The OpenSearch the test writes to: osmem, or each engine in turn for tests marked ``engines``."""
    return request.getfixturevalue(getattr(request, "param", "osmem"))


@pytest.fixture
def ddb(moto: MotoServer) -> Any:
    return emulator_client("dynamodb", moto.url)


@pytest.fixture
def table_name() -> str:
    """A fresh table (and index) name per test, so tests never see each other's data."""
    return f"orders{next(_names)}"


@pytest.fixture
def worker_env(moto: MotoServer, search_engine: Any, table_name: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a worker reading ``table_name`` into the index of the same name."""
    return {
        **aws_env(moto.url),
        "CDC_TABLE_NAME": table_name,
        "CDC_OPENSEARCH_URL": search_engine.url,
        "CDC_FAILOVER_SECONDS": "3",
        "CDC_POLL_INTERVAL_SECONDS": "0.2",
        "CDC_DEAD_LETTER_PATH": str(tmp_path / "dead-letters.jsonl"),
    }


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_worker(env, name)`` runs a worker process; all are stopped at teardown."""
    workers: list[WorkerProcess] = []

    def start(env: dict[str, str], name: str = "worker", logs_through_pipe: bool = False) -> WorkerProcess:
        worker = WorkerProcess(
            {"CDC_WORKER_ID": f"{name}-{len(workers)}", **env},
            tmp_path / f"{name}-{len(workers)}.log",
            logs_through_pipe,
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session")
def stream_server() -> Iterator[StreamServer]:
    """The test-side DynamoDB Streams server (splits, trimming, faults); each test makes its own streams."""
    server = StreamServer.start()
    yield server
    server.stop()
