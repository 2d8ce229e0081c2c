"""``make bench``: what routes cost. CPU per record of the bulk path (``BatchProcessor.process`` over
GetRecords-sized batches into osmem-server, as a shard consumer runs it) without routes, with three
routes on an attribute of the item (``customer.tier``: gold, silver, the rest), and with those routes
and a trivial transform, in the same run, on the same records (as a worker parses them from
GetRecords' JSON). Routes alone write an item's document straight from the item as the plain path
does; a transform needs the document built first.

Osmem runs in its own process, so this process's CPU (``time.process_time``) is our path alone:
decode, version, route, transform, shape, encode, the HTTP client and the answer's classification.
The configurations alternate over the repeats, each into fresh indices, and the best repeat of each
counts. The run ends by checking that each routed configuration's indices together hold exactly the
live documents of the unrouted one, then prints ``routing_cpu_ratio=`` (routes and the transform /
plain CPU per record) and ``routes_only_cpu_ratio=``.
It asserts nothing about speed. ``--smoke`` runs a tiny input once (``make test`` does).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import threading
import time
from typing import Any

from opensearchpy import OpenSearch
from prometheus_client import CollectorRegistry

from consumer.config import load_settings, routing
from consumer.observability.logging import configure_logging
from consumer.observability.metrics import Metrics
from consumer.pipeline.transforms import TransformContext
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_catalog import IndexCatalog
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor
from tests.bench.synthetic import KEY_SCHEMA, SyntheticStream, as_wire
from tests.support.emulators import start_osmem
from tests.support.tables import index_documents

BATCH = 1000
CONFIGS = {"plain": "one index", "routed": "3 routes + a Python transform", "routes_only": "3 routes"}
_runs = itertools.count()


def identity(item: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    """The trivial transform: the item as it is."""
    return item


def routes(prefix: str) -> list[dict[str, Any]]:
    def tier(name: str) -> dict[str, Any]:
        return {"dynamodb": {"NewImage": {"customer": {"M": {"tier": {"S": [name]}}}}}}

    return [
        {"name": "gold", "match": tier("gold"), "index": f"{prefix}-gold"},
        {"name": "silver", "match": tier("silver"), "index": f"{prefix}-silver"},
        {"name": "rest", "index": f"{prefix}-rest"},
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a tiny input, once")
    args = parser.parse_args(argv)
    configure_logging("WARNING", "console")
    records = as_wire(SyntheticStream(seed=11).records(600 if args.smoke else 20_000))
    batches = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]
    repeats = 1 if args.smoke else 5
    osmem = start_osmem()
    client = OpenSearch(hosts=[osmem.url], timeout=120)
    try:
        cpu: dict[str, list[float]] = {config: [] for config in CONFIGS}
        last: dict[str, str] = {}  # config → the prefix of its last repeat's indices
        for _ in range(repeats):
            for config in CONFIGS:
                if config in last:  # only the last repeat's indices are verified: osmem keeps the rest in memory
                    client.indices.delete(index=f"{last[config]}-*")
                last[config] = f"route-cost-{next(_runs)}"
                seconds = run(osmem.url, client, batches, last[config], config)
                cpu[config].append(seconds / len(records) * 1e6)
        verify(osmem.url, last)
        plain, routed, routes_only = (min(cpu[config]) for config in CONFIGS)
        print(f"records: {len(records)} in batches of {BATCH}; repeats: {repeats}, best counts")
        print(f"{'path':<34}{'CPU us/record (best)':>22}{'median':>10}")
        for config, label in CONFIGS.items():
            values = sorted(cpu[config])
            print(f"{label:<34}{min(values):>22.1f}{values[len(values) // 2]:>10.1f}")
        print(
            f"routing costs {routed - plain:+.1f} us of CPU per record ({routes_only - plain:+.1f} without the transform)"
        )
        print(f"routing_cpu_ratio={routed / plain:.3f} routes_only_cpu_ratio={routes_only / plain:.3f}")
    finally:
        osmem.close()


def run(url: str, client: OpenSearch, batches: list[list[dict]], prefix: str, config: str) -> float:
    """Apply every batch with one configuration into fresh indices; this process's CPU seconds."""
    variables = {"CDC_TABLE_NAME": "orders", "CDC_OPENSEARCH_URL": url, "CDC_OPENSEARCH_INDEX": f"{prefix}-all"}
    if config != "plain":
        variables = {"CDC_TABLE_NAME": "orders", "CDC_OPENSEARCH_URL": url, "CDC_ROUTES": json.dumps(routes(prefix))}
    if config == "routed":
        variables["CDC_TRANSFORM"] = f"{__name__}:identity"
    settings, _ = load_settings(variables)
    routed = routing(settings, KEY_SCHEMA)
    catalog = IndexCatalog(client, routed, KEY_SCHEMA, "managed")
    catalog.set_up()
    metrics = Metrics(CollectorRegistry())
    sink = OpenSearchSink(client, settings.index_name, metrics, catalog=catalog)
    processor = BatchProcessor(KEY_SCHEMA, sink, DeadLetterFile(f"/tmp/{prefix}.jsonl"), metrics, routing=routed)
    stop = threading.Event()
    gc.collect()
    started = time.process_time()
    version = 0
    for batch in batches:
        result = processor.process("shard", batch, version, stop)
        version = result.version
    seconds = time.process_time() - started
    processor.close()
    return seconds


def verify(url: str, last: dict[str, str]) -> None:
    """Each routed configuration's indices of the last repeat together hold exactly the plain index's
    live documents."""
    plain = index_documents(url, f"{last['plain']}-all")
    for config in ("routed", "routes_only"):
        routed: dict[str, dict] = {}
        for route in ("gold", "silver", "rest"):
            documents = index_documents(url, f"{last[config]}-{route}")
            assert not routed.keys() & documents.keys(), "a document in two routes' indices"
            routed.update(documents)
        if routed != plain:
            raise SystemExit(f"verify: {config}'s indices hold {len(routed)} documents, the plain one {len(plain)}")
    print(f"verified: {len(plain)} live documents, the same in the plain index and across the routes' indices: OK")


if __name__ == "__main__":
    main()
