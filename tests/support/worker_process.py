"""A worker run as a real process (``python -m consumer run``), the way users run it.

Logs go to a file and are parsed as JSON lines; the metrics port is read from the
``observability_listening`` event (the worker listens on port 0, so tests never collide).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


class WorkerProcess:
    """One worker process. Always ``stop()`` it (the fixtures do)."""

    def __init__(self, env: dict[str, str], log_path: Path, logs_through_pipe: bool = False) -> None:
        """``logs_through_pipe``: the worker writes its logs to a pipe (copied to ``log_path`` by this
        process) instead of to the file itself, as in a container: for tests that limit the size of
        the files the worker may write."""
        self.log_path = log_path
        self.worker_id = env.get("CDC_WORKER_ID")
        self._log_file = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        full_env = {"PATH": os.environ.get("PATH", ""), "CDC_METRICS_PORT": "0", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"],
            env=full_env,
            stdout=subprocess.PIPE if logs_through_pipe else self._log_file,
            stderr=subprocess.STDOUT,
        )
        if logs_through_pipe:
            threading.Thread(target=self._copy_logs, daemon=True).start()
        self._port: int | None = None

    def _copy_logs(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._log_file.closed:
                return
            self._log_file.write(line)
            self._log_file.flush()

    def logs(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def events(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.logs() if event.get("event") == name]

    @property
    def port(self) -> int:
        if self._port is None:
            wait_until(
                lambda: self.events("observability_listening") or self._exited(), timeout=30, what="metrics port"
            )
            found = self.events("observability_listening")
            if not found:
                raise AssertionError(f"worker exited before listening:\n{self.log_path.read_text()}")
            self._port = found[0]["port"]
        return self._port

    def metrics(self) -> dict[str, float]:
        """Scrape /metrics: 'name{label="v",...}' → value (labels sorted)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def probe(self, path: str) -> tuple[int, str]:
        """GET a probe (``/healthz``, ``/readyz``): status and body."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` (0 when absent)."""
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))

    def _exited(self) -> bool:
        return self.process.poll() is not None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_file.close()


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until truthy; fail the test naming ``what`` after ``timeout`` seconds.

    This bounds how long a test waits for an outcome; it asserts nothing about speed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
