"""A status frame reads the application database in one snapshot: local counters, global
counters and ledger rows agree within a frame even while chunks commit between its reads. The
broken variant (each read on its own connection, a writer between them) is caught by the same
check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import pytest
import sqlalchemy as sa

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from dbos_publishers.ops import _status as status
from dbos_publishers.store import _invariants as invariants
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import read_snapshot, short_lived_engine
from dbos_publishers.store._ledger import LedgerEntry
from tests.helpers import Databases


@pytest.fixture
def app_db(databases: Databases) -> DatabaseUrl:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    if databases.backend == "sqlite":  # the Postgres copy comes migrated from the template
        migrate.upgrade(url)
        # In SQLite's default rollback journal a reader's transaction holds writers off until it
        # ends (the snapshot then holds trivially, and this test's writer would wait on its own
        # reader); in WAL mode a writer commits beside a reader, as on Postgres.
        with short_lived_engine(url) as engine, engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    return url


def _writer(url: DatabaseUrl) -> Callable[[], None]:
    """Commits one chunk of 10 messages (ledger rows and both counters) each time it is called,
    from its own connection, as a worker's chunk transaction does."""
    written = [0]

    def write() -> None:
        start = written[0]
        entries = [
            LedgerEntry(ledger.message_id("w", p), "w", p, "orders", "t", "x", "batch-w/chunk")
            for p in range(start, start + 10)
        ]
        with short_lived_engine(url) as engine, engine.begin() as conn:
            ledger.record_chunk(conn, entries)
        written[0] += 10

    return write


@contextmanager
def _own_connection(url: DatabaseUrl) -> Iterator[sa.Connection]:
    with short_lived_engine(url) as engine, engine.connect() as conn:
        yield conn


def test_one_snapshot_agrees_with_itself_while_chunks_commit_between_its_reads(
    app_db: DatabaseUrl,
) -> None:
    write = _writer(app_db)
    write()  # something to count before the frame starts
    with read_snapshot(app_db) as conn:
        state = status.read_app_state(lambda: nullcontext(conn), between=write)
    assert state.report.ok, state.report.violations
    assert invariants.agree(state.report.publishers, state.report.topics) == []
    assert state.report.ledger_rows == 10  # the frame's moment: none of the later writes
    with short_lived_engine(app_db) as engine, engine.connect() as conn:
        assert ledger.row_count(conn) == 60  # while five chunks committed during the reads


def test_broken_variant_reads_on_separate_connections_contradict_themselves(
    app_db: DatabaseUrl,
) -> None:
    write = _writer(app_db)
    write()
    state = status.read_app_state(lambda: _own_connection(app_db), between=write)
    disagreements = invariants.agree(state.report.publishers, state.report.topics)
    assert disagreements == [
        "topic t: the publisher rows sum to 10 local / 10 ledger, the topic row says 20 / 20 "
        "(not one snapshot?)"
    ]
    assert not state.report.ok  # `consistent` no longer says True beside contradicting numbers
