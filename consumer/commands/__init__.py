"""The command line (``consumer …``) and the operator commands it runs: audit, redrive, backfill,
leases, config."""
