"""The reaping routine: a pass at most once an interval, one at a time, the next at once when a page
was full, and a pass that fails is survived, counted and tried again."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from consumer.errors import SinkError
from consumer.observability.metrics import Metrics
from consumer.runtime.tombstone_reaping import ReapingRoutine


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Reap:
    """One pass per call, answering from a script (True: more left; an exception: raised)."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.done = threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        self.done.set()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _routine(reap: _Reap, clock: _Clock, metrics: Metrics) -> ReapingRoutine:
    return ReapingRoutine(reap=reap, interval=3600.0, metrics=metrics, context=lambda: None, clock=clock)


def _pass(routine: ReapingRoutine, reap: _Reap) -> None:
    reap.done.clear()
    routine.maybe_start()
    assert reap.done.wait(5)
    routine._running.join(5)  # noqa: SLF001 - the pass's thread, to read its effects


def test_passes_come_once_an_interval_and_at_once_after_a_full_page():
    clock, metrics = _Clock(), Metrics(CollectorRegistry())
    reap = _Reap(True, False, False)
    routine = _routine(reap, clock, metrics)

    _pass(routine, reap)  # a full page: more to reap
    _pass(routine, reap)  # so the next tick goes on at once
    routine.maybe_start()  # nothing more: not before the interval
    assert reap.calls == 2
    clock.now += 3600.0
    _pass(routine, reap)
    assert reap.calls == 3


def test_a_failed_pass_is_survived_and_counted_and_the_next_interval_tries_again():
    clock, metrics = _Clock(), Metrics(CollectorRegistry())
    reap = _Reap(SinkError("OpenSearch unavailable"), RuntimeError("a bug"), False)
    routine = _routine(reap, clock, metrics)

    _pass(routine, reap)  # a named failure: a warning, not a routine failure
    clock.now += 3600.0
    _pass(routine, reap)  # one nobody named: counted
    clock.now += 3600.0
    _pass(routine, reap)
    assert reap.calls == 3
    assert metrics.routine_failures.labels(routine="reaper")._value.get() == 1  # noqa: SLF001
