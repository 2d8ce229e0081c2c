"""Where changes go: OpenSearch, and the dead-letter destination for records that cannot."""
