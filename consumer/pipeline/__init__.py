"""A record's way from a stream record (or a Scan item) to a ``_bulk`` action, in pure functions:
attribute values, document ids, versions, filters, field rules, projection, drift decisions, bulk
actions, dead-letter entries and the repair decisions of audit and redrive. No I/O; imports nothing of
the consumer but ``consumer.errors``."""
