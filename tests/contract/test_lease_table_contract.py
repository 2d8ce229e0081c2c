"""One suite of lease-table behaviours, run against moto server and the in-memory DynamoDB
(``tests.support.memory_dynamodb``) that the scale benchmark's pool uses in moto's place.

The suite drives ``consumer.leases.table.LeaseTable`` itself, so the double is held to exactly the
calls and expressions the worker makes; a property test replays random multi-worker histories of
takes, renewals, checkpoints, releases and deletes on both and requires the same outcome at every step
and the same table at the end. A few raw calls pin the DynamoDB rules the double must keep (every
placeholder defined and used, ``<>`` on a missing attribute, a key attribute not updatable).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import LeaseLostError
from consumer.leases.model import TRIM_HORIZON, Lease
from consumer.leases.table import LeaseTable
from tests.support.emulators import MotoServer, emulator_client
from tests.support.memory_dynamodb import MemoryDynamoDB

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
OTHER_STREAM = STREAM.replace("orders", "invoices")
_tables = itertools.count()


@pytest.fixture(scope="module")
def memory(moto: MotoServer) -> Iterator[MemoryDynamoDB]:
    front = MemoryDynamoDB.start(moto.url)
    yield front
    front.stop()


@pytest.fixture(params=["moto", "memory"])
def endpoint(request: pytest.FixtureRequest, moto: MotoServer) -> str:
    return moto.url if request.param == "moto" else request.getfixturevalue("memory").url


def lease_table(url: str, stream_arn: str | None = STREAM, name: str | None = None) -> LeaseTable:
    """A fresh lease table at ``url`` (created), on a fixed clock so two backends' items compare equal."""
    table = LeaseTable(
        emulator_client("dynamodb", url),
        name or f"leases-contract-{next(_tables)}",
        clock=lambda: 1000.0,
        stream_arn=stream_arn,
    )
    table.ensure_table(threading.Event())
    return table


def new_lease(key: str) -> Lease:
    return Lease(lease_key=key, owner=None, counter=0, checkpoint=TRIM_HORIZON, stream_arn=STREAM)


