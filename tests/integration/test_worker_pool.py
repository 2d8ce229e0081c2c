"""The worker pool: several worker processes share an 8-shard stream-server stream.

Cycles are counted from each worker's ``cdc_lease_taker_cycles_total``, never timed; the
failover and handoff figures are measured from the workers' own log timestamps and printed
(``pytest -s``) for the README, not asserted.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
from collections import Counter
from typing import Any

import pytest

from consumer.leases.model import SENTINELS, SHARD_END, Lease
from tests.support.fault_proxy import assert_versions_follow_write_order
from tests.support.pool_state import converged
from tests.support.tables import write_random_history
from tests.support.worker_process import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
SHARDS = 8
FAILOVER = 3.0  # worker_env's CDC_FAILOVER_SECONDS: a taker cycle every second


@pytest.fixture
def pool_env(fed_stream):
    """An 8-shard fed stream; the pool runs the per-key parallel path end to end."""
    return fed_stream(SHARDS, CDC_PARALLELIZATION_FACTOR="3")


def lease_table(ddb, table: str) -> dict[str, Lease]:
    """The leases by key ({} until a worker has created the table)."""
    try:
        items = ddb.scan(TableName=f"{table}-cdc-leases", ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}
    return {lease.lease_key: lease for lease in map(Lease.from_item, items)}


def owners(ddb, table: str) -> Counter[str | None]:
    return Counter(lease.owner for lease in lease_table(ddb, table).values() if lease.checkpoint != SHARD_END)


def balanced(ddb, table: str, workers: list[WorkerProcess]) -> bool:
    counts = owners(ddb, table)
    per_worker = [counts.get(w.worker_id, 0) for w in workers]
    return None not in counts and sum(per_worker) == SHARDS and max(per_worker) - min(per_worker) <= 1


def cycles(worker: WorkerProcess) -> float:
    return worker.metric("cdc_lease_taker_cycles_total")


def log_time(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def resumed_at(workers: list[WorkerProcess], shards: set[str], after: dt.datetime) -> dict[str, dt.datetime]:
    """When each shard's consumer started on a surviving worker after ``after``."""
    started = {}
    for worker in workers:
        for event in worker.events("shard_task_started"):
            if event["shard_id"] in shards and log_time(event) > after:
                started[event["shard_id"]] = min(log_time(event), started.get(event["shard_id"], log_time(event)))
    return started


def start_pool(start_worker, env: dict[str, str], ddb, table: str) -> list[WorkerProcess]:
    """One worker takes everything first; three more join together and steal toward balance."""
    first = start_worker(env, "w0")
    wait_until(lambda: owners(ddb, table).get("w0-0") == SHARDS, timeout=60, what="the first worker to own all")
    return [first, *(start_worker(env, f"w{i}") for i in range(1, 4))]


def test_the_pool_balances_within_three_cycles_then_stays_put(ddb, osmem, table_name, pool_env, start_worker):
    # GIVEN one worker owning all 8 leases, and three workers joining
    write_random_history(ddb, table_name, changes=200, seed=71)
    workers = start_pool(start_worker, pool_env.env, ddb, table_name)
    newcomers = workers[1:]

    # WHEN each newcomer has completed three taker cycles (a worker that holds nothing is invisible to
    # the others until its first take, so on a loaded machine a newcomer's first cycle may see only
    # part of the pool and take one lease too many, which the next cycle evens out)
    wait_until(lambda: all(cycles(w) >= 3 for w in newcomers), timeout=60, what="three cycles per newcomer")

    # THEN ownership is balanced (2 each) before any newcomer needs a fourth cycle ...
    wait_until(
        lambda: balanced(ddb, table_name, workers) or any(cycles(w) >= 4 for w in newcomers),
        timeout=30,
        what="balance or a fourth cycle",
    )
    assert balanced(ddb, table_name, workers), owners(ddb, table_name)
    owners_then = {key: lease.owner for key, lease in lease_table(ddb, table_name).items()}
    cycles_then = [cycles(w) for w in workers]

    # ... and stays so: over ten more cycles of every worker, no owner changes (counted)
    wait_until(
        lambda: all(cycles(w) >= c + 10 for w, c in zip(workers, cycles_then, strict=True)),
        timeout=60,
        what="ten more cycles",
    )
    assert {key: lease.owner for key, lease in lease_table(ddb, table_name).items()} == owners_then
    moves = sum(w.metric('cdc_lease_events_total{event="stolen"}') for w in workers)
    # 6 steals are the fewest that make 8 → 2 + 2 + 2 + 2; a newcomer steals what it needs in one
    # cycle for the workers it sees, so one that joins early may take a lease a later one takes again
    assert 6 <= moves <= 12, moves
    pool_env.feed.wait_caught_up(timeout=30)
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=60, what="index to equal table")


