"""What the service has done and what it still has to do, read from both databases."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from dbos import WorkflowStatus
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rich.table import Table

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import CLI, ConfigError, Settings
from dbos_publishers._metrics import REGISTRY
from dbos_publishers.fleet import _orphans as orphans
from dbos_publishers.ops import _batch_metrics as batch_metrics
from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops import _work as work
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from dbos_publishers.ops._work import LongChunk
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _leases as leases
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import (
    app_tables_exist,
    read_snapshot,
    require_reachable,
    short_lived_engine,
)

T = TypeVar("T")


@dataclass(frozen=True)
class PublisherInfo:
    name: str
    class_path: str
    chunk_size: int


@dataclass(frozen=True)
class AppState:
    """A status frame's reads of the application database, all from one snapshot."""

    report: invariants.InvariantReport
    workers: list[leases.WorkerRow]
    takeovers: list[leases.TakeoverRow]
    batches: list[batch_records.BatchProgress]  # the newest planned batches


ConnectionFor = Callable[[], AbstractContextManager[sa.Connection]]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class _Reader:
    connection: ConnectionFor
    between: Callable[[], None]

    def __call__(self, read: Callable[[sa.Connection], T]) -> T:
        with self.connection() as conn:
            found = read(conn)
        self.between()
        return found


def read_app_state(connection: ConnectionFor, between: Callable[[], None] = _nothing) -> AppState:
    """Every read a status frame makes of the application database, each on `connection()`.
    `gather` hands every read the same snapshot; `between` runs after each read (a test puts a
    writer there, and hands out separate connections, to show what one snapshot prevents)."""
    read = _Reader(connection, between)
    publishers, topics = read(ledger.publisher_counts), read(ledger.topic_counts)
    return AppState(
        report=invariants.judge(publishers, topics),
        workers=read(leases.list_workers),
        takeovers=read(leases.list_takeovers),
        batches=read(batch_records.recent_batches),
    )


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
    batches: list[batch_records.BatchProgress] = field(default_factory=list)
    read_at: float = 0.0  # epoch seconds, when the snapshot was taken
    long_chunks: list[LongChunk] = field(default_factory=list)  # hung in a live worker?

    @property
    def healthy(self) -> bool:
        """Counters agree, and no work is dead, orphaned, stranded or running long."""
        stuck = self.dead or self.orphans or self.fleet.stranded or self.long_chunks
        return self.consistent and not stuck

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        fleet_data = data.pop("fleet")
        data["workers"], data["stranded"] = fleet_data["workers"], fleet_data["stranded"]
        data["healthy"] = self.healthy
        data["publishers"] = [
            {"name": p.name, "class": p.class_path, "chunk_size": p.chunk_size}
            for p in self.publishers
        ]
        data["batches"] = [batch_json(b) for b in self.batches]
        return data


def batch_json(batch: batch_records.BatchProgress) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "publisher": batch.publisher,
        "topic": batch.topic,
        "messages": batch.messages,
        "published": batch.published,
        "percent": batch.percent,
        "chunks": batch.chunks,
        "state": batch.state,
        "planned_at": batch.planned_at.isoformat(),
    }


def gather(settings: Settings) -> StatusSnapshot:
    """Read both databases: counters, ledger totals, invariants and pending work. The
    application database is read in one snapshot, so its numbers agree with each other."""
    require_reachable(settings.system_db)  # both databases named before anything is read
    require_app_tables(settings)
    read_at = time.time()
    with read_snapshot(settings.app_db) as conn:
        state = read_app_state(lambda: nullcontext(conn))
    # Work, orphans and dead work alike, in one read.
    active, dead = dbos_gateway.active_and_dead_at(settings.system_db)
    dead = lifecycle.still_dead(settings, dead)  # retried or cancelled on purpose: not dead
    return StatusSnapshot(
        publishers=[PublisherInfo(d.name, d.class_path, d.chunk_size) for d in settings.publishers],
        local_counters=state.report.publishers,
        global_counters=state.report.topics,
        ledger_rows=state.report.ledger_rows,
        consistent=state.report.ok,
        violations=state.report.violations,
        work=work.pending_work(active),
        dead=work.dead_work(dead),
        orphans=dict(orphans.find_orphans(settings, active)),
        fleet=fleet.build(settings, state.workers, state.takeovers, active),
        batches=state.batches,
        read_at=read_at,
        long_chunks=work.long_chunks(
            settings.app_db, active, _alive(state.workers), read_at * 1000
        ),
    )


