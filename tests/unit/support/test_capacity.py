"""The front's bill (tests.support.capacity) is what the lease-table benchmark compares the native
workers and the KCL with: it must charge as DynamoDB does, or the comparison means nothing."""

from __future__ import annotations

from consumer.leases.model import Lease
from tests.support.capacity import capacity_units, item_size


def test_a_lease_item_is_sized_as_dynamodb_sizes_it():
    # "leaseKey" (8) + 6 bytes, "leaseCounter" (12) + the number 7 (1 byte + 1), ...
    assert item_size({"leaseKey": {"S": "shard1"}, "leaseCounter": {"N": "7"}}) == 8 + 6 + 12 + 2
    lease = Lease("shardId-00000001718000000000-0000abcd", "worker-1", 12345, "4900000000000000000000012345")
    assert 150 < item_size(lease.to_item()) < 1024  # a lease write is one write unit


def test_writes_cost_a_unit_per_started_kilobyte_and_reads_per_started_4_kb_halved_when_eventual():
    update = {"TableName": "leases", "Key": {"leaseKey": {"S": "s"}}, "ExpressionAttributeValues": {":v0": {"N": "1"}}}
    assert capacity_units("UpdateItem", update, {}) == (0.0, 1.0)
    big = {"TableName": "t", "Item": {"pk": {"S": "k"}, "blob": {"S": "x" * 3000}}}
    assert capacity_units("PutItem", big, {}) == (0.0, 3.0)
    page = {"Items": [{"leaseKey": {"S": "x" * 1000}}] * 5}  # 5 × 1008 bytes: two 4 KB blocks
    assert capacity_units("Scan", {"ConsistentRead": True}, page) == (2.0, 0.0)
    assert capacity_units("Scan", {}, page) == (1.0, 0.0)
    assert capacity_units("Scan", {}, {"Items": []}) == (0.5, 0.0)  # an empty page still costs its minimum
    assert capacity_units("DescribeTable", {"TableName": "t"}, {"Table": {}}) == (0.0, 0.0)
