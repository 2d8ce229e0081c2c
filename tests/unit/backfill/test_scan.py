"""``read_ahead``: a segment's next Scan page is read while the current one is written, without
changing what the caller sees: the same pages in order, errors where they happened, a clean stop."""

from __future__ import annotations

import threading

import pytest

from consumer.backfill.scan import ScanPage, read_ahead
from consumer.errors import ConsumerError, Interrupted


def page(n: int) -> ScanPage:
    return ScanPage([{"n": {"N": str(n)}}], {"k": n}, float(n), 1.0)


def test_pages_arrive_in_order_and_the_next_is_read_while_the_caller_works():
    second_read = threading.Event()

    def pages(halt: threading.Event):
        for n in range(5):
            if n == 1:
                second_read.set()
            yield page(n)

    seen = []
    for current in read_ahead(pages, threading.Event()):
        if not seen:  # while the caller still works on page 0, page 1 is read
            assert second_read.wait(5)
        seen.append(current.last_evaluated_key["k"])
    assert seen == [0, 1, 2, 3, 4]


def test_an_error_reaches_the_caller_after_the_pages_before_it():
    def pages(halt: threading.Event):
        yield page(0)
        raise ConsumerError("Scan failed")

    seen = []
    with pytest.raises(ConsumerError, match="Scan failed"):
        for current in read_ahead(pages, threading.Event()):
            seen.append(current)
    assert len(seen) == 1


def test_stop_interrupts_a_caller_waiting_for_a_page_and_halts_the_reader():
    stop, halted = threading.Event(), threading.Event()

    def pages(halt: threading.Event):
        halt.wait(30)  # a Scan retry waiting on its backoff
        halted.set()
        yield from ()

    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Interrupted):
        list(read_ahead(pages, stop))
    assert halted.wait(5)


def test_a_caller_that_stops_iterating_halts_the_reader():
    halted = threading.Event()

    def pages(halt: threading.Event):
        n = 0
        while not halt.is_set():
            yield page(n)
            n += 1
        halted.set()

    for current in read_ahead(pages, threading.Event()):
        if current.read_at >= 2:
            break
    assert halted.wait(5)
