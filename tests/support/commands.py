"""Operator commands run as operators run them: ``python -m consumer ARGS`` with the workers'
environment (and nothing else of the test process's), output captured."""

from __future__ import annotations

import os
import subprocess
import sys


def consumer(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
