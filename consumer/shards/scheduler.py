"""Runs the steps of any number of shard tasks on a fixed number of threads, fairly.

A *task* is anything with ``step() -> float | None``: one bounded unit of work (read a page, apply
it, checkpoint), returning the monotonic time it wants to run again, or None when it is finished.
The scheduler keeps the waiting tasks in one heap ordered by that time (ties by arrival), and each of
its threads runs the earliest task that is due. Guarantees:

* a task never runs on two threads at once (it leaves the heap while it runs), so a shard's pages
  are applied in order;
* fairness: a task that wants to run again at once (its shard has more data) is queued behind every
  task already due, so a busy shard never starves another, whatever their number;
* idle tasks cost nothing but their place in the heap until they are due, and an idle worker's
  threads do not all wake for each due task: one thread (the *leader*) waits for the earliest due
  time, the others wait to be told (a leader/follower queue, as Java's ``DelayQueue``);
* a step that raises (steps are not to) ends its task (``abandon``): it is never run again, so it
  cannot move past what the failed step left unsettled;
* ``stop()`` lets each running step finish (steps watch the stop event) and ends the threads;
  ``join()`` waits for them, bounded.

Thread-safe.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


class Task(Protocol):
    @property
    def name(self) -> str: ...

    def step(self) -> float | None: ...

    def abandon(self, error: BaseException) -> None:
        """End the task after its ``step`` raised; must not raise."""


class ShardScheduler:
    """A heap of due tasks served by ``threads`` threads."""

    def __init__(self, threads: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._threads_wanted = threads
        self._clock = clock
        self._heap: list[tuple[float, int, Task]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._stopping = False
        self._running = 0
        self._leader: threading.Thread | None = None  # the one thread waiting for the earliest due time
        self._threads: list[threading.Thread] = []
        self.steps = 0

    def start(self, context: Callable[[], None] | None = None) -> None:
        """Start the threads; ``context`` runs first on each (e.g. to bind log context)."""
        for number in range(self._threads_wanted):
            thread = threading.Thread(target=self._serve, args=(context,), name=f"shards-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def add(self, task: Task, due: float | None = None) -> None:
        """Queue ``task`` to run at ``due`` (now by default)."""
        with self._ready:
            entry = (self._clock() if due is None else due, next(self._order), task)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # earlier than what the leader waits for: a thread must look again
                self._leader = None
                self._ready.notify()

    @property
    def waiting(self) -> int:
        return len(self._heap)

    @property
    def busy(self) -> int:
        """Threads running a step right now."""
        return self._running

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the threads to end; True when they all did within ``timeout``."""
        deadline = self._clock() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - self._clock()))
        return not any(thread.is_alive() for thread in self._threads)

    def _serve(self, context: Callable[[], None] | None) -> None:
        if context is not None:
            context()
        while True:
            task = self._next_due()
            if task is None:
                return
            try:
                due = task.step()
            except Exception as exc:  # noqa: BLE001 - a task's bug must not kill a thread that serves every shard
                # Steps are not to raise; one that did is in an unknown state, so it is ended (never
                # run on: its next step could move past what this one left unsettled).
                log.exception("shard_task_step_crashed", task=task.name)
                due = None
                self._abandon(task, exc)
            finally:
                with self._ready:
                    self._running -= 1
                    self.steps += 1
            if due is not None:
                self.add(task, due)

    @staticmethod
    def _abandon(task: Task, error: BaseException) -> None:
        try:
            task.abandon(error)
        except Exception:  # noqa: BLE001 - the task is dropped either way; its owner sees it unfinished
            log.exception("shard_task_abandon_failed", task=task.name)

    def _next_due(self) -> Task | None:
        with self._ready:
            try:
                while True:
                    if self._stopping:
                        return None
                    if not self._heap:
                        self._ready.wait()
                        continue
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        _, _, task = heapq.heappop(self._heap)
                        self._running += 1
                        return task
                    if self._leader is not None:
                        self._ready.wait()  # the leader wakes for the earliest; this thread is told after
                        continue
                    me = threading.current_thread()
                    self._leader = me
                    try:
                        self._ready.wait(wait)
                    finally:
                        if self._leader is me:
                            self._leader = None
            finally:
                if self._leader is None and self._heap:
                    self._ready.notify()  # someone must lead the wait for the next task
