"""`python -m app bench`: end-to-end publishing throughput against a raw-insert ceiling."""
