"""The shard scheduler (fairness, one step per task at a time, idle tasks wait) and the byte budget
(backpressure): threads and conditions, no servers."""

from __future__ import annotations

import threading
import time
from collections import Counter

from consumer.shards.budget import ByteBudget
from consumer.shards.scheduler import ShardScheduler


class BusyTask:
    """Always has more data: wants to run again at once. Records how often it ran and whether two
    threads ever ran it at once."""

    def __init__(self, name: str, log: list[str], step_seconds: float = 0.001) -> None:
        self.name = name
        self._log = log
        self._running = threading.Lock()
        self._step = step_seconds
        self.overlapped = False

    def step(self) -> float | None:
        if not self._running.acquire(blocking=False):
            self.overlapped = True
            return time.monotonic()
        try:
            time.sleep(self._step)
            self._log.append(self.name)
        finally:
            self._running.release()
        return time.monotonic()


class IdleTask:
    """Polls every ``interval`` seconds; counts its steps."""

    def __init__(self, name: str, interval: float) -> None:
        self.name = name
        self.interval = interval
        self.steps = 0

    def step(self) -> float | None:
        self.steps += 1
        return time.monotonic() + self.interval


def run_for(scheduler: ShardScheduler, seconds: float) -> None:
    scheduler.start()
    time.sleep(seconds)
    scheduler.stop()
    assert scheduler.join(5)


def test_a_hot_shard_does_not_starve_the_others():
    # GIVEN one shard whose steps are 20x slower (a hot shard with big batches) and 30 busy ones,
    # served by 4 threads
    log: list[str] = []
    scheduler = ShardScheduler(threads=4)
    scheduler.add(BusyTask("hot", log, step_seconds=0.02))
    tasks = [BusyTask(f"s{i}", log) for i in range(30)]
    for task in tasks:
        scheduler.add(task)

    # WHEN they run for a while
    run_for(scheduler, 1.0)

    # THEN every shard made progress, the busy ones within a small factor of one another (round robin)
    steps = Counter(log)
    assert all(steps[task.name] > 0 for task in tasks) and steps["hot"] > 0
    counts = [steps[task.name] for task in tasks]
    assert max(counts) <= 2 * min(counts) + 2, counts
    assert not any(task.overlapped for task in tasks)


def test_a_task_never_runs_on_two_threads_at_once():
    log: list[str] = []
    scheduler = ShardScheduler(threads=8)
    task = BusyTask("only", log, step_seconds=0.002)
    scheduler.add(task)
    run_for(scheduler, 0.5)
    assert len(log) > 10 and not task.overlapped


def test_idle_tasks_run_only_when_due_and_a_finished_task_leaves():
    # GIVEN 200 idle shards polling every 0.2 s and one task that finishes after its first step
    scheduler = ShardScheduler(threads=2)
    idle = [IdleTask(f"i{i}", 0.2) for i in range(200)]
    for task in idle:
        scheduler.add(task)

    class Once:
        name = "once"
        steps = 0

        def step(self) -> float | None:
            self.steps += 1
            return None

    once = Once()
    scheduler.add(once)

    # WHEN they run for one second
    run_for(scheduler, 1.0)

    # THEN each idle task ran about five times (not in a busy loop), and the finished one once
    assert all(3 <= task.steps <= 7 for task in idle), sorted({task.steps for task in idle})
    assert once.steps == 1


def test_a_step_that_raises_ends_its_task_and_does_not_kill_the_thread():
    # GIVEN a task whose step raises (steps are not to: its state is unknown), beside a busy one
    scheduler = ShardScheduler(threads=1)

    class Broken:
        name = "broken"
        steps = 0
        abandoned: list[BaseException] = []

        def step(self) -> float | None:
            self.steps += 1
            raise RuntimeError("bug")

        def abandon(self, error: BaseException) -> None:
            self.abandoned.append(error)

    broken = Broken()
    log: list[str] = []
    scheduler.add(broken)
    scheduler.add(BusyTask("fine", log))

    # WHEN they run
    run_for(scheduler, 0.3)

    # THEN the broken task ran once and was ended (never stepped again past what it left unsettled),
    # and the other task kept running on the only thread
    assert broken.steps == 1
    assert [str(error) for error in broken.abandoned] == ["bug"]
    assert log


def test_reads_pause_at_the_budget_and_resume_as_pages_settle():
    # GIVEN a budget of 10 bytes with 12 charged
    budget = ByteBudget(10)
    budget.charge(12)
    stop = threading.Event()
    assert not budget.has_room()

    # WHEN a reader waits for room THEN it waits (backpressure) until a page settles
    assert budget.wait_for_room(stop, timeout=0.05) is False
    threading.Timer(0.05, budget.release, args=(5,)).start()
    assert budget.wait_for_room(stop, timeout=5) is True
    assert budget.used == 7 and budget.peak == 12

    # AND a stop ends the wait at once
    budget.charge(10)
    threading.Timer(0.05, stop.set).start()
    assert budget.wait_for_room(stop, timeout=5) is False


class RecordingTask:
    """Runs once, recording when."""

    def __init__(self, name: str, ran: dict[str, float]) -> None:
        self.name = name
        self._ran = ran

    def step(self) -> float | None:
        self._ran[self.name] = time.monotonic()
        return None


def test_a_task_due_before_the_one_being_waited_for_runs_first():
    # GIVEN idle threads whose leader waits for a task due in 3 s
    ran: dict[str, float] = {}
    scheduler = ShardScheduler(4)
    scheduler.start()
    later_due = time.monotonic() + 3.0
    scheduler.add(RecordingTask("later", ran), due=later_due)
    time.sleep(0.2)  # every thread is waiting now

    # WHEN tasks due now and in half a second arrive
    scheduler.add(RecordingTask("now", ran))
    soon_due = time.monotonic() + 0.5
    scheduler.add(RecordingTask("soon", ran), due=soon_due)

    # THEN each runs at its own time, not when the leader's longer wait ends
    deadline = time.monotonic() + 10
    while len(ran) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert scheduler.join(5)
    assert sorted(ran, key=ran.__getitem__) == ["now", "soon", "later"]
    assert soon_due <= ran["soon"] < later_due
    assert ran["later"] >= later_due
