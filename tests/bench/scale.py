"""``make bench-scale``: one worker and many shards, on the test-side stream server, moto (the lease
table) and OpenSearch; every figure measured against its baseline in the same run. Sections:

* ``hot-path``: consumer CPU per record end to end (GetRecords → decode → version → project →
  serialise → ``_bulk`` answer) in a worker process reading into a null OpenSearch that acknowledges
  at once, against a naive batched reference consumer (``tests.bench.naive_consumer``) on the same
  records: CPU time of each process from its first read to its last write.
* ``catch-up``: one shard with a backlog drained by a worker, against the engine's raw ``_bulk``
  ceiling in the same run: the same documents, pre-serialised, POSTed one GetRecords page at a time
  (the pages the stream serves the worker: 1000 records or 1 MB), each into a fresh index deleted once
  measured. The ceiling is measured until two runs agree within 5 % (the node warms up for minutes),
  then again after the worker, and the two are averaged. On a real OpenSearch node by default:
  osmem's cost per request grows with its index (200k records of this input take it ~10 minutes), so
  on osmem this section measures osmem (``--catch-up-engine osmem``; the smoke run uses it).
* ``pool``: four workers over ``--pool-shards`` shards (4000): time to balance (max − min ≤ 1) from a
  cold start and after each restart of a rolling restart, then, over a quiet window, owner changes,
  each worker's coordinator tick p99 (a histogram bucket bound), CPU and RSS. Its lease table is the
  in-memory DynamoDB (``tests.support.memory_dynamodb``, held to moto by the contract tests) in a
  process of its own, so that the workers are measured and not moto, at DynamoDB's default failover
  of 10 s; ``--pool-lease-table moto`` runs it on moto (at most about 1000 shards and a 30 s failover).
* ``shards``: one worker and N open shards (a fifth with traffic): time to hold every lease, then a
  steady window: RSS, CPU, threads, GetRecords/s, lease-table reads and writes per second, leases
  lost or stolen, and how long a new change takes to be searchable (p50/p99); idle GetRecords per
  idle shard per minute, against the fixed poll the worker used before (one per poll interval).

moto answers a few hundred lease-table writes a second, so the ``shards`` section's worker runs with a
failover of 30 s (renewals every 10 s): on DynamoDB the default 10 s works at this scale. Prints its figures and the
ratios; asserts nothing about speed. ``--smoke`` runs every section on a tiny input (``make test``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from opensearchpy import OpenSearch

from consumer.pipeline.records import StreamRecord
from consumer.pipeline.versioning import next_version
from tests.bench.harness import ENGINES, NullSink, cores_apart, engine, raw_bulk_rate, sample
from tests.bench.synthetic import KEY_SCHEMA, SyntheticStream
from tests.support.bulk_bodies import bulk_of
from tests.support.emulators import MotoServer, aws_env, start_osmem
from tests.support.factories import single_action
from tests.support.memory_dynamodb import MemoryDynamoDBProcess
from tests.support.stream_model import StreamModel
from tests.support.stream_server import StreamServer
from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table
from tests.support.worker_process import WorkerProcess, wait_until

TABLE = "orders"


class Bench:
    """The emulators of one run, and the worker processes it starts."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.moto = MotoServer.start()
        self.streams = StreamServer.start()
        self.ddb = boto3.client(
            "dynamodb",
            endpoint_url=self.moto.url,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )
        self.workers: list[WorkerProcess] = []
        self._tables = 0
        self._memory: MemoryDynamoDBProcess | None = None

    def lease_table_calls(self) -> dict[str, int]:
        """The calls the in-memory DynamoDB answered so far, by operation (none before it starts)."""
        return {} if self._memory is None else self._memory.calls()

    def memory_dynamodb(self) -> str:
        """The URL of an in-memory DynamoDB in front of moto (started on first use): lease tables
        created through it live in its memory; the source tables stay in moto."""
        if self._memory is None:
            self._memory = MemoryDynamoDBProcess.start(self.moto.url)
        return self._memory.url

    def stream(self, shards: int) -> tuple[str, str]:
        """A fresh table (in moto, for its key schema) and a stream-server stream of ``shards`` shards."""
        self._tables += 1
        table = f"{TABLE}{self._tables}"
        create_table(self.ddb, table)
        return table, self.streams.create_stream(table, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=shards)

    def worker(self, table: str, arn: str, sink_url: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(
            {
                **aws_env(self.moto.url),
                "CDC_STREAM_ARN": arn,
                "CDC_OPENSEARCH_INDEX": table,
                "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": self.streams.url,
                "CDC_OPENSEARCH_URL": sink_url,
                "CDC_DEAD_LETTER_PATH": str(self.workdir / "dead-letters.jsonl"),
                "CDC_WORKER_ID": f"bench-{len(self.workers)}",
                **env,
            },
            self.workdir / f"worker-{len(self.workers)}.log",
        )
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self._memory is not None:
            self._memory.stop()
        self.streams.stop()
        self.moto.stop()


def hot_path(bench: Bench, records: int) -> None:
    """Consumer CPU per record against the naive reference, on the same records; and the same
    worker with CPython's default garbage collector thresholds (``consumer.runtime.garbage_collection``)."""
    synthetic = SyntheticStream(11).records(records)
    sink = NullSink()
    try:
        _, arn = _hot_path_stream(bench, synthetic)
        naive = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.bench.naive_consumer",
                "--stream-arn",
                arn,
                "--endpoint",
                bench.streams.url,
                "--sink",
                sink.url,
                "--records",
                str(records),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if naive.returncode != 0:
            raise SystemExit(f"the naive reference failed: {naive.stderr[-2000:]}")
        reference = json.loads(naive.stdout.strip().splitlines()[-1])
        ours = _worker_cpu_per_record(bench, synthetic, sink.url)
        default_collector = _worker_cpu_per_record(bench, synthetic, sink.url, CDC_GC_YOUNG_THRESHOLD="0")
    finally:
        sink.stop()
    theirs = reference["cpu_seconds"] / reference["records"] * 1e6
    print(
        f"hot path: {records} records of ~1.3 KB on 4 shards, null sink. consumer {ours:.0f} us CPU/record "
        f"({default_collector:.0f} with CPython's default collector thresholds); naive reference "
        f"(boto3 get_records + TypeDeserializer + orjson, one _bulk per page) {theirs:.0f} us/record"
    )
    print(f"hot_path_ratio={ours / theirs:.3f} (goal <= 0.5)")


def _hot_path_stream(bench: Bench, synthetic: list[dict[str, Any]]) -> tuple[str, str]:
    table, arn = bench.stream(4)
    for record in synthetic:
        bench.streams.append(arn, record)
    return table, arn


def _worker_cpu_per_record(bench: Bench, synthetic: list[dict[str, Any]], sink_url: str, **env: str) -> float:
    """A worker's CPU time per record, in µs, to apply ``synthetic`` written to a stream it already
    reads (so that its start-up is not counted, and a small input is not over before the first sample)."""
    table, arn = bench.stream(4)
    worker = bench.worker(table, arn, sink_url, **env)
    wait_until(lambda: worker.metric("cdc_shard_tasks") == 4, timeout=120, what="every shard read")
    before = sample(worker.process.pid)
    with bench.streams.stream(arn).all_at_once():  # a backlog, read in full pages as before
        for record in synthetic:
            bench.streams.append(arn, record)
    wait_until(lambda: worker.metric("cdc_records_processed_total") >= len(synthetic), timeout=1800, what="all applied")
    after = sample(worker.process.pid)
    worker.terminate()
    return (after.cpu_seconds - before.cpu_seconds) / len(synthetic) * 1e6


def catch_up(bench: Bench, records: int, engine_name: str, shared_cores: bool) -> None:
    """One shard's backlog drained by a worker, against the engine's raw _bulk ceiling in the same run."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(engine(engine_name))
        placement = "engine and consumer share every core"
        if not shared_cores:
            placement = stack.enter_context(cores_apart(server.pid, [bench.moto.process.pid]))
        table, arn = bench.stream(1)
        synthetic = SyntheticStream(13).records(records)
        for record in synthetic:
            bench.streams.append(arn, record)
        index = f"{table}-ceiling"
        bodies = _ceiling_bodies(bench.streams.stream(arn), index)
        before = _warm_ceiling(server.url, index, bodies, records)
        worker = bench.worker(table, arn, server.url, CDC_PARALLELIZATION_FACTOR="1")
        wait_until(lambda: worker.metric("cdc_records_read_total") > 0, timeout=120, what="first read")
        started = time.perf_counter()
        wait_until(lambda: worker.metric("cdc_records_processed_total") >= records, timeout=3600, what="drained")
        drained = time.perf_counter() - started
        rate = records / drained
        bulks = worker.metric("cdc_bulk_request_duration_seconds_count")
        bulk_seconds = worker.metric("cdc_bulk_request_duration_seconds_sum")
        worker.terminate()
        OpenSearch(hosts=[server.url]).indices.delete(index=table)  # as each ceiling's index: no merges left behind
        after = raw_bulk_rate(server.url, index, KEY_SCHEMA, bodies, records)
    ceiling_rate = (before + after) / 2  # the node's speed drifts between runs; the two bracket the worker's
    print(
        f"catch-up: {records} records backlog on one shard into {engine_name} ({placement}): worker {rate:,.0f} rec/s, "
        f"raw _bulk ceiling {ceiling_rate:,.0f} rec/s (mean of {before:,.0f} before the worker and {after:,.0f} after)"
    )
    print(
        f"  where the worker's time went: {bulks:.0f} _bulk requests of {records / max(bulks, 1):.0f} records, "
        f"{1000 * bulk_seconds / max(bulks, 1):.0f} ms each on average (the ceiling's: "
        f"{1000 * records / max(bulks, 1) / ceiling_rate:.0f} ms), {100 * bulk_seconds / drained:.0f} % of the drain"
    )
    print(f"catch_up_ratio={rate / ceiling_rate:.3f} (goal >= 0.85)")


def _warm_ceiling(url: str, index: str, bodies: list[bytes], records: int, attempts: int = 8) -> float:
    """The ceiling once the engine is warm: measured again until two runs in a row agree within 5 %
    (a JVM on one core compiles its hot code over minutes, not seconds), at most ``attempts`` times."""
    rates = [raw_bulk_rate(url, index, KEY_SCHEMA, bodies, records)]
    while len(rates) < attempts:
        rates.append(raw_bulk_rate(url, index, KEY_SCHEMA, bodies, records))
        if abs(rates[-1] - rates[-2]) <= 0.05 * rates[-2]:
            break
    print(f"  ceiling while warming up: {', '.join(f'{rate:,.0f}' for rate in rates)} rec/s")
    return rates[-1]


def _ceiling_bodies(stream: StreamModel, index: str) -> list[bytes]:
    """The same documents as the worker sends, as pre-serialised _bulk bodies, one GetRecords page
    each: the engine's ceiling POSTs them into a fresh index set up exactly as the worker's (the same
    mapping: the same indexing work)."""
    bodies, version = [], 0
    for page in _pages(stream):
        actions = []
        for raw in page:
            record = StreamRecord.from_wire(raw)
            version = next_version(version, record.approximate_second)
            actions.append(single_action(record, KEY_SCHEMA, version))
        bodies.append(bulk_of(index, actions))
    return bodies


def _pages(stream: StreamModel) -> Iterator[list[dict[str, Any]]]:
    """The one shard's records as GetRecords serves them from its start."""
    (shard,) = stream.shards()
    position: int | None = stream.iterator_position(shard.shard_id, "TRIM_HORIZON", None)
    while position is not None:
        page = stream.read(shard.shard_id, position)
        if not page.records:
            return
        yield page.records
        position = page.next_position


def shards(bench: Bench, count: int, window: float, probes: int, threads: int) -> None:
    """One worker holding ``count`` shards, a fifth with traffic: leases, footprint, visibility, idle cost."""
    osmem = start_osmem()
    try:
        table, arn = bench.stream(count)
        worker = bench.worker(
            table,
            arn,
            osmem.url,
            CDC_FAILOVER_SECONDS="30",
            CDC_POLL_INTERVAL_SECONDS="1",
            CDC_MAX_RECORDS_PER_READ="1000",
            CDC_SHARD_THREADS=str(threads),
        )
        started = time.perf_counter()
        wait_until(lambda: worker.metric("cdc_leases_held") == count, timeout=600, what="every lease held")
        held_after = time.perf_counter() - started
        wait_until(lambda: worker.metric("cdc_shard_tasks") == count, timeout=300, what="every shard read")
        busy = random.Random(5).sample([s.shard_id for s in bench.streams.shards(arn)], count // 5)
        stop = threading.Event()
        writer = threading.Thread(target=_traffic, args=(bench, arn, busy, stop), daemon=True)
        writer.start()
        time.sleep(min(10.0, window / 4))  # settle: the busy shards' idle backoff snaps back
        before, metrics_before = sample(worker.process.pid), _counters(worker)
        reads_before = bench.streams.stats(arn).get_records_by_shard
        window_started = time.perf_counter()
        visibility, probed = _visibility(bench, arn, osmem.url, table, probes, window)
        after, metrics_after = sample(worker.process.pid), _counters(worker)
        reads_after = bench.streams.stats(arn).get_records_by_shard
        elapsed = time.perf_counter() - window_started  # at least ``window``: probes wait to be seen
        stop.set()
        worker.terminate()
    finally:
        osmem.close()
    idle = [s for s in reads_after if s not in busy and s not in probed]
    idle_per_minute = statistics.mean(reads_after[s] - reads_before.get(s, 0) for s in idle) * 60 / elapsed
    rate = {name: (metrics_after[name] - metrics_before[name]) / elapsed for name in metrics_after}
    print(
        f"shards: 1 worker, {count} open shards ({len(busy)} with traffic), {threads} shard threads. All leases held after {held_after:.0f} s. "
        f"Steady window {elapsed:.0f} s: RSS {after.rss_bytes / 2**20:.0f} MiB, CPU {100 * (after.cpu_seconds - before.cpu_seconds) / elapsed:.0f} % of a core, "
        f"{after.threads} threads, GetRecords {rate['get_records']:.0f}/s, lease table: {rate['lease_reads']:.1f} reads/s "
        f"(scans) and {rate['lease_writes']:.1f} writes/s, leases lost {metrics_after['lost'] - metrics_before['lost']:.0f}, "
        f"stolen {metrics_after['stolen'] - metrics_before['stolen']:.0f}"
    )
    print(
        f"visibility (change written → searchable, {len(visibility)} probes): p50 {statistics.median(visibility):.2f} s, "
        f"p99 {_p99(visibility):.2f} s (goal <= 2 x CDC_POLL_INTERVAL_SECONDS + one bulk = ~2.1 s)"
    )
    print(f"idle cost: {idle_per_minute:.1f} GetRecords per idle shard per minute (fixed 1 s poll before: 60.0)")


def pool(bench: Bench, count: int, workers: int, window: float, failover: float, lease_table: str) -> None:
    """``workers`` workers over ``count`` shards: time to balance, a rolling restart, then a quiet
    window counting owner changes; each worker's coordinator tick p99 from its histogram, its CPU and RSS."""
    sink = NullSink()
    env = {
        "CDC_FAILOVER_SECONDS": f"{failover:g}",
        "CDC_POLL_INTERVAL_SECONDS": "1",
        "CDC_SHARD_SYNC_INTERVAL_SECONDS": "30",
    }
    if lease_table == "memory":
        env["AWS_ENDPOINT_URL_DYNAMODB"] = bench.memory_dynamodb()
    try:
        table, arn = bench.stream(count)
        running = [bench.worker(table, arn, sink.url, **env) for _ in range(workers)]
        started = time.perf_counter()
        wait_until(lambda: _balanced(running, count), timeout=900, what="a balanced pool")
        balanced_after = time.perf_counter() - started
        restarts = []
        for n in range(workers):  # rolling restart: each worker in turn, the next once the pool is balanced again
            running[n].terminate()
            running[n] = bench.worker(table, arn, sink.url, **env)
            began = time.perf_counter()
            wait_until(lambda: _balanced(running, count), timeout=900, what="balanced after a restart")
            restarts.append(time.perf_counter() - began)
        moves_before = sum(_moves(worker) for worker in running)
        ticks_before = [_tick_buckets(worker) for worker in running]
        logs_before = [worker.log_path.stat().st_size for worker in running]
        samples_before = [sample(worker.process.pid) for worker in running]
        calls_before = bench.lease_table_calls()
        quiet_started = time.perf_counter()
        time.sleep(window)
        samples_after = [sample(worker.process.pid) for worker in running]
        calls_after = bench.lease_table_calls()
        quiet = time.perf_counter() - quiet_started
        moves = sum(_moves(worker) for worker in running) - moves_before
        slow = [_slow_ticks(worker, offset) for worker, offset in zip(running, logs_before, strict=True)]
        held = [worker.metric("cdc_leases_held") for worker in running]
        ticks = [
            _p99_bound(_tick_buckets(worker), before) for worker, before in zip(running, ticks_before, strict=True)
        ]
        for worker in running:
            worker.terminate()
    finally:
        sink.stop()
    print(
        f"pool: {workers} workers, {count} shards, lease table {_LEASE_TABLES[lease_table]}, failover {failover:g} s: "
        f"balanced (max - min <= 1) {balanced_after:.0f} s after a cold start (goal <= 60 s); "
        f"after each restart of a rolling restart: {', '.join(f'{t:.0f}' for t in restarts)} s; then {window:.0f} s "
        f"with {moves:.0f} owner changes (goal 0); leases held {sorted(held)}; coordinator tick p99 in that window, per worker "
        f"{', '.join(f'{t:.2f}' for t in ticks)} s (goal: under a third of the tick's period, {failover / 9:.1f} s)"
    )
    if lease_table == "memory":
        rate = {op: (calls_after.get(op, 0) - calls_before.get(op, 0)) / quiet for op in calls_after}
        writes = sum(rate.get(op, 0.0) for op in ("PutItem", "UpdateItem", "DeleteItem"))
        reads = sum(rate.get(op, 0.0) for op in ("GetItem", "Scan"))
        print(f"  lease table in that window: {writes:.0f} writes/s, {reads:.1f} reads/s (GetItem and Scan pages)")
    for number, (before, after, ticks) in enumerate(zip(samples_before, samples_after, slow, strict=True)):
        worst = max(ticks, key=lambda tick: tick["seconds"], default=None)
        print(
            f"  worker {number}: CPU {100 * (after.cpu_seconds - before.cpu_seconds) / quiet:.0f} % of a core, "
            f"RSS {after.rss_bytes / 2**20:.0f} MiB, {after.threads} threads; "
            f"{len(ticks)} ticks over a third of the period in that window"
            + (f"; the slowest {worst['seconds']:.2f} s, by step (s): {worst['steps']}" if worst else "")
        )


_LEASE_TABLES = {"memory": "in memory (tests.support.memory_dynamodb)", "moto": "on moto"}


def _balanced(workers: list[WorkerProcess], count: int) -> bool:
    held = [worker.metric("cdc_leases_held") for worker in workers]
    return sum(held) == count and max(held) - min(held) <= 1


def _moves(worker: WorkerProcess) -> float:
    return sum(
        worker.metric(f'cdc_lease_events_total{{event="{event}"}}') for event in ("taken", "taken_expired", "stolen")
    )


def _slow_ticks(worker: WorkerProcess, offset: int) -> list[dict[str, Any]]:
    """The worker's ``coordinator_tick_slow`` log events past byte ``offset`` of its log."""
    with open(worker.log_path, "rb") as log:
        log.seek(offset)
        lines = log.read().splitlines()
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "coordinator_tick_slow":
                events.append(event)
    return events


def _tick_buckets(worker: WorkerProcess) -> dict[float, float]:
    """The coordinator tick histogram so far: bucket bound → ticks that took at most that long."""
    return {
        float(name.split('le="')[1].split('"')[0]): value
        for name, value in worker.metrics().items()
        if name.startswith("cdc_coordinator_tick_duration_seconds_bucket{")
    }


def _p99_bound(after: dict[float, float], before: dict[float, float]) -> float:
    """The 0.99 quantile of the ticks between two histogram readings: the smallest bucket bound
    holding 99 % of them."""
    window = sorted((bound, value - before.get(bound, 0.0)) for bound, value in after.items())
    total = window[-1][1] if window else 0
    return next((bound for bound, value in window if value >= 0.99 * total), float("nan"))


def _traffic(bench: Bench, arn: str, busy: list[str], stop: threading.Event) -> None:
    """About 200 changes a second spread over the busy shards."""
    model = bench.streams.stream(arn)
    rng = random.Random(9)
    while not stop.is_set():
        for _ in range(20):
            shard = rng.choice(busy)
            keys = _keys_on(model, shard, rng)
            bench.streams.put_change(arn, "MODIFY", keys, new_image={**keys, "n": {"N": str(rng.randrange(10**6))}})
        stop.wait(0.1)


def _keys_on(model: Any, shard: str, rng: random.Random) -> dict[str, Any]:
    while True:
        keys = {"pk": {"S": f"k-{rng.randrange(10**9)}"}, "sk": {"N": "1"}}
        if model.shard_for(keys) == shard:
            return keys


def _visibility(
    bench: Bench, arn: str, url: str, table: str, probes: int, window: float
) -> tuple[list[float], set[str]]:
    """Seconds from writing a change to any shard until it is searchable, ``probes`` times over
    ``window``; and the shards written to."""
    client = OpenSearch(hosts=[url])
    model = bench.streams.stream(arn)
    shards_all = [s.shard_id for s in bench.streams.shards(arn)]
    rng = random.Random(3)
    seen, probed = [], set()
    deadline = time.perf_counter() + window
    for number in range(probes):
        shard = rng.choice(shards_all)
        probed.add(shard)
        keys = _keys_on(model, shard, rng)
        written = time.perf_counter()
        bench.streams.put_change(arn, "INSERT", keys, new_image={**keys, "probe": {"N": str(number)}})
        doc_id = f"{keys['pk']['S']}|1"
        while not client.exists(index=table, id=doc_id):
            time.sleep(0.02)
        seen.append(time.perf_counter() - written)
        time.sleep(max(0.0, (deadline - time.perf_counter()) / max(1, probes - number)))
    return seen, probed


def _counters(worker: WorkerProcess) -> dict[str, float]:
    samples = worker.metrics()

    def total(*prefixes: str) -> float:  # summed over the labels after the prefix (outcome)
        return sum(value for name, value in samples.items() if name.startswith(prefixes))

    return {
        "get_records": total("cdc_get_records_total{"),
        "lease_reads": total('cdc_aws_requests_total{operation="scan",'),
        "lease_writes": total(
            *(f'cdc_aws_requests_total{{operation="{op}",' for op in ("update_item", "put_item", "delete_item"))
        ),
        "lost": total('cdc_lease_events_total{event="lost"}'),
        "stolen": total('cdc_lease_events_total{event="stolen"}'),
    }


def _p99(values: list[float]) -> float:
    return max(values) if len(values) < 100 else statistics.quantiles(values, n=100)[98]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="hot-path,catch-up,shards,pool")
    parser.add_argument("--pool-workers", type=int, default=4)
    parser.add_argument("--pool-window", type=float, default=300.0)
    parser.add_argument("--pool-shards", type=int, default=4000)
    parser.add_argument(
        "--pool-lease-table",
        choices=sorted(_LEASE_TABLES),
        default="memory",
        help="where the pool's lease table lives (moto: at most about 1000 shards, with --pool-failover 30)",
    )
    parser.add_argument("--pool-failover", type=float, default=10.0, help="CDC_FAILOVER_SECONDS of the pool section")
    parser.add_argument("--hot-records", type=int, default=40_000)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--catch-up-engine", choices=ENGINES, default="opensearch")
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="catch-up: let the engine and the consumer share every core (default: the engine on a core of its own)",
    )
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--shard-threads", type=int, default=16, help="CDC_SHARD_THREADS of the shards section")
    parser.add_argument("--smoke", action="store_true", help="every section on a tiny input (make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.hot_records, args.backlog, args.shards, args.window, args.probes = 2000, 3000, 20, 5.0, 5
        args.pool_workers, args.pool_window, args.pool_failover, args.catch_up_engine = 2, 5.0, 6.0, "osmem"
        args.pool_shards = 20
    sys.stdout.reconfigure(line_buffering=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as workdir:
        bench = Bench(Path(workdir))
        try:
            sections = args.sections.split(",")
            if "hot-path" in sections:
                hot_path(bench, args.hot_records)
            if "catch-up" in sections:
                catch_up(bench, args.backlog, args.catch_up_engine, args.shared_cores)
            if "shards" in sections:
                shards(bench, args.shards, args.window, args.probes, args.shard_threads)
            if "pool" in sections:
                pool(
                    bench,
                    args.pool_shards,
                    args.pool_workers,
                    args.pool_window,
                    args.pool_failover,
                    args.pool_lease_table,
                )
        finally:
            bench.close()


if __name__ == "__main__":
    main()
