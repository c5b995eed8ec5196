"""`doctor`: is this deployment able to work? Each check is one line, ok or a problem with the
one command that fixes it; the checks reuse those of the readiness probe (`_api`), `status`
(`fleet._orphans`, `_work`, `_fleet_view`) and the connection budget (`_connections`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, cast

import sqlalchemy as sa
from dbos import SQLAlchemyDatasource, WorkflowStatus

from dbos_publishers import _connections as connections
from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import DatabaseUrl, Settings
from dbos_publishers._errors import AppError
from dbos_publishers.fleet import _orphans as orphans
from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops import _work as work
from dbos_publishers.ops._api import readiness_checks
from dbos_publishers.store import _leases as leases
from dbos_publishers.store import _views as views
from dbos_publishers.store._database import (
    read_snapshot,
    require_reachable,
    short_lived_engine,
    sqlite_file_missing,
)

# Every client of the database but this one, counted per database (only the chunk transactions'
# sessions name themselves, after their worker).
CONNECTIONS_IN_USE = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
START_SERVICE = "dbos start"
LONG_CHUNKS_SHOWN = 5
NO_DATASOURCE = cast("SQLAlchemyDatasource", None)  # construction never uses it
# Chunk transactions open longer than the lease TTL, by worker: each session names its worker.
LONG_CHUNK_TRANSACTIONS = sa.text(
    "SELECT substr(application_name, length(:prefix) + 2) AS executor_id, count(*) AS open, "
    "max(extract(epoch FROM now() - xact_start)) AS oldest_sec, "
    "string_agg(DISTINCT coalesce(wait_event_type, state), ', ') AS doing "
    "FROM pg_stat_activity WHERE application_name LIKE :prefix || ' %' "
    "AND xact_start < now() - make_interval(secs => :bound) GROUP BY 1 ORDER BY 1"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None  # the one command (or step) that fixes it


@dataclass(frozen=True)
class _Found:
    """What several checks read once."""

    active: list[WorkflowStatus]
    workers: list[leases.WorkerRow]


def examine(settings: Settings) -> list[Check]:
    """Every check, in the order a fix would go: databases, schema, code, work, capacity."""
    missing = [url for url in (settings.system_db, settings.app_db) if sqlite_file_missing(url)]
    if missing:  # a probe would create the file: say so instead
        return [
            Check(url.label, False, f"{url.safe} does not exist yet", START_SERVICE)
            for url in missing
        ]
    ready = readiness_checks(settings)
    checks = [
        _reachable("system database", ready["system_database"], settings.system_db),
        _reachable("app database", ready["app_database"], settings.app_db),
    ]
    if not (ready["system_database"] and ready["app_database"]):
        return [*checks, Check("the rest", False, "skipped: needs both databases", None)]
    checks.append(_migrations(ready["migrations_at_head"]))
    checks += [_views(settings), _publishers(settings)]
    if not ready["migrations_at_head"]:
        return checks
    found = _read(settings)
    checks += [_orphans(settings, found), _stranded(settings, found), _workers(found)]
    checks += [_ownerless(settings, found), _long_chunks(settings, found)]
    checks.append(_long_transactions(settings))
    return [*checks, _connections(settings, found)]


def _read(settings: Settings) -> _Found:
    active = dbos_gateway.active_workflows_at(settings.system_db)
    with read_snapshot(settings.app_db) as conn:
        return _Found(active=active, workers=leases.list_workers(conn))


def _reachable(name: str, ok: bool, url: DatabaseUrl) -> Check:
    if ok:
        return Check(name, True, f"{url.safe} reachable")
    try:
        require_reachable(url)
        reason = f"{url.safe} answers, but a query failed"
    except AppError as exc:
        reason = str(exc)
    start = "docker compose up -d --wait postgres" if url.backend == "postgresql" else None
    return Check(name, False, reason, start or f"check {url.label} (docs: reference/configuration)")


def _migrations(at_head: bool) -> Check:
    if at_head:
        return Check("migrations", True, "the application schema is at alembic's head")
    return Check("migrations", False, "the application schema is behind the code", "dbos migrate")


def _views(settings: Settings) -> Check:
    """The views that join DBOS's tables (`store._views`): created by any upgrade to head once
    DBOS's tables are in the application database (Postgres, one database for both URLs)."""
    name = "DBOS-joined views"
    shared = (
        settings.app_db.backend == "postgresql" and settings.app_db.raw == settings.system_db.raw
    )
    if not shared:
        return Check(name, True, "not expected: they need both URLs on one Postgres database")
    with short_lived_engine(settings.app_db) as engine:
        missing = sorted(set(views.JOINING_DBOS) - set(sa.inspect(engine).get_view_names()))
    if not missing:
        return Check(name, True, ", ".join(views.JOINING_DBOS) + " present")
    return Check(name, False, f"missing {', '.join(missing)}", "dbos migrate")


