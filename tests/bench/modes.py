"""``make bench`` (modes): the native worker and the KCL MultiLangDaemon running our processor, side
by side: records per second and CPU per record on the same backlog, and memory by shard count.

* Drain: each mode in turn reads the same backlog (``--records`` synthetic records of ~1.3 KB, every
  DynamoDB type, on ``--shards`` shards of the test-side stream server, from TRIM_HORIZON) into its own
  null sink: an HTTP server answering like an OpenSearch that accepts everything at once, so what is
  measured is the consumer, not an engine. Records/s from the sink's first action to its last; CPU of
  the process tree (the worker; the JVM and every child) over that span, per record. Lease tables on
  moto.
* Memory: the RSS of each tree at the end of its drain; then for each of ``--memory-shards`` (idle
  shards), each mode leases every shard and its tree's RSS is read. The daemon runs one child process
  per shard: it is measured up to ``--kcl-max-children`` shards; beyond that its figure is
  extrapolated from its last measured JVM and per-child RSS, and printed as such.

Prints ``native_vs_kcl_records_per_second=`` and ``native_vs_kcl_cpu_per_record=``; asserts nothing
about speed. ``--smoke`` (``make test``): the native drain of a small backlog on two shards only; the
daemon's start is what the lease-units smoke runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.harness import NullSink, sample
from tests.bench.synthetic import SyntheticStream
from tests.support.emulators import MotoServer, aws_env, emulator_client, free_port
from tests.support.kcl_daemon import QUICK_ASSIGNMENT, KclDaemon, build_launcher
from tests.support.kcl_daemon_side import kcl_env
from tests.support.stream_server import StreamServer
from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table
from tests.support.worker_process import WorkerProcess, wait_until

TABLE = "orders"
# The native worker polls a shard that answered empty as the shipped daemon properties do (500 ms)
QUICK_POLLS = {"CDC_POLL_INTERVAL_SECONDS": "0.5", "CDC_IDLE_POLL_MAX_SECONDS": "0.5"}


@dataclass(frozen=True)
class Drain:
    records: int
    seconds: float  # the sink's first action to its last
    cpu_seconds: float  # the process tree's, over that span

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.records * 1e6


@dataclass(frozen=True)
class Footprint:
    shards: int
    rss_bytes: int  # the whole tree
    processes: int
    root_rss_bytes: int  # the worker, or the JVM

    @property
    def per_child(self) -> float:
        return (self.rss_bytes - self.root_rss_bytes) / max(1, self.processes - 1)


def tree(root: int) -> list[int]:
    """``root`` and every live descendant process (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            parents.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in parents.get(pid, [])]
        found += frontier
    return found


def tree_cpu(root: int) -> float:
    return sum(_sampled(pid, lambda s: s.cpu_seconds) for pid in tree(root))


def footprint(root: int, shards: int) -> Footprint:
    pids = tree(root)
    rss = [_sampled(pid, lambda s: s.rss_bytes) for pid in pids]
    return Footprint(shards, int(sum(rss)), len(pids), int(rss[0]))


def _sampled(pid: int, field: Callable[[Any], float]) -> float:
    try:
        return field(sample(pid))
    except OSError:
        return 0.0  # exited between the listing and the read


