"""The running service: vendor clients, the composition root (``assembly``), the worker's tick, the
backfill job and the process (``app``)."""
