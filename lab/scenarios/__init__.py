"""Failure-simulation scenarios: the crash lab."""
