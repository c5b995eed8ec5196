"""Prometheus instruments observed in-process (timings). Counts that must be exact are read
from the databases at scrape time by dbos_publishers.ops._status.StateCollector."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()
CHUNK_SECONDS = Histogram(
    "publisher_chunk_seconds",
    "Time to build and commit one chunk transaction (checkpoint included)",
    ["publisher"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Per process, like the histogram: a sink's health is seen where its deliveries run; replayed
# `deliver` steps (checkpointed before a crash) are not attempts and are not counted.
DELIVER_ATTEMPTS = Counter(
    "publisher_deliver_attempts",
    "Calls of a publisher's deliver (each retry of the deliver step is one)",
    ["publisher"],
    registry=REGISTRY,
)
DELIVER_FAILURES = Counter(
    "publisher_deliver_failures",
    "Calls of a publisher's deliver that raised (retried or not)",
    ["publisher"],
    registry=REGISTRY,
)
