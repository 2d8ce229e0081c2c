"""``make bench`` (lease units): what the lease tables cost, in DynamoDB capacity units per shard-hour,
for the native workers and for the Java KCL daemon running our processor, on the same stream, in the
same run.

One stream of the test-side stream server (``--shards`` open shards), read by one native worker and by
one KCL daemon (its shipped properties, ``metricsLevel = NONE`` since there is no CloudWatch here),
each with its own lease table(s) on moto behind ``tests.support.table_facade``, which bills every call
as DynamoDB would (``tests.support.capacity``). Both write into osmem-server, each its own index.

1. Both start; the measurement waits until every shard is leased and checkpointed by each.
2. Busy window: a writer appends ``--rate`` changes a second spread over every shard.
3. Idle window: no changes (after the last ones are applied).

For each mode and window: read and write units per shard-hour on its tables (the KCL's three: the
lease table, ``-CoordinatorState`` and ``-WorkerMetricStats``; its children's version clock rides on
its lease items, so their writes count too), and native ÷ KCL. Verifies that both indices hold the
last state of every item written. Asserts nothing about cost. ``--smoke`` runs two shards for a few
seconds per window.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulators import MotoServer, aws_env, emulator_client, free_port, start_osmem
from tests.support.kcl_daemon import QUICK_ASSIGNMENT, KclDaemon, build_launcher
from tests.support.kcl_daemon_side import kcl_env
from tests.support.stream_server import StreamServer
from tests.support.table_facade import Bill, TableFacade
from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table, index_documents
from tests.support.worker_process import WorkerProcess, wait_until

TABLE = "orders"
NATIVE_LEASES = "orders-native-leases"
KCL_APPLICATION = "orders-kcl"
KCL_TABLES = (KCL_APPLICATION, f"{KCL_APPLICATION}-CoordinatorState", f"{KCL_APPLICATION}-WorkerMetricStats")


class Writer(threading.Thread):
    """Appends ``rate`` changes a second, to random items (so to every shard), until halted."""

    def __init__(self, streams: StreamServer, arn: str, rate: float, items: int) -> None:
        super().__init__(daemon=True)
        self._streams, self._arn, self._rate, self._items = streams, arn, rate, items
        self.halt = threading.Event()
        self.state: dict[str, int] = {}  # pk → the last value written
        self._random = random.Random(7)

    def run(self) -> None:
        count = 0
        while not self.halt.wait(1.0 / self._rate):
            pk = f"item-{self._random.randrange(self._items)}"
            count += 1
            keys = {"pk": {"S": pk}, "sk": {"N": "1"}}
            image = {**keys, "n": {"N": str(count)}, "note": {"S": "x" * 200}}
            event = "MODIFY" if pk in self.state else "INSERT"
            self._streams.put_change(self._arn, event, keys, new_image=image)
            self.state[pk] = count


def per_shard_hour(
    bills: list[Bill], tables: tuple[str, ...], start: float, end: float, shards: int
) -> tuple[float, float]:
    """(read units, write units) per shard-hour billed to ``tables`` between ``start`` and ``end``."""
    window = [bill for bill in bills if start <= bill.at < end and bill.table in tables]
    scale = 3600.0 / (end - start) / shards
    return sum(bill.read_units for bill in window) * scale, sum(bill.write_units for bill in window) * scale


def leased_and_checkpointed(ddb: Any, table: str, shards: int) -> bool:
    try:
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return False
    ready = [item for item in items if "leaseOwner" in item and item["checkpoint"]["S"].isdigit()]
    return len(ready) == shards


def measure(label: str, seconds: float, bills: list[Bill], shards: int, report: Callable[[str], None]) -> None:
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    native = per_shard_hour(bills, (NATIVE_LEASES,), start, end, shards)
    kcl = per_shard_hour(bills, KCL_TABLES, start, end, shards)
    ratio = (native[0] + native[1]) / (kcl[0] + kcl[1]) if kcl[0] + kcl[1] else float("inf")
    report(
        f"{label:<5} native: {native[0]:8,.0f} read + {native[1]:8,.0f} write units per shard-hour | "
        f"KCL: {kcl[0]:8,.0f} read + {kcl[1]:8,.0f} write | native_vs_kcl={ratio:.3f} "
        f"(reads {native[0] / kcl[0] if kcl[0] else float('inf'):.3f}, "
        f"writes {native[1] / kcl[1] if kcl[1] else float('inf'):.3f})"
    )


def run(shards: int, rate: float, window: float, report: Callable[[str], None], smoke: bool = False) -> None:
    work = Path(tempfile.mkdtemp(prefix="lease-units-"))
    classpath = build_launcher(work / "build.log")
    moto, osmem, streams = MotoServer.start(), start_osmem(), StreamServer.start()
    front = TableFacade(moto.url)
    native: WorkerProcess | None = None
    daemon: KclDaemon | None = None
    writer: Writer | None = None
    try:
        ddb = emulator_client("dynamodb", moto.url)
        create_table(ddb, TABLE)
        arn = streams.create_stream(TABLE, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=shards)
        common = {"CDC_STREAM_ARN": arn, "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": streams.url}
        native = WorkerProcess(
            {
                **aws_env(front.url),
                **common,
                "CDC_TABLE_NAME": TABLE,
                "CDC_LEASE_TABLE": NATIVE_LEASES,
                "CDC_OPENSEARCH_URL": osmem.url,
                "CDC_OPENSEARCH_INDEX": "orders-native",
                "CDC_WORKER_ID": "native-1",
                "CDC_METRICS_PORT": str(free_port()),
                "CDC_DEAD_LETTER_PATH": str(work / "native-dead-letters.jsonl"),
            },
            work / "native.log",
        )
        children = {
            **kcl_env(front.url, TABLE, osmem.url, None, work / "kcl-dead-letters.jsonl"),
            **common,
            "CDC_OPENSEARCH_INDEX": "orders-kcl",
        }
        quick = QUICK_ASSIGNMENT if smoke else ()  # the smoke's bill does not count: a quick start does
        daemon = KclDaemon.shipped(
            classpath, children, work / "daemon.log", arn, KCL_APPLICATION, front.url, streams.url, *quick
        )
        writer = Writer(streams, arn, rate, items=shards * 50)
        writer.start()
        started = time.monotonic()
        for table in (NATIVE_LEASES, KCL_APPLICATION):
            wait_until(lambda table=table: leased_and_checkpointed(ddb, table, shards), 300, f"{table} to lease all")
        report(
            f"lease units: {shards} shards, one native worker and one KCL daemon (KCL 3.1.3, failover 10 s "
            f"each), both leasing every shard after {time.monotonic() - started:.0f} s; {rate:g} changes/s when busy"
        )
        measure("busy", window, front.bills, shards, report)
        writer.halt.set()
        writer.join()
        expected = {f"{pk}|1": value for pk, value in writer.state.items()}
        for index in ("orders-native", "orders-kcl"):
            wait_until(
                lambda index=index: (
                    {doc: body["n"] for doc, body in index_documents(osmem.url, index).items()} == expected
                ),
                120,
                f"{index} to hold the last state of every item",
            )
        report(f"verified: both indices hold the last state of all {len(expected)} items: OK")
        measure("idle", window, front.bills, shards, report)
    finally:
        if writer is not None:
            writer.halt.set()
        if daemon is not None:
            daemon.kill()  # measured: its graceful shutdown (up to 25 s) is not
            daemon.stop()
        if native is not None:
            native.stop()
        front.stop()
        streams.stop()
        osmem.close()
        moto.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--rate", type=float, default=40.0, help="changes a second while busy, over all shards")
    parser.add_argument("--window", type=float, default=120.0, help="seconds each window is measured")
    parser.add_argument("--smoke", action="store_true", help="two shards, short windows")
    args = parser.parse_args()
    if args.smoke:
        args.shards, args.rate, args.window = 2, 10.0, 8.0
    run(args.shards, args.rate, args.window, lambda line: print(line, flush=True), args.smoke)


if __name__ == "__main__":
    main()
