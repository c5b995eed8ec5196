"""What the service has done and what it still has to do, read from both databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from dbos import WorkflowStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app import dbos_gateway, failpoints, fleet, invariants, ledger, lifecycle, work
from app.config import ConfigError, Settings
from app.database import app_tables_exist, require_reachable, short_lived_engine
from app.metrics import REGISTRY


@dataclass(frozen=True)
class PublisherInfo:
    name: str
    class_path: str
    chunk_size: int


@dataclass(frozen=True)
class StatusSnapshot:
    """Publishers, counters beside the ledger, whether the invariants hold, and work to do."""

    publishers: list[PublisherInfo]
    local_counters: list[ledger.CounterRow]
    global_counters: list[ledger.TopicRow]
    ledger_rows: int
    consistent: bool
    violations: list[str]
    work: dict[str, dict[str, int]]
    dead: dict[str, dict[str, int]]  # ended without succeeding: ERROR, CANCELLED, ...
    orphans: dict[str, int]
    fleet: fleet.FleetSnapshot

    @property
    def healthy(self) -> bool:
        """Counters agree, and no work is dead, orphaned or stranded."""
        return self.consistent and not self.dead and not self.orphans and not self.fleet.stranded

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        fleet_data = data.pop("fleet")
        data["workers"], data["stranded"] = fleet_data["workers"], fleet_data["stranded"]
        data["healthy"] = self.healthy
        data["publishers"] = [
            {"name": p.name, "class": p.class_path, "chunk_size": p.chunk_size}
            for p in self.publishers
        ]
        return data


def gather(settings: Settings) -> StatusSnapshot:
    """Read both databases: counters, ledger totals, invariants and pending work."""
    require_reachable(settings.app_db)
    require_reachable(settings.system_db)
    if not app_tables_exist(settings.app_db):
        raise ConfigError(
            f"{settings.app_db.safe} has no application tables yet: run `dbos migrate` "
            "(or start the service once)"
        )
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        report = invariants.check(conn)
    # Work, orphans and dead work alike, in one read.
    active, dead = dbos_gateway.active_and_dead_at(settings.system_db)
    dead = lifecycle.without_retried(settings.system_db, dead)  # retried: no longer dead
    return StatusSnapshot(
        publishers=[PublisherInfo(d.name, d.class_path, d.chunk_size) for d in settings.publishers],
        local_counters=report.publishers,
        global_counters=report.topics,
        ledger_rows=report.ledger_rows,
        consistent=report.ok,
        violations=report.violations,
        work=work.pending_work(active),
        dead=work.dead_work(dead),
        orphans=dict(work.find_orphans(settings, active)),
        fleet=fleet.gather(settings, active),
    )


def render(status: StatusSnapshot) -> str:
    """The snapshot as aligned text tables for a terminal."""
    return "\n".join([_render_counters(status.to_json()), "", fleet.render(status.fleet)])


def _render_counters(snapshot: dict[str, Any]) -> str:
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
    lines += [
        f"  ORPHANED publisher '{n}': {c} workflows (declare it again, or "
        f"`{work.CANCEL_COMMAND} BATCH_ID`)"
        for n, c in snapshot["orphans"].items()
    ]
    lines += [
        f"  DEAD {name:<19} "
        + " ".join(f"{state.lower()}={n}" for state, n in counts.items())
        + "  (ended without publishing: `dbos workflow list --status ERROR`)"
        for name, counts in snapshot["dead"].items()
    ]
    lines += ["", f"Healthy: {snapshot['healthy']}"]
    return "\n".join(lines)


class StateCollector(Collector):
    """Counters, queue depth, workers, takeovers, recoveries and failpoint hits, read when
    Prometheus scrapes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recovered_at_start = 0

    def collect(self) -> Iterator[Metric]:
        yield from self._ledger()
        active, dead = dbos_gateway.active_and_dead_at(self.settings.system_db)
        dead = lifecycle.without_retried(self.settings.system_db, dead)
        yield from self._queues(active, dead)
        yield from self._workers(fleet.gather(self.settings, active))
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
            "Messages published, from the local counters (they commit with the ledger rows)",
            labels=["publisher", "topic"],
        )
        with short_lived_engine(self.settings.app_db) as engine, engine.connect() as conn:
            for publisher, topic, value in ledger.local_counter_values(conn):
                published.add_metric([publisher, topic], value)
        yield published

    def _queues(
        self, active: list[WorkflowStatus], dead_now: list[WorkflowStatus]
    ) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "publisher_queue_depth", "Workflows waiting or running", labels=["queue", "status"]
        )
        for queue, counts in work.pending_work(active).items():
            for status, count in counts.items():
                depth.add_metric([queue, status], count)
        yield depth
        dead = GaugeMetricFamily(
            "publisher_dead_workflows",
            "Workflows that ended without succeeding (ERROR, CANCELLED, out of recovery attempts)",
            labels=["workflow", "status"],
        )
        for name, counts in work.dead_work(dead_now).items():
            for status, count in counts.items():
                dead.add_metric([name, status], count)
        yield dead

    def _workers(self, snapshot: fleet.FleetSnapshot) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "publisher_workers", "Workers on this database by lease state", labels=["state"]
        )
        for state, count in snapshot.counts().items():
            workers.add_metric([state], count)
        yield workers
        takeovers = CounterMetricFamily(
            "publisher_takeovers", "Workers whose unfinished work another worker took over"
        )
        takeovers.add_metric([], snapshot.takeovers_total)
        yield takeovers
        seconds = GaugeMetricFamily(
            "publisher_takeover_seconds",
            "The latest takeover: seconds from the lost worker's lease expiry to the claim "
            "(negative: claimed before expiry, the process seen gone or stopped)",
        )
        if snapshot.takeovers:
            last = snapshot.takeovers[-1]
            seconds.add_metric([], last["claimed_at"] - last["lease_expired_at"])
        yield seconds


def install_collector(settings: Settings) -> StateCollector:
    collector = StateCollector(settings)
    REGISTRY.register(collector)
    return collector
