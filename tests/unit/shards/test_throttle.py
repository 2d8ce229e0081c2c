"""The worker's shared read gate: one throttle holds every shard back, the waits grow while the
throttles go on, and one good read resets the growth."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.shards.throttle import ThrottleGate


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_throttle_holds_every_reader_back_until_its_delay_has_passed():
    # GIVEN a gate, and one reader throttled
    clock = _Clock()
    gate = ThrottleGate(0.5, 8.0, clock=clock, rng=random.Random(1))
    assert gate.wait_time() == 0.0
    delay = gate.throttled()

    # THEN every reader of the worker waits that long, less the time already passed
    assert gate.wait_time() == pytest.approx(delay)
    clock.now += delay / 2
    assert gate.wait_time() == pytest.approx(delay / 2)
    clock.now += delay
    assert gate.wait_time() == 0.0


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_waits_stay_within_the_growing_ceiling_and_a_success_resets_it(throttles, seed):
    # GIVEN a run of throttles in a row
    gate = ThrottleGate(0.1, 5.0, clock=_Clock(), rng=random.Random(seed))
    delays = [gate.throttled() for _ in range(throttles)]

    # THEN the n-th wait is at most base · 2^n, never more than the cap
    assert all(0.0 <= delay <= min(5.0, 0.1 * 2**n) for n, delay in enumerate(delays))

    # WHEN a read succeeds THEN the next throttle starts again from the base
    gate.succeeded()
    assert gate.throttled() <= 0.1


class _Draws(random.Random):
    """Draws the given fractions of each ceiling, in order."""

    def __init__(self, *fractions: float) -> None:
        super().__init__(0)
        self._fractions = list(fractions)

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self._fractions.pop(0)


def test_a_later_shorter_delay_never_shortens_the_wait_already_set():
    # GIVEN a wait of 4 s set by a throttle
    clock = _Clock()
    gate = ThrottleGate(4.0, 4.0, clock=clock, rng=_Draws(1.0, 0.1))
    assert gate.throttled() == 4.0

    # WHEN a read succeeds elsewhere and another reader is throttled with a 0.4 s delay
    gate.succeeded()
    assert gate.throttled() == 0.4

    # THEN every reader still waits the 4 s
    assert gate.wait_time() == 4.0
