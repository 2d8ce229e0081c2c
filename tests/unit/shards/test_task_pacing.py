"""When a shard task reads again: at once while records are likely waiting (a catch-up), one poll
interval after the last read at the stream's tip (each GetRecords is billed, and an immediate read
there mostly answers nothing)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.shards.reader import FULL_PAGE_BYTES
from consumer.shards.task import more_records_waiting

POLL = 1.0
MAX = 1000


def test_a_full_page_means_more_is_waiting_whatever_the_records_age():
    assert more_records_waiting(MAX, 200_000, 0.0, MAX, POLL)
    assert more_records_waiting(400, FULL_PAGE_BYTES, 0.0, MAX, POLL)  # the 1 MB limit, before 1000 records


def test_a_page_of_old_records_is_a_backlog_and_a_page_of_new_ones_is_the_tip():
    assert more_records_waiting(3, 4_000, 3600.0, MAX, POLL)  # behind by an hour
    assert more_records_waiting(3, 4_000, 2.5, MAX, POLL)
    assert not more_records_waiting(3, 4_000, 0.4, MAX, POLL)
    assert not more_records_waiting(3, 4_000, 1.9, MAX, POLL)  # whole-second record times: up to a second early


@given(
    records=st.integers(1, MAX),
    size=st.integers(0, 2_000_000),
    age=st.floats(-30, 86_400),
    older=st.floats(0, 86_400),
    more=st.integers(0, MAX),
)
def test_more_records_or_older_ones_never_make_the_next_read_wait(records, size, age, older, more):
    if more_records_waiting(records, size, age, MAX, POLL):
        assert more_records_waiting(records, size, age + older, MAX, POLL)
        assert more_records_waiting(min(MAX, records + more), size + more * 1000, age, MAX, POLL)
