"""When a held lease is renewed: never so late that a slow lease table costs the pool a lease."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.leases.renewal import due_for_renewal

ROUNDS = 30


@given(
    interval=st.floats(1, 60),
    round_fraction=st.floats(0, 0.95),
    checkpoints=st.lists(st.floats(0, 1), max_size=40),
    latencies=st.lists(st.floats(0, 1), min_size=ROUNDS, max_size=ROUNDS),
    gaps=st.lists(st.floats(0.8, 1.0), min_size=ROUNDS, max_size=ROUNDS),
)
def test_a_lease_is_never_unwritten_longer_than_half_its_failover_plus_one_round(
    interval: float, round_fraction: float, checkpoints: list[float], latencies: list[float], gaps: list[float]
) -> None:
    # GIVEN rounds 0.8 to 1 interval (failover / 3) apart, whose renewals land within ``round_seconds``
    # of their start, and checkpoints at random moments (each also a write that bumps the counter)
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


def test_a_lease_checkpointed_within_half_an_interval_costs_no_renewal() -> None:
    assert not due_for_renewal(last_written=100.0, now=101.0, interval=3.0)
    assert due_for_renewal(last_written=100.0, now=101.5, interval=3.0)
