"""Shard leases: the model, the DynamoDB lease table, and the coordination among workers."""
