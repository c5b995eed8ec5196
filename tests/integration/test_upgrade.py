"""`python -m app upgrade` on real system databases (SQLite and Postgres), in this process: older
versions' PENDING and ENQUEUED work moved to the current version once, onto its own queue;
refused beside a live worker of an old version and towards an older version; a failure mid-move
finished by a second run, nothing moved twice; stranded work reported with the command."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace

import pytest
import sqlalchemy as sa
from dbos import EnqueueOptions, WorkflowStatus

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _migrate as migrate
from dbos_publishers._config import Settings
from dbos_publishers._failpoints import FailpointError
from dbos_publishers._publisher import BATCH_WORKFLOW, CHUNK_WORKFLOW, PUBLISHER_CLASS_NAME
from dbos_publishers._queues import BATCH_QUEUE, CHUNK_QUEUE
from dbos_publishers.fleet._orphans import OrphanedWorkError
from dbos_publishers.fleet._workers import process_token
from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops import _upgrade as upgrade
from dbos_publishers.ops._upgrade import UpgradeRefusedError
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import make_engine
from dbos_publishers.store._leases import WorkerIdentity
from tests.helpers import InProcessCli, ServiceRunner

CURRENT = "2"
Work = tuple[str | None, str, str | None]  # version, status, queue
INTERNAL_QUEUE = "_dbos_internal_queue"  # where DBOS's own recovery puts queue-less work
# id -> (version, status, queue): the old work `upgrade` moves, and what it must leave alone.
OLD: dict[str, Work] = {
    "batch-a": ("1", "ENQUEUED", BATCH_QUEUE),
    "batch-b": ("1", "PENDING", BATCH_QUEUE),  # was running on a worker that is gone
    "batch-b/chunk-00000": ("1", "PENDING", CHUNK_QUEUE),
    "no-queue": ("0.9", "PENDING", None),  # started without a queue (DBOS.start_workflow)
}
UNTOUCHED: dict[str, Work] = {
    "current": (CURRENT, "ENQUEUED", BATCH_QUEUE),
    "done-on-1": ("1", "SUCCESS", BATCH_QUEUE),
    "version-less": (None, "ENQUEUED", BATCH_QUEUE),  # the latest version dequeues it anyway
}


@pytest.fixture
def settings(service: ServiceRunner) -> Settings:
    """Both databases migrated; this process plays the current version's operator."""
    service.declare()
    settings = replace(service.settings(), application_version=CURRENT)
    failpoints.arm("")
    migrate.upgrade_all(settings)
    return settings


@pytest.fixture
def app_engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = make_engine(settings.app_db)
    yield engine
    engine.dispose()


def _table(settings: Settings, name: str) -> str:
    return f"dbos.{name}" if settings.system_db.backend == "postgresql" else name


def add_work(settings: Settings, work: Mapping[str, Work], publisher: str = "orders") -> None:
    """Enqueue each workflow as a client would, then set it to the state it is to be in, as a
    dequeue (PENDING on a worker now gone) or a finish (SUCCESS) would have."""
    with dbos_gateway.client(settings.system_db) as client:
        for workflow_id, (version, _, _) in work.items():
            options: EnqueueOptions = {
                "workflow_name": CHUNK_WORKFLOW if "/chunk-" in workflow_id else BATCH_WORKFLOW,
                "queue_name": BATCH_QUEUE,
                "class_name": PUBLISHER_CLASS_NAME,
                "instance_name": publisher,
                "workflow_id": workflow_id,
            }
            if version is not None:
                options["app_version"] = version
            dbos_gateway.enqueue(client, options, {"batch_id": workflow_id})
    update = (
        f"UPDATE {_table(settings, 'workflow_status')} SET status = :status, queue_name = "
        ":queue, executor_id = 'gone-worker', owner_xid = 'gone-xid' WHERE workflow_uuid = :id"
    )
    with sa.create_engine(settings.system_db.sqlalchemy_url).begin() as conn:
        for workflow_id, (_, status, queue) in work.items():
            conn.execute(sa.text(update), {"status": status, "queue": queue, "id": workflow_id})


def rows(settings: Settings) -> dict[str, tuple[object, ...]]:
    """id -> (version, status, queue, owner) as DBOS's table holds them."""
    query = (
        "SELECT workflow_uuid, application_version, status, queue_name, owner_xid "
        f"FROM {_table(settings, 'workflow_status')}"
    )
    with sa.create_engine(settings.system_db.sqlalchemy_url).connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(query))}


