"""``make bench``: records/s of decode → version → bulk into OpenSearch, against two baselines, on each
engine: osmem-server and a real OpenSearch 2.19 node (512 MiB heap, one shard, no replica).

* (a) the path: ``BatchProcessor.process`` over GetRecords-sized batches, threading the returned
  version into the next call, with the service's own client: each page prepared, then sent.
* (a') the same path as a shard task in catch-up runs it: each page prepared while the page before it
  is in flight (``apply``'s ``while_in_flight``, consumer.shards.task), so our CPU and OpenSearch's
  overlap as they do in a worker with a backlog.
* (b) naive: the same decode and version, then one ``index()`` / ``delete()`` per record (on a
  subset, to bound the run time).
* (c) ceiling: the same bulk bodies, serialised before timing, POSTed as they are.
* (p) parse: the same records as GetRecords answers carry them (at most 1000 records and 1 MB an
  answer), each read as a worker reads it (``consumer.shards.raw_records.read_answer``: images left
  as text); (p') the same answers parsed whole by orjson (``json_client.parse_answer``), as every
  answer was before. (a) and (a') start from the records as (p) leaves them, read before timing; a
  worker reads every page first, so our CPU per record is reported with and without (p).

Records are generated before any timing (tests.bench.synthetic), in the form a worker parses from
GetRecords' JSON (binary as base64 text, times as Unix seconds), and as the answers' bytes for (p). Every measurement writes into a
freshly created index with the same mapping; (a), (a') and (c) alternate so drift hits them alike,
and the best of the repeats counts. Each engine's run ends by checking that (a) and (a') indexed
exactly what (c) did (live documents counted through the read alias's filter: deletes are
tombstones), then prints ``engine=… ratio_vs_ceiling=… pipelined_ratio_vs_ceiling=… ratio_vs_naive=…
cpu_ratio_vs_server=… cpu_with_parse_ratio_vs_server=…``. It asserts nothing about speed. ``--smoke`` runs
a tiny input once on osmem (``make test`` does, so the benchmark cannot rot unnoticed).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import gc
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import urllib3
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError
from prometheus_client import CollectorRegistry

from consumer.aws.json_client import parse_answer
from consumer.config import Settings
from consumer.observability.logging import configure_logging
from consumer.observability.metrics import Metrics
from consumer.pipeline.bulk import BulkAction
from consumer.pipeline.records import StreamRecord
from consumer.pipeline.versioning import next_version
from consumer.runtime.clients import opensearch_client
from consumer.runtime.garbage_collection import tune_collector
from consumer.shards.raw_records import read_answer
from consumer.sink.dlq import DeadLetterFile
from consumer.sink.index_setup import LIVE_FILTER
from consumer.sink.opensearch import OpenSearchSink
from consumer.sink.processor import BatchProcessor, PreparedBatch
from tests.bench.harness import ENGINES, Engine, engine
from tests.bench.synthetic import KEY_SCHEMA, SyntheticStream, as_wire
from tests.support.bulk_bodies import bulk_of
from tests.support.factories import single_action

T = TypeVar("T")
BATCH_SIZE = 1000  # GetRecords returns at most 1000 records
SHARD_ID = "shardId-00000001718000000000-bench0001"
PATH_INDEX, NAIVE_INDEX, CEILING_INDEX = "bench-path", "bench-naive", "bench-ceiling"
PIPELINED_INDEX = "bench-pipelined"
ANSWER_BYTES = 1_000_000  # a GetRecords answer stops at 1 MB or at its limit, 1000 records
ANSWER_TYPE = "application/x-amz-json-1.0"
# The whole item is kept in _source; the fields people search are mapped. osmem-server analyses
# dynamically mapped text at ~0.6k docs/s, which would make this a benchmark of its analyser.
INDEX_BODY = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
        "dynamic": False,
        "properties": {
            "pk": {"type": "keyword"},
            "sk": {"type": "long"},
            "status": {"type": "keyword"},
            "_cdc_deleted": {"type": "boolean"},
        },
    },
}


@dataclass(frozen=True)
class Run:
    """One timed run: wall seconds, and CPU seconds spent by this process and by osmem-server."""

    seconds: float
    client_cpu: float
    server_cpu: float | None  # None where /proc is unavailable


@dataclass(frozen=True)
class Measurement:
    """Repeated runs over the same records; the fastest one counts."""

    label: str
    records: int
    runs: list[Run]

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def best_rate(self) -> float:
        return self.records / self.best.seconds

    @property
    def median_rate(self) -> float:
        return self.records / statistics.median(run.seconds for run in self.runs)

    def per_record_us(self, seconds: float | None) -> str:
        return "n/a" if seconds is None else f"{seconds / self.records * 1e6:.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--naive-records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine", choices=["osmem", "opensearch", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="a tiny input, once, on osmem (make test)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.records, args.naive_records, args.repeats, args.engine = 3000, 300, 1, "osmem"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the server is stopped
    sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with osmem-server's stderr
    configure_logging("WARNING")  # as the service would run: record-level debug events filtered

    started = time.perf_counter()
    stream = SyntheticStream(args.seed)
    records = as_wire(stream.records(args.records))
    batches = [records[i : i + BATCH_SIZE] for i in range(0, len(records), BATCH_SIZE)]
    bodies = [bulk_of(CEILING_INDEX, actions) for actions in _versioned_batches(batches)]
    answers = _answers(records)
    read = [raw for answer in answers for raw in read_answer("GetRecords", answer, ANSWER_TYPE)["Records"]]
    pages = [read[i : i + BATCH_SIZE] for i in range(0, len(read), BATCH_SIZE)]  # as (a) and (a') take them
    _describe_input(records, batches, bodies, answers, time.perf_counter() - started)
    # The pre-generated input (~0.6 GB of dicts) is a bench artefact: a consumer holds one page at a
    # time. Freezing it keeps the garbage collector from re-scanning it on every full collection.
    gc.collect()
    gc.freeze()
    tune_collector(Settings.model_fields["gc_young_threshold"].default)  # the collector as a worker sets it

    for name in ENGINES if args.engine == "both" else (args.engine,):
        with engine(name) as server:
            print(f"engine {name}: {server.describe}")
            client = opensearch_client(Settings(opensearch_url=server.url, table_name="bench"))
            path, pipelined, ceiling, naive, parse, whole = _measure(
                server, client, pages, bodies, answers, records, args
            )
            for index in (PATH_INDEX, PIPELINED_INDEX):
                print(_verify(client, index, stream.live_items))
        _report(name, path, pipelined, naive, ceiling, parse, whole, time.perf_counter() - started)


def _measure(
    server: Engine,
    client: OpenSearch,
    pages: list,
    bodies: list[bytes],
    answers: list[bytes],
    records: list,
    args: argparse.Namespace,
) -> tuple[Measurement, Measurement, Measurement, Measurement, Measurement, Measurement]:
    pool = urllib3.PoolManager(maxsize=1).connection_from_url(server.url)
    path_runs: list[Run] = []
    pipelined_runs: list[Run] = []
    ceiling_runs: list[Run] = []
    parse_runs: list[Run] = []
    whole_runs: list[Run] = []
    for repeat in range(1, args.repeats + 1):
        run, responses = _timed(client, CEILING_INDEX, server.pid, lambda: _post_bodies(pool, bodies))
        _check_ceiling(responses)
        ceiling_runs.append(run)
        run, outcomes = _timed(client, PATH_INDEX, server.pid, lambda: _run_path(client, PATH_INDEX, pages))
        _check_path(outcomes, len(records))
        path_runs.append(run)
        run, outcomes = _timed(
            client, PIPELINED_INDEX, server.pid, lambda: _run_pipelined(client, PIPELINED_INDEX, pages)
        )
        _check_path(outcomes, len(records))
        pipelined_runs.append(run)
        parse_runs.append(_timed_parse(read_answer, answers, len(records)))
        whole_runs.append(_timed_parse(parse_answer, answers, len(records)))
        print(
            f"  repeat {repeat}: ceiling {ceiling_runs[-1].seconds:.2f} s, path {path_runs[-1].seconds:.2f} s, "
            f"pipelined {pipelined_runs[-1].seconds:.2f} s, parse {parse_runs[-1].seconds:.2f} s "
            f"(whole {whole_runs[-1].seconds:.2f} s)"
        )
    subset = records[: args.naive_records]
    naive_run, _ = _timed(client, NAIVE_INDEX, server.pid, lambda: _run_naive(client, subset))
    print(f"  naive: {naive_run.seconds:.2f} s for {len(subset)} records")
    return (
        Measurement("(a) path: BatchProcessor.process, 1000/batch", len(records), path_runs),
        Measurement("(a') path, next page prepared in flight", len(records), pipelined_runs),
        Measurement("(c) ceiling: raw POST _bulk, pre-serialised", len(records), ceiling_runs),
        Measurement(f"(b) naive: index()/delete() each [first {len(subset)}]", len(subset), [naive_run]),
        Measurement(f"(p) read: {len(answers)} GetRecords answers", len(records), parse_runs),
        Measurement("(p') the same answers parsed whole", len(records), whole_runs),
    )


def _timed(client: OpenSearch, index: str, server_pid: int, run: Callable[[], T]) -> tuple[Run, T]:
    """How long ``run`` takes against a freshly created ``index``, and what it returned."""
    client.indices.delete(index=index, ignore_unavailable=True)
    client.indices.create(index=index, body=INDEX_BODY)
    server_cpu = _cpu_seconds(server_pid)
    client_cpu = time.process_time()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_after = _cpu_seconds(server_pid)
    server_cpu = None if server_cpu is None or server_after is None else server_after - server_cpu
    return Run(seconds, client_cpu, server_cpu), result


def _timed_parse(read: Callable[[str, bytes, str], dict[str, Any]], answers: list[bytes], expected: int) -> Run:
    """(p) or (p'): each answer read by ``read``, its records then dropped (a worker drops a page once
    it is settled). Nothing else runs: all its time is this process's CPU."""
    parsed = 0
    client_cpu = time.process_time()
    started = time.perf_counter()
    for body in answers:
        parsed += len(read("GetRecords", body, ANSWER_TYPE)["Records"])
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    if parsed != expected:
        raise SystemExit(f"parse: {parsed} of {expected} records in the answers")
    return Run(seconds, client_cpu, None)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_path(
    client: OpenSearch, index: str, batches: list[list[dict[str, Any]]]
) -> collections.Counter[tuple[str, str]]:
    """What a shard consumer does with each GetRecords page, minus reading and checkpointing."""
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    with _processor(client, index) as processor:
        stop = threading.Event()
        version = 0
        for batch in batches:
            result = processor.process(SHARD_ID, batch, version, stop)
            version = result.version
            outcomes.update(result.outcomes)
    return outcomes