def test_the_table_is_created_once_and_described(endpoint: str) -> None:
    table = lease_table(endpoint)
    assert table.exists()
    assert table.ensure_table(threading.Event()) is False  # already there: not created again
    description = emulator_client("dynamodb", endpoint).describe_table(TableName=table.name)["Table"]
    assert description["TableStatus"] == "ACTIVE"
    assert description["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert not LeaseTable(emulator_client("dynamodb", endpoint), "leases-contract-never-made").exists()


def test_a_lease_is_created_once_and_read_back_as_written(endpoint: str) -> None:
    table = lease_table(endpoint)
    lease = new_lease("shardId-1")
    assert table.create_lease(lease) is True
    assert table.create_lease(lease) is False
    assert table.get_lease("shardId-1") == lease
    assert table.get_lease("shardId-2") is None


def test_of_two_workers_taking_from_one_view_only_the_first_gets_the_lease(endpoint: str) -> None:
    table = lease_table(endpoint)
    table.create_lease(new_lease("shardId-1"))
    seen = table.get_lease("shardId-1")
    assert seen is not None
    taken = table.take(seen, "worker-a")
    with pytest.raises(LeaseLostError):
        table.take(seen, "worker-b")
    assert table.get_lease("shardId-1") == taken
    assert (taken.owner, taken.counter, taken.owner_switches_since_checkpoint) == ("worker-a", 1, 1)


def test_only_the_owner_renews_checkpoints_and_releases(endpoint: str) -> None:
    table = lease_table(endpoint)
    table.create_lease(new_lease("shardId-1"))
    held = table.take(new_lease("shardId-1"), "worker-a")
    with pytest.raises(LeaseLostError):
        table.renew(Lease(**{**held.__dict__, "owner": "worker-b"}))
    held = table.renew(held)
    held = table.checkpoint(held, "49600000000000000000001", version=7, record_second=1_700_000_000)
    assert table.get_lease("shardId-1") == held
    table.release(held)
    released = table.get_lease("shardId-1")
    assert released is not None and released.owner is None and released.checkpoint == "49600000000000000000001"
    with pytest.raises(LeaseLostError):
        table.renew(held)  # its counter is stale now


def test_a_lease_of_another_stream_is_never_written_and_an_old_one_is_adopted(endpoint: str) -> None:
    table = lease_table(endpoint)
    table.create_lease(new_lease("shardId-1"))
    with pytest.raises(LeaseLostError):
        table.for_stream(OTHER_STREAM).take(new_lease("shardId-1"), "worker-a")
    unscoped = table.unscoped()
    unscoped.create_lease(Lease(lease_key="shardId-old", owner=None, counter=0, checkpoint=TRIM_HORIZON))
    adopted = table.take(Lease(lease_key="shardId-old", owner=None, counter=0, checkpoint=TRIM_HORIZON), "worker-a")
    stored = table.get_lease("shardId-old")
    assert stored is not None and stored.stream_arn == STREAM and stored.counter == adopted.counter


def test_a_lease_is_deleted_only_as_last_seen(endpoint: str) -> None:
    table = lease_table(endpoint)
    table.create_lease(new_lease("shardId-1"))
    held = table.take(new_lease("shardId-1"), "worker-a")
    with pytest.raises(LeaseLostError):
        table.delete(new_lease("shardId-1"))
    table.delete(held)
    assert table.get_lease("shardId-1") is None
    assert table.list_leases() == []


def test_a_scan_in_pages_returns_every_lease_once(endpoint: str) -> None:
    table = lease_table(endpoint)
    keys = [f"shardId-{n:03d}" for n in range(23)]
    for key in keys:
        table.create_lease(new_lease(key))
    seen: list[str] = []
    cursor: dict[str, Any] | None = None
    for _ in range(10):
        page, cursor = table.scan_page(cursor, limit=5)
        assert len(page) <= 5
        seen.extend(lease.lease_key for lease in page)
        if cursor is None:
            break
    assert sorted(seen) == keys and len(seen) == len(keys)
    assert [lease.lease_key for lease in table.list_leases(consistent=False)] == keys


def test_a_scan_continues_past_a_deleted_cursor(endpoint: str) -> None:
    table = lease_table(endpoint)
    for n in range(6):
        table.create_lease(new_lease(f"shardId-{n}"))
    page, cursor = table.scan_page(None, limit=3)
    table.delete(page[-1])  # the page's last lease, whose key is the cursor, goes
    rest: list[Lease] = []
    while cursor is not None:
        more, cursor = table.scan_page(cursor, limit=3)
        rest.extend(more)
    assert {lease.lease_key for lease in page[:-1] + rest} == {f"shardId-{n}" for n in range(6)} - {page[-1].lease_key}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ({"ConditionExpression": "leaseOwner <> :me", "ExpressionAttributeValues": {":me": {"S": "a"}}}, None),
        (
            {"ConditionExpression": "leaseOwner = :me", "ExpressionAttributeValues": {":me": {"S": "a"}}},
            "ConditionalCheckFailedException",
        ),
        ({"ConditionExpression": "leaseCounter = :n", "ExpressionAttributeValues": {":n": {"N": "0.0"}}}, None),
        (
            {
                "ConditionExpression": "NOT (leaseCounter = :n) OR attribute_not_exists(leaseOwner)",
                "ExpressionAttributeValues": {":n": {"N": "0"}},
            },
            None,
        ),
    ],
    ids=["not-equal-missing", "equal-missing", "numbers-by-value", "not-or"],
)
def test_conditions_follow_dynamodbs_rules(endpoint: str, call: dict[str, Any], code: str | None) -> None:
    _delete_under_condition(endpoint, call, code)


@pytest.mark.parametrize(
    "call",
    [
        {"ConditionExpression": "attribute_exists(leaseKey)", "ExpressionAttributeValues": {":x": {"N": "1"}}},
        {"ConditionExpression": "#x = :x", "ExpressionAttributeValues": {":x": {"N": "1"}}},
        {"ConditionExpression": "leaseCounter = :missing"},
    ],
    ids=["unused-value", "undefined-name", "undefined-value"],
)
def test_the_double_refuses_placeholders_as_dynamodb_does(memory: MemoryDynamoDB, call: dict[str, Any]) -> None:
    """DynamoDB refuses a placeholder defined and not used, or used and not defined. moto diverges here
    (it accepts the first and answers 500 to the others), so only the double is held to it: the
    consumer's expressions must pass real DynamoDB's validation."""
    _delete_under_condition(memory.url, call, "ValidationException")


def _delete_under_condition(endpoint: str, call: dict[str, Any], code: str | None) -> None:
    """A DeleteItem of a fresh lease under ``call``'s condition: deleted (``code`` None) or refused with ``code``."""
    table = lease_table(endpoint)
    table.create_lease(new_lease("shardId-1"))
    client = emulator_client("dynamodb", endpoint)
    request = {"TableName": table.name, "Key": {"leaseKey": {"S": "shardId-1"}}, **call}
    if code is None:
        client.delete_item(**request)
        assert table.get_lease("shardId-1") is None
        return
    with pytest.raises(ClientError) as refused:
        client.delete_item(**request)
    assert refused.value.response["Error"]["Code"] == code
    assert table.get_lease("shardId-1") is not None


