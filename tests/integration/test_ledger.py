"""The chunk transaction's SQL and the invariant checks, against real databases (no DBOS)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from dbos_publishers._runtime import isolation_level
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import make_engine
from dbos_publishers.store._ledger import LedgerEntry
from tests.helpers import Databases


@pytest.fixture
def engine(databases: Databases) -> sa.Engine:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    return make_engine(url, isolation_level=isolation_level(url), pool_size=10)


def _entries(
    batch: str, start: int, count: int, publisher: str = "p", topic: str = "t"
) -> list[LedgerEntry]:
    return [
        LedgerEntry(ledger.message_id(batch, i), batch, i, publisher, topic, "{}", f"{batch}-wf")
        for i in range(start, start + count)
    ]


def test_record_chunk_moves_ledger_and_both_counters_together(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert ledger.record_chunk(conn, _entries("b", 0, 30)) == 30
        ledger.record_chunk(conn, _entries("c", 0, 12, publisher="q"))
    with engine.connect() as conn:
        assert ledger.publisher_counts(conn) == [
            ledger.CounterRow("p", "t", 30, 30),
            ledger.CounterRow("q", "t", 12, 12),
        ]
        assert ledger.topic_counts(conn) == [ledger.TopicRow("t", 42, 42, 42)]
        assert invariants.check(conn, {"b": 30, "c": 12}).ok


def test_a_message_id_twice_is_refused_and_rolls_back_its_counters(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ledger.record_chunk(conn, _entries("b", 0, 10))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        ledger.record_chunk(conn, _entries("b", 5, 10))
    with engine.connect() as conn:
        assert ledger.publisher_counts(conn) == [ledger.CounterRow("p", "t", 10, 10)]


def test_concurrent_chunks_on_one_hot_topic_stay_exact(engine: sa.Engine) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for k in range(10):
                with engine.begin() as conn:
                    ledger.record_chunk(conn, _entries(f"w{n}", k * 20, 20, publisher=f"p{n % 2}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        report = invariants.check(conn, {f"w{n}": 200 for n in range(6)})
        assert report.ok and report.ledger_rows == 1200, report.violations
        assert ledger.topic_counts(conn) == [ledger.TopicRow("t", 1200, 1200, 1200)]


@pytest.mark.parametrize(
    ("tamper", "violation"),
    [
        ("UPDATE local_counters SET value = value + 1", "local counter p/t = 21, ledger has 20"),
        (
            "UPDATE global_counters SET value = value - 1",
            "global counter t = 19, sum of locals = 20, ledger has 20",
        ),
        ("UPDATE counter_deltas SET amount = amount + 1", "local counter p/t = 21, ledger has 20"),
        ("DELETE FROM ledger WHERE position = 3", "batch b: 1 of 20 messages missing"),
    ],
)
def test_the_invariant_check_catches_each_kind_of_drift(
    engine: sa.Engine, tamper: str, violation: str
) -> None:
    with engine.begin() as conn:
        ledger.record_chunk(conn, _entries("b", 0, 20))
        if "counter_deltas" not in tamper:  # the counter rows hold the count once folded
            counters.fold_deltas(conn)
        assert invariants.check(conn, {"b": 20}).ok
        conn.execute(sa.text(tamper))
        report = invariants.check(conn, {"b": 20})
    assert violation in report.violations


def test_the_batch_check_reports_messages_outside_the_batch(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        ledger.record_chunk(conn, _entries("b", 0, 21))
        report = invariants.check(conn, {"b": 20})
    assert report.unexpected == {"b": 1}
    assert not report.ok


ODD_PAYLOADS = ["plain", "tab\there", "new\nline", "cr\rhere", "back\\slash \\N", "", "é ✓"]


def _columns(batch: str, payloads: list[str]) -> ledger.ChunkEntries:
    return ledger.ChunkEntries(
        batch_id=batch,
        publisher="p",
        topic="t",
        chunk_workflow_id=f"{batch}-wf",
        start=3,
        payloads=payloads,
    )


def test_chunk_entries_store_exactly_what_ledger_entries_store(engine: sa.Engine) -> None:
    """The one-pass COPY text (Postgres) and the rows (SQLite) hold each payload verbatim, the
    characters COPY's text format escapes included: the same rows as LedgerEntry objects."""
    columns = _columns("cols", ODD_PAYLOADS)
    eager = [e._replace(batch_id="rows", message_id=f"rows:{e.position}") for e in columns]
    eager = [e._replace(chunk_workflow_id="rows-wf") for e in eager]
    with engine.begin() as conn:
        assert ledger.record_chunk(conn, columns) == len(ODD_PAYLOADS)
        ledger.record_chunk(conn, eager)
    query = sa.text(
        "SELECT message_id, batch_id, position, publisher, topic, payload, chunk_workflow_id "
        "FROM ledger WHERE batch_id = :b ORDER BY position"
    )
    with engine.connect() as conn:
        stored = [LedgerEntry(*row) for row in conn.execute(query, {"b": "cols"})]
        other = [LedgerEntry(*row) for row in conn.execute(query, {"b": "rows"})]
        assert ledger.publisher_counts(conn) == [ledger.CounterRow("p", "t", 14, 14)]
    assert stored == list(columns)
    assert [e.payload for e in stored] == [e.payload for e in other] == ODD_PAYLOADS
    assert [e.position for e in stored] == list(range(3, 3 + len(ODD_PAYLOADS)))
