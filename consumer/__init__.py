"""KCL-style DynamoDB Streams → OpenSearch consumer."""

__version__ = "0.2.0"
