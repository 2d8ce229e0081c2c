"""DynamoDB tables for tests: create them, write random histories, and compare with the index."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

from consumer.pipeline.attributes import item_to_json
from consumer.pipeline.doc_ids import KeySchema, document_id

COMPOSITE_KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
COMPOSITE_KEY = KeySchema.from_table_description(
    {
        "KeySchema": COMPOSITE_KEY_SCHEMA,
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
    }
)


def create_table(
    ddb: Any,
    name: str,
    view_type: str | None = "NEW_AND_OLD_IMAGES",
    keys: tuple[tuple[str, str], ...] = (("pk", "S"), ("sk", "N")),
) -> None:
    """A table keyed by ``keys`` (hash, then range: name and type; pk: S, sk: N by default), with a
    stream of ``view_type`` (None: no stream)."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [
            {"AttributeName": key, "KeyType": kind} for (key, _), kind in zip(keys, ("HASH", "RANGE"), strict=False)
        ],
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": type_} for key, type_ in keys],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if view_type:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
    ddb.create_table(**kwargs)


def random_key(rng: random.Random, keyspace: int) -> dict[str, Any]:
    """Keys that stress id building: separators and escapes inside values, numeric range keys
    spelled in several ways ("3", "3.0" and "30E-1" are the same DynamoDB key)."""
    n = rng.randrange(keyspace)
    pk = rng.choice(["user", "a|b", "a\\|b", "#tag", "x\\"]) + f"-{n % 17}"
    sk = rng.choice([str(n % 5), f"{n % 5}.0", f"{n % 5}.000", f"{n % 5}0E-1", "-42"])
    return {"pk": {"S": pk}, "sk": {"N": sk}}


def random_item(rng: random.Random, key: dict[str, Any], revision: int) -> dict[str, Any]:
    """An item using every DynamoDB type, with values that change per revision.

    Each attribute keeps one JSON type across items, as OpenSearch mappings require (workers
    racing to create a dynamic mapping must agree): integers in ``sk``, exact floats in ``price``
    and ``scores``, exact decimal strings in ``precise`` and ``big``, homogeneous lists.
    """
    return {
        **key,
        "revision": {"N": str(revision)},
        "price": {"N": rng.choice(["19.99", "0.1", "1e-7", "2.5"])},
        "precise": {"N": rng.choice(["3.14159265358979323846264338327950288", "0.12345678901234567890123"])},
        "big": {"N": "123456789012345678901234567890"},
        "name": {"S": rng.choice(["ä ö ü", "日本語", "plain", 'quote"d', ""])},
        "active": {"BOOL": rng.random() < 0.5},
        "nothing": {"NULL": True},
        "blob": {"B": rng.randbytes(rng.randrange(1, 24))},
        "tags": {"SS": rng.sample(["a", "b", "c", "d", "e"], k=rng.randrange(1, 4))},
        "scores": {"NS": rng.sample(["1.5", "2.5", "-3.75", "1e-10", "0.125"], k=rng.randrange(1, 4))},
        "blobs": {"BS": [bytes([i]) * (i + 1) for i in range(rng.randrange(1, 3))]},
        "nested": {"M": {"list": {"L": [{"N": str(revision)}, {"N": "-1"}]}, "deep": {"M": {"ok": {"BOOL": True}}}}},
    }


_revisions = itertools.count()  # process-wide, so revision order is write order across histories


def write_random_history(ddb: Any, table: str, changes: int, seed: int, keyspace: int = 300) -> dict[str, int]:
    """Apply ``changes`` random puts (inserts and modifies) and deletes (including re-inserts of
    deleted keys); returns counts by kind. Each put's ``revision`` attribute is larger than that of
    every put made before it in this process."""
    rng = random.Random(seed)
    counts = {"put": 0, "delete": 0}
    for _ in range(changes):
        revision = next(_revisions)
        key = random_key(rng, keyspace)
        if rng.random() < 0.2:
            ddb.delete_item(TableName=table, Key=key)
            counts["delete"] += 1
        else:
            ddb.put_item(TableName=table, Item=random_item(rng, key, revision))
            counts["put"] += 1
    return counts


def keep_writing(ddb: Any, table: str, seconds: float, first_seed: int, changes_a_second: int = 10) -> None:
    """``write_random_history`` for ``seconds``: a writer that goes on while something else happens."""
    deadline = time.monotonic() + seconds
    seed = first_seed
    while time.monotonic() < deadline:
        write_random_history(ddb, table, changes=changes_a_second, seed=seed)
        seed += 1
        time.sleep(1)


def table_documents(ddb: Any, table: str, schema: KeySchema = COMPOSITE_KEY) -> dict[str, dict[str, Any]]:
    """The table's items as the index should hold them: id → document."""
    documents = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for item in page["Items"]:
            documents[document_id(schema, item)] = item_to_json(item)
    return documents


def index_documents(opensearch_url: str, index: str) -> dict[str, dict[str, Any]]:
    """Every live document of the index, as applications see it through the read alias (tombstones of
    deleted items hidden): id → source as the item has it (numbers exact, diverted attributes put back;
    scrolling, so the count is not capped). Searches the physical index with the read alias's filter,
    so indexes written without the worker's bootstrap work too."""
    from opensearchpy import OpenSearch
    from opensearchpy.exceptions import NotFoundError

    from consumer.pipeline.drift import natural_document
    from consumer.runtime.clients import ExactJSONSerializer
    from consumer.sink.index_setup import LIVE_FILTER

    client = OpenSearch(hosts=[opensearch_url], serializer=ExactJSONSerializer())
    try:
        client.indices.refresh(index=index)
        page = client.search(index=index, body={"query": LIVE_FILTER}, size=1000, scroll="1m")
    except NotFoundError:
        return {}
    documents = {}
    while page["hits"]["hits"]:
        for hit in page["hits"]["hits"]:
            documents[hit["_id"]] = natural_document(hit["_source"])
        page = client.scroll(scroll_id=page["_scroll_id"], scroll="1m")
    return documents


def forget_deletes(client: Any, index: str) -> None:
    """Make OpenSearch forget the versions of deletes on an index with ``index.gc_deletes`` 0 s.

    osmem forgets at once; a real node prunes delete versions only when it refreshes, judged on a
    clock it updates every 200 ms: wait past that, then refresh.
    """
    time.sleep(0.5)
    client.indices.refresh(index=index)
