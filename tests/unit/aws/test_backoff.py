"""Exponential backoff with full jitter."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.aws.backoff import backoff_delay

bases = st.floats(min_value=0.001, max_value=10)
caps = st.floats(min_value=0.001, max_value=600)


@given(st.integers(0, 200), bases, caps, st.randoms(use_true_random=False))
@settings(max_examples=300)
def test_delay_is_within_zero_and_the_capped_exponential(attempt, base, cap, rng):
    # GIVEN any retry attempt, base and cap WHEN a delay is drawn
    delay = backoff_delay(attempt, base, cap, rng)

    # THEN it is within [0, min(cap, base · 2^attempt)] — also for attempts far beyond the cap
    assert 0 <= delay <= min(cap, base * 2.0**attempt)


def test_delays_grow_with_the_attempt_until_the_cap():
    # GIVEN many draws per attempt with base 0.1 s and cap 10 s
    rng = random.Random(1)

    def largest(attempt: int) -> float:
        return max(backoff_delay(attempt, 0.1, 10.0, rng) for _ in range(2000))

    # WHEN the largest delay of each attempt is taken
    # THEN it approaches 0.1 · 2^attempt, and never the cap's 10 s beyond it
    assert 0.09 < largest(0) <= 0.1
    assert 0.75 < largest(3) <= 0.8
    assert 9.0 < largest(20) <= 10.0


def test_delays_are_spread_not_in_lockstep():
    # GIVEN many workers retrying the same attempt WHEN they draw their delays
    rng = random.Random(2)
    delays = [backoff_delay(4, 0.1, 10.0, rng) for _ in range(1000)]

    # THEN the delays cover the whole window (full jitter), so retries do not arrive together
    assert min(delays) < 0.1 * 16 * 0.05
    assert max(delays) > 0.1 * 16 * 0.95
    assert len(set(delays)) == len(delays)
