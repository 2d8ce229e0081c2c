"""Exponential backoff with full jitter (pure).

``delay = uniform(0, min(cap, base · 2^attempt))``: spreads retries of many shards and workers so
that they do not hit a throttled or recovering service in lockstep. Thread-safe when each caller
passes its own ``random.Random`` (or uses the default, which is thread-safe in CPython).
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)
