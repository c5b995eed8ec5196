"""`upgrade`: move the PENDING and ENQUEUED work of older application versions to
the current `APP_VERSION`, so this version's service runs it instead of leaving it stranded.

DBOS recovers and dequeues only work of the version a process runs. Each workflow moves in one
guarded UPDATE of its own (see `dbos_gateway.move_to_version`): a crash mid-move leaves every
workflow either moved or not, and running the command again moves what is left, nothing twice.
The work then runs where it stopped: its recorded steps replay, they never run again.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from dbos import DBOSClient, WorkflowStatus

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import ConfigError, Settings
from dbos_publishers._errors import StateError
from dbos_publishers._failpoints import failpoint
from dbos_publishers.fleet import _orphans as orphans
from dbos_publishers.fleet._workers import process_token
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import (
    app_tables_exist,
    require_reachable,
    short_lived_engine,
    system_tables_exist,
)

log = structlog.get_logger()


class UpgradeRefusedError(StateError):
    """Moving the work now could run it twice, or hand it to older code."""


@dataclass(frozen=True)
class MovedWorkflow:
    workflow_id: str
    name: str
    status: str  # before the move: PENDING (it was running) or ENQUEUED
    from_version: str


@dataclass
class UpgradeResult:
    to_version: str
    moved: list[MovedWorkflow] = field(default_factory=list)
    # Listed, but no longer PENDING or ENQUEUED under their version when their turn came: they
    # ended meanwhile, or a concurrent `upgrade` moved them.
    skipped: list[str] = field(default_factory=list)

    def by_version(self) -> dict[str, int]:
        return dict(sorted(Counter(m.from_version for m in self.moved).items()))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "by_version": self.by_version()}


def upgrade(settings: Settings, from_version: str | None = None) -> UpgradeResult:
    """Move every PENDING or ENQUEUED workflow of another version (or of `from_version` only) to
    this one; refused while a live worker of such a version could be running it."""
    target = settings.application_version
    if from_version is not None and (not from_version.strip() or from_version == target):
        raise ConfigError(
            f"--from {from_version!r}: give an older version than the current APP_VERSION "
            f"({target})"
        )
    require_reachable(settings.system_db)
    require_reachable(settings.app_db)
    result = UpgradeResult(to_version=target)
    if not system_tables_exist(settings.system_db):
        return result  # DBOS never ran here: there is no work at all
    with dbos_gateway.client(settings.system_db) as client:
        _refuse_older_target(client, target)
        old = _old_work(dbos_gateway.active_workflows(client), target, from_version)
        orphans.refuse_orphans(settings, old)  # the current service could not run them either
        _refuse_live_workers(settings, {str(wf.app_version) for wf in old})
        for wf in old:
            _move(client, wf, result)
    return result


def _old_work(
    active: list[WorkflowStatus], target: str, from_version: str | None
) -> list[WorkflowStatus]:
    """Active work of the versions to move, parents before their children (sorted by id)."""
    found = [
        wf
        for wf in active
        if wf.app_version is not None
        and wf.app_version != target
        and from_version in (None, wf.app_version)
    ]
    return sorted(found, key=lambda wf: wf.workflow_id)


def _move(client: DBOSClient, wf: WorkflowStatus, result: UpgradeResult) -> None:
    version = str(wf.app_version)
    if not dbos_gateway.move_to_version(client, wf.workflow_id, version, result.to_version):
        result.skipped.append(wf.workflow_id)
        return
    result.moved.append(MovedWorkflow(wf.workflow_id, wf.name, wf.status, version))
    log.info("workflow_moved", workflow=wf.workflow_id, from_version=version, to=result.to_version)
    failpoint("upgrade.after_move")


def _refuse_older_target(client: DBOSClient, target: str) -> None:
    """A version older than the newest one DBOS has seen run here is a mistaken environment
    (the old deploy's APP_VERSION): moving the new version's work to old code is refused."""
    versions = client.list_application_versions()  # newest first
    names = [v["version_name"] for v in versions]
    if target in names and names[0] != target:
        raise UpgradeRefusedError(
            f"APP_VERSION={target} is older than version {names[0]}, which has run here since: "
            "run `upgrade` with the APP_VERSION of the deploy that is to run the work"
        )


def _refuse_live_workers(settings: Settings, versions: set[str]) -> None:
    """A live worker of a version whose work would move may be running that work right now."""
    live = [w for w in _live_workers(settings) if w.app_version in versions]
    if live:
        first = live[0]
        raise UpgradeRefusedError(
            f"a live worker of version {first.app_version} holds a lease (executor "
            f"{first.executor_id}, pid {first.pid} on {first.host}, heartbeat "
            f"{first.heartbeat_age:.1f} s ago) and may be running the work that would move: "
            "stop it (SIGTERM) or let it finish, then run `upgrade` again"
        )


def _live_workers(settings: Settings) -> list[leases.WorkerRow]:
    """Workers whose lease is alive and unexpired, but for those on this host whose process is
    gone (how a worker's own sweep tells an exited one)."""
    if not app_tables_exist(settings.app_db):
        return []
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        rows = leases.list_workers(conn, ("alive",))
    host = socket.gethostname()
    return [
        r
        for r in rows
        if not r.expired and (r.host != host or process_token(r.pid) == r.process_token)
    ]


def render(result: UpgradeResult) -> str:
    """One line for people: what moved where, and what runs it now."""
    if not result.moved and not result.skipped:
        return (
            f"nothing to move: no PENDING or ENQUEUED work of another version than "
            f"{result.to_version}"
        )
    versions = ", ".join(f"{n} of version {v}" for v, n in result.by_version().items())
    line = f"moved {len(result.moved)} workflows to version {result.to_version}"
    line += f" ({versions}); its service runs them" if result.moved else ""
    if result.skipped:
        line += f"; {len(result.skipped)} skipped (ended or moved meanwhile)"
    if not result.moved:
        return line
    counted = Counter((m.from_version, m.name, m.status) for m in result.moved)
    rows = [(v, name, status, n) for (v, name, status), n in sorted(counted.items())]
    return render_tables(line, table(["from version", "workflow", "was", "workflows>"], rows))
