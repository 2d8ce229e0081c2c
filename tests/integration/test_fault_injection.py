"""Whatever fails, wherever: faults injected at every seam of running workers, over random histories.

Hypothesis draws a history — changes to a few items (puts, deletes, re-inserts), poison records (a
value that is no number, a document no index can hold), shard splits, workers replaced — and a
fault rate. Two in-process workers (``tests.support.in_process``) read the test-side stream server's
stream (moto holds their lease table) into OpenSearch, while ``tests.support.faults`` raises at
random, at every seam (GetRecords and its parsing, projection, ``_bulk`` and its answer, checkpoint
and renewal writes, lease reads, credential retrieval, dead-letter writes), the failures each seam
is known for and failures nobody anticipated. Then the faults stop. Properties, on both engines:

* the live index equals the table (every valid item, nothing else);
* the dead-letter file holds exactly the poison records: nothing valid is dead-lettered;
* no checkpoint is ever written past an unsettled record: at the moment of every checkpoint write
  of a shard at S, the index already holds, for each item, a state at least as new as its last
  change in that shard at or before S;
* no worker died, and none reports itself alive (``/healthz``) while a routine of it is dead.

``make test`` runs a few examples per engine; ``CDC_FAULT_INJECTION_EXAMPLES=200`` runs a long one.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from consumer.leases.model import SHARD_END
from consumer.leases.table import LeaseTable
from tests.support.emulators import aws_env
from tests.support.factories import unindexable_image
from tests.support.faults import Injector
from tests.support.in_process import InProcessWorker, start_worker
from tests.support.tables import COMPOSITE_KEY_SCHEMA, create_table, index_documents
from tests.support.worker_process import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.engines, pytest.mark.long]

EXAMPLES = int(os.environ.get("CDC_FAULT_INJECTION_EXAMPLES", "6"))
ITEMS = [f"item-{i}" for i in range(6)]
_names = itertools.count()


@dataclass(frozen=True)
class Written:
    """One change as the stream server took it."""

    item: str
    revision: int
    deleted: bool
    shard_id: str
    sequence_number: int


@dataclass
class Model:
    """What was written, in order: the table's truth, and what each checkpoint must already cover."""

    changes: list[Written] = field(default_factory=list)
    poison: set[str] = field(default_factory=set)  # sequence numbers of the poison records
    lock: threading.Lock = field(default_factory=threading.Lock)

    def table(self) -> dict[str, int]:
        state: dict[str, int] = {}
        for change in self.changes:
            if change.deleted:
                state.pop(change.item, None)
            else:
                state[change.item] = change.revision
        return state

    def due(self, shard_id: str, position: str) -> dict[str, Written]:
        """Each item's last change in ``shard_id`` at or before ``position`` (SHARD_END: all)."""
        limit = None if position == SHARD_END else int(position)
        with self.lock:
            changes = list(self.changes)
        due: dict[str, Written] = {}
        for change in changes:
            if change.shard_id == shard_id and (limit is None or change.sequence_number <= limit):
                due[change.item] = change
        return due

    def deleted_after(self, item: str, sequence_number: int) -> bool:
        with self.lock:
            return any(c.item == item and c.deleted and c.sequence_number > sequence_number for c in self.changes)


class CheckpointWitness:
    """Checks, as every checkpoint is written, that the index already holds what it covers."""

    def __init__(self, model: Model, search: OpenSearch, index: str) -> None:
        self._model = model
        self._search = search
        self._index = index
        self.violations: list[str] = []
        self.checked = 0

    def install(self, patch: pytest.MonkeyPatch) -> None:
        real = LeaseTable.checkpoint
        witness = self

        def checkpoint(table: LeaseTable, lease: Any, position: str, *args: Any, **kwargs: Any) -> Any:
            if position not in ("TRIM_HORIZON", "LATEST") and not lease.lease_key.startswith("backfill"):
                witness.check(lease.lease_key, position)
            return real(table, lease, position, *args, **kwargs)

        patch.setattr(LeaseTable, "checkpoint", checkpoint)

    def check(self, shard_id: str, position: str) -> None:
        due = self._model.due(shard_id, position)
        if not due:
            return
        self.checked += 1
        answer = self._search.mget(index=self._index, body={"ids": [f"{item}|1" for item in due]})
        documents = {
            doc["_id"].split("|")[0]: doc.get("_source") if doc.get("found") else None for doc in answer["docs"]
        }
        for item, change in due.items():
            document = documents.get(item)
            if not _covers(document, change, self._model):
                self.violations.append(
                    f"{shard_id} checkpointed at {position} while {item} showed {document} before its change {change}"
                )


