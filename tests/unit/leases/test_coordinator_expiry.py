"""When a lease is expired: only on evidence, a counter read unchanged across the failover, whatever
part of the table each tick reads (``consumer.leases.view`` reads a large table over a few ticks)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.leases.coordinator import ExpiryTracker
from consumer.leases.model import TRIM_HORIZON, Lease

FAILOVER = 10.0
TICK = FAILOVER / 3
KEYS = [f"shardId-{n:03d}" for n in range(12)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lease(key: str, counter: int) -> Lease:
    return Lease(key, "worker-a", counter, TRIM_HORIZON)


@given(
    renewal_gaps=st.lists(st.floats(0.5, FAILOVER / 2), min_size=1, max_size=30),
    dies_after=st.integers(0, 40),
    pages=st.lists(st.sets(st.sampled_from(KEYS), max_size=len(KEYS)), min_size=60, max_size=60),
)
def test_a_lease_is_expired_only_once_read_unchanged_across_the_failover(
    renewal_gaps: list[float], dies_after: int, pages: list[set[str]]
) -> None:
    # GIVEN an owner renewing every lease at most half a failover apart, until it dies after
    # ``dies_after`` ticks, and a worker whose ticks read a random part of the table each
    clock = Clock()
    tracker = ExpiryTracker(FAILOVER, clock)
    died_at = dies_after * TICK
    renewals = [0.0]
    while renewals[-1] < died_at:
        renewals.append(renewals[-1] + renewal_gaps[len(renewals) % len(renewal_gaps)])
    renewals = [time for time in renewals if time <= died_at]
    reads: dict[str, list[tuple[float, int]]] = {key: [] for key in KEYS}

    for tick, page in enumerate(pages):
        clock.now = tick * TICK
        counter = sum(1 for time in renewals if time <= clock.now)
        # WHEN the tick observes what it read (every key stays known: the view keeps them)
        expired = tracker.observe([_lease(key, counter) for key in page], KEYS)
        for key in page:
            reads[key].append((clock.now, counter))

        for key, is_expired in expired.items():
            history = reads[key]
            unchanged_since = next(
                (time for time, value in history if value == history[-1][1]), history[-1][0] if history else 0.0
            )
            evidence = bool(history) and history[-1][0] - unchanged_since >= FAILOVER
            # THEN a lease is expired exactly when its reads show the counter unchanged across a failover
            assert is_expired == evidence, (key, history)
            # ... which never happens while its owner is alive and renewing
            if is_expired:
                assert unchanged_since >= renewals[-1] and history[-1][0] > died_at


def test_a_dead_owners_lease_read_once_a_pass_is_expired_within_failover_and_a_pass():
    # GIVEN an owner that renewed last at 0 and a worker reading its lease every third tick (a pass)
    clock = Clock()
    tracker = ExpiryTracker(FAILOVER, clock)
    expired_at = None
    for tick in range(30):
        clock.now = tick * TICK
        read = [_lease(KEYS[0], 7)] if tick % 3 == 0 else []
        # WHEN each tick observes its page
        if tracker.observe(read, [KEYS[0]]).get(KEYS[0]) and expired_at is None:
            expired_at = clock.now
    # THEN it is expired at the first read a failover after the first read of its last counter
    assert expired_at == 3 * TICK


def test_leases_no_longer_known_are_forgotten():
    clock = Clock()
    tracker = ExpiryTracker(FAILOVER, clock)
    tracker.observe([_lease(KEYS[0], 1), _lease(KEYS[1], 1)])
    clock.now = FAILOVER
    # WHEN a lease leaves the view (deleted) and comes back with the same counter
    assert tracker.observe([_lease(KEYS[1], 1)]) == {KEYS[1]: True}
    clock.now = 2 * FAILOVER
    # THEN its silence starts over: it is not expired on its first read
    assert tracker.observe([_lease(KEYS[0], 1)], [KEYS[0], KEYS[1]]) == {KEYS[0]: False, KEYS[1]: True}