def _run_pipelined(
    client: OpenSearch, index: str, batches: list[list[dict[str, Any]]]
) -> collections.Counter[tuple[str, str]]:
    """As ``_run_path``, with each page prepared while the one before it is in flight, from the clock
    value that page ends at, as a shard task in catch-up does (``ShardTask``: ``_prepare_prefetched``),
    which also lets go of the page settled before in that flight (freeing a page's objects is CPU work)."""
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    with _processor(client, index) as processor:
        stop = threading.Event()
        prepared = processor.prepare(SHARD_ID, batches[0], 0)
        settled: list[PreparedBatch] = []
        for following in [*batches[1:], None]:
            ahead: list[PreparedBatch] = []
            work = (
                None
                if following is None
                else functools.partial(_prepare_into, ahead, settled, processor, following, prepared)
            )
            result = processor.apply(prepared, stop, work)
            outcomes.update(result.outcomes)
            if following is None:
                break
            settled[:] = [prepared]  # at most one page held: the one before it is gone if the work did not run
            # the work may not have run (consumer.sink.in_flight): then it is done now
            prepared = ahead[0] if ahead else processor.prepare(SHARD_ID, following, result.version)
    return outcomes


def _prepare_into(ahead: list, settled: list, processor: BatchProcessor, page: list, before: PreparedBatch) -> None:
    settled.clear()
    ahead.append(processor.prepare(SHARD_ID, page, before.version))


