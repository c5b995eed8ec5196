"""Worker leases: the SQL by which workers announce themselves, heartbeat, stop, and claim the
work of a worker that is gone. Takes explicit connections; no DBOS import.

Times are epoch seconds read from the database's own clock (`db_epoch`), so workers on machines
whose clocks disagree still agree on who has expired. A claim is one guarded UPDATE: under
concurrent sweeps exactly one survivor's UPDATE matches the row, the others find it taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from dbos_publishers.store._schema import (
    takeover_workflows,
    takeovers,
    worker_publishers,
    workers,
)

WorkerState = Literal["alive", "stopped", "dead", "taken_over"]
ClaimReason = Literal["expired", "stopped", "exited"]
CLAIMABLE: tuple[WorkerState, ...] = ("alive", "stopped")


class db_epoch(FunctionElement[float]):  # noqa: N801 - reads as the SQL function it compiles to
    """The database server's clock as epoch seconds (a float)."""

    type = sa.Double()
    inherit_cache = True


@compiles(db_epoch, "postgresql")
def _pg_epoch(_element: db_epoch, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"


@compiles(db_epoch, "sqlite")
def _sqlite_epoch(_element: db_epoch, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class WorkerIdentity:
    """Who a worker process is, fixed for its life."""

    worker_id: str
    executor_id: str
    app_version: str
    host: str
    pid: int
    process_token: str
    lease_ttl_sec: float


@dataclass(frozen=True)
class WorkerRow:
    worker_id: str
    executor_id: str
    app_version: str
    host: str
    pid: int
    process_token: str
    started_at: float
    heartbeat_at: float
    lease_ttl_sec: float
    state: WorkerState
    taken_over_by: str | None
    taken_over_at: float | None
    heartbeat_age: float  # seconds since its last heartbeat, by the database's clock

    @property
    def expired(self) -> bool:
        return self.heartbeat_age > self.lease_ttl_sec


@dataclass(frozen=True)
class TakeoverRow:
    takeover_id: int
    worker_id: str
    executor_id: str
    by_worker_id: str
    by_executor_id: str
    reason: str
    lease_expired_at: float
    claimed_at: float
    workflows: int | None


def register(conn: sa.Connection, me: WorkerIdentity) -> None:
    """Announce a worker: alive, heartbeat now."""
    conn.execute(
        workers.insert().values(
            worker_id=me.worker_id,
            executor_id=me.executor_id,
            app_version=me.app_version,
            host=me.host,
            pid=me.pid,
            process_token=me.process_token,
            started_at=db_epoch(),
            heartbeat_at=db_epoch(),
            lease_ttl_sec=me.lease_ttl_sec,
            state="alive",
        )
    )


def declare_publishers(conn: sa.Connection, worker_id: str, publishers: Iterable[str]) -> None:
    """The publishers a worker runs, written as it joins."""
    rows = [{"worker_id": worker_id, "publisher": name} for name in sorted(set(publishers))]
    if rows:
        conn.execute(worker_publishers.insert(), rows)


def live_declarations(conn: sa.Connection) -> dict[str, set[str]]:
    """Each live worker (alive, lease unexpired) -> the publishers it declared (an empty set:
    a worker of a release before declarations, which may run any)."""
    w, p = workers.c, worker_publishers.c
    query = (
        sa.select(w.worker_id, p.publisher)
        .select_from(workers.outerjoin(worker_publishers, p.worker_id == w.worker_id))
        .where(w.state == "alive", w.heartbeat_at + w.lease_ttl_sec >= db_epoch())
    )
    found: dict[str, set[str]] = {}
    for worker_id, publisher in conn.execute(query):
        found.setdefault(worker_id, set()).update([publisher] if publisher else [])
    return found


def heartbeat(conn: sa.Connection, worker_id: str) -> bool:
    """Renew the lease; False when the worker is no longer alive (it was taken over)."""
    result = conn.execute(
        workers.update()
        .where(workers.c.worker_id == worker_id, workers.c.state == "alive")
        .values(heartbeat_at=db_epoch())
    )
    return result.rowcount == 1


def stop(conn: sa.Connection, worker_id: str) -> None:
    """A clean stop: its unfinished work may be claimed at once, without waiting for the TTL."""
    conn.execute(
        workers.update()
        .where(workers.c.worker_id == worker_id, workers.c.state == "alive")
        .values(state="stopped", heartbeat_at=db_epoch())
    )


def list_workers(
    conn: sa.Connection, states: tuple[WorkerState, ...] | None = None
) -> list[WorkerRow]:
    """Workers (in `states`, or all), newest first, with their heartbeat age by the database's
    clock."""
    age = (db_epoch() - workers.c.heartbeat_at).label("heartbeat_age")
    query = sa.select(*workers.c, age).order_by(workers.c.started_at.desc())
    if states is not None:
        query = query.where(workers.c.state.in_(states))
    return [WorkerRow(**row._asdict()) for row in conn.execute(query)]


def claim(
    conn: sa.Connection, target: WorkerRow, me: WorkerIdentity, reason: ClaimReason
) -> int | None:
    """Take over `target`'s work if nobody has: one guarded UPDATE, then the takeover record.

    The guard re-checks, at the row, that it is still claimable for `reason`; a concurrent
    claimer that got there first has changed its state, so this one matches nothing."""
    guard = {
        "stopped": workers.c.state == "stopped",
        "expired": workers.c.heartbeat_at + workers.c.lease_ttl_sec < db_epoch(),
        "exited": sa.true(),  # the caller saw the process gone (same host, pid not running)
    }[reason]
    claimed = conn.execute(
        workers.update()
        .where(workers.c.worker_id == target.worker_id, workers.c.state.in_(CLAIMABLE), guard)
        .values(state="taken_over", taken_over_by=me.worker_id, taken_over_at=db_epoch())
    )
    if claimed.rowcount != 1:
        return None
    return record_takeover(conn, target, me, reason)


def record_takeover(
    conn: sa.Connection, target: WorkerRow, me: WorkerIdentity, reason: ClaimReason
) -> int:
    """The takeover's record: whose work, by whom, why; returns its id."""
    inserted = conn.execute(
        takeovers.insert()
        .values(
            worker_id=target.worker_id,
            executor_id=target.executor_id,
            by_worker_id=me.worker_id,
            by_executor_id=me.executor_id,
            reason=reason,
            lease_expired_at=target.heartbeat_at + target.lease_ttl_sec,
            claimed_at=db_epoch(),
        )
        .returning(takeovers.c.takeover_id)
    )
    return int(inserted.scalar_one())


def record_recovered(conn: sa.Connection, takeover_id: int, workflow_ids: list[str]) -> None:
    """Record the workflows a takeover put back on their queues (adding to any recorded before);
    its first record, even of none, marks the takeover finished."""
    known = set(
        conn.scalars(
            sa.select(takeover_workflows.c.workflow_id).where(
                takeover_workflows.c.takeover_id == takeover_id,
                takeover_workflows.c.workflow_id.in_(workflow_ids),
            )
        )
    )
    new = sorted(set(workflow_ids) - known)
    conn.execute(
        takeovers.update()
        .where(takeovers.c.takeover_id == takeover_id)
        .values(workflows=sa.func.coalesce(takeovers.c.workflows, 0) + len(new))
    )
    if new:
        conn.execute(
            takeover_workflows.insert(),
            [{"takeover_id": takeover_id, "workflow_id": w} for w in new],
        )


def takeovers_of(conn: sa.Connection, workflow_ids: list[str]) -> dict[str, list[TakeoverRow]]:
    """For each of `workflow_ids` that was taken over, the takeovers that recovered it, oldest
    first."""
    if not workflow_ids:
        return {}
    query = (
        sa.select(takeover_workflows.c.workflow_id, *takeovers.c)
        .join(takeovers, takeovers.c.takeover_id == takeover_workflows.c.takeover_id)
        .where(takeover_workflows.c.workflow_id.in_(workflow_ids))
        .order_by(takeovers.c.takeover_id)
    )
    found: dict[str, list[TakeoverRow]] = {}
    for row in conn.execute(query):
        fields = row._asdict()
        found.setdefault(fields.pop("workflow_id"), []).append(TakeoverRow(**fields))
    return found


def list_takeovers(conn: sa.Connection) -> list[TakeoverRow]:
    query = sa.select(*takeovers.c).order_by(takeovers.c.takeover_id)
    return [TakeoverRow(**row._asdict()) for row in conn.execute(query)]


def latest_takeovers(conn: sa.Connection, executor_ids: Iterable[str]) -> dict[str, int]:
    """The newest takeover of each of these executors that was ever taken over: executor id ->
    takeover id (executors never taken over are left out)."""
    query = (
        sa.select(takeovers.c.executor_id, sa.func.max(takeovers.c.takeover_id))
        .where(takeovers.c.executor_id.in_(sorted(executor_ids)))
        .group_by(takeovers.c.executor_id)
    )
    return {executor_id: takeover_id for executor_id, takeover_id in conn.execute(query)}


def unfinished_takeovers(conn: sa.Connection, worker_id: str) -> list[TakeoverRow]:
    """Takeovers a gone worker had claimed but not yet recovered (it died between its claim and
    its recovery), followed through the workers it had claimed in turn: whoever claims
    `worker_id` inherits them, or their work would be stranded behind a finished-looking claim."""
    found: list[TakeoverRow] = []
    frontier, seen = [worker_id], {worker_id}
    while frontier:
        query = (
            sa.select(*takeovers.c)
            .where(takeovers.c.by_worker_id.in_(frontier), takeovers.c.workflows.is_(None))
            .order_by(takeovers.c.takeover_id)
        )
        rows = [TakeoverRow(**row._asdict()) for row in conn.execute(query)]
        found += rows
        frontier = [r.worker_id for r in rows if r.worker_id not in seen]
        seen.update(frontier)
    return found
