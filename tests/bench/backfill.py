"""``make bench`` (backfill): items/s of ``consumer backfill`` against the same engine's raw ``_bulk``
ceiling in the same run, and the memory of ``consumer backfill`` and ``consumer audit`` for a small and
a large table.

The tables' Scan is served from memory by ``tests.bench.table_front`` (every other request goes to
moto: the stream, the lease table): moto scans at a few hundred items a second, which would make this
a benchmark of moto. Its own Scan rate is printed for the record.

* throughput: a table of ``--items`` items (~0.5 KB each, every DynamoDB type) is backfilled by the
  command, run as operators run it, into osmem-server and into a real OpenSearch node with the
  managed mapping; its rate is the one its summary prints (items over the scan's duration, process
  start-up left out). The ceiling POSTs the same documents, projected and serialised before timing,
  as ``_bulk`` bodies of 1000 into a fresh index set up the same way (the same indexing work). The
  ceiling runs once to warm the engine up (not counted), then alternates with the backfill
  (``--rounds`` of each, each backfill into a fresh index) and runs once more after the last; the best
  run of each counts. A node's ceiling moves by a third between two runs of one bench (its JVM still
  compiling, its merges), more than the backfill's distance from it: one run of each would measure
  that.
* memory: peak RSS (``VmHWM``) of ``consumer backfill`` and ``consumer audit`` for
  ``--small`` and ``--large`` items into a null OpenSearch (tests.bench.harness.NullSink), so the
  figure is the command's own memory whatever the engine keeps.

Prints figures and ratios; asserts nothing about speed. ``--smoke`` runs a tiny input on osmem.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from opensearchpy import OpenSearch

from consumer.pipeline.doc_ids import KeyAttribute, KeySchema
from consumer.pipeline.repair import repair_version, restore_item
from consumer.sink.index_setup import LIVE_FILTER
from tests.bench.harness import ENGINES, NullSink, engine, raw_bulk_rate
from tests.bench.synthetic import dynamodb_number
from tests.bench.table_front import TableFront
from tests.support.bulk_bodies import bulk_of
from tests.support.emulators import MotoServer, aws_env
from tests.support.factories import one_index
from tests.support.tables import create_table
from tests.support.worker_process import WorkerProcess, wait_until

SCHEMA = KeySchema((KeyAttribute("pk", "S"), KeyAttribute("sk", "N")))
SUMMARY = re.compile(r"this process: (\d+) items in \d+ s \(([\d,]+)/s\)")


def item(n: int, rng: random.Random) -> dict[str, Any]:
    """An item of about 0.5 KB using every DynamoDB type, in wire form (binary as base64 text)."""
    return {
        "pk": {"S": f"customer-{n % 997}"},
        "sk": {"N": str(n)},
        "status": {"S": rng.choice(["new", "paid", "shipped", "returned"])},
        "total": {"N": dynamodb_number(f"{rng.randrange(1, 100000) / 100}")},
        "note": {"S": " ".join(rng.choice(["fast", "gift", "fragile", "express", "bulk"]) for _ in range(30))},
        "paid": {"BOOL": rng.random() < 0.5},
        "coupon": {"NULL": True},
        "tags": {"SS": sorted({rng.choice(["a", "b", "c", "d", "e"]) for _ in range(3)})},
        "lines": {
            "L": [
                {"M": {"sku": {"S": f"sku-{rng.randrange(10**6)}"}, "qty": {"N": str(rng.randrange(1, 9))}}}
                for _ in range(3)
            ]
        },
        "blob": {"B": base64.b64encode(rng.randbytes(24)).decode()},
    }


def items(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [item(n, rng) for n in range(count)]


class Bench:
    """moto (the stream and the lease table), the table front serving the tables' Scan, a null sink."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.moto = MotoServer.start()
        self.front = TableFront(self.moto.url)
        self.null_sink = NullSink()
        self.ddb = boto3.client(
            "dynamodb",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )

    def table(self, name: str, content: list[dict[str, Any]]) -> None:
        """A table whose Scan gives ``content``, with the stream leases a backfill needs (a worker
        creates them at TRIM_HORIZON, then stops)."""
        create_table(self.ddb, name)
        self.front.add(name, content, ("pk", "sk"))
        worker = WorkerProcess(
            {**self.env(name, self.null_sink.url), "CDC_OPENSEARCH_INDEX": f"{name}-stream", "CDC_LOG_LEVEL": "INFO"},
            self.workdir / f"{name}-worker.log",
        )
        try:
            wait_until(lambda: worker.metric("cdc_leases_held") >= 1, timeout=120, what="stream leases")
        finally:
            worker.terminate()

    def moto_scan_rate(self, count: int) -> float:
        """moto's own Scan rate, for the record: ``count`` items written to it, then scanned."""
        create_table(self.ddb, "moto-scan")
        content = items(count, 3)
        for first in range(0, count, 25):
            batch = [{"PutRequest": {"Item": _boto3_item(i)}} for i in content[first : first + 25]]
            self.ddb.batch_write_item(RequestItems={"moto-scan": batch})
        started = time.perf_counter()
        for _ in self.ddb.get_paginator("scan").paginate(TableName="moto-scan", ConsistentRead=True):
            pass
        return count / (time.perf_counter() - started)

    def env(self, table: str, sink_url: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            **aws_env(self.front.url),
            "CDC_TABLE_NAME": table,
            "CDC_OPENSEARCH_URL": sink_url,
            "CDC_DEAD_LETTER_PATH": str(self.workdir / "dead-letters.jsonl"),
            "CDC_INITIAL_POSITION": "TRIM_HORIZON",
            "CDC_BACKFILL_MAX_READ_UNITS": "1000000",
            "CDC_LOG_LEVEL": "WARNING",
        }

    def command(self, env: dict[str, str], *args: str) -> tuple[str, int, float]:
        """Run ``consumer ARGS``; its stdout, peak RSS in bytes (``VmHWM``, read until it exits) and CPU
        seconds (user + system, start-up included). Its logs go to ``<workdir>/<command>.log``, their
        end into the error when it fails."""
        log_path = self.workdir / f"{args[0]}.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "consumer", *args], env=env, stdout=subprocess.PIPE, stderr=log_file, text=True
            )
        peak = [0]

        def watch() -> None:
            while process.poll() is None:
                with contextlib.suppress(OSError, ValueError, IndexError):  # gone, or a zombie without VmHWM
                    status = Path(f"/proc/{process.pid}/status").read_text()
                    peak[0] = max(peak[0], int(status.split("VmHWM:")[1].split()[0]) * 1024)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the only child waited for below is this one
        output, _ = process.communicate()
        watcher.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        if process.returncode not in (0, 3):
            logs = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"consumer {' '.join(args)} exited {process.returncode}: {output}\n{logs}")
        return output, peak[0], cpu

    def close(self) -> None:
        self.front.stop()
        self.null_sink.stop()
        self.moto.stop()


