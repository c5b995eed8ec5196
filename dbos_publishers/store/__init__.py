"""The store: the application tables and the SQL that reads and writes them, on explicit
connections (no DBOS import)."""
