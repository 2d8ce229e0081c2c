"""When a failed shard task starts again, and when its worker gives the shard up (pure, a fake clock)."""

from __future__ import annotations

import random

from consumer.shards.restarts import MIN_ATTEMPTS, TaskRestarts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def restarts(clock: Clock) -> TaskRestarts:
    return TaskRestarts(0.1, 10.0, give_up_after=30.0, cool_down=60.0, clock=clock, rng=random.Random(1))


def test_a_failed_task_starts_again_after_a_backoff_and_readiness_says_why():
    # GIVEN a shard whose task failed WHEN asked THEN it waits out a backoff, then may start
    clock = Clock()
    shards = restarts(clock)
    assert not shards.failed("shard-1", ValueError("odd answer"), progressed=False)
    assert shards.failing() == 1
    assert "shard-1" in shards.problem() and "ValueError: odd answer" in shards.problem()
    clock.now += 10.0
    assert shards.may_start("shard-1")


def test_a_shard_failing_for_long_without_progress_is_given_up_and_avoided_for_a_while():
    # GIVEN a shard whose tasks keep failing without settling a page
    clock = Clock()
    shards = restarts(clock)
    given_up = []
    for _ in range(10):
        given_up.append(shards.failed("shard-1", RuntimeError("bug"), progressed=False))
        clock.now += 5.0
    # THEN it is given up once, after at least MIN_ATTEMPTS and 30 s, then avoided for the cool-down
    assert given_up.index(True) >= MIN_ATTEMPTS - 1 and given_up.count(True) == 1
    assert "shard-1" in shards.avoided()
    clock.now += 61.0
    assert "shard-1" not in shards.avoided()


def test_progress_clears_a_failing_shard():
    clock = Clock()
    shards = restarts(clock)
    for _ in range(3):
        shards.failed("shard-1", RuntimeError("bug"), progressed=False)
        clock.now += 20.0
    shards.progressed("shard-1")
    assert shards.failing() == 0 and shards.problem() is None and shards.may_start("shard-1")
    # a failure after progress starts the count again: not given up at once
    assert not shards.failed("shard-1", RuntimeError("bug"), progressed=True)
