"""Contract fixtures: ``backend`` runs a test once against moto server and once against the test
stream server, so the two cannot drift apart where their behaviours overlap. ``server`` is a
stream server of the test's own, on a ``clock`` the test moves, so scripted faults and counters
never leak between tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from consumer.shards.api import StreamsApi
from tests.support.stream_backends import FakeClock, MotoBackend, ServerBackend, StreamBackend
from tests.support.stream_server import StreamServer


@pytest.fixture(params=["moto", "stream_server"])
def backend(request: pytest.FixtureRequest, table_name: str) -> StreamBackend:
    if request.param == "moto":
        return MotoBackend(request.getfixturevalue("moto").url, table_name)
    return ServerBackend(request.getfixturevalue("stream_server"), table_name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[StreamServer]:
    server = StreamServer.start(clock)
    yield server
    server.stop()


@pytest.fixture
def client(server: StreamServer) -> Any:
    """A boto3 client of ``server`` without retries: scripted faults reach the caller as they are."""
    return server.client()


@pytest.fixture
def api(client: Any) -> StreamsApi:
    return StreamsApi(client)
