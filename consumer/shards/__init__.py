"""Stream shards: the API port, lineage decisions and the per-shard consumer."""
