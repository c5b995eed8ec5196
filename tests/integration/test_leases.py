"""Worker leases on real databases, in this process: a gone worker is claimed exactly once even
when survivors race; expiry, stop and a vanished process each make a worker claimable; SQLite
and a live executor id refuse a second worker."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl, LeaseSettings, Settings
from dbos_publishers.fleet import _workers as workers
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._database import make_engine
from dbos_publishers.store._leases import WorkerIdentity
from tests.helpers import Databases

HOST = "lab-host"


@pytest.fixture
def app_db(databases: Databases) -> DatabaseUrl:
    url = DatabaseUrl.parse(databases.app_url, "app")
    if databases.backend == "sqlite":
        migrate.upgrade(url)  # the Postgres copy comes migrated from the template
    return url


@pytest.fixture
def engine(app_db: DatabaseUrl) -> Iterator[sa.Engine]:
    engine = make_engine(app_db)
    yield engine
    engine.dispose()


def who(executor: str, *, ttl: float = 10.0, host: str = HOST, pid: int = 1) -> WorkerIdentity:
    return WorkerIdentity(uuid.uuid4().hex, executor, "1", host, pid, f"token-{executor}", ttl)


def row_of(engine: sa.Engine, worker_id: str) -> leases.WorkerRow:
    with engine.connect() as conn:
        (row,) = [r for r in leases.list_workers(conn) if r.worker_id == worker_id]
    return row


def test_racing_survivors_claim_a_stopped_worker_exactly_once(engine: sa.Engine) -> None:
    gone = who("gone")
    with engine.begin() as conn:
        leases.register(conn, gone)
        leases.stop(conn, gone.worker_id)
    target = row_of(engine, gone.worker_id)
    survivors = [who(f"survivor-{n}") for n in range(6)]
    won: list[int | None] = []
    start = threading.Barrier(len(survivors))

    def race(me: WorkerIdentity) -> None:
        start.wait()
        with engine.begin() as conn:
            won.append(leases.claim(conn, target, me, "stopped"))

    threads = [threading.Thread(target=race, args=(me,)) for me in survivors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([w for w in won if w is not None]) == 1
    with engine.connect() as conn:
        (takeover,) = leases.list_takeovers(conn)
    assert takeover.executor_id == "gone"
    assert row_of(engine, gone.worker_id).state == "taken_over"


def test_a_live_lease_is_not_claimable_as_expired_until_it_expires(engine: sa.Engine) -> None:
    alive, me = who("alive", ttl=3.0), who("me")  # long enough to claim early under load
    with engine.begin() as conn:
        leases.register(conn, alive)
    with engine.begin() as conn:
        assert leases.claim(conn, row_of(engine, alive.worker_id), me, "expired") is None
    deadline = row_of(engine, alive.worker_id)
    while not row_of(engine, alive.worker_id).expired:
        assert deadline.heartbeat_age < 60  # the database clock moves
        time.sleep(0.05)
    with engine.begin() as conn:
        assert leases.claim(conn, row_of(engine, alive.worker_id), me, "expired") is not None


def test_a_heartbeat_after_a_takeover_says_the_lease_is_lost(engine: sa.Engine) -> None:
    zombie, me = who("zombie"), who("me")
    with engine.begin() as conn:
        leases.register(conn, zombie)
        assert leases.heartbeat(conn, zombie.worker_id)
    with engine.begin() as conn:
        assert leases.claim(conn, row_of(engine, zombie.worker_id), me, "exited") is not None
    with engine.begin() as conn:
        assert not leases.heartbeat(conn, zombie.worker_id)


def _settings(app_db: DatabaseUrl, system: str, executor: str | None = None) -> Settings:
    return Settings(
        system_db=DatabaseUrl.parse(system, "system"),
        app_db=app_db,
        publishers=(),
        executor_id=executor,
        leases=LeaseSettings(heartbeat_sec=0.5, ttl_sec=5),
    )


def _worker(settings: Settings) -> workers.Worker:
    return workers.Worker(settings, workers.identity(settings))


def test_a_second_worker_on_sqlite_is_refused_while_the_first_runs(
    app_db: DatabaseUrl, databases: Databases, tmp_path: Path
) -> None:
    if databases.backend != "sqlite":
        pytest.skip("SQLite only: Postgres takes several workers")
    first = _worker(_settings(app_db, databases.system_url, "first"))
    first.join()
    second = _worker(_settings(app_db, databases.system_url, "second"))
    with pytest.raises(workers.WorkerRefusedError, match="SQLite takes one worker"):
        second.join()
    first.leave()
    assert [c.worker.executor_id for c in second.join()] == ["first"]  # stopped: claimed
    second.leave()


def test_a_live_executor_id_is_not_reused_but_a_gone_one_is(
    app_db: DatabaseUrl, databases: Databases
) -> None:
    settings = _settings(app_db, "postgresql://u@h/sys", "twin")  # several workers allowed
    first = _worker(settings)
    first.join()
    with pytest.raises(workers.WorkerRefusedError, match="belongs to a live worker"):
        _worker(settings).join()
    # The same executor id after its process is gone (a container restarted): claimed, not
    # refused; DBOS recovers that executor's own work at launch.
    with first.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE workers SET process_token = 'gone' WHERE worker_id = :w"),
            {"w": first.me.worker_id},
        )
    again = _worker(settings)
    claims = again.join()
    assert [(c.worker.worker_id, c.reason) for c in claims] == [(first.me.worker_id, "exited")]
    again.leave()
    first.engine.dispose()


def test_work_of_another_version_is_never_claimed(app_db: DatabaseUrl) -> None:
    settings = _settings(app_db, "postgresql://u@h/sys")
    old = workers.Worker(replace(settings, application_version="0"), who("old", host=HOST))
    old.me = replace(who("old"), app_version="0", host=os.uname().nodename, pid=2**22 + 1)
    with old.engine.begin() as conn:
        leases.register(conn, old.me)
        leases.stop(conn, old.me.worker_id)
    current = _worker(settings)
    assert current.join() == []
    current.leave()
    old.engine.dispose()


def test_a_claim_its_claimer_never_recovered_passes_to_whoever_claims_the_claimer(
    app_db: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """first dies; second claims it and dies before recovering; third claims second and must
    recover first's work too, or it stays stranded behind a claim nobody will make again."""
    settings = _settings(app_db, "postgresql://u@h/sys")
    first, second = who("first"), who("second")
    survivor = _worker(settings)
    with survivor.engine.begin() as conn:
        for gone in (first, second):
            leases.register(conn, gone)
        leases.stop(conn, first.worker_id)
    target = row_of(survivor.engine, first.worker_id)
    with survivor.engine.begin() as conn:
        assert leases.claim(conn, target, second, "stopped")
        leases.stop(conn, second.worker_id)  # ... and second goes before its recovery
    (claim,) = survivor.join()
    assert claim.worker.executor_id == "second"
    assert [t.executor_id for t in claim.inherited] == ["first"]
    # DBOS's re-enqueue is not launched here: record which executors the worker recovers.
    recovered: list[str] = []

    def recover_executor(executor_id: str) -> list[str]:
        recovered.append(executor_id)
        return [f"wf-of-{executor_id}"]

    monkeypatch.setattr(dbos_gateway, "recover_executor", recover_executor)
    assert survivor.recover([claim]) == 2
    assert recovered == ["first", "second"]
    with survivor.engine.connect() as conn:
        assert [t.workflows for t in leases.list_takeovers(conn)] == [1, 1]
        assert leases.unfinished_takeovers(conn, second.worker_id) == []
        marked = leases.takeovers_of(conn, ["wf-of-first", "wf-of-second", "never"])
    assert {w: [t.executor_id for t in ts] for w, ts in marked.items()} == {
        "wf-of-first": ["first"],
        "wf-of-second": ["second"],
    }
    survivor.leave()


