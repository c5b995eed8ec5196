"""The batch list on SQLite and Postgres: a thousand batches recorded as submission, plan, cancel
and the last step record them, read back newest first, filtered, and paged by cursor with every
batch exactly once (most of them share their second of submission: the cursor breaks ties)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dbos_publishers import _migrate as migrate
from dbos_publishers._config import DatabaseUrl
from dbos_publishers._errors import BadInputError, NotFoundError
from dbos_publishers.store import _batch_list as batch_list
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store._batch_list import BatchFilter
from dbos_publishers.store._batch_records import PlannedBatch
from dbos_publishers.store._database import short_lived_engine
from dbos_publishers.store._schema import batches, ledger
from tests.helpers import Databases

BATCHES = 1000
PAGE = 64


def _planned(i: int) -> PlannedBatch:
    publisher, topic = ("orders", "eu") if i % 2 else ("billing", "us")
    return PlannedBatch(f"b{i:04d}", publisher, topic, messages=10, chunk_size=5)


def _ledger_rows(batch: PlannedBatch, count: int) -> list[dict[str, object]]:
    return [
        {
            "message_id": f"{batch.batch_id}-{n}",
            "batch_id": batch.batch_id,
            "position": n,
            "publisher": batch.publisher,
            "topic": batch.topic,
            "payload": "{}",
            "chunk_workflow_id": f"batch-{batch.batch_id}/chunk-{n // 5:05d}",
        }
        for n in range(count)
    ]


def _record(conn: sa.Connection, i: int) -> None:
    """Every 5th queued, the rest started; of those every 3rd cancelled, every 4th finished
    whole, every 7th finished with 4 of 10 published."""
    batch = _planned(i)
    batch_records.record_submitted(conn, batch)
    if i % 5 == 0:
        return
    batch_records.record_batch(conn, batch)
    if i % 3 == 0:
        batch_records.set_state(conn, batch.batch_id, "cancelled")
    elif i % 4 == 0 or i % 7 == 0:
        published = 10 if i % 4 == 0 else 4
        conn.execute(ledger.insert(), _ledger_rows(batch, published))
        batch_records.record_finished(conn, batch.batch_id, published, 10 - published)


@pytest.fixture
def app_db(databases: Databases) -> DatabaseUrl:
    url = DatabaseUrl.parse(databases.app_url, "APP_DATABASE_URL")
    migrate.upgrade(url)
    with short_lived_engine(url) as engine, engine.begin() as conn:
        for i in range(BATCHES):
            _record(conn, i)
        # The newest ten an hour later than the rest: the order is by time, then batch id. (An
        # hour: Postgres's now() is this transaction's start, which a loaded machine takes well
        # over a minute to get past with a thousand batches.)
        later = sa.func.now() + sa.text("INTERVAL '1 hour'")
        if conn.dialect.name == "sqlite":
            later = sa.func.datetime("now", "+1 hour")
        conn.execute(batches.update().where(batches.c.batch_id < "b0010").values(planned_at=later))
    return url


def _expected_state(i: int) -> str:
    if i % 5 == 0:
        return "queued"
    if i % 3 == 0:
        return "cancelled"
    if i % 4 == 0:
        return "succeeded"
    return "failed" if i % 7 == 0 else "running"


def _all_pages(conn: sa.Connection, **wanted: object) -> tuple[list[str], int]:
    seen: list[str] = []
    after, pages = None, 0
    while True:
        rows, after = batch_list.list_batches(
            conn,
            BatchFilter(limit=PAGE, after=after, **wanted),  # type: ignore[arg-type]
        )
        seen += [r.batch_id for r in rows]
        pages += 1
        if after is None:
            return seen, pages


def test_a_thousand_batches_page_newest_first_each_exactly_once(app_db: DatabaseUrl) -> None:
    with short_lived_engine(app_db) as engine, engine.connect() as conn:
        started = time.monotonic()
        seen, pages = _all_pages(conn)
        elapsed = time.monotonic() - started
    newest = [f"b{i:04d}" for i in reversed(range(10))]
    rest = [f"b{i:04d}" for i in reversed(range(10, BATCHES))]
    assert seen == newest + rest
    assert pages == -(-BATCHES // PAGE)
    assert elapsed < 30, f"listing {BATCHES} batches took {elapsed:.1f} s"


def test_filters_by_publisher_topic_state_and_time(app_db: DatabaseUrl) -> None:
    with short_lived_engine(app_db) as engine, engine.connect() as conn:
        orders, _ = _all_pages(conn, publisher="orders")
        us, _ = _all_pages(conn, topic="us")
        states = {s: set(_all_pages(conn, state=s)[0]) for s in batch_list.LISTED_STATES}
        recent, _ = _all_pages(conn, since=datetime.now(UTC) + timedelta(minutes=30))
        row = batch_list.batch_row(conn, "b0007")
        found, _ = _all_pages(conn, search="b09")
        literal, _ = _all_pages(conn, search="b_9")  # `_` is no wildcard
    assert len(orders) == BATCHES // 2 and all(int(b[1:]) % 2 for b in orders)
    assert len(us) == BATCHES // 2 and not any(int(b[1:]) % 2 for b in us)
    for state, ids in states.items():
        assert ids == {f"b{i:04d}" for i in range(BATCHES) if _expected_state(i) == state}, state
    assert sorted(recent) == [f"b{i:04d}" for i in range(10)]
    assert sorted(found) == [f"b{i:04d}" for i in range(900, 1000)]
    assert literal == []
    assert row is not None
    assert (row.state, row.published, row.failed) == ("failed", 4, 6)
    assert row.started_at is not None and row.finished_at is not None


def test_a_cursor_naming_no_batch_and_a_bad_state_are_refused_in_one_line(
    app_db: DatabaseUrl,
) -> None:
    with (
        short_lived_engine(app_db) as engine,
        engine.connect() as conn,
        pytest.raises(NotFoundError, match="cursor 'nope' names no batch"),
    ):
        batch_list.list_batches(conn, BatchFilter(after="nope"))
    with pytest.raises(BadInputError, match="state 'done' is not one of queued, running"):
        BatchFilter(state="done")
    with pytest.raises(BadInputError, match="limit must be between 1 and 500, not 0"):
        BatchFilter(limit=0)