def _alive(workers: list[leases.WorkerRow]) -> set[str]:
    return {w.executor_id for w in workers if w.state == "alive" and not w.expired}


def require_app_tables(settings: Settings) -> None:
    """The application database answers and holds our tables; else one line saying what to run."""
    require_reachable(settings.app_db)
    if not app_tables_exist(settings.app_db):
        raise ConfigError(
            f"{settings.app_db.safe} has no application tables yet: run `dbos migrate` "
            "(or start the service once)"
        )


def render(status: StatusSnapshot, *, terminal: bool = False) -> str:
    """The snapshot as text tables sized to their content."""
    return render_tables(*parts(status), terminal=terminal)


def parts(status: StatusSnapshot) -> list[Table | str]:
    """The counters, the ledger line, work to do, and the workers, in reading order."""
    return [*counter_parts(status), *work_lines(status), *fleet.parts(status.fleet)]


@dataclass(frozen=True)
class Rates:
    """msg/s beside each counter (`status --watch`): per (publisher, topic) and per topic."""

    local: Callable[[ledger.CounterRow], str]
    topic: Callable[[ledger.TopicRow], str]


def counter_parts(status: StatusSnapshot, rates: Rates | None = None) -> list[Table | str]:
    publishers = table(
        ["publisher", "class", "chunk size>"],
        [(p.name, p.class_path, p.chunk_size) for p in status.publishers],
        title="Publishers:",
    )
    rate = ["msg/s>"] if rates else []
    local = table(
        ["publisher", "topic", "local>", "ledger>", *rate],
        [
            (r.publisher, r.topic, r.local_counter, r.ledger_rows)
            + ((rates.local(r),) if rates else ())
            for r in status.local_counters
        ],
        title="Local counters:",
    )
    topics = table(
        ["topic", "global>", "sum(local)>", "ledger>", *rate],
        [
            (r.topic, r.global_counter, r.sum_of_locals, r.ledger_rows)
            + ((rates.topic(r),) if rates else ())
            for r in status.global_counters
        ],
        title="Global counters:",
    )
    ledger_line = "\n".join(
        [f"Ledger rows: {status.ledger_rows}  consistent: {status.consistent}"]
        + [f"  VIOLATION {v}" for v in status.violations]
    )
    return [publishers, local, topics, ledger_line]


def work_lines(status: StatusSnapshot) -> list[Table | str]:
    lines = ["Work still to do:"]
    lines += [
        f"  {queue}: pending={c['PENDING']} enqueued={c['ENQUEUED']}"
        for queue, c in status.work.items()
    ]
    lines += [
        f"  ORPHANED publisher '{n}': {c} workflows (declare it again, or "
        f"`{orphans.CANCEL_COMMAND} BATCH_ID`)"
        for n, c in status.orphans.items()
    ]
    lines += [
        f"  DEAD {name} "
        + " ".join(f"{state.lower()}={n}" for state, n in counts.items())
        + f"  (ended without publishing: `{CLI} inspect BATCH_ID --failed`, then "
        + f"`{CLI} retry BATCH_ID` or `resume BATCH_ID`)"
        for name, counts in status.dead.items()
    ]
    lines += [
        f"  RUNNING LONG {c.workflow_id} on worker {c.executor_id}: {c.running_sec:.0f} s "
        f"(over {work.LONG_CHUNK_SEC:g} s: {work.LONG_CHUNK_FIX})"
        for c in status.long_chunks
    ]
    return ["\n".join(lines), f"Healthy: {status.healthy}"]


class StateCollector(Collector):
    """Counters, queue depth, workers, takeovers, recoveries and failpoint hits, read when
    Prometheus scrapes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recovered_at_start = 0

    def collect(self) -> Iterator[Metric]:
        yield from self._ledger()
        active, dead = dbos_gateway.active_and_dead_at(self.settings.system_db)
        dead = lifecycle.still_dead(self.settings, dead)
        yield from self._queues(active, dead)
        yield from self._workers(fleet.gather(self.settings, active))
        yield from batch_metrics.collect(self.settings)
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
        unfolded = GaugeMetricFamily(
            "publisher_counter_deltas_unfolded",
            "Chunks' counter additions not yet folded into the counter rows (a backlog that only "
            "grows means no worker folds)",
        )
        with short_lived_engine(self.settings.app_db) as engine, engine.connect() as conn:
            for publisher, topic, value in counters.local_counter_values(conn):
                published.add_metric([publisher, topic], value)
            unfolded.add_metric([], counters.pending_deltas(conn))
        yield published
        yield unfolded

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
