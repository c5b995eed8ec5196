"""The batch state that makes cancel exact, against real Postgres (no DBOS): a cancel waits for
the chunk transactions in flight, and a chunk transaction after it writes nothing, at every
isolation level the chunk transaction may run under."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._batch_records import BatchCancelledError, PlannedBatch
from dbos_publishers.store._database import make_engine
from dbos_publishers.store._ledger import LedgerEntry
from tests.helpers import Databases

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", ["postgres"])]
DEADLINE_SEC = 60
BATCH = PlannedBatch("b", "p", "t", messages=40, chunk_size=20)


@pytest.fixture
def engine(databases: Databases) -> sa.Engine:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    engine = make_engine(url, pool_size=4)
    with engine.begin() as conn:
        batch_records.record_batch(conn, BATCH)
    return engine


def _entries(start: int) -> list[LedgerEntry]:
    return [
        LedgerEntry(ledger.message_id("b", i), "b", i, "p", "t", "{}", f"wf-{start}")
        for i in range(start, start + 20)
    ]


def _waiting_on_a_lock(engine: sa.Engine, pid: int) -> bool:
    with engine.connect() as conn:
        wait = conn.scalar(
            sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    return bool(wait == "Lock")


def test_a_cancel_waits_for_the_chunk_transaction_in_flight(engine: sa.Engine) -> None:
    cancelled = threading.Event()
    pid: list[int] = []

    def cancel() -> None:
        with engine.begin() as conn:
            pid.append(int(conn.scalar(sa.text("SELECT pg_backend_pid()"))))
            batch_records.set_state(conn, "b", "cancelled")
        cancelled.set()

    with engine.connect().execution_options(isolation_level="READ COMMITTED") as chunk:
        with chunk.begin():
            batch_records.require_active(chunk, "b", "READ COMMITTED")
            canceller = threading.Thread(target=cancel)
            canceller.start()
            deadline = time.monotonic() + DEADLINE_SEC
            while not (pid and _waiting_on_a_lock(engine, pid[0])):
                assert time.monotonic() < deadline, "the cancel never waited"
                time.sleep(0.02)
            assert not cancelled.is_set()
            ledger.record_chunk(chunk, _entries(0))  # committed before the cancel
        canceller.join(DEADLINE_SEC)
    assert cancelled.is_set()
    with engine.connect() as conn:
        assert (batch_records.batch_state(conn, "b"), ledger.batch_published(conn, "b")) == (
            "cancelled",
            20,
        )


@pytest.mark.parametrize("isolation", ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
def test_a_chunk_transaction_after_the_cancel_writes_nothing(
    engine: sa.Engine, isolation: str
) -> None:
    """Its snapshot taken before the cancel committed (the worst case for REPEATABLE READ and
    SERIALIZABLE): it is refused either as cancelled or as a serialization failure, which the
    datasource retries with a new snapshot that sees the cancel."""
    with engine.connect().execution_options(isolation_level=isolation) as chunk:
        with pytest.raises((BatchCancelledError, sa.exc.OperationalError)), chunk.begin():
            chunk.execute(sa.text("SELECT 1"))  # the snapshot, for the stricter levels
            with engine.begin() as conn:
                batch_records.set_state(conn, "b", "cancelled")
            batch_records.require_active(chunk, "b", isolation)
            ledger.record_chunk(chunk, _entries(20))
        with chunk.begin(), pytest.raises(BatchCancelledError):  # the retry
            batch_records.require_active(chunk, "b", isolation)
    with engine.connect() as conn:
        assert ledger.batch_published(conn, "b") == 0
