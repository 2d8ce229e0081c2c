"""Saying that a round of a background routine failed (pure reporting): in a way nobody anticipated
(``routine_failed``), or a step of the tick as someone named (``step_failed``).

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


def step_failed(step: str, exc: BaseException) -> str:
    """Log one failed step of the worker's coordination (a failure someone named: the lease table or
    the stream API failing); the readiness text for it."""
    log.warning("worker_tick_failed", step=step, error=str(exc), error_type=type(exc).__name__)
    return f"{step} failing: {type(exc).__name__}: {exc}"
