"""The consumer's error hierarchy.

Vendor errors (botocore, opensearch-py, urllib3) are translated into these classes once, at the
boundary that calls the vendor. Callers decide what to do from the class and its ``retriable``
flag, never from vendor error codes.
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base class. ``retriable`` says whether repeating the same call later can succeed."""

    retriable = False


class ConfigError(ConsumerError):
    """The environment or the AWS resources are set up in a way the consumer cannot run with.

    The message names what is wrong and what to change; startup fails with it.
    """


class GenerationRefused(ConsumerError):
    """This configuration may not write the index generation there is (``consumer.pipeline.generations``);
    the worker waits, not ready, until a generation of its shape exists. The message says what to run."""


class DuplicateWorkerIdError(ConfigError):
    """Another live worker uses this worker's id: each would treat the other's leases as its own."""


class StreamSetupError(ConfigError):
    """The table has no stream, or its stream view type carries no new images."""


class LeaseLostError(ConsumerError):
    """A conditional lease write failed: another worker owns the lease now, or it was deleted."""


class LeaseTableError(ConsumerError):
    """The lease table could not be read or written for a transient reason (throttling, network)."""

    retriable = True


class StreamError(ConsumerError):
    """A DynamoDB Streams call failed for a transient reason (network, 5xx, unknown iterator)."""

    retriable = True


class ThrottledError(StreamError):
    """GetRecords or GetShardIterator answered LimitExceededException: back off, then retry."""


class IteratorExpiredError(StreamError):
    """The shard iterator is older than 15 minutes: get a new one after the last applied record."""


class TrimmedDataError(StreamError):
    """The requested position is older than the stream's 24 h retention: records were lost."""

    retriable = False


class ShardNotFoundError(StreamError):
    """The shard or stream no longer exists (deleted stream, or a shard past retention)."""

    retriable = False


class SinkError(ConsumerError):
    """An OpenSearch request failed as a whole for a transient reason (5xx, 429, connection)."""

    retriable = True


class DeadLetterError(SinkError):
    """A dead-letter destination (SQS, S3) refused or failed a write: the batch must not be checkpointed.

    A SinkError, so the shard consumer retries the whole batch as it does an OpenSearch failure.
    """


class RecordError(ConsumerError):
    """A stream record cannot be turned into an index action: malformed or unrepresentable.

    Such a record is poison: it is dead-lettered with this message and the shard moves on.
    """


class Interrupted(ConsumerError):
    """Stop was requested while a batch was in flight.

    The batch is abandoned: nothing past the last acknowledged record is checkpointed, so the next
    owner of the shard applies it again (harmless under external versioning).
    """