@contextlib.contextmanager
def _processor(client: OpenSearch, index: str) -> Iterator[BatchProcessor]:
    metrics = Metrics(CollectorRegistry())
    with tempfile.TemporaryDirectory() as tmp:
        dead_letters = DeadLetterFile(Path(tmp) / "dead-letters.jsonl")
        processor = BatchProcessor(KEY_SCHEMA, OpenSearchSink(client, index, metrics), dead_letters, metrics)
        try:
            yield processor
        finally:
            processor.close()


def _check_path(outcomes: collections.Counter[tuple[str, str]], expected: int) -> None:
    applied = sum(n for (_, outcome), n in outcomes.items() if outcome == "applied")
    if applied != expected:
        raise SystemExit(f"path: {applied} of {expected} records applied: {dict(outcomes)}")


def _post_bodies(pool: urllib3.HTTPConnectionPool, bodies: list[bytes]) -> list[tuple[int, bytes]]:
    responses = []
    for body in bodies:
        response = pool.urlopen("POST", "/_bulk", body=body, headers={"Content-Type": "application/x-ndjson"})
        responses.append((response.status, response.data))
    return responses


def _check_ceiling(responses: list[tuple[int, bytes]]) -> None:
    for status, data in responses:
        if status != 200 or orjson.loads(data)["errors"]:
            raise SystemExit(f"ceiling: _bulk failed: {status} {data[:300]!r}")


