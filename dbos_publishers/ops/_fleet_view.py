"""The workers on one database, as people and tools see them: leases, in-flight work, takeovers,
and work stranded under another application version (never taken over silently)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from dbos import WorkflowStatus
from rich.table import Table

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import CLI, Settings
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import read_snapshot

RECENT_GONE = 10  # gone workers listed beside the live ones, at most
# A gone worker is listed this long after its last heartbeat, then only kept for the record
# (its row stays in the workers table): 25 restarts do not leave 10 stale rows on show.
GONE_SHOWN_SEC = 600.0
# Moves stranded work to this version, whose workers then run it (the old version's restart,
# `APP_VERSION=<old> APP_EXECUTOR_ID=<executor> dbos start`, is the alternative: docs,
# operations/deploys).
RESOLVE = f"{CLI} upgrade"


@dataclass(frozen=True)
class WorkerView:
    executor_id: str
    app_version: str
    host: str
    pid: int
    state: str
    heartbeat_age_sec: float
    in_flight: int  # PENDING workflows DBOS records under its executor id
    takeovers: int  # workers it took over
    taken_over_by: str | None  # executor id of the worker that took it over


@dataclass(frozen=True)
class StrandedWork:
    app_version: str
    executor_id: str
    workflows: int
    resolve: str  # the one command that resolves it


@dataclass(frozen=True)
class FleetSnapshot:
    workers: list[WorkerView]
    takeovers: list[dict[str, Any]]  # the latest RECENT_GONE of workers that died
    takeovers_total: int  # workers that died and whose work another took over
    stranded: list[StrandedWork]
    adoptions_total: int = 0  # workers that stopped cleanly and whose work another adopted

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        counted = Counter(w.state for w in self.workers)
        states = ("alive", "expired", "stopped", "dead", "taken_over")
        return {state: counted[state] for state in states}


def gather(settings: Settings, active: list[WorkflowStatus] | None = None) -> FleetSnapshot:
    with read_snapshot(settings.app_db) as conn:
        rows = leases.list_workers(conn)
        takeovers = leases.list_takeovers(conn)
    if active is None:
        active = dbos_gateway.active_workflows_at(settings.system_db)
    return build(settings, rows, takeovers, active)


def build(
    settings: Settings,
    rows: list[leases.WorkerRow],
    takeovers: list[leases.TakeoverRow],
    active: list[WorkflowStatus],
) -> FleetSnapshot:
    """The snapshot from the worker and takeover rows and DBOS's active workflows."""
    pending = Counter(wf.executor_id for wf in active if wf.status == "PENDING")
    died = [t for t in takeovers if t.reason != "stopped"]  # a clean stop's is an adoption
    adopted = {t.worker_id for t in takeovers if t.reason == "stopped"}
    by_worker = Counter(t.by_worker_id for t in died)
    executor_of = {r.worker_id: r.executor_id for r in rows}
    alive = [r for r in rows if r.state == "alive"]
    gone = [r for r in rows if r.state != "alive" and r.heartbeat_age <= GONE_SHOWN_SEC]
    views = [
        WorkerView(
            executor_id=r.executor_id,
            app_version=r.app_version,
            host=r.host,
            pid=r.pid,
            state=_shown_state(r, adopted),
            heartbeat_age_sec=round(r.heartbeat_age, 1),
            in_flight=pending[r.executor_id] if r.state in leases.CLAIMABLE else 0,
            takeovers=by_worker[r.worker_id],
            taken_over_by=executor_of.get(r.taken_over_by or ""),
        )
        for r in [*alive, *gone[:RECENT_GONE]]
    ]
    return FleetSnapshot(
        workers=views,
        takeovers=[asdict(t) for t in died[-RECENT_GONE:]],
        takeovers_total=len(died),
        stranded=stranded_work(settings, active, rows),
        adoptions_total=len(adopted),
    )


def _shown_state(row: leases.WorkerRow, adopted: set[str]) -> str:
    # A heartbeat older than the TTL: not alive to anyone, and soon taken over. A worker that
    # stopped cleanly stays "stopped" once its work was adopted: it was not taken over.
    if row.state == "alive" and row.expired:
        return "expired"
    return "stopped" if row.worker_id in adopted else row.state


def stranded_work(
    settings: Settings, active: list[WorkflowStatus], rows: list[leases.WorkerRow]
) -> list[StrandedWork]:
    """PENDING or ENQUEUED work of another application version whose executor no live worker
    holds: this version's workers neither recover nor dequeue it. (ENQUEUED work carries its
    enqueuer's executor id.) Version-less work is not stranded: the latest version takes it."""
    held = {r.executor_id for r in rows if r.state == "alive" and not r.expired}
    stranded = Counter(
        (wf.app_version, wf.executor_id or "?")
        for wf in active
        if wf.app_version is not None
        and wf.app_version != settings.application_version
        and wf.executor_id not in held
    )
    return [
        StrandedWork(app_version=version, executor_id=executor, workflows=count, resolve=RESOLVE)
        for (version, executor), count in sorted(stranded.items())
    ]


def render(snapshot: FleetSnapshot) -> str:
    return render_tables(*parts(snapshot))


def _by(worker: WorkerView) -> str:
    return (
        f" (work adopted by {worker.taken_over_by})"
        if worker.state == "stopped"
        else (f" (by {worker.taken_over_by})")
    )


def parts(snapshot: FleetSnapshot) -> list[Table | str]:
    """The workers table, then a line per stranded version."""
    rows = [
        (
            w.executor_id,
            w.app_version,
            f"{w.host}/{w.pid}",
            w.state + (_by(w) if w.taken_over_by else ""),
            f"{w.heartbeat_age_sec:.1f}s",
            w.in_flight,
            w.takeovers,
        )
        for w in snapshot.workers
    ]
    headers = ["executor", "version", "host/pid", "state", "heartbeat>", "in-flight>"]
    found: list[Table | str] = [table([*headers, "takeovers>"], rows, title="Workers:")]
    found += [
        f"STRANDED {s.workflows} workflows of version {s.app_version} "
        f"(executor {s.executor_id}): {s.resolve}"
        for s in snapshot.stranded
    ]
    return found
