"""The DynamoDB lease table: every read and conditional write of leases.

Every mutation is conditional on the ``leaseCounter`` this worker last saw and bumps it, so a
write based on a stale view of a lease fails instead of overwriting someone else's. A failed
condition is translated into ``LeaseLostError``; throttling and network faults into
``LeaseTableError`` (retriable). Thread-safe (boto3 clients are); callers serialise writes to
one lease (``HeldLease`` does).

The item reads and writes (Scan, GetItem, UpdateItem, PutItem, DeleteItem) go straight over the wire
(``consumer.aws.json_client``): at a thousand leases a worker writes a hundred or more a second and reads
the whole table every tick, and botocore's request building and answer parsing cost about 1 ms of
CPU per write (measured) — most of an idle worker's CPU. A throttled call is retried here, up to
``WRITE_ATTEMPTS`` times, as botocore's standard mode did; any other failure is reported at once
(the renewal, checkpoint and tick each retry on their own schedule). Table management (create,
describe) stays on boto3.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from consumer.aws.accounting import Observer, observed_call
from consumer.aws.backoff import backoff_delay
from consumer.aws.clock import AwsClock
from consumer.aws.json_client import WireCallError, WireClient, WireError
from consumer.errors import ConfigError, Interrupted, LeaseLostError, LeaseTableError
from consumer.leases.model import Lease

WRITE_ATTEMPTS = 3  # of an item call answered by a throttle
_WIRE_NAMES = {
    "scan": "Scan",
    "get_item": "GetItem",
    "update_item": "UpdateItem",
    "put_item": "PutItem",
    "delete_item": "DeleteItem",
}

ScanCursor = dict[str, Any]  # a Scan's LastEvaluatedKey


class LeaseTable:
    """Reads and writes the leases of one table."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        clock: Callable[[], float] = time.time,
        observe: Observer | None = None,
        stream_arn: str | None = None,
        wire: WireClient | None = None,
        aws_clock: AwsClock | None = None,
    ) -> None:
        self._client = client
        self._wire = wire or WireClient(client, "DynamoDB_20120810", aws_clock=aws_clock, observe=observe)
        self._name = table_name
        self._observe = observe
        self._clock = clock  # wall clock, only for the informational *At attributes
        self.stream_arn = stream_arn  # writes are conditional on it (None: the leases CLI, read only)

    @property
    def name(self) -> str:
        return self._name

    def unscoped(self) -> LeaseTable:
        """This table, writing leases that belong to no stream (backfill segments)."""
        if self.stream_arn is None:
            return self
        return LeaseTable(self._client, self._name, self._clock, self._observe, wire=self._wire)

    def for_stream(self, stream_arn: str | None) -> LeaseTable:
        """This table, writing the leases of ``stream_arn`` (the same client; None: this one's stream)."""
        if stream_arn is None or stream_arn == self.stream_arn:
            return self
        return LeaseTable(self._client, self._name, self._clock, self._observe, stream_arn, self._wire)

    def ensure_table(self, stop_event: threading.Event, timeout_seconds: float = 60.0) -> bool:
        """Create the lease table (on-demand billing) if missing and wait until it is ACTIVE.

        Returns whether this call created it. Raises LeaseTableError for a transient failure (the
        caller tries again), ConfigError when the table is missing and may not be created.
        """
        created = True
        try:
            self._client.create_table(
                TableName=self._name,
                KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if _code(exc) == "AccessDeniedException" and not self.exists():
                raise ConfigError(
                    f"lease table {self._name} does not exist and may not be created with these credentials: "
                    f"create it (hash key leaseKey, S) or grant dynamodb:CreateTable ({exc})"
                ) from exc
            if _code(exc) not in ("ResourceInUseException", "AccessDeniedException"):  # already there: fine
                raise LeaseTableError(f"cannot create lease table {self._name}: {exc}") from exc
            created = False
        except BotoCoreError as exc:
            raise LeaseTableError(f"cannot create lease table {self._name}: {exc}") from exc
        deadline = time.monotonic() + timeout_seconds
        while self._status() != "ACTIVE":
            if time.monotonic() > deadline:
                raise LeaseTableError(f"lease table {self._name} not ACTIVE after {timeout_seconds} s")
            if stop_event.wait(0.5):
                raise Interrupted(f"stop requested while waiting for lease table {self._name}")
        return created

    def exists(self) -> bool:
        """Whether the lease table exists (in any status). Raises LeaseTableError if unknowable."""
        try:
            self._client.describe_table(TableName=self._name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise LeaseTableError(f"describe_table on lease table {self._name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise LeaseTableError(f"describe_table on lease table {self._name} failed: {exc}") from exc
        return True

    def list_leases(self, consistent: bool = True) -> list[Lease]:
        """Every lease, sorted by key. The worker's reads are eventually consistent (half the read
        units): every decision taken from them is a conditional write, which fails on a stale view."""
        leases: list[Lease] = []
        cursor: ScanCursor | None = None
        while True:
            page, cursor = self.scan_page(cursor, consistent=consistent)
            leases.extend(page)
            if cursor is None:
                return sorted(leases, key=lambda lease: lease.lease_key)

    def scan_page(
        self, cursor: ScanCursor | None, limit: int | None = None, consistent: bool = False
    ) -> tuple[list[Lease], ScanCursor | None]:
        """One page of a Scan from ``cursor`` (None: the table's start), of at most ``limit`` leases
        (and DynamoDB's 1 MB): its leases, and the cursor of the next page (None: the table's end)."""
        kwargs: dict[str, Any] = {"TableName": self._name, "ConsistentRead": consistent}
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = cursor
        if limit is not None:
            kwargs["Limit"] = limit
        page = self._call("scan", **kwargs)
        return [Lease.from_item(item) for item in page.get("Items", [])], page.get("LastEvaluatedKey")

    def get_lease(self, key: str) -> Lease | None:
        """The lease of ``key``, read consistently, or None when there is none (GetItem)."""
        answer = self._call("get_item", TableName=self._name, Key={"leaseKey": {"S": key}}, ConsistentRead=True)
        return Lease.from_item(answer["Item"]) if "Item" in answer else None

    def create_lease(self, lease: Lease) -> bool:
        """Create the lease unless one with its key exists. Returns whether this call created it."""
        try:
            self._call(
                "put_item",
                TableName=self._name,
                Item=lease.to_item(),
                ConditionExpression="attribute_not_exists(leaseKey)",
            )
            return True
        except LeaseLostError:
            return False

    # Take, renew, checkpoint and release share one guard: ``leaseCounter = :seen``.
    #
    #   worker A: read counter=7 ........................ take(expect 7) -> fails, B got there first
    #   worker B: read counter=7 ... take(expect 7) -> ok, counter=8
    #
    # Renew, checkpoint and release also require ``leaseOwner = :me``, so a worker that lost a
    # lease can never checkpoint it again, even if the counter happened to be restored. All of them
    # require the lease to be of this worker's stream (``streamArn``; a lease written before that
    # attribute existed is adopted by the first write), so the leases of two streams never mix.

    def take(self, lease: Lease, owner: str) -> Lease:
        """Become the owner of ``lease`` as last seen. Raises LeaseLostError if it changed since."""
        switches = lease.owner_switches_since_checkpoint + (1 if lease.owner != owner else 0)
        self._update(
            lease,
            {"leaseOwner": {"S": owner}, "ownerSwitchesSinceCheckpoint": {"N": str(switches)}},
            require_owner=None,
        )
        return lease.bumped(owner=owner, owner_switches_since_checkpoint=switches)

    def renew(self, lease: Lease) -> Lease:
        """Prove this worker is alive: bump the counter. Raises LeaseLostError if not ours anymore."""
        self._update(lease, {}, require_owner=lease.owner)
        return lease.bumped()

    def checkpoint(
        self,
        lease: Lease,
        checkpoint: str,
        version: int,
        record_second: int | None = None,
        vanished_after: str | None = None,
    ) -> Lease:
        """Record that every record up to ``checkpoint`` is applied; ``version`` is the clock there.

        ``record_second`` (the checkpointed record's ApproximateCreationDateTime) and the write
        time are stored for people reading the table (``consumer leases`` shows the lag).
        ``vanished_after``: the shard's data is gone; it ends (SHARD_END) with ``endReason`` vanished
        and the last sequence number applied before, on record.
        """
        values = {
            "checkpoint": {"S": checkpoint},
            "checkpointVersion": {"N": str(version)},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "checkpointedAt": {"N": _epoch(self._clock())},
        }
        if record_second is not None:
            values["checkpointRecordAt"] = {"N": str(record_second)}
        if vanished_after is not None:
            values["endReason"] = {"S": "vanished"}
            values["vanishedAfter"] = {"S": vanished_after}
        self._update(lease, values, require_owner=lease.owner)
        return lease.bumped(
            checkpoint=checkpoint,
            checkpoint_version=version,
            owner_switches_since_checkpoint=0,
            end_reason="vanished" if vanished_after is not None else lease.end_reason,
            vanished_after=vanished_after or lease.vanished_after,
        )

    def anchor_latest(self, lease: Lease, second: int) -> Lease:
        """Record on a lease at LATEST the second before which its shard's records are not wanted
        (``Lease.latest_anchor_at``), before its first LATEST iterator is taken. Raises
        LeaseLostError if not ours anymore."""
        self._update(lease, {"latestAnchorAt": {"N": str(second)}}, require_owner=lease.owner)
        return lease.bumped(latest_anchor_at=second)

    def release(self, lease: Lease) -> None:
        """Give the lease up so another worker can take it at once (graceful handoff)."""
        self._update(lease, {}, require_owner=lease.owner, remove=("leaseOwner",))

    def delete(self, lease: Lease) -> None:
        """Delete a finished lease, unless anyone changed it since it was read."""
        self._call(
            "delete_item",
            TableName=self._name,
            Key={"leaseKey": {"S": lease.lease_key}},
            ConditionExpression="leaseCounter = :seen",
            ExpressionAttributeValues={":seen": {"N": str(lease.counter)}},
        )

    def _update(
        self,
        lease: Lease,
        values: dict[str, Any],
        require_owner: str | None,
        remove: tuple[str, ...] = (),
    ) -> None:
        """Set ``values`` (plus the counter bump and ``lastUpdatedAt``), remove ``remove``, guarded."""
        values = {
            **values,
            "leaseCounter": {"N": str(lease.counter + 1)},
            "lastUpdatedAt": {"N": _epoch(self._clock())},
        }
        if self.stream_arn is not None:
            values["streamArn"] = {"S": self.stream_arn}
        names = {f"#a{i}": name for i, name in enumerate([*values, *remove])}
        placeholders = {name: key for key, name in names.items()}
        update = "SET " + ", ".join(f"{placeholders[name]} = :v{i}" for i, name in enumerate(values))
        if remove:
            update += " REMOVE " + ", ".join(placeholders[name] for name in remove)
        expression_values = {f":v{i}": value for i, value in enumerate(values.values())}
        expression_values[":seen"] = {"N": str(lease.counter)}
        condition = f"attribute_exists(leaseKey) AND {placeholders['leaseCounter']} = :seen"
        if self.stream_arn is not None:
            stream = placeholders["streamArn"]
            condition += f" AND (attribute_not_exists({stream}) OR {stream} = :stream)"
            expression_values[":stream"] = {"S": self.stream_arn}
        if require_owner is not None:
            names["#owner"] = "leaseOwner"
            condition += " AND #owner = :me"
            expression_values[":me"] = {"S": require_owner}
        self._call(
            "update_item",
            TableName=self._name,
            Key={"leaseKey": {"S": lease.lease_key}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=expression_values,
        )

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """An item call over the wire (``_WIRE_NAMES``), or any other through boto3."""
        if operation in _WIRE_NAMES:
            return self._wire_call(operation, kwargs)
        try:
            return observed_call(self._client, operation, self._observe, **kwargs)
        except ClientError as exc:
            raise LeaseTableError(f"{operation} on lease table {self._name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise LeaseTableError(f"{operation} on lease table {self._name} failed: {exc}") from exc

    def _wire_call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                answer, _ = self._wire.call(_WIRE_NAMES[operation], request, report_as=operation)
            except WireCallError as exc:
                if exc.outcome == "conditional_failed":
                    key = (request.get("Key") or request.get("Item") or {}).get("leaseKey", {}).get("S")
                    raise LeaseLostError(f"lease {key} was changed by another worker") from exc
                if exc.outcome != "throttled" or attempt + 1 == WRITE_ATTEMPTS:
                    raise LeaseTableError(f"{operation} on lease table {self._name} failed: {exc}") from exc
                # At most two pauses of ≤ 0.05 and ≤ 0.1 s. Not on the stop event: a stopping worker
                # still renews, checkpoints and releases its leases through here.
                time.sleep(backoff_delay(attempt, 0.05, 1.0))
                continue
            except WireError as exc:
                raise LeaseTableError(f"{operation} on lease table {self._name} failed: {exc}") from exc
            return answer
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _status(self) -> str:
        return self._call("describe_table", TableName=self._name)["Table"]["TableStatus"]


def _epoch(seconds: float) -> str:
    return f"{seconds:.3f}"


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