def _covers(document: dict[str, Any] | None, change: Written, model: Model) -> bool:
    """Whether the indexed ``document`` is ``change``'s state or a newer one."""
    if document is None:
        return False
    if document.get("_cdc_deleted"):
        return change.deleted or model.deleted_after(change.item, change.sequence_number)
    revision = document.get("revision")
    return revision is not None and (revision > change.revision or (revision == change.revision and not change.deleted))


OPS = st.one_of(
    st.tuples(st.just("burst"), st.integers(5, 30)),
    st.tuples(st.just("put"), st.sampled_from(ITEMS)),
    st.tuples(st.just("put"), st.sampled_from(ITEMS)),
    st.tuples(st.just("delete"), st.sampled_from(ITEMS)),
    st.tuples(st.just("poison"), st.sampled_from(["bad_number", "unindexable"])),
    st.tuples(st.just("split"), st.integers(0, 10)),
    st.tuples(st.just("replace_worker"), st.integers(0, 1)),
)


@pytest.fixture
def cluster(moto, stream_server, search_engine, ddb, tmp_path):
    """What every example needs: the servers and a place for dead letters."""
    return moto, stream_server, search_engine, ddb, tmp_path


@pytest.mark.timeout(max(300, 60 * EXAMPLES))  # the long run takes as long as its examples
@given(
    history=st.lists(OPS, min_size=10, max_size=50),
    rate=st.sampled_from([0.03, 0.08, 0.15]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # threads and servers: a failure is not replayed exactly, so it is not shrunk
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_whatever_fails_wherever_nothing_is_lost_or_passed(cluster, history, rate, seed):
    moto, stream_server, search_engine, ddb, tmp_path = cluster
    number = next(_names)
    table = f"faults{number}"
    create_table(ddb, table)
    arn = stream_server.create_stream(table, key_schema=COMPOSITE_KEY_SCHEMA, shard_count=2)
    search = OpenSearch(hosts=[search_engine.url])
    letters = tmp_path / f"dead-letters-{number}.jsonl"
    env = {
        **aws_env(moto.url),
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": stream_server.url,
        "CDC_TABLE_NAME": table,
        "CDC_STREAM_ARN": arn,
        "CDC_OPENSEARCH_URL": search_engine.url,
        "CDC_FAILOVER_SECONDS": "2",
        "CDC_POLL_INTERVAL_SECONDS": "0.1",
        "CDC_SHARD_SYNC_INTERVAL_SECONDS": "1",
        "CDC_RETRY_BASE_SECONDS": "0.02",
        "CDC_RETRY_MAX_DELAY_SECONDS": "0.3",
        "CDC_DEAD_LETTER_PATH": str(letters),
        "CDC_SHARD_THREADS": "4",
        "CDC_MAX_RECORDS_PER_READ": "4",  # bursts make full pages: a backlog, read ahead
    }
    model = Model()
    injector = Injector(seed, rate)
    witness = CheckpointWitness(model, search, table)
    workers: list[InProcessWorker] = []  # the two running
    started: list[InProcessWorker] = []  # every one, replaced ones too
    with pytest.MonkeyPatch.context() as patch:
        witness.install(patch)  # under the injector: it sees every write the worker attempts
        injector.install(patch)
        try:
            # GIVEN two workers on the stream, and faults raised at every seam
            workers += [start_worker({**env, "CDC_WORKER_ID": f"w{number}-{i}"}, patch, 2) for i in range(2)]
            started += workers
            injector.active = True

            # WHEN the history is written, shards split and workers are replaced meanwhile
            _write(history, stream_server, arn, model, workers, started, env, patch, number)
            time.sleep(1.0)  # the faults go on a moment after the last change
            injector.active = False

            # THEN the index converges to the table, with nothing valid dead-lettered
            def converged() -> bool:
                assert witness.violations == [], witness.violations[:5]
                live = index_documents(search_engine.url, table)
                return {doc_id.split("|")[0]: doc.get("revision") for doc_id, doc in live.items()} == model.table()

            wait_until(converged, timeout=120, what=f"the index to equal the table (faults: {dict(injector.injected)})")
            try:
                wait_until(lambda: _dead_lettered(letters) == model.poison, timeout=60, what="the poison dead-lettered")
            except AssertionError:
                letters_read = _dead_lettered(letters)
                raise AssertionError(
                    f"dead letters differ from the poison: valid ones dead-lettered {letters_read - model.poison}, "
                    f"poison missing {model.poison - letters_read}; letters: {letters.read_text()[:3000]}"
                ) from None
            # AND no checkpoint ever passed a record the index did not hold yet
            assert witness.violations == [], witness.violations[:5]
            print(  # the long run's tally (pytest -s)
                f"fault-injection example: {len(history)} ops, {len(model.changes)} changes, "
                f"{len(model.poison)} poison, rate {rate}, {sum(injector.injected.values())} faults injected, "
                f"{witness.checked} checkpoints witnessed; faults by seam: {sorted(injector.injected.items())}"
            )
            # AND no worker died, and the running ones are alive and say so truly
            died = ["".join(traceback.format_exception(w.error)) for w in started if w.error is not None]
            assert died == [], died[0]
            for worker in workers:
                assert worker.running and worker.health.liveness() == (True, "ok")
        finally:
            injector.active = False
            for worker in workers:
                worker.halt()
            for name in search.indices.get_alias(index=f"{table}*", allow_no_indices=True):
                search.indices.delete(index=name)


def _write(
    history: list[tuple[str, Any]],
    stream_server: Any,
    arn: str,
    model: Model,
    workers: list[InProcessWorker],
    started: list[InProcessWorker],
    env: dict[str, str],
    patch: pytest.MonkeyPatch,
    number: int,
) -> None:
    revision = itertools.count(1)
    replaced = itertools.count(2)

    def change(item: str, deleted: bool) -> None:
        keys = {"pk": {"S": item}, "sk": {"N": "1"}}
        n = next(revision)
        image = {**keys, "revision": {"N": str(n)}}
        if deleted:
            appended = stream_server.put_change(arn, "REMOVE", keys, old_image=image)
        else:
            appended = stream_server.put_change(arn, "MODIFY", keys, new_image=image)
        with model.lock:
            model.changes.append(Written(item, n, deleted, appended.shard_id, int(appended.sequence_number)))

    for op, arg in history:
        if op in ("put", "delete"):
            change(arg, op == "delete")
        elif op == "burst":  # many changes at once: full pages, read ahead while one is applied
            for i in range(arg):
                change(ITEMS[(arg * 7 + i) % len(ITEMS)], deleted=i % 5 == 4)
        elif op == "poison":
            keys = {"pk": {"S": f"poison-{next(revision)}"}, "sk": {"N": "1"}}
            image = {**keys, "n": {"N": "no number"}} if arg == "bad_number" else unindexable_image(keys)
            model.poison.add(stream_server.put_change(arn, "INSERT", keys, new_image=image).sequence_number)
        elif op == "split":
            open_shards = [shard.shard_id for shard in stream_server.shards(arn) if not shard.is_closed]
            if len(open_shards) < 6:
                stream_server.split(arn, open_shards[arg % len(open_shards)])
        elif op == "replace_worker":
            workers[arg].halt()
            workers[arg] = start_worker({**env, "CDC_WORKER_ID": f"w{number}-{next(replaced)}"}, patch, 2)
            started.append(workers[arg])
        time.sleep(0.05)


def _dead_lettered(path: Any) -> set[str]:
    if not path.exists():
        return set()
    return {orjson.loads(line)["sequence_number"] for line in path.read_bytes().splitlines() if line.strip()}