def _boto3_item(wire: dict[str, Any]) -> dict[str, Any]:
    return {name: {"B": base64.b64decode(value["B"])} if "B" in value else value for name, value in wire.items()}


def bulk_bodies(content: list[dict[str, Any]]) -> list[bytes]:
    """The documents a backfill writes for ``content``, pre-serialised as _bulk bodies of 1000."""
    version = repair_version(time.time() - 1)
    routing = one_index()
    actions = [action for raw in content if (action := restore_item(SCHEMA, raw, routing, version))]
    return [bulk_of("bench-ceiling", actions[i : i + 1000]) for i in range(0, len(actions), 1000)]


def ceiling(url: str, bodies: list[bytes], items: int, keep_index: bool = False) -> float:
    return raw_bulk_rate(url, "bench-ceiling", SCHEMA, bodies, items, keep_index)


def throughput(bench: Bench, table: str, content: list[dict[str, Any]], engines: list[str], rounds: int) -> None:
    bodies = bulk_bodies(content)
    for name in engines:
        index = f"bench-backfill-{name}"
        rates: list[float] = []
        ceilings: list[float] = []
        cpus: list[float] = []
        with engine(name) as server:
            url = server.url
            ceiling(url, bodies, len(content))  # a warm-up, not counted: a JVM compiles its hot code first
            for _ in range(rounds):
                ceilings.append(ceiling(url, bodies, len(content)))
                OpenSearch(hosts=[url]).indices.delete(index=index, ignore_unavailable=True)  # each run a fresh one
                output, _, cpu = bench.command(
                    {**bench.env(table, url), "CDC_OPENSEARCH_INDEX": index}, "backfill", "--restart"
                )
                match = SUMMARY.search(output)
                if not match or int(match.group(1)) != len(content):
                    raise RuntimeError(f"unexpected backfill summary: {output}")
                rates.append(float(match.group(2).replace(",", "")))
                cpus.append(cpu)
            ceilings.append(ceiling(url, bodies, len(content), keep_index=True))  # the last backfill's twin
            print(_verify(url, index, len(content)))
        rate, best = max(rates), max(ceilings)
        print(
            f"backfill into {name}: {len(content)} items, consumer backfill {rate:,.0f} items/s "
            f"(runs {', '.join(f'{r:,.0f}' for r in rates)}), raw _bulk ceiling {best:,.0f} items/s "
            f"(runs {', '.join(f'{c:,.0f}' for c in ceilings)}: one before each backfill, one after the last)"
        )
        print(f"  consumer backfill CPU: {min(cpus) / len(content) * 1e6:.0f} us per item (start-up included)")
        print(f"engine={name} backfill_ratio_vs_ceiling={rate / best:.3f} (goal >= 0.8; the best of each)")


