"""``make demo`` as a user runs it: the index converges, and Ctrl-C in the terminal (SIGINT to the
whole foreground process group) stops the writer, the worker and the emulators without a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

DEADLINE_SECONDS = 180


def test_the_demo_converges_and_a_ctrl_c_stops_it_cleanly(tmp_path: os.PathLike[str]) -> None:
    # GIVEN the demo in a process group of its own, as a shell runs a foreground job
    demo = subprocess.Popen(
        [sys.executable, "-m", "tests.support.demo", "--existing", "100", "--changes", "150"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
    )
    lines: list[str] = []
    try:
        # WHEN it reports the index equal to the table
        assert demo.stdout is not None
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C to stop." in line:
                break
        assert any("CONVERGED: index == table" in line for line in lines), "".join(lines)
        worker = int(next(line for line in lines if line.startswith("worker ")).split("pid ")[1].split(",")[0])
        (osmem,) = [pid for pid in _children(demo.pid) if b"osmem" in _cmdline(pid)]
        # AND the terminal's Ctrl-C reaches every process of the group
        os.killpg(demo.pid, signal.SIGINT)
        ended = _order_of_exits(demo, {"worker": worker, "osmem-server": osmem})
        rest, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    output = "".join(lines) + rest
    # THEN everything stops in order, and nothing fails on the way
    assert demo.returncode == 0, output
    assert "worker exited 0 after SIGTERM (leases released)" in output
    assert "stopped: worker, osmem-server, moto server" in output
    assert "Traceback" not in output, output
    assert ended == ["worker", "osmem-server"], f"osmem-server must outlive the worker that writes to it: {ended}"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(child) for child in file.read().split()]


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _order_of_exits(demo: subprocess.Popen[str], processes: dict[str, int]) -> list[str]:
    """The names of ``processes`` in the order they exit, watched until the demo itself exits."""
    ended: list[str] = []
    deadline = time.monotonic() + 90
    while len(ended) < len(processes) and time.monotonic() < deadline:
        ended += [name for name, pid in processes.items() if name not in ended and not _running(pid)]
        if demo.poll() is not None:
            break
        time.sleep(0.005)
    return ended
