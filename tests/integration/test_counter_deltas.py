"""Counters as inserted deltas: a chunk transaction left open never makes another chunk wait, the
fold moves deltas into the counter rows without a reader ever seeing a count wrong, and the broken
ways to do either are caught (the upserted rows of the earlier release; a fold split in two)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from dbos_publishers._runtime import isolation_level
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import make_engine
from dbos_publishers.store._ledger import LedgerEntry
from dbos_publishers.store._schema import counter_deltas, global_counters, local_counters
from tests.helpers import Databases

LOCK_TIMEOUT = sa.text("SET LOCAL lock_timeout = '1s'")
Record = Callable[[sa.Connection, list[LedgerEntry]], int]


@pytest.fixture
def engine(databases: Databases) -> Iterator[sa.Engine]:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    engine = make_engine(url, isolation_level=isolation_level(url), pool_size=4)
    yield engine
    engine.dispose()


def _entries(batch: str, count: int, publisher: str = "p", topic: str = "t") -> list[LedgerEntry]:
    return [
        LedgerEntry(ledger.message_id(batch, i), batch, i, publisher, topic, "{}", f"{batch}-wf")
        for i in range(count)
    ]


def _record_with_upserts(conn: sa.Connection, entries: list[LedgerEntry]) -> int:
    """The earlier release's chunk transaction: the ledger rows, then one upsert of the local
    counter row and one of the global row (the rows every chunk of the topic needs)."""
    ledger.insert_entries(conn, entries)
    for table, key in (
        (local_counters, {"publisher": "p", "topic": "t"}),
        (global_counters, {"topic": "t"}),
    ):
        stmt = postgresql.insert(table).values(**key, value=len(entries))
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=list(key), set_={"value": table.c.value + stmt.excluded.value}
            )
        )
    return len(entries)


def _second_chunk_waits(engine: sa.Engine, record: Record) -> bool:
    """One chunk transaction stays open (a frozen or hung worker); does another chunk of the same
    (publisher, topic) wait for it? Both once committed before, so the counter rows exist."""
    with engine.begin() as conn:
        record(conn, _entries("warm", 1))
        counters.fold_deltas(conn)
    stuck = engine.connect()
    stuck.begin()
    record(stuck, _entries("stuck", 5))
    try:
        with engine.begin() as conn:
            conn.execute(LOCK_TIMEOUT)
            record(conn, _entries("other", 7))
        return False
    except sa.exc.OperationalError as exc:
        assert "lock timeout" in str(exc)
        return True
    finally:
        stuck.rollback()
        stuck.close()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_open_chunk_transaction_never_makes_another_chunk_wait(engine: sa.Engine) -> None:
    assert not _second_chunk_waits(engine, ledger.record_chunk)
    with engine.connect() as conn:
        assert invariants.check(conn, {"warm": 1, "other": 7}).ok


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_broken_the_upserted_counter_rows_make_the_second_chunk_wait(engine: sa.Engine) -> None:
    assert _second_chunk_waits(engine, _record_with_upserts)


def test_fold_moves_deltas_into_the_rows_and_reads_stay_exact(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ledger.record_chunk(conn, _entries("a", 30))
        ledger.record_chunk(conn, _entries("b", 12, publisher="q"))
        ledger.record_chunk(conn, _entries("c", 5, topic="u"))
    expected = [ledger.CounterRow("p", "t", 30, 30), ledger.CounterRow("p", "u", 5, 5)]
    expected.append(ledger.CounterRow("q", "t", 12, 12))
    for folds in (0, 1, 2):  # unfolded, folded, folded again (nothing left to move)
        with engine.begin() as conn:
            moved = counters.fold_deltas(conn) if folds else 0
        with engine.connect() as conn:
            assert moved == (3 if folds == 1 else 0)
            assert ledger.publisher_counts(conn) == expected
            assert ledger.topic_counts(conn) == [
                ledger.TopicRow("t", 42, 42, 42),
                ledger.TopicRow("u", 5, 5, 5),
            ]
            values = [("p", "t", 30), ("p", "u", 5), ("q", "t", 12)]
            assert counters.local_counter_values(conn) == values
            assert counters.pending_deltas(conn) == (3 if folds == 0 else 0)
            assert invariants.check(conn, {"a": 30, "b": 12, "c": 5}).ok


def test_fold_is_bounded_and_a_partial_fold_reads_exact(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for n in range(5):
            ledger.record_chunk(conn, _entries(f"b{n}", n + 1))
    with engine.begin() as conn:
        assert counters.fold_deltas(conn, limit=2) == 2
    with engine.connect() as conn:
        assert counters.pending_deltas(conn) == 3
        assert ledger.topic_counts(conn) == [ledger.TopicRow("t", 15, 15, 15)]
        assert conn.scalar(sa.select(local_counters.c.value)) == 3  # the two oldest: 1 + 2


def test_broken_a_fold_split_in_two_transactions_is_caught(engine: sa.Engine) -> None:
    """Folding the local rows and the global row in separate transactions, with a crash between:
    the global counter no longer equals the sum of the locals, and the check says so."""
    with engine.begin() as conn:
        ledger.record_chunk(conn, _entries("a", 10))
    with engine.begin() as conn:
        conn.execute(counter_deltas.delete())
        conn.execute(local_counters.insert().values(publisher="p", topic="t", value=10))
    # ... the process dies here: the global row never gets its 10
    with engine.connect() as conn:
        report = invariants.check(conn, {"a": 10})
    assert report.violations == ["global counter t = 0, sum of locals = 10, ledger has 10"]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_second_fold_skips_its_turn_instead_of_waiting(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ledger.record_chunk(conn, _entries("a", 4))
    first = engine.connect()
    first.begin()
    try:
        assert counters.fold_deltas(first) == 1
        with engine.begin() as conn:
            conn.execute(LOCK_TIMEOUT)
            assert counters.fold_deltas(conn) == 0  # the first holds the fold lock: no wait
    finally:
        first.commit()
        first.close()
    with engine.connect() as conn:
        assert ledger.topic_counts(conn) == [ledger.TopicRow("t", 4, 4, 4)]
