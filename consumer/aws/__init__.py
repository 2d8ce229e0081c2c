"""The AWS edge: signed JSON calls over keep-alive connections, call accounting, AWS's clock and the
backoff every retry against a remote service waits by. Imports nothing of the consumer above
``consumer.errors``."""