def worker(version: str, *, token: str | None = None, ttl: float = 60.0) -> WorkerIdentity:
    """A worker on this host, in this very process (so its process counts as running)."""
    pid = os.getpid()
    token = token or process_token(pid) or "?"
    return WorkerIdentity(
        uuid.uuid4().hex, f"w-{version}", version, socket.gethostname(), pid, token, ttl
    )


def register(engine: sa.Engine, *identities: WorkerIdentity) -> None:
    with engine.begin() as conn:
        for identity in identities:
            leases.register(conn, identity)


def test_old_work_moves_once_onto_its_own_queue(settings: Settings) -> None:
    add_work(settings, {**OLD, **UNTOUCHED})
    before = rows(settings)
    result = upgrade.upgrade(settings)
    assert sorted(m.workflow_id for m in result.moved) == sorted(OLD)
    assert result.by_version() == {"0.9": 1, "1": 3}
    after = rows(settings)
    for workflow_id, (_, _, queue) in OLD.items():
        # ENQUEUED under the current version, no owner: this version's queue runners take it.
        assert after[workflow_id] == (CURRENT, "ENQUEUED", queue or INTERNAL_QUEUE, None)
    assert {w: after[w] for w in UNTOUCHED} == {w: before[w] for w in UNTOUCHED}
    again = upgrade.upgrade(settings)
    assert (again.moved, again.skipped) == ([], [])
    assert rows(settings) == after


def test_a_move_is_one_guarded_update_a_repeat_or_an_ended_workflow_moves_nothing(
    settings: Settings,
) -> None:
    add_work(settings, {**OLD, **UNTOUCHED})
    with dbos_gateway.client(settings.system_db) as client:
        assert dbos_gateway.move_to_version(client, "batch-b", "1", CURRENT)
        assert not dbos_gateway.move_to_version(client, "batch-b", "1", CURRENT)  # moved already
        assert not dbos_gateway.move_to_version(client, "done-on-1", "1", CURRENT)  # it ended
    after = rows(settings)
    assert (after["batch-b"][0], after["done-on-1"][0]) == (CURRENT, "1")


def test_refused_when_the_work_needs_a_publisher_no_longer_declared(settings: Settings) -> None:
    add_work(settings, OLD)
    add_work(settings, {"batch-gone": ("1", "ENQUEUED", BATCH_QUEUE)}, publisher="retired")
    with pytest.raises(OrphanedWorkError, match=r"'retired' \(1 workflows\)"):
        upgrade.upgrade(settings)  # this version's service could not run it either
    assert {r[0] for r in rows(settings).values()} == {"1", "0.9"}


def test_from_moves_only_that_version(settings: Settings) -> None:
    add_work(settings, OLD)
    result = upgrade.upgrade(settings, from_version="0.9")
    assert [m.workflow_id for m in result.moved] == ["no-queue"]
    assert {w: r[0] for w, r in rows(settings).items()} == {
        **{w: "1" for w in OLD},
        "no-queue": CURRENT,
    }


def test_a_failure_mid_move_is_finished_by_a_second_run_nothing_moved_twice(
    settings: Settings,
) -> None:
    add_work(settings, OLD)
    failpoints.arm("upgrade.after_move=raise@2")
    try:
        with pytest.raises(FailpointError):
            upgrade.upgrade(settings)
    finally:
        failpoints.arm("")
    first = {w for w, r in rows(settings).items() if r[0] == CURRENT}
    assert len(first) == 2  # each move committed on its own before the failure
    second = {m.workflow_id for m in upgrade.upgrade(settings).moved}
    assert first.isdisjoint(second)
    assert first | second == set(OLD)


def test_refused_while_a_live_worker_of_an_old_version_holds_a_lease(
    settings: Settings, app_engine: sa.Engine
) -> None:
    add_work(settings, OLD)
    old_worker = worker("1")
    register(app_engine, worker(CURRENT), old_worker)
    with pytest.raises(UpgradeRefusedError, match=r"live worker of version 1 holds a lease"):
        upgrade.upgrade(settings)
    assert {r[0] for w, r in rows(settings).items()} == {"1", "0.9"}  # nothing moved
    with app_engine.begin() as conn:
        leases.stop(conn, old_worker.worker_id)
    assert len(upgrade.upgrade(settings).moved) == len(OLD)


def test_an_old_worker_whose_process_is_gone_does_not_hold_the_move_back(
    settings: Settings, app_engine: sa.Engine
) -> None:
    add_work(settings, OLD)
    # Alive by its lease, but on this host under another process token: its process is gone.
    register(app_engine, worker("1", token="an-earlier-process"))
    assert len(upgrade.upgrade(settings).moved) == len(OLD)


