"""Stopping a child process of the tests: SIGTERM, then SIGKILL when it outlives its grace."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:  # type: ignore[type-arg]
    """End ``process`` (if it still runs) and reap it: SIGTERM, and SIGKILL after ``grace_seconds``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
