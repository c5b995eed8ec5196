"""The batches table's SQL: a batch recorded when it is planned, its state, and its progress read
back beside the ledger (no DBOS import; the caller owns the transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.schema import batches, ledger


@dataclass(frozen=True)
class PlannedBatch:
    batch_id: str
    publisher: str
    topic: str
    messages: int
    chunk_size: int

    @property
    def chunks(self) -> int:
        return -(-self.messages // self.chunk_size)


@dataclass(frozen=True)
class BatchProgress:
    """A planned batch beside what the ledger holds of it."""

    batch_id: str
    publisher: str
    topic: str
    messages: int
    chunks: int
    state: str
    planned_at: datetime
    published: int

    @property
    def percent(self) -> float:
        return round(100.0 * self.published / self.messages, 1)


def record_batch(conn: sa.Connection, batch: PlannedBatch) -> None:
    """Insert the batch's row; a row already there (the same batch id) is left as it is."""
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(batches).values(
        batch_id=batch.batch_id,
        publisher=batch.publisher,
        topic=batch.topic,
        messages=batch.messages,
        chunk_size=batch.chunk_size,
        chunks=batch.chunks,
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["batch_id"]))


def _progress_query() -> sa.Select[Any]:
    """Each batch's row beside the count of its ledger rows (one indexed count each)."""
    b = batches.c
    published = (
        sa.select(sa.func.count())
        .select_from(ledger)
        .where(ledger.c.batch_id == b.batch_id)
        .scalar_subquery()
    )
    return sa.select(
        b.batch_id,
        b.publisher,
        b.topic,
        b.messages,
        b.chunks,
        b.state,
        b.planned_at,
        published.label("published"),
    )


def recent_batches(conn: sa.Connection, limit: int = 20) -> list[BatchProgress]:
    """The newest planned batches with their published counts."""
    query = _progress_query().order_by(batches.c.planned_at.desc(), batches.c.batch_id)
    return [_progress(row) for row in conn.execute(query.limit(limit))]


def batch_progress(conn: sa.Connection, batch_id: str) -> BatchProgress | None:
    """One batch's progress, or None if it was never planned (not started yet, or unknown)."""
    row = conn.execute(_progress_query().where(batches.c.batch_id == batch_id)).first()
    return _progress(row) if row is not None else None


def _progress(row: sa.Row[Any]) -> BatchProgress:
    return BatchProgress(
        batch_id=row.batch_id,
        publisher=row.publisher,
        topic=row.topic,
        messages=int(row.messages),
        chunks=int(row.chunks),
        state=row.state,
        planned_at=row.planned_at,
        published=int(row.published),
    )