def test_refused_towards_a_version_older_than_one_that_ran_here(settings: Settings) -> None:
    add_work(settings, {"newer-work": ("3", "ENQUEUED", BATCH_QUEUE)})
    insert = (
        f"INSERT INTO {_table(settings, 'application_versions')} (version_id, version_name, "
        "version_timestamp, created_at, application_name) VALUES (:id, :name, :at, :at, NULL)"
    )
    with sa.create_engine(settings.system_db.sqlalchemy_url).begin() as conn:
        for name, at in ((CURRENT, 1_000), ("3", 2_000)):
            conn.execute(sa.text(insert), {"id": uuid.uuid4().hex, "name": name, "at": at})
    with pytest.raises(UpgradeRefusedError, match=r"APP_VERSION=2 is older than version 3"):
        upgrade.upgrade(settings)
    assert rows(settings)["newer-work"][0] == "3"


def test_status_reports_pending_and_enqueued_old_work_as_stranded_with_the_command(
    settings: Settings,
) -> None:
    add_work(settings, {**OLD, **UNTOUCHED})
    stranded = fleet.gather(settings).stranded
    assert sum(s.workflows for s in stranded) == len(OLD)  # ENQUEUED counts, not only PENDING
    assert {(s.app_version, s.resolve) for s in stranded} == {
        ("1", "dbos-publishers upgrade"),
        ("0.9", "dbos-publishers upgrade"),
    }
    upgrade.upgrade(settings)
    assert fleet.gather(settings).stranded == []


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_stranded_work_view_lists_work_no_live_worker_runs(
    settings: Settings, app_engine: sa.Engine
) -> None:
    add_work(settings, {**OLD, **UNTOUCHED})
    query = sa.text("SELECT workflow_id, app_version, resolve FROM stranded_work")

    def listed() -> set[tuple[str, str, str]]:
        with app_engine.connect() as conn:
            return {(r.workflow_id, r.app_version, r.resolve) for r in conn.execute(query)}

    assert listed() == set()  # no worker runs at all: the work waits, it is not stranded
    register(app_engine, worker(CURRENT))
    assert listed() == {(w, v, "dbos-publishers upgrade") for w, (v, _, _) in OLD.items()}
    register(app_engine, worker("1"))  # version 1 runs again: its work is not stranded
    assert {v for _, v, _ in listed()} == {"0.9"}


def _declared_cli(cli: InProcessCli, sqlite_runner: ServiceRunner) -> Settings:
    settings = replace(sqlite_runner.settings(), application_version=CURRENT)
    migrate.upgrade_all(settings)
    add_work(settings, OLD)
    return settings


def test_the_command_moves_the_work_and_says_so(
    cli: InProcessCli, sqlite_runner: ServiceRunner
) -> None:
    _declared_cli(cli, sqlite_runner)
    done = cli("upgrade", "--json", APP_VERSION=CURRENT)
    assert done.returncode == 0, done.stderr
    assert sorted(m["workflow_id"] for m in json.loads(done.stdout)["moved"]) == sorted(OLD)
    again = cli("upgrade", APP_VERSION=CURRENT)
    assert (again.returncode, again.stdout.strip()) == (
        0,
        "nothing to move: no PENDING or ENQUEUED work of another version than 2",
    )


@pytest.mark.parametrize(
    ("args", "live_old_worker", "message"),
    [
        (("--from", CURRENT), False, "error: --from '2': give an older version than"),
        ((), True, "error: a live worker of version 1 holds a lease"),
    ],
)
def test_the_command_refuses_in_one_line_with_exit_2(
    cli: InProcessCli,
    sqlite_runner: ServiceRunner,
    args: tuple[str, ...],
    live_old_worker: bool,
    message: str,
) -> None:
    settings = _declared_cli(cli, sqlite_runner)
    if live_old_worker:
        engine = make_engine(settings.app_db)
        register(engine, worker("1"))
        engine.dispose()
    done = cli("upgrade", *args, APP_VERSION=CURRENT)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert {r[0] for r in rows(settings).values()} == {"1", "0.9"}  # nothing moved


def test_moved_work_keeps_what_dbos_needs_to_resume_it(settings: Settings) -> None:
    """Name, class and instance stay: the current version's service finds the publisher."""
    add_work(settings, OLD)
    upgrade.upgrade(settings)
    with dbos_gateway.client(settings.system_db) as client:
        moved: list[WorkflowStatus] = dbos_gateway.workflows(client, list(OLD))
    assert {(wf.name, wf.class_name, wf.config_name, wf.app_version) for wf in moved} == {
        (BATCH_WORKFLOW, PUBLISHER_CLASS_NAME, "orders", CURRENT),
        (CHUNK_WORKFLOW, PUBLISHER_CLASS_NAME, "orders", CURRENT),
    }