def _publishers(settings: Settings) -> Check:
    names = ", ".join(d.name for d in settings.publishers)
    try:
        blueprint = runtime.validate(settings)
        _construct_each(blueprint)
    except AppError as exc:
        return Check("publishers", False, str(exc), "fix the publishers file (APP_PUBLISHERS_FILE)")
    return Check("publishers", True, f"{names} importable, options accepted, constructed")


def _construct_each(blueprint: runtime.Blueprint) -> None:
    """Construct every declared publisher as `serve` does, off DBOS's record and without a
    datasource (construction must not touch the database: that happens in `open`)."""
    isolation = runtime.isolation_level(blueprint.settings.app_db)
    with dbos_gateway.instances_off_the_record():
        for declaration in blueprint.settings.publishers:
            cls = blueprint.classes[declaration.name]
            runtime.construct(cls, declaration, NO_DATASOURCE, isolation)


def _orphans(settings: Settings, found: _Found) -> Check:
    undeclared = orphans.orphaned_workflows(settings, found.active)
    if not undeclared:
        return Check("orphaned work", True, "every pending workflow's publisher is declared")
    name, ids = next(iter(undeclared.items()))
    counted = ", ".join(f"'{n}' ({len(i)} workflows)" for n, i in undeclared.items())
    return Check(
        "orphaned work",
        False,
        f"pending work of undeclared publishers: {counted}",
        orphans.orphan_resolution(name, ids),
    )


def _stranded(settings: Settings, found: _Found) -> Check:
    stranded = fleet.stranded_work(settings, found.active, found.workers)
    if not stranded:
        return Check("stranded work", True, "no pending work of another version left unrun")
    counted = ", ".join(f"{s.workflows} of version {s.app_version}" for s in stranded)
    return Check("stranded work", False, f"workflows no live worker runs: {counted}", fleet.RESOLVE)


def _live(found: _Found) -> list[leases.WorkerRow]:
    return [w for w in found.workers if w.state == "alive" and not w.expired]


def _workers(found: _Found) -> Check:
    live = _live(found)
    if live:
        shown = ", ".join(w.executor_id for w in live)
        return Check("queue workers", True, f"{len(live)} alive with a live lease: {shown}")
    waiting = sum(1 for wf in found.active if wf.status == "ENQUEUED")
    return Check(
        "queue workers",
        False,
        f"no worker holds a live lease; {waiting} workflows wait",
        START_SERVICE,
    )


