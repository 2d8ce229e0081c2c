"""Metrics, logs and probes: how operators see the worker."""
