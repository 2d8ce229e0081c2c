"""Saying that a round of a background routine failed in a way nobody anticipated (pure reporting).

A supervised routine (lease renewal, the tick, shard sync, the tombstone reaper, the backfill)
survives such a round: ``routine_failed`` logs it with its traceback (``routine_round_failed``),
counts it (``cdc_routine_failures_total{routine}``) and returns what readiness may say about it.
Thread-safe.
"""

from __future__ import annotations

import structlog

from consumer.observability.metrics import Metrics

log = structlog.get_logger(__name__)


def routine_failed(metrics: Metrics, routine: str, exc: BaseException) -> str:
    """Log and count one failed round of ``routine``; the readiness text for it."""
    metrics.routine_failures.labels(routine=routine).inc()
    log.error(
        "routine_round_failed", routine=routine, error_type=type(exc).__name__, error=str(exc)[:500], exc_info=exc
    )
    return f"{routine} failing: {type(exc).__name__}: {exc}"