def _ownerless(settings: Settings, found: _Found) -> Check:
    """PENDING work of this version under an executor that was taken over or stopped, or that no
    worker ever announced: no live worker runs it (one being taken over is not counted yet)."""
    name = "pending work without a live owner"
    if not _live(found):
        return Check(name, True, "no live worker: see queue workers")
    rows = {w.executor_id: w for w in found.workers}
    counts = Counter(
        wf.executor_id
        for wf in found.active
        if wf.status == "PENDING"
        and wf.app_version == settings.application_version
        and wf.executor_id is not None
        and (wf.executor_id not in rows or rows[wf.executor_id].state != "alive")
    )
    if not counts:
        return Check(name, True, "every PENDING workflow runs under a live or expiring lease")
    shown = ", ".join(f"{n} under {executor}" for executor, n in sorted(counts.items()))
    return Check(
        name,
        False,
        f"PENDING workflows no live worker runs: {shown}",
        "a live worker recovers them at its next sweep; if they stay, start a worker with "
        "APP_EXECUTOR_ID set to that executor",
    )


def _long_chunks(settings: Settings, found: _Found) -> Check:
    """Chunks a live worker has run for longer than work.LONG_CHUNK_SEC (see there)."""
    name = "chunks running long"
    alive = {w.executor_id for w in _live(found)}
    running = work.long_chunks(settings.app_db, found.active, alive, time.time() * 1000)
    if not running:
        return Check(name, True, f"none running longer than {work.LONG_CHUNK_SEC:g} s")
    shown = "; ".join(
        f"{c.workflow_id} on worker {c.executor_id}, {c.running_sec:.0f} s"
        for c in running[:LONG_CHUNKS_SHOWN]
    )
    hidden = len(running) - LONG_CHUNKS_SHOWN
    more = f" (and {hidden} more)" if hidden > 0 else ""
    return Check(
        name,
        False,
        f"{len(running)} running longer than {work.LONG_CHUNK_SEC:g} s: {shown}{more}",
        work.LONG_CHUNK_FIX,
    )


def _long_transactions(settings: Settings) -> Check:
    """Chunk transactions open longer than the lease TTL (Postgres): a worker stuck inside one
    holds its counter rows, and every worker's chunks of those topics wait behind it."""
    name = "chunk transactions"
    if settings.app_db.backend != "postgresql":
        return Check(name, True, "SQLite: one worker, no session to watch")
    bound = settings.leases.ttl_sec
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        rows = conn.execute(
            LONG_CHUNK_TRANSACTIONS, {"prefix": connections.CHUNK_APPLICATION_NAME, "bound": bound}
        ).all()
    if not rows:
        return Check(name, True, f"none open longer than the lease TTL ({bound:g} s)")
    shown = "; ".join(
        f"worker {r.executor_id}: {r.open} open, the oldest {r.oldest_sec:.0f} s ({r.doing})"
        for r in rows
    )
    return Check(
        name,
        False,
        f"open longer than the lease TTL ({bound:g} s): {shown}",
        "look at that worker (a hang, a freeze, a cut link); its sessions end within half the "
        "TTL once idle, or stop it",
    )


def _connections(settings: Settings, found: _Found) -> Check:
    name = "connections"
    if settings.app_db.backend != "postgresql":
        return Check(name, True, "SQLite: no connection budget applies")
    used = _count(settings.app_db)
    if settings.system_db.raw != settings.app_db.raw and settings.system_db.backend == "postgresql":
        used += _count(settings.system_db)
    workers = len(_live(found))
    budget = settings.connections * workers
    detail = (
        f"{used} in use (every connection to the databases but this one's, from "
        f"pg_stat_activity) against {budget} = [workers] connections {settings.connections} x "
        f"{workers} live workers (plus the CLI's own few)"
    )
    if workers and used > budget:
        return Check(name, False, detail, "lower the load or raise APP_CONNECTIONS, then restart")
    return Check(name, True, detail)


def _count(url: DatabaseUrl) -> int:
    with short_lived_engine(url) as engine, engine.connect() as conn:
        return int(conn.scalar(CONNECTIONS_IN_USE) or 0)


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{'ok' if check.ok else 'PROBLEM':<8} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"{'':<8} fix: {check.fix}")
    problems = sum(not c.ok for c in checks)
    lines.append(f"\n{problems} problem{'s' if problems != 1 else ''}" if problems else "\nall ok")
    return "\n".join(lines)


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}
