"""What the lineage and pool tests read back: the lease table's leases, whether the index has caught
up with the table, and when a worker logged an event."""

from __future__ import annotations

import datetime as dt
from typing import Any

from consumer.leases.model import Lease
from tests.support.tables import COMPOSITE_KEY, index_documents, table_documents


def leases(ddb: Any, table: str) -> dict[str, Lease]:
    """The leases of ``table``'s pool (its default lease table), by shard id, read consistently."""
    items = ddb.scan(TableName=f"{table}-cdc-leases", ConsistentRead=True)["Items"]
    return {lease.lease_key: lease for lease in map(Lease.from_item, items)}


def converged(ddb: Any, table: str, opensearch_url: str) -> bool:
    return index_documents(opensearch_url, table) == table_documents(ddb, table, COMPOSITE_KEY)


def log_time(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
