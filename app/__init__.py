"""Stateful, class-based publisher services on DBOS with exactly-once local and global counters."""
