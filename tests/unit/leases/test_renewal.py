"""When a held lease is renewed: never so late that a slow lease table costs the pool a lease; and the
routine that renews, supervised: it survives failures nobody named, and its death is never silent."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import CredentialRetrievalError
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from consumer.leases.coordinator import HeldLease
from consumer.leases.model import Lease
from consumer.leases.renewal import MAX_GAP, MIN_GAP, RenewalRoutine, due_for_renewal
from consumer.observability.health import Health
from consumer.observability.metrics import Metrics
from tests.support.worker_process import wait_until

ROUNDS = 30


@given(
    interval=st.floats(1, 60),
    round_fraction=st.floats(0, 0.95),
    checkpoints=st.lists(st.floats(0, 1), max_size=40),
    latencies=st.lists(st.floats(0, 1), min_size=ROUNDS, max_size=ROUNDS),
    gaps=st.lists(st.floats(MIN_GAP, MAX_GAP), min_size=ROUNDS, max_size=ROUNDS),
)
def test_a_lease_is_never_unwritten_longer_than_half_its_failover_plus_one_round(
    interval: float, round_fraction: float, checkpoints: list[float], latencies: list[float], gaps: list[float]
) -> None:
    # GIVEN rounds 0.9 to 1.1 intervals (failover / 3) apart, whose renewals land within ``round_seconds``
    # of their start, and writes at random moments that bump the counter too (SHARD_END, a task's last
    # progress, a take)
    round_seconds = round_fraction * interval
    checkpoint_times = sorted(fraction * ROUNDS * interval for fraction in checkpoints)

    # WHEN the routine renews whatever is due at each round
    writes = [0.0]  # the take
    start = 0.0
    for latency, gap in zip(latencies, gaps, strict=True):
        start += gap * interval
        last_written = max(time for time in writes + checkpoint_times if time <= start)
        if due_for_renewal(last_written, start, interval):
            writes.append(start + latency * round_seconds)
    history = sorted(time for time in writes + checkpoint_times if time <= start)

    # THEN no gap between writes exceeds 1.5 intervals plus a round: half the failover, which leaves
    # the other half for a lease table slower than that round
    longest = max(later - earlier for earlier, later in zip(history, history[1:], strict=False)) if history[1:] else 0
    assert longest <= 1.5 * interval + round_seconds + 1e-9


def test_a_lease_written_within_0_4_of_an_interval_costs_no_renewal() -> None:
    assert not due_for_renewal(last_written=100.0, now=101.1, interval=3.0)
    assert due_for_renewal(last_written=100.0, now=101.2, interval=3.0)


# --- the routine, supervised ------------------------------------------------------------------


class _Table:
    """A lease table whose renewals raise what ``fault`` makes (None: succeed); counts them."""

    def __init__(self, fault=None) -> None:
        self.fault = fault
        self.renewals = 0

    def renew(self, lease):
        self.renewals += 1
        if self.fault is not None:
            raise self.fault()
        return lease.bumped()


class _Coordinator:
    def __init__(self, held, holding_fault=None) -> None:
        self.held = held
        self.holding_fault = holding_fault
        self.forgotten = []

    def holding(self):
        if self.holding_fault is not None:
            raise self.holding_fault()
        return list(self.held)

    def forget(self, held, reason):
        self.forgotten.append(reason)


def _routine(coordinator, health, failover=0.3):
    metrics = Metrics(CollectorRegistry())
    routine = RenewalRoutine(coordinator, ThreadPoolExecutor(2), failover, metrics, lambda held: None, health=health)
    health.watch("lease renewal", routine.problem)
    return routine, metrics


def _held(table):
    return HeldLease(Lease("shard-1", "me", 1, "TRIM_HORIZON"), table, time.monotonic)


def test_renewals_failing_in_ways_nobody_named_keep_the_routine_going_and_are_said() -> None:
    # GIVEN a held lease whose renewals fail with a credential error, then with a bug's ValueError

    table = _Table(lambda: CredentialRetrievalError(provider="container-role", error_msg="unreachable"))
    health = Health(stall_after_seconds=60)
    health.beat()
    # (rounds every 0.2 s: both failures come before the lease is given up, a failover after its take)
    routine, _ = _routine(_Coordinator([_held(table)]), health, failover=0.6)

    # WHEN the routine runs
    routine.start()
    try:
        wait_until(lambda: table.renewals >= 1, timeout=5, what="a renewal round")
        table.fault = lambda: ValueError("bug")
        seen = table.renewals
        wait_until(lambda: table.renewals >= seen + 1, timeout=5, what="one more round")

        # THEN it goes on, alive, and readiness says the renewals fail
        assert routine.problem() is None and health.liveness() == (True, "ok")
        ready, why = health.readiness()
        assert not ready and "lease renewals failing" in why
    finally:
        routine.stop()


def test_a_round_that_fails_is_counted_and_the_next_one_runs() -> None:

    health = Health(stall_after_seconds=60)
    coordinator = _Coordinator([], holding_fault=lambda: KeyError("bug"))
    routine, metrics = _routine(coordinator, health)
    routine.start()
    try:
        failures = lambda: metrics.registry.get_sample_value("cdc_routine_failures_total", {"routine": "renewal"})  # noqa: E731
        wait_until(lambda: (failures() or 0) >= 2, timeout=5, what="two failed rounds")
        assert routine.problem() is None
    finally:
        routine.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_routine_that_died_turns_liveness_red() -> None:
    # GIVEN a routine whose thread is killed by what no round survives (a BaseException)

    health = Health(stall_after_seconds=60)
    health.beat()
    routine, _ = _routine(_Coordinator([], holding_fault=lambda: SystemExit(3)), health)
    routine.start()

    # THEN liveness fails, naming it
    wait_until(lambda: routine.problem() is not None, timeout=5, what="the routine's death noticed")
    assert health.liveness() == (False, "the lease renewal routine died")
