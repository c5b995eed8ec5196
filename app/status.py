"""What the service has done and what it still has to do, read from both databases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from dbos import WorkflowStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app import failpoints, invariants, ledger
from app.config import ConfigError, Settings
from app.database import app_tables_exist, require_reachable, short_lived_engine
from app.metrics import REGISTRY
from app.queues import BATCH_QUEUE, CHUNK_QUEUE
from app.runtime import ACTIVE_STATUSES, active_workflows, find_orphans


def gather(settings: Settings) -> dict[str, Any]:
    """A JSON-ready snapshot: publishers, counters, ledger totals, invariants and pending work."""
    require_reachable(settings.app_db)
    require_reachable(settings.system_db)
    if not app_tables_exist(settings.app_db):
        raise ConfigError(
            f"{settings.app_db.safe} has no application tables yet: run `dbos migrate` "
            "(or start the service once)"
        )
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        report = invariants.check(conn)
    active = active_workflows(settings)  # one read serves both the work and the orphans
    return {
        "publishers": [
            {"name": d.name, "class": d.class_path, "chunk_size": d.chunk_size}
            for d in settings.publishers
        ],
        "local_counters": [asdict(row) for row in report.publishers],
        "global_counters": [asdict(row) for row in report.topics],
        "ledger_rows": report.ledger_rows,
        "consistent": report.ok,
        "violations": report.violations,
        "work": pending_work(active),
        "orphans": dict(find_orphans(settings, active)),
    }


def pending_work(active: list[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of PENDING and ENQUEUED workflows per queue (publisher queues and recovery)."""
    counts: dict[str, Counter[str]] = {}
    for wf in active:
        queue = wf.queue_name or "(no queue)"
        counts.setdefault(queue, Counter())[wf.status] += 1
    for queue in (BATCH_QUEUE, CHUNK_QUEUE):
        counts.setdefault(queue, Counter())
    return {queue: {s: c[s] for s in ACTIVE_STATUSES} for queue, c in sorted(counts.items())}


def render(snapshot: dict[str, Any]) -> str:
    """The snapshot as aligned text tables for a terminal."""
    lines = ["Publishers:"]
    lines += [
        f"  {p['name']:<16} {p['class']}  chunk_size={p['chunk_size']}"
        for p in snapshot["publishers"]
    ]
    lines += ["", f"  {'publisher':<16} {'topic':<20} {'local':>10} {'ledger':>10}"]
    lines += [
        f"  {r['publisher']:<16} {r['topic']:<20} {r['local_counter']:>10} {r['ledger_rows']:>10}"
        for r in snapshot["local_counters"]
    ]
    lines += ["", f"  {'topic':<20} {'global':>10} {'sum(local)':>10} {'ledger':>10}"]
    lines += [
        f"  {r['topic']:<20} {r['global_counter']:>10} {r['sum_of_locals']:>10}"
        f" {r['ledger_rows']:>10}"
        for r in snapshot["global_counters"]
    ]
    lines += ["", f"Ledger rows: {snapshot['ledger_rows']}  consistent: {snapshot['consistent']}"]
    lines += [f"  VIOLATION {v}" for v in snapshot["violations"]]
    lines += ["", "Work still to do:"]
    lines += [
        f"  {queue:<24} pending={c['PENDING']} enqueued={c['ENQUEUED']}"
        for queue, c in snapshot["work"].items()
    ]
    lines += [f"  ORPHANED publisher '{n}': {c} workflows" for n, c in snapshot["orphans"].items()]
    return "\n".join(lines)


class StateCollector(Collector):
    """Ledger counts, queue depth, recoveries and failpoint hits, read when Prometheus scrapes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recovered_at_start = 0

    def collect(self) -> Iterator[Metric]:
        yield from self._ledger()
        yield from self._queues()
        recovered = GaugeMetricFamily(
            "publisher_recovered_workflows", "Pending workflows this process recovered at start"
        )
        recovered.add_metric([], self.recovered_at_start)
        yield recovered
        fired = CounterMetricFamily(
            "publisher_failpoint_fired", "Failpoints fired in this process", labels=["failpoint"]
        )
        for name, count in sorted(failpoints.fired_counts().items()):
            fired.add_metric([name], count)
        yield fired

    def _ledger(self) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "publisher_messages_published",
            "Messages in the ledger (exactly-once, from the database)",
            labels=["publisher", "topic"],
        )
        with short_lived_engine(self.settings.app_db) as engine, engine.connect() as conn:
            for row in ledger.publisher_counts(conn):
                published.add_metric([row.publisher, row.topic], row.ledger_rows)
        yield published

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "publisher_queue_depth", "Workflows waiting or running", labels=["queue", "status"]
        )
        for queue, counts in pending_work(active_workflows(self.settings)).items():
            for status, count in counts.items():
                depth.add_metric([queue, status], count)
        yield depth


def install_collector(settings: Settings) -> StateCollector:
    collector = StateCollector(settings)
    REGISTRY.register(collector)
    return collector
