"""KCL-style DynamoDB Streams → OpenSearch consumer."""

__version__ = "0.1.0"
