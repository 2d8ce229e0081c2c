"""Copy a moto table's stream into a stream of the test stream server, in the background.

A test writes to a moto table (the truth, which it can scan) while the consumer reads a stream
with splits, trimming and faults. moto gives the table one fixed shard; ``MotoFeed`` reads it from
TRIM_HORIZON and appends every record, in order, to the server's stream (same eventName, eventID,
Keys, images and ApproximateCreationDateTime, rounded down to the second as DynamoDB sends it;
new sequence numbers; the server routes each change by its keys).

Guarantees: no record is lost, duplicated or reordered (one thread, one iterator chain, each
record appended before the next read). ``wait_caught_up`` returns once every write that finished
before the call is in the server's stream. The pump stops on ``stop()``, at the end of the moto
shard, or on the first error, which ``wait_caught_up`` then raises.
Thread-safe for the calls a test makes (``start``, ``wait_caught_up``, ``stop``) from any thread.
"""

from __future__ import annotations

import threading

import boto3

from tests.support.stream_server import StreamServer, streams_client


class MotoFeed:
    """A bounded, stoppable pump from a moto table's stream into ``stream_server``'s ``arn``."""

    def __init__(
        self,
        stream_server: StreamServer,
        arn: str,
        moto_url: str,
        table_name: str,
        poll_interval: float = 0.05,
    ) -> None:
        self._server = stream_server
        self._arn = arn
        self._moto_url = moto_url
        self._table_name = table_name
        self._poll_interval = poll_interval
        self._streams = streams_client(moto_url, max_attempts=3)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._state = threading.Condition()
        self._reads_started = 0  # guarded by _state
        self._last_empty_read = 0  # the latest read (by start order) that found nothing new
        self._copied = 0
        self._error: BaseException | None = None
        self._finished = False
        self._thread: threading.Thread | None = None

    def redirect(self, arn: str) -> None:
        """Append every record copied from now on to stream ``arn`` (a replacement stream)."""
        with self._state:
            self._arn = arn

    @property
    def copied(self) -> int:
        """Records appended to the server's stream so far."""
        with self._state:
            return self._copied

    def start(self) -> MotoFeed:
        """Resolve the table's stream and start pumping from TRIM_HORIZON (errors raise here)."""
        if self._thread is not None:
            raise RuntimeError("a MotoFeed starts once")
        iterator = self._first_iterator()
        self._thread = threading.Thread(
            target=self._pump_routine, args=(iterator,), name=f"moto-feed-{self._table_name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop pumping and wait for the thread (a read in flight finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_caught_up(self, timeout: float = 10.0) -> int:
        """Block until every moto write finished before this call is copied; returns ``copied``.

        Raises:
            TimeoutError: not caught up within ``timeout`` seconds.
            RuntimeError: the pump failed or stopped before catching up.
        """
        with self._state:
            barrier = self._reads_started
            self._wake.set()
            caught_up = self._state.wait_for(
                lambda: self._last_empty_read > barrier or self._error is not None or self._finished, timeout
            )
            if self._error is not None:
                raise RuntimeError(f"moto feed of {self._table_name} failed: {self._error!r}") from self._error
            if self._last_empty_read > barrier:
                return self._copied
            if caught_up:
                raise RuntimeError(f"moto feed of {self._table_name} stopped before catching up")
            raise TimeoutError(
                f"moto feed of {self._table_name} not caught up after {timeout} s ({self._copied} copied)"
            )

    def __enter__(self) -> MotoFeed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _first_iterator(self) -> str:
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=self._moto_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        moto_arn = dynamodb.describe_table(TableName=self._table_name)["Table"]["LatestStreamArn"]
        shard_id = self._streams.describe_stream(StreamArn=moto_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        answer = self._streams.get_shard_iterator(
            StreamArn=moto_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )
        return answer["ShardIterator"]

    def _pump_routine(self, iterator: str | None) -> None:
        try:
            while iterator and not self._stop.is_set():
                iterator, found = self._do_pump(iterator)
                if not found:
                    self._wake.wait(self._poll_interval)
                    self._wake.clear()
        except BaseException as exc:  # surfaced by wait_caught_up; the thread must not die silently
            with self._state:
                self._error = exc
                self._state.notify_all()
        finally:
            with self._state:
                self._finished = True
                self._state.notify_all()

    def _do_pump(self, iterator: str) -> tuple[str | None, bool]:
        """One read from moto, every record appended in order; the next iterator and whether any came."""
        with self._state:
            self._reads_started += 1
            read_id = self._reads_started
        page = self._streams.get_records(ShardIterator=iterator, Limit=1000)
        records = page.get("Records", [])
        for record in records:
            with self._state:
                arn = self._arn
            self._server.append(arn, record)
            with self._state:
                self._copied += 1
        with self._state:
            if not records:
                self._last_empty_read = max(self._last_empty_read, read_id)
            self._state.notify_all()
        return page.get("NextShardIterator"), bool(records)