def test_an_update_may_not_touch_the_key_and_removes_what_it_names(endpoint: str) -> None:
    table = lease_table(endpoint)
    table.create_lease(new_lease("shardId-1"))
    client = emulator_client("dynamodb", endpoint)
    key = {"leaseKey": {"S": "shardId-1"}}
    with pytest.raises(ClientError) as refused:
        client.update_item(
            TableName=table.name,
            Key=key,
            UpdateExpression="SET leaseKey = :k",
            ExpressionAttributeValues={":k": {"S": "x"}},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    client.update_item(
        TableName=table.name,
        Key=key,
        UpdateExpression="SET leaseOwner = :o, #c = :c REMOVE checkpoint",
        ExpressionAttributeNames={"#c": "note"},
        ExpressionAttributeValues={":o": {"S": "a"}, ":c": {"S": "n"}},
    )
    item = client.get_item(TableName=table.name, Key=key, ConsistentRead=True)["Item"]
    assert item["leaseOwner"] == {"S": "a"} and item["note"] == {"S": "n"} and "checkpoint" not in item


def test_the_double_names_what_it_does_not_implement(memory: MemoryDynamoDB) -> None:
    table = lease_table(memory.url)
    table.create_lease(new_lease("shardId-1"))
    client = emulator_client("dynamodb", memory.url)
    with pytest.raises(ClientError, match="does not implement the function if_not_exists"):
        client.update_item(
            TableName=table.name,
            Key={"leaseKey": {"S": "shardId-1"}},
            UpdateExpression="SET leaseCounter = if_not_exists(leaseCounter, :zero)",
            ExpressionAttributeValues={":zero": {"N": "0"}},
        )
    with pytest.raises(ClientError, match="does not implement ADD"):
        client.update_item(
            TableName=table.name,
            Key={"leaseKey": {"S": "shardId-1"}},
            UpdateExpression="ADD leaseCounter :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )


def test_requests_for_other_tables_reach_moto(memory: MemoryDynamoDB, moto: MotoServer, table_name: str) -> None:
    moto_client = emulator_client("dynamodb", moto.url)
    moto_client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto_client.put_item(TableName=table_name, Item={"pk": {"S": "a"}})
    through_front = emulator_client("dynamodb", memory.url)
    assert through_front.describe_table(TableName=table_name)["Table"]["TableName"] == table_name
    assert through_front.scan(TableName=table_name)["Items"] == [{"pk": {"S": "a"}}]


# -- random histories ------------------------------------------------------------------------------

KEYS = ("shardId-a", "shardId-b")
WORKERS = ("worker-1", "worker-2")


@dataclass(frozen=True)
class Step:
    """One worker acting on its (possibly stale) view of one lease."""

    action: str
    worker: int
    key: int
    refresh: bool  # read the lease again first, or act on the view it had


steps = st.builds(
    Step,
    action=st.sampled_from(["create", "take", "take", "renew", "checkpoint", "checkpoint", "release", "delete"]),
    worker=st.integers(0, len(WORKERS) - 1),
    key=st.integers(0, len(KEYS) - 1),
    refresh=st.sampled_from([True, True, False]),  # mostly a fresh view, so most writes succeed
)


def play(table: LeaseTable, history: list[Step]) -> list[str]:
    """Each step's outcome (``ok``, ``lost``, ``missing``) on ``table``, whose leases exist at the start."""
    for key in KEYS:
        table.create_lease(new_lease(key))
    views: dict[tuple[int, int], Lease | None] = {}
    outcomes = []
    for number, step in enumerate(history):
        key = KEYS[step.key]
        if step.refresh or (step.worker, step.key) not in views:
            views[step.worker, step.key] = table.get_lease(key)
        view = views[step.worker, step.key]
        if step.action == "create":
            outcomes.append("ok" if table.create_lease(new_lease(key)) else "lost")
            continue
        if view is None:
            outcomes.append("missing")
            continue
        try:
            views[step.worker, step.key] = _act(table, step, view, number)
            outcomes.append("ok")
        except LeaseLostError:
            outcomes.append("lost")
    return outcomes


def _act(table: LeaseTable, step: Step, view: Lease, number: int) -> Lease | None:
    worker = WORKERS[step.worker]
    if step.action == "take":
        return table.take(view, worker)
    mine = Lease(**{**view.__dict__, "owner": worker})
    if step.action == "renew":
        return table.renew(mine)
    if step.action == "checkpoint":
        return table.checkpoint(mine, f"4960000000000000000{number:04d}", version=number)
    if step.action == "release":
        table.release(mine)
        return None
    table.delete(view)
    return None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(steps, min_size=1, max_size=30))
def test_random_histories_end_alike_on_moto_and_the_double(
    moto: MotoServer, memory: MemoryDynamoDB, history: list[Step]
) -> None:
    on_moto, in_memory = lease_table(moto.url), lease_table(memory.url)
    assert play(on_moto, history) == play(in_memory, history)
    assert on_moto.list_leases() == in_memory.list_leases()
    raw = [
        emulator_client("dynamodb", t._client.meta.endpoint_url).scan(TableName=t.name, ConsistentRead=True)["Items"]
        for t in (on_moto, in_memory)
    ]
    assert sorted(map(repr, raw[0])) == sorted(map(repr, raw[1]))  # every attribute, timestamps included