class Run:
    """The emulators of one run, the launcher's classpath, and the processes it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.classpath = build_launcher(workdir / "build.log")
        self.moto, self.streams = MotoServer.start(), StreamServer.start()
        self.ddb = emulator_client("dynamodb", self.moto.url)
        create_table(self.ddb, TABLE)
        self._streams = 0

    def stream(self, shards: int, records: list[dict[str, Any]]) -> str:
        arn = self.streams.create_stream(TABLE, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=shards)
        for record in records:
            self.streams.append(arn, record)
        self._streams += 1
        return arn

    @contextmanager
    def native(self, arn: str, sink: NullSink, **env: str) -> Iterator[WorkerProcess]:
        worker = WorkerProcess(
            {
                **aws_env(self.moto.url),
                "CDC_TABLE_NAME": TABLE,
                "CDC_STREAM_ARN": arn,
                "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": self.streams.url,
                "CDC_LEASE_TABLE": f"native-leases-{self._streams}",
                "CDC_OPENSEARCH_URL": sink.url,
                "CDC_OPENSEARCH_INDEX": TABLE,
                "CDC_WORKER_ID": "native-1",
                "CDC_METRICS_PORT": str(free_port()),
                "CDC_DEAD_LETTER_PATH": str(self.workdir / "native-dead-letters.jsonl"),
                **env,
            },
            self.workdir / f"native-{self._streams}.log",
        )
        try:
            yield worker
        finally:
            worker.stop()

    @contextmanager
    def daemon(self, arn: str, sink: NullSink) -> Iterator[KclDaemon]:
        application = f"kcl-{self._streams}"
        children = {
            **kcl_env(self.moto.url, TABLE, sink.url, None, self.workdir / "kcl-dead-letters.jsonl"),
            "CDC_STREAM_ARN": arn,
            "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": self.streams.url,
            "CDC_OPENSEARCH_INDEX": TABLE,
        }
        daemon = KclDaemon.shipped(
            self.classpath,
            children,
            self.workdir / f"daemon-{self._streams}.log",
            arn,
            application,
            self.moto.url,
            self.streams.url,
            *QUICK_ASSIGNMENT,
        )
        try:
            yield daemon
        finally:
            daemon.kill()  # measured: its graceful shutdown (up to 25 s) is not
            daemon.stop()

    def close(self) -> None:
        self.streams.stop()
        self.moto.stop()


def drain(sink: NullSink, root: int, records: int, shards: int, timeout: float) -> tuple[Drain, Footprint]:
    """From the sink's first action (a page already applied) to its ``records``-th: the records applied
    meanwhile, the time, and the tree's CPU; then the tree's memory, with its ``shards`` leased."""
    wait_until(lambda: sink.actions > 0, timeout, "the first action", interval=0.02)
    started, cpu_before, applied_before = time.perf_counter(), tree_cpu(root), sink.actions
    wait_until(lambda: sink.actions >= records, timeout, f"{records} actions", interval=0.02)
    seconds, cpu = time.perf_counter() - started, tree_cpu(root) - cpu_before
    return Drain(records - applied_before, seconds, cpu), footprint(root, shards)


def drains(run: Run, shards: int, records: list[dict[str, Any]], kcl: bool) -> dict[str, tuple[Drain, Footprint]]:
    measured = {}
    sink = NullSink()
    try:
        with run.native(run.stream(shards, records), sink, **QUICK_POLLS) as worker:
            measured["native worker"] = drain(sink, worker.process.pid, len(records), shards, 600)
    finally:
        sink.stop()
    if kcl:
        sink = NullSink()
        try:
            with run.daemon(run.stream(shards, records), sink) as daemon:
                measured["KCL daemon + children"] = drain(sink, daemon.process.pid, len(records), shards, 900)
        finally:
            sink.stop()
    return measured


def native_footprint(run: Run, shards: int) -> Footprint:
    sink = NullSink()
    try:
        with run.native(run.stream(shards, []), sink, CDC_FAILOVER_SECONDS="30") as worker:
            wait_until(lambda: worker.metric("cdc_shard_tasks") == shards, 900, f"{shards} shards read", interval=1)
            time.sleep(5)  # every shard polled a few times
            return footprint(worker.process.pid, shards)
    finally:
        sink.stop()


def kcl_footprint(run: Run, shards: int) -> Footprint:
    sink = NullSink()
    try:
        with run.daemon(run.stream(shards, []), sink) as daemon:
            wait_until(lambda: len(tree(daemon.process.pid)) > shards, 900, f"{shards} children", interval=1)
            time.sleep(5)  # every child initialised
            return footprint(daemon.process.pid, shards)
    finally:
        sink.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--memory-shards", default="100,1000", help="comma-separated shard counts")
    parser.add_argument("--kcl-max-children", type=int, default=100, help="measure the daemon up to this many")
    parser.add_argument("--smoke", action="store_true", help="the native drain of 2000 records on 2 shards only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.records, args.shards, args.memory_shards = 2000, 2, ""
    counts = [int(count) for count in args.memory_shards.split(",") if count]
    records = SyntheticStream(seed=11).records(args.records)
    run = Run(Path(tempfile.mkdtemp(prefix="modes-bench-")))
    try:
        measured = drains(run, args.shards, records, kcl=not args.smoke)
        print(
            f"drain: a backlog of {args.records} records of ~1.3 KB on {args.shards} shards into a null sink, each "
            f"mode alone (KCL 3.1.3 daemon, one `consumer kcl-processor` child per shard); from the first page "
            f"applied to the last"
        )
        for name, (rate, memory) in measured.items():
            print(
                f"  {name:<22} {rate.records:>7} records in {rate.seconds:6.2f} s: {rate.rate:>8,.0f} records/s, "
                f"{rate.cpu_us:>6,.0f} us CPU/record; {memory.processes} processes, RSS {memory.rss_bytes / 2**20:,.0f} MiB"
            )
        if args.smoke:
            print("smoke: the daemon's half is not run (its start is the lease-units smoke's)")
            return
        (native, _), (kcl, kcl_memory) = measured.values()
        print(
            f"native_vs_kcl_records_per_second={native.rate / kcl.rate:.2f} "
            f"native_vs_kcl_cpu_per_record={native.cpu_us / kcl.cpu_us:.3f}"
        )
        for count in counts:
            ours = native_footprint(run, count)
            if count <= args.kcl_max_children:
                kcl_memory = kcl_footprint(run, count)
                kcl_rss = kcl_memory.rss_bytes
                how = (
                    f"measured: the JVM and {kcl_memory.processes - 1} child processes (one a shard, and any being "
                    f"started) of {kcl_memory.per_child / 2**20:.0f} MiB on average"
                )
            else:
                kcl_rss = int(kcl_memory.root_rss_bytes + count * kcl_memory.per_child)
                how = (
                    f"extrapolated from {kcl_memory.shards} shards: JVM {kcl_memory.root_rss_bytes / 2**20:.0f} MiB + "
                    f"{count} x {kcl_memory.per_child / 2**20:.0f} MiB a child"
                )
            print(
                f"memory, {count} idle shards: native worker {ours.rss_bytes / 2**20:,.0f} MiB (measured) | "
                f"KCL daemon {kcl_rss / 2**20:,.0f} MiB ({how}) | native_vs_kcl_memory={ours.rss_bytes / kcl_rss:.3f}"
            )
    finally:
        run.close()


if __name__ == "__main__":
    main()