def test_kill_9_and_sigterm_hand_shards_over(ddb, osmem, table_name, pool_env, start_worker):
    # GIVEN a balanced pool of four under steady writes
    workers = start_pool(start_worker, pool_env.env, ddb, table_name)
    wait_until(lambda: balanced(ddb, table_name, workers), timeout=60, what="balance")
    writer = threading.Thread(target=write_random_history, args=(ddb, table_name, 600, 72))
    writer.start()

    # WHEN one worker is killed without warning
    victim, *survivors = workers
    orphaned = {key for key, lease in lease_table(ddb, table_name).items() if lease.owner == victim.worker_id}
    killed = dt.datetime.now(dt.UTC)
    victim.kill()
    wait_until(lambda: set(resumed_at(survivors, orphaned, killed)) == orphaned, timeout=60, what="failover")
    failover = max(resumed_at(survivors, orphaned, killed).values()) - killed

    # AND another is stopped gracefully
    leaving, *rest = survivors
    handed = {key for key, lease in lease_table(ddb, table_name).items() if lease.owner == leaving.worker_id}
    terminated = dt.datetime.now(dt.UTC)
    assert leaving.terminate() == 0
    wait_until(lambda: set(resumed_at(rest, handed, terminated)) == handed, timeout=60, what="handoff")
    handoff = max(resumed_at(rest, handed, terminated).values()) - terminated

    # THEN the shards resumed elsewhere (figures reported), and the index equals the table
    print(f"\nkill -9: shards resumed after {failover.total_seconds():.2f} s (failover {FAILOVER} s, cycle 1 s)")
    print(f"SIGTERM: shards resumed after {handoff.total_seconds():.2f} s (released, taken next cycle)")
    writer.join()
    pool_env.feed.wait_caught_up(timeout=30)
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")


def test_a_frozen_zombie_neither_regresses_checkpoints_nor_wins_writes(
    ddb, osmem, proxy, table_name, pool_env, start_worker
):
    # GIVEN two workers sharing the stream under steady writes
    env = {**pool_env.env, "CDC_MAX_RECORDS_PER_READ": "25"}
    first = start_worker(env, "z0")
    wait_until(lambda: owners(ddb, table_name).get("z0-0") == SHARDS, timeout=60, what="first worker owns all")
    second = start_worker(env, "z1")
    wait_until(lambda: owners(ddb, table_name).get("z1-1") == SHARDS // 2, timeout=60, what="balance")
    stop_writing = threading.Event()
    writer = threading.Thread(target=_write_until, args=(ddb, table_name, stop_writing))
    writer.start()
    checkpoints = _CheckpointWatch(ddb, table_name).start()

    # WHEN one worker is frozen (SIGSTOP) past the failover time, the other takes its shards over,
    # and the frozen one is then resumed (SIGCONT) with whatever it had in flight
    wait_until(lambda: len(proxy.ledger) > 200, timeout=60, what="writes flowing")
    os.kill(second.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: owners(ddb, table_name).get("z0-0") == SHARDS, timeout=60, what="takeover of the zombie's")
        wait_until(lambda: len(proxy.ledger) > 600, timeout=60, what="progress after takeover")
    finally:
        os.kill(second.process.pid, signal.SIGCONT)
    wait_until(
        lambda: second.events("lease_lost") or second.events("shard_task_stopped"),
        timeout=30,
        what="the zombie to notice",
    )
    stop_writing.set()
    writer.join()
    pool_env.feed.wait_caught_up(timeout=30)

    # THEN no checkpoint ever moved backwards (the zombie's checkpoint writes failed by condition),
    # and its late writes lost to newer versions: the index equals the table
    wait_until(lambda: converged(ddb, table_name, osmem.url), timeout=120, what="index to equal table")
    checkpoints.stop()
    assert checkpoints.polls > 10 and checkpoints.regressions == []
    assert_versions_follow_write_order(proxy.ledger)
    assert first.terminate() == 0 and second.terminate() == 0


def _write_until(ddb, table: str, stop: threading.Event) -> None:
    seed = 80
    while not stop.is_set():
        write_random_history(ddb, table, changes=20, seed=seed, keyspace=60)
        seed += 1


class _CheckpointWatch:
    """Polls the lease table in the background and records any checkpoint that moved backwards."""

    def __init__(self, ddb, table: str) -> None:
        self._ddb, self._table = ddb, table
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_routine, daemon=True)
        self.regressions: list[tuple[str, int, int]] = []
        self.polls = 0

    def start(self) -> _CheckpointWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll_routine(self) -> None:
        while not self._stop.wait(0.1):
            self._do_poll()

    def _do_poll(self) -> None:
        for key, lease in lease_table(self._ddb, self._table).items():
            if lease.checkpoint in SENTINELS:
                continue
            position = int(lease.checkpoint)
            if position < self._last.get(key, 0):
                self.regressions.append((key, self._last[key], position))
            self._last[key] = max(position, self._last.get(key, 0))
        self.polls += 1