def _survivor_of_a_stopped_worker(app_db: DatabaseUrl, gone: str) -> workers.Worker:
    """A worker (not yet joined) beside a worker `gone` that stopped and is claimable."""
    survivor = _worker(_settings(app_db, "postgresql://u@h/sys"))
    stopped = who(gone)
    with survivor.engine.begin() as conn:
        leases.register(conn, stopped)
        leases.stop(conn, stopped.worker_id)
    return survivor


def test_work_that_turns_pending_under_a_taken_over_executor_is_recovered_whenever_it_appears(
    app_db: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker frozen inside a dequeue commits it when it thaws, any time after its takeover
    (a worker killed just after a COMMIT, a moment after): its PENDING rows are recovered at the
    next sweep, however late, by any worker, unless a live worker has its executor id again.
    Work of an executor never taken over is left alone (its own worker, or a takeover, runs it)."""
    survivor = _survivor_of_a_stopped_worker(app_db, "gone")
    mine = survivor.me.executor_id
    monkeypatch.setattr(dbos_gateway, "pending_executors", lambda _v: {"gone", "stranger", mine})
    # Nothing at the claim, then the late rows, nothing for a long while, then more late rows.
    late = iter([[], ["late-1", "late-2"], *[[]] * 20, ["late-3"], ["late-4"]])
    recovered: list[str] = []

    def recover_executor(executor_id: str) -> list[str]:
        recovered.append(executor_id)
        return next(late)

    monkeypatch.setattr(dbos_gateway, "recover_executor", recover_executor)
    survivor.recover(survivor.join())
    assert survivor.recover_ownerless({"gone"}) == 0  # reused by a live worker: left to it
    assert survivor.recover_ownerless(set()) == 2
    for _ in range(20):  # no window closes: the old one stopped after three lease TTLs
        assert survivor.recover_ownerless(set()) == 0
    assert survivor.recover_ownerless(set()) == 1
    newcomer = _worker(_settings(app_db, "postgresql://u@h/sys"))  # never claimed "gone"
    assert newcomer.recover_ownerless(set()) == 1
    newcomer.engine.dispose()
    assert set(recovered) == {"gone"}  # never "stranger", never a worker's own executor
    with survivor.engine.connect() as conn:
        assert [t.workflows for t in leases.list_takeovers(conn)] == [4]
    survivor.leave()


def test_a_claim_whose_recovery_fails_is_owed_and_retried(
    app_db: DatabaseUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    survivor = _survivor_of_a_stopped_worker(app_db, "gone")
    answers: list[list[str] | Exception] = [RuntimeError("system database busy"), ["a", "b", "c"]]

    def recover_executor(_executor_id: str) -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(dbos_gateway, "recover_executor", recover_executor)
    assert survivor.recover(survivor.join()) == 0
    with survivor.engine.connect() as conn:
        assert [t.workflows for t in leases.list_takeovers(conn)] == [None]  # not yet done
    assert survivor.recover([]) == 3  # the next heartbeat pays what is owed
    with survivor.engine.connect() as conn:
        assert [t.workflows for t in leases.list_takeovers(conn)] == [3]
    assert survivor._owed == []
    survivor.leave()


def test_after_an_outage_no_lease_is_judged_expired_until_a_whole_ttl_has_passed(
    engine: sa.Engine, app_db: DatabaseUrl
) -> None:
    """Everyone's heartbeats failed in the outage: a worker back first must not take the others
    over for leases that lapsed while nobody could renew them."""
    lapsed = who("lapsed", ttl=0.01)
    with engine.begin() as conn:
        leases.register(conn, lapsed)
    while not row_of(engine, lapsed.worker_id).expired:
        pass  # the database clock moves past a 10 ms lease
    me = _worker(_settings(app_db, "postgresql://u@h/sys"))
    row = row_of(engine, lapsed.worker_id)
    assert me.gone_reason(row) == "expired"  # reachable all along: the lease lapsed for real
    me._beat_failed(sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert me.gone_reason(row) is None  # its own heartbeat failed: maybe everyone's did
    me._reachable_since = -float(me.settings.leases.ttl_sec)  # back for longer than a TTL
    assert me.gone_reason(row) == "expired"
    me.engine.dispose()
