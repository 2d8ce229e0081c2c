"""``make bench`` (reindex): the time ``consumer reindex`` takes to rebuild a table into a new index
generation, next to ``consumer backfill`` of the same table alone in the same run, and the reads each
shard of the stream takes while one and then two generations are written.

The table's Scan is served from memory by ``tests.bench.table_front`` (moto scans a few hundred items
a second); the stream and the lease tables are moto's. The front counts every request the workers
and commands send, so the stream's reads are counted on the wire.

1. A worker of the first configuration (``CDC_INDEX_GENERATIONS=on``) makes generation 1; ``consumer
   backfill`` fills it: the backfill alone.
2. A writer rewrites items of the table (the same content: the audit still agrees with the Scan)
   for a window: ``GetRecords`` per shard per second with one generation; then an idle window.
3. A worker of a second configuration (``CDC_DROP_FIELDS=note``) starts and refuses to write
   generation 1; ``consumer reindex`` builds generation 2 (fill, catch-up, proof, swap) as operators
   run it. Its summary line gives each step's time.
4. The same two windows with both generations written (the live one and the previous one, each by
   its own worker and lease table): the extra load on the stream.

Verifies that the live alias then serves every item in the new shape. Prints figures and ratios;
asserts nothing about speed. ``--smoke`` runs a tiny input on osmem.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from opensearchpy import OpenSearch

from consumer.sink.index_setup import LIVE_FILTER
from tests.bench.backfill import SUMMARY, Bench, _boto3_item, items
from tests.bench.harness import ENGINES, engine
from tests.support.tables import create_table
from tests.support.worker_process import WorkerProcess, wait_until

TABLE = "orders"
GET_RECORDS = "DynamoDBStreams_20120810.GetRecords"
LIVE = re.compile(r"generation 2 is live after ([\d,.]+) s \(([^)]*)\)")
WRITES_PER_SECOND = 20


class Rewriter(threading.Thread):
    """Puts items of ``content`` back into the table, unchanged, ``WRITES_PER_SECOND`` a second: stream
    traffic that leaves the table's content as the front's Scan serves it."""

    def __init__(self, ddb: Any, content: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self._ddb, self._content = ddb, content
        self.halt = threading.Event()
        self._random = random.Random(5)

    def run(self) -> None:
        while not self.halt.wait(1 / WRITES_PER_SECOND):
            item = self._random.choice(self._content)
            self._ddb.put_item(TableName=TABLE, Item=_boto3_item(item))


def reads_per_shard(bench: Bench, content: list[dict[str, Any]], shards: int, seconds: float) -> tuple[float, float]:
    """GetRecords per shard per second over a busy window (the rewriter on), then an idle one."""
    rates = []
    for busy in (True, False):
        writer = Rewriter(bench.ddb, content)
        if busy:
            writer.start()
        before = bench.front.calls[GET_RECORDS]
        time.sleep(seconds)
        rates.append((bench.front.calls[GET_RECORDS] - before) / shards / seconds)
        if busy:
            writer.halt.set()
            writer.join()
    return rates[0], rates[1]


def stream_shards(moto_url: str) -> int:
    streams = boto3.client(
        "dynamodbstreams",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    arn = streams.list_streams(TableName=TABLE)["Streams"][0]["StreamArn"]
    return len(streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"])


def run(bench: Bench, content: list[dict[str, Any]], name: str, window: float) -> None:
    with engine(name) as server:
        index = f"reindex-{name}"
        first = {
            **bench.env(TABLE, server.url),
            "CDC_OPENSEARCH_INDEX": index,
            "CDC_LEASE_TABLE": f"{index}-leases",  # each engine's run starts from no lease at all
            "CDC_INDEX_GENERATIONS": "on",
            "CDC_GENERATION_CHECK_SECONDS": "1",
            "CDC_RETRY_MAX_DELAY_SECONDS": "2",
            "CDC_LOG_LEVEL": "INFO",
        }
        second = {**first, "CDC_DROP_FIELDS": "note"}
        workers = [WorkerProcess(first, bench.workdir / f"{index}-first.log")]
        try:
            wait_until(lambda: workers[0].probe("/readyz")[0] == 200, 120, "the first worker ready")
            started = time.monotonic()
            output, _, _ = bench.command(first, "backfill")
            backfill_seconds = time.monotonic() - started
            match = SUMMARY.search(output)
            if not match or int(match.group(1)) != len(content):
                raise RuntimeError(f"unexpected backfill summary: {output}")
            shards = stream_shards(bench.moto.url)
            one = reads_per_shard(bench, content, shards, window)

            workers.append(WorkerProcess(second, bench.workdir / f"{index}-second.log"))
            wait_until(lambda: "consumer reindex" in workers[1].probe("/readyz")[1], 120, "the second worker's refusal")
            started = time.monotonic()
            output, _, _ = bench.command(second, "reindex")
            reindex_seconds = time.monotonic() - started
            live = LIVE.search(output)
            if not live:
                raise RuntimeError(f"unexpected reindex summary: {output}")
            wait_until(lambda: workers[1].probe("/readyz")[0] == 200, 120, "the second worker ready")
            two = reads_per_shard(bench, content, shards, window)
            print(_verify(server.url, f"{index}-live", len(content)))
        finally:
            for worker in workers:
                worker.terminate()
    print(
        f"reindex on {name}: {len(content):,} items: consumer backfill alone {backfill_seconds:,.1f} s "
        f"({match.group(2)} items/s); consumer reindex {reindex_seconds:,.1f} s ({live.group(2)})"
    )
    print(f"engine={name} reindex_vs_backfill_time_ratio={reindex_seconds / backfill_seconds:.2f}")
    print(
        f"stream reads on {name} ({shards} shard, {WRITES_PER_SECOND} writes/s when busy): one generation "
        f"{one[0]:.2f} GetRecords/shard/s busy, {one[1]:.2f} idle; two generations {two[0]:.2f} busy, {two[1]:.2f} idle; "
        f"readers per shard 1 -> 2 (DynamoDB Streams throttles above 2)"
    )
    print(f"engine={name} two_generations_reads_ratio busy={two[0] / one[0]:.2f} idle={two[1] / max(one[1], 1e-9):.2f}")


def _verify(url: str, alias: str, expected: int) -> str:
    """The live alias serves generation 2: one live document per item, none with the dropped field."""
    client = OpenSearch(hosts=[url])
    client.indices.refresh(index=alias)
    served = set(client.indices.get_alias(name=alias))
    count = client.count(index=alias, body={"query": LIVE_FILTER})["count"]
    with_note = client.count(index=alias, body={"query": {"exists": {"field": "note"}}})["count"]
    if not all(name.endswith("-g2") for name in served) or count != expected or with_note:
        raise RuntimeError(
            f"{alias}: indices {sorted(served)}, {count} live documents of {expected}, {with_note} with note"
        )
    return f"  verified: {alias} serves generation 2, {count} live documents, none with the dropped field: OK"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--window", type=float, default=20.0, help="seconds of each stream-read window")
    parser.add_argument("--engine", choices=["osmem", "opensearch", "both"], default="opensearch")
    parser.add_argument("--smoke", action="store_true", help="a tiny input on osmem (make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.items, args.window, args.engine = 1500, 2.0, "osmem"
    sys.stdout.reconfigure(line_buffering=True)
    engines = list(ENGINES) if args.engine == "both" else [args.engine]
    with tempfile.TemporaryDirectory(prefix="bench-reindex-") as workdir:
        bench = Bench(Path(workdir))
        try:
            content = items(args.items, 7)
            create_table(bench.ddb, TABLE)
            bench.front.add(TABLE, content, ("pk", "sk"))
            for name in engines:
                run(bench, content, name, args.window)
        finally:
            bench.close()


if __name__ == "__main__":
    main()
