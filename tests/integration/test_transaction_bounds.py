"""No chunk transaction outlives its worker's lease: a session of the chunk transactions' pool that
sits idle inside a transaction (a frozen, hung or cut-off worker holding its counter rows) is
ended by Postgres within half the lease TTL, and whoever waited on its locks goes on; the
sessions name their worker in pg_stat_activity. The broken variant, a session without the
bounds, holds its locks for as long as it likes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dbos_publishers import _connections as connections
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import ConfigError, DatabaseUrl, LeaseSettings, Settings
from lab.scratch import scratch_databases

pytestmark = pytest.mark.postgres
LEASES = LeaseSettings(heartbeat_sec=0.5, ttl_sec=3.0)  # idle in a transaction: at most 1.5 s
EXECUTOR = "bounds-test-1"
WAIT_LIMIT_SEC = 6.0  # the waiter gives up here: far beyond the bound, well before a test timeout


@pytest.fixture
def app_url(postgres_server: str) -> Iterator[str]:
    with scratch_databases("postgres", postgres_server, "bounds") as (_system, app_db):
        yield app_db.raw


def _chunk_engine(url: str, *, bounded: bool) -> sa.Engine:
    args = connections.chunk_connect_args(LEASES, EXECUTOR) if bounded else {}
    return sa.create_engine(
        DatabaseUrl.parse(url, "app").sqlalchemy_url, connect_args=args, poolclass=sa.NullPool
    )


def _seconds_until_the_lock_is_free(url: str) -> float | None:
    """How long another session waits for the held lock; None if it gave up."""
    engine = sa.create_engine(DatabaseUrl.parse(url, "app").sqlalchemy_url, poolclass=sa.NullPool)
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(WAIT_LIMIT_SEC * 1000)}ms'"))
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242)"))
        return time.monotonic() - started
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "broken-variant"])
def test_a_session_idle_in_a_transaction_loses_its_locks_within_half_the_ttl(
    app_url: str, bounded: bool
) -> None:
    holder = _chunk_engine(app_url, bounded=bounded)
    with holder.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242)"))  # as a counter row's lock
        names = conn.scalars(
            sa.text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).all()
        assert names == (["dbos-publishers chunk bounds-test-1"] if bounded else [""])
        waited = _seconds_until_the_lock_is_free(app_url)  # the holder now sits idle
        if bounded:
            assert waited is not None and waited < LEASES.ttl_sec, waited
            with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
                conn.execute(sa.text("SELECT 1"))
        else:
            assert waited is None  # held for the whole wait
            conn.rollback()
    holder.dispose()


def test_the_runtime_opens_chunk_connections_with_the_bounds(app_url: str) -> None:
    settings = Settings(
        system_db=DatabaseUrl.parse(app_url, "system"),
        app_db=DatabaseUrl.parse(app_url, "app"),
        publishers=(),
        leases=LEASES,
    )
    blueprint = runtime.validate(settings)
    kwargs = runtime._engine_kwargs(blueprint, EXECUTOR)
    assert kwargs["connect_args"] == connections.chunk_connect_args(LEASES, EXECUTOR)
    bounds = connections.transaction_bounds(LEASES)
    assert bounds.idle_in_transaction_ms == bounds.lock_ms == 1500 < bounds.statement_ms == 3000


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "broken-variant"])
def test_a_chunk_waits_on_a_lock_at_most_half_the_ttl(app_url: str, bounded: bool) -> None:
    """A holder that is busy (not idle: the idle bound does not reach it) keeps a lock; a chunk
    session gives up its wait at the lock bound (SQLSTATE 55P03, retried as the next step)."""
    holder = _chunk_engine(app_url, bounded=False)
    waiter = _chunk_engine(app_url, bounded=bounded)
    with holder.connect() as held:
        held.execute(sa.text("SELECT pg_advisory_xact_lock(4343)"))
        started = time.monotonic()
        with waiter.connect() as conn:
            if not bounded:  # the broken variant: only the test's own limit ends the wait
                conn.execute(sa.text(f"SET lock_timeout = '{int(WAIT_LIMIT_SEC * 1000)}ms'"))
            with pytest.raises(sa.exc.OperationalError) as raised:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(4343)"))
        waited = time.monotonic() - started
        held.rollback()
    assert getattr(raised.value.orig, "sqlstate", None) == "55P03"
    if bounded:
        assert waited < LEASES.ttl_sec, waited
    else:
        assert waited >= WAIT_LIMIT_SEC - 0.1, waited
    holder.dispose()
    waiter.dispose()


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "dropped-by-a-pooler"])
def test_start_up_refuses_connections_without_their_bounds(app_url: str, bounded: bool) -> None:
    """What the server applied is read back: a pooler in transaction mode drops startup options
    without a word, and then the service must not start."""
    settings = Settings(
        system_db=DatabaseUrl.parse(app_url, "system"),
        app_db=DatabaseUrl.parse(app_url, "app"),
        publishers=(),
        leases=LEASES,
    )
    engine = _chunk_engine(app_url, bounded=bounded)
    rt = SimpleNamespace(settings=settings, datasource=SimpleNamespace(engine=engine))
    try:
        if bounded:
            runtime._require_bounds(rt)  # type: ignore[arg-type]
        else:
            with pytest.raises(ConfigError) as refused:
                runtime._require_bounds(rt)  # type: ignore[arg-type]
            message = str(refused.value)
            assert "\n" not in message
            assert "idle_in_transaction_session_timeout=0 (asked 1500)" in message
            assert "lock_timeout=0 (asked 1500)" in message
    finally:
        engine.dispose()
