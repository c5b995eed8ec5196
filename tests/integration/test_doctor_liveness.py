"""`doctor` names what stops a fleet without failing it: a chunk transaction open longer than the
lease TTL (a hung, frozen or cut-off worker holding counter rows), named by its worker from
pg_stat_activity; and PENDING work no live worker runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa

from dbos_publishers import _connections as connections
from dbos_publishers._config import DatabaseUrl, LeaseSettings, Settings
from dbos_publishers.ops import _doctor as doctor
from lab.scratch import scratch_databases

TTL = 2.0


@pytest.fixture
def settings(postgres_server: str) -> Iterator[Settings]:
    with scratch_databases("postgres", postgres_server, "doctor") as (system_db, app_db):
        yield Settings(
            system_db=system_db,
            app_db=app_db,
            publishers=(),
            leases=LeaseSettings(heartbeat_sec=0.5, ttl_sec=TTL),
        )


def _session(settings: Settings, name: str) -> sa.Connection:
    """A session that names itself `name`, inside a transaction it keeps open."""
    engine = sa.create_engine(
        settings.app_db.sqlalchemy_url,
        connect_args={"application_name": name},
        poolclass=sa.NullPool,
    )
    conn = engine.connect()
    conn.execute(sa.text("SELECT 1"))  # the transaction is open from here
    return conn


@pytest.mark.postgres
def test_a_chunk_transaction_open_longer_than_the_ttl_is_named_by_its_worker(
    settings: Settings,
) -> None:
    stuck = _session(settings, f"{connections.CHUNK_APPLICATION_NAME} worker-7")
    other = _session(settings, "psql")  # not a chunk transaction: never counted
    try:
        assert doctor._long_transactions(settings).ok  # not yet longer than the TTL
        time.sleep(TTL + 0.5)
        check = doctor._long_transactions(settings)
        assert not check.ok
        assert "worker worker-7: 1 open" in check.detail
        assert "psql" not in check.detail
    finally:
        stuck.close()
        other.close()
    assert doctor._long_transactions(settings).ok


def _workflow(executor: str, status: str = "PENDING", version: str = "1") -> Any:
    return SimpleNamespace(executor_id=executor, status=status, app_version=version)


def _worker(executor: str, state: str, *, expired: bool = False) -> Any:
    return SimpleNamespace(executor_id=executor, state=state, expired=expired)


def _found(active: list[Any], workers: list[Any]) -> doctor._Found:
    return doctor._Found(active=cast(Any, active), workers=cast(Any, workers))


def test_pending_work_of_a_taken_over_or_unknown_executor_is_named() -> None:
    settings = Settings(
        system_db=DatabaseUrl.parse("sqlite:///s.sqlite", "system"),
        app_db=DatabaseUrl.parse("sqlite:///a.sqlite", "app"),
        publishers=(),
    )
    workers = [
        _worker("alive-1", "alive"),
        _worker("expiring", "alive", expired=True),  # a takeover is coming: not counted yet
        _worker("gone", "taken_over"),
    ]
    healthy = [_workflow("alive-1"), _workflow("expiring"), _workflow("gone", "ENQUEUED")]
    assert doctor._ownerless(settings, _found(healthy, workers)).ok
    other_version = [_workflow("gone", version="0.9")]  # stranded work: its own check
    assert doctor._ownerless(settings, _found(other_version, workers)).ok
    stuck = [*healthy, _workflow("gone"), _workflow("gone"), _workflow("never-seen")]
    check = doctor._ownerless(settings, _found(stuck, workers))
    assert not check.ok
    assert check.detail == "PENDING workflows no live worker runs: 2 under gone, 1 under never-seen"
    no_worker = [_worker("gone", "taken_over")]
    assert doctor._ownerless(settings, _found(stuck, no_worker)).ok  # "queue workers" says it