def _run_naive(client: OpenSearch, records: list[dict[str, Any]]) -> None:
    version = 0
    for raw in records:
        record = StreamRecord.from_wire(raw)
        version = next_version(version, record.approximate_second)
        action = single_action(record, KEY_SCHEMA, version)
        params = {"version": action.version, "version_type": "external"}
        try:
            if action.op == "delete":
                client.delete(index=NAIVE_INDEX, id=action.doc_id, params=params)
            else:
                client.index(index=NAIVE_INDEX, id=action.doc_id, body=action.document, params=params)
        except (ConflictError, NotFoundError):
            pass  # stale, or deleting a missing document: an outcome, not an error


def _versioned_batches(batches: list[list[dict[str, Any]]]) -> list[list[BulkAction]]:
    version = 0
    out = []
    for batch in batches:
        actions = []
        for raw in batch:
            record = StreamRecord.from_wire(raw)
            version = next_version(version, record.approximate_second)
            actions.append(single_action(record, KEY_SCHEMA, version))
        out.append(actions)
    return out


def _verify(client: OpenSearch, index: str, live_items: int, sample: int = 500) -> str:
    """A path's ``index`` must hold exactly what the ceiling's does: same ids, sources and versions."""
    client.indices.refresh(index=f"{index},{CEILING_INDEX}")
    live = {"query": LIVE_FILTER}  # deletes are tombstone documents: count what the read alias shows
    path_count = client.count(index=index, body=live)["count"]
    ceiling_count = client.count(index=CEILING_INDEX, body=live)["count"]
    hits = client.search(index=CEILING_INDEX, body={"size": 10_000, "_source": False})["hits"]["hits"]
    ids = random.Random(0).sample([hit["_id"] for hit in hits], min(sample, len(hits)))
    path_docs = client.mget(index=index, body={"ids": ids})["docs"]
    ceiling_docs = client.mget(index=CEILING_INDEX, body={"ids": ids})["docs"]
    same = sum(
        p.get("found") and (p["_source"], p["_version"]) == (c["_source"], c["_version"])
        for p, c in zip(path_docs, ceiling_docs, strict=True)
    )
    ok = path_count == ceiling_count == live_items and same == len(ids)
    verdict = "OK" if ok else "MISMATCH"
    line = (
        f"verify {index}: docs path={path_count} ceiling={ceiling_count} expected_live_items={live_items}; "
        f"{same}/{len(ids)} sampled docs identical in _source and _version: {verdict}"
    )
    if not ok:
        raise SystemExit(line)
    return line


def _answers(records: list[dict[str, Any]]) -> list[bytes]:
    """The records as GetRecords answers carry them: in order, at most 1000 records and about 1 MB an
    answer (``ANSWER_BYTES``), each ending with its next iterator."""
    iterator = b"arn:aws:dynamodb:eu-west-1:000000000000:table/bench/stream/2024-06-01T00:00:00.000|1|" + b"A" * 120
    answers: list[bytes] = []
    texts: list[bytes] = []
    size = 0
    for record in records:
        text = orjson.dumps(record)
        if texts and (len(texts) == BATCH_SIZE or size + len(text) > ANSWER_BYTES):
            answers.append(_answer(texts, iterator))
            texts, size = [], 0
        texts.append(text)
        size += len(text) + 1
    if texts:
        answers.append(_answer(texts, iterator))
    return answers


