"""Fixtures shared by the end-to-end tests: the recording proxy and a moto table fed into a
stream-server stream (the truth in moto, the shards and faults in the stream server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.kcl_daemon import build_launcher
from tests.support.moto_feed import MotoFeed
from tests.support.table_facade import TableFacade
from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table


@pytest.fixture
def proxy(search_engine) -> Iterator[FaultProxy]:
    """A fault-injecting, recording proxy in front of the test's OpenSearch."""
    proxy = FaultProxy(search_engine.url)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def kcl_classpath(tmp_path_factory) -> str:
    """The KCL launcher of deploy/kcl, built once per test process (its jars cached in ~/.m2)."""
    return build_launcher(tmp_path_factory.mktemp("kcl-build") / "build.log")


@pytest.fixture
def dynamodb_front(moto) -> Iterator[TableFacade]:
    """A scriptable DynamoDB endpoint in front of moto (throttled writes, a replaced stream)."""
    front = TableFacade(moto.url)
    yield front
    front.stop()


@dataclass
class FedStream:
    """A moto table, the stream-server stream its changes are copied into, and a worker env."""

    arn: str
    feed: MotoFeed
    env: dict[str, str]


@pytest.fixture
def fed_stream(ddb, moto, stream_server, proxy, table_name, worker_env) -> Iterator[Callable[..., FedStream]]:
    """Factory: ``fed_stream(shard_count, **env)`` → a FedStream whose workers write via the proxy."""
    feeds: list[MotoFeed] = []

    def make(shard_count: int, **env: Any) -> FedStream:
        create_table(ddb, table_name)
        arn = stream_server.create_stream(table_name, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=shard_count)
        feed = MotoFeed(stream_server, arn, moto.url, table_name).start()
        feeds.append(feed)
        worker = {
            **worker_env,
            "CDC_STREAM_ARN": arn,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
            "CDC_OPENSEARCH_URL": proxy.url,
            **env,
        }
        return FedStream(arn, feed, worker)

    yield make
    for feed in feeds:
        feed.stop()