def _verify(url: str, index: str, expected: int) -> str:
    """The backfilled index holds one live document per item, the same as the ceiling's index."""
    client = OpenSearch(hosts=[url])
    client.indices.refresh(index=f"{index},bench-ceiling")
    counts = [client.count(index=name, body={"query": LIVE_FILTER})["count"] for name in (index, "bench-ceiling")]
    if counts != [expected, expected]:
        raise RuntimeError(f"live documents: backfill {counts[0]}, ceiling {counts[1]}, items {expected}")
    probe = client.search(index=index, body={"size": 1, "sort": [{"_id": "asc"}]})["hits"]["hits"][0]
    twin = client.get(index="bench-ceiling", id=probe["_id"])
    if probe["_source"] != twin["_source"]:
        raise RuntimeError(f"document {probe['_id']} differs: {probe['_source']} vs {twin['_source']}")
    return f"  verified: {expected} live documents in each index, a sampled document identical: OK"


def memory(bench: Bench, tables: dict[str, int]) -> None:
    for table, items in tables.items():
        env = {**bench.env(table, bench.null_sink.url), "CDC_OPENSEARCH_INDEX": f"{table}-null"}
        _, backfill_rss, _ = bench.command(env, "backfill", "--restart")
        _, audit_rss, _ = bench.command(env, "audit")
        print(
            f"memory: {items:>7} items: consumer backfill peak RSS {backfill_rss / 2**20:.0f} MiB, "
            f"consumer audit peak RSS {audit_rss / 2**20:.0f} MiB"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--engine", choices=["osmem", "opensearch", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=2, help="ceiling and backfill runs, alternating")
    parser.add_argument("--smoke", action="store_true", help="a tiny input on osmem (make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.items, args.small, args.large, args.engine, args.rounds = 1500, 500, 1500, "osmem", 1
    sys.stdout.reconfigure(line_buffering=True)
    engines = list(ENGINES) if args.engine == "both" else [args.engine]
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as workdir:
        bench = Bench(Path(workdir))
        try:
            print(f"moto's own Scan: {bench.moto_scan_rate(min(args.items, 2000)):,.0f} items/s (not used below)")
            content = items(args.items, 7)
            bench.table("orders", content)
            throughput(bench, "orders", content, engines, args.rounds)
            sizes = {"small": args.small, "large": args.large}
            for name, count in sizes.items():
                bench.table(name, items(count, 11))
            memory(bench, sizes)
        finally:
            bench.close()


if __name__ == "__main__":
    main()