def _answer(texts: list[bytes], iterator: bytes) -> bytes:
    return b'{"Records":[' + b",".join(texts) + b'],"NextShardIterator":"' + iterator + b'"}'


def _describe_input(records: list, batches: list, bodies: list[bytes], answers: list[bytes], seconds: float) -> None:
    events = collections.Counter(r["eventName"] for r in records)
    images = [r["dynamodb"]["SizeBytes"] for r in records if "NewImage" in r["dynamodb"]]
    mix = " / ".join(f"{name} {events[name]}" for name in ("INSERT", "MODIFY", "REMOVE"))
    print(
        f"input: {len(records)} records ({mix}) in {len(batches)} batches of {BATCH_SIZE}; "
        f"mean SizeBytes {statistics.mean(images):.0f}, mean _bulk body {statistics.mean(map(len, bodies)) / 1e6:.2f} MB; "
        f"as {len(answers)} GetRecords answers of {len(records) / len(answers):.0f} records and "
        f"{statistics.mean(map(len, answers)) / 1e6:.2f} MB on average ({sum(map(len, answers)) / len(records):,.0f} "
        f"bytes a record); generated in {seconds:.1f} s (not timed)"
    )


def _report(
    engine: str,
    path: Measurement,
    pipelined: Measurement,
    naive: Measurement,
    ceiling: Measurement,
    parse: Measurement,
    whole: Measurement,
    wall: float,
) -> None:
    print()
    print(
        f"{'measurement':<48} {'records':>7} {'runs':>4} {'best rec/s':>10} {'median rec/s':>12} "
        f"{'wall us/rec':>11} {'bench CPU':>9} {'server CPU':>10}"
    )
    for m in (path, pipelined, naive, ceiling, parse, whole):
        best = m.best
        print(
            f"{m.label:<48} {m.records:>7} {len(m.runs):>4} {m.best_rate:>10,.0f} {m.median_rate:>12,.0f} "
            f"{m.per_record_us(best.seconds):>11} {m.per_record_us(best.client_cpu):>9} "
            f"{m.per_record_us(best.server_cpu):>10}"
        )
    print("(CPU columns: us per record in the best run; bench CPU is this process: decode, encode, HTTP client)")
    vs_ceiling = path.best_rate / ceiling.best_rate
    pipelined_vs_ceiling = pipelined.best_rate / ceiling.best_rate
    vs_naive = path.best_rate / naive.best_rate
    print(
        f"goal: path >= 0.85 x ceiling: {'met' if vs_ceiling >= 0.85 else 'NOT met'} "
        f"(prepared in flight, as in catch-up: {'met' if pipelined_vs_ceiling >= 0.85 else 'NOT met'}); "
        f"path >= 10 x naive: {'met' if vs_naive >= 10 else 'NOT met'} "
        f"(best runs; ceiling is {ceiling.best_rate / naive.best_rate:.1f} x naive); bench wall {wall:.0f} s"
    )
    server_cpu = path.best.server_cpu
    with_parse = path.best.client_cpu + parse.best.client_cpu  # both over the same records
    cpu_vs_server = "n/a" if not server_cpu else f"{path.best.client_cpu / server_cpu:.3f}"
    with_parse_vs_server = "n/a" if not server_cpu else f"{with_parse / server_cpu:.3f}"
    print(
        f"goal: our CPU per record <= 0.5 x the server's in the same run: "
        f"{'n/a' if not server_cpu else 'met' if path.best.client_cpu <= 0.5 * server_cpu else 'NOT met'}; "
        f"with the GetRecords answers' parse ({path.per_record_us(with_parse)} us a record): "
        f"{'n/a' if not server_cpu else 'met' if with_parse <= 0.5 * server_cpu else 'NOT met'}"
    )
    print(
        f"engine={engine} ratio_vs_ceiling={vs_ceiling:.3f} pipelined_ratio_vs_ceiling={pipelined_vs_ceiling:.3f} "
        f"ratio_vs_naive={vs_naive:.2f} cpu_ratio_vs_server={cpu_vs_server} "
        f"cpu_with_parse_ratio_vs_server={with_parse_vs_server} "
        f"read_vs_whole_parse_cpu={parse.best.client_cpu / whole.best.client_cpu:.3f}"
    )


if __name__ == "__main__":
    main()
