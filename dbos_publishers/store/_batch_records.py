"""The batches table's SQL: a batch recorded when it is planned, its state, and its progress read
back beside the ledger (no DBOS import; the caller owns the transaction).

The state is what makes cancel exact. Every chunk transaction reads its batch's state under a
shared lock (`require_active`) and `set_state` changes it under the exclusive one, so a cancel
waits for the chunk transactions already in flight, and every chunk transaction after it sees
'cancelled' and writes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dbos_publishers._errors import StateError
from dbos_publishers.store import _batch_list as batch_list
from dbos_publishers.store._schema import batches, ledger

BatchState = Literal["active", "cancelled"]
# Postgres advisory locks take (int4, int4): this namespace, then hashtext(batch_id). Colliding
# batch ids only make a cancel wait for another batch's chunk transactions too.
LOCK_NAMESPACE = 0x62617463  # "batc"
SHARED_LOCK = sa.text("SELECT pg_advisory_xact_lock_shared(:ns, hashtext(:batch_id))")
EXCLUSIVE_LOCK = sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:batch_id))")


class BatchCancelledError(StateError):
    """The chunk transaction's batch is cancelled: it rolls back, having written nothing."""


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
    """Insert the batch's row, started; a row already there (the same batch id: submitted, or
    cancelled before it was planned) keeps its state and takes the plan's chunk size (it had a
    guessed one) and start. The `started` event in the same transaction."""
    stmt = _insert(conn, batch).values(started_at=batch_list.now(conn))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["batch_id"],
            set_={
                "chunk_size": stmt.excluded.chunk_size,
                "chunks": stmt.excluded.chunks,
                "started_at": stmt.excluded.started_at,
            },
        )
    )
    batch_list.record_event(conn, batch.batch_id, "started", f"{batch.chunks} chunks")


def record_submitted(conn: sa.Connection, batch: PlannedBatch) -> bool:
    """The row of a batch just submitted (queued: not started), and its `submitted` event; False
    (nothing written) if the batch id was recorded already."""
    inserted = conn.execute(
        _insert(conn, batch).on_conflict_do_nothing(index_elements=["batch_id"])
    )
    if inserted.rowcount == 1:
        batch_list.record_event(conn, batch.batch_id, "submitted", f"{batch.messages} messages")
    return inserted.rowcount == 1


def record_finished(conn: sa.Connection, batch_id: str, published: int, failed: int) -> None:
    """The batch workflow's last step: its end, and the `finished` event."""
    conn.execute(
        batches.update()
        .where(batches.c.batch_id == batch_id)
        .values(finished_at=batch_list.now(conn))
    )
    detail = f"{published} published, {failed} failed"
    batch_list.record_event(conn, batch_id, "finished", detail)


def ensure_batch(conn: sa.Connection, batch: PlannedBatch) -> None:
    """The batch's row, inserted if the batch was never planned (cancelled while queued)."""
    conn.execute(_insert(conn, batch).on_conflict_do_nothing(index_elements=["batch_id"]))


def _insert(conn: sa.Connection, batch: PlannedBatch) -> Any:
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(batches).values(
        batch_id=batch.batch_id,
        publisher=batch.publisher,
        topic=batch.topic,
        messages=batch.messages,
        chunk_size=batch.chunk_size,
        chunks=batch.chunks,
        planned_at=batch_list.now(conn),
    )


def require_active(conn: sa.Connection, batch_id: str, isolation: str) -> None:
    """Inside the chunk transaction, before its writes: raise BatchCancelledError if the batch
    is cancelled, holding the state steady until this transaction ends.

    Postgres, READ COMMITTED (the service's level): a shared advisory transaction lock, then a
    plain read. It lives in the lock table only: no tuple write, no WAL record and no multixact
    per chunk, which `FOR SHARE` on the one batch row would cost every concurrent chunk. Under
    REPEATABLE READ or SERIALIZABLE the snapshot is taken before the lock wait ends, so there the
    row itself is locked `FOR SHARE`: a cancel that committed meanwhile makes it a serialization
    failure, which the datasource retries. SQLite: a no-op write first, so pysqlite opens the
    (single-writer, IMMEDIATE) transaction before the read.

    A batch without a row (planned by a release before the batches table) counts as active."""
    key = {"batch_id": batch_id}
    query = sa.select(batches.c.state).where(batches.c.batch_id == batch_id)
    if conn.dialect.name == "sqlite":
        conn.execute(
            batches.update().where(batches.c.batch_id == batch_id).values(state=batches.c.state)
        )
    elif isolation == "READ COMMITTED":
        conn.execute(SHARED_LOCK, {"ns": LOCK_NAMESPACE, **key})
    else:
        query = query.with_for_update(read=True)
    if conn.scalar(query) == "cancelled":
        raise BatchCancelledError(f"batch {batch_id!r} is cancelled")


def batch_state(conn: sa.Connection, batch_id: str) -> str | None:
    """The batch's state, None if it was never planned."""
    state: str | None = conn.scalar(
        sa.select(batches.c.state).where(batches.c.batch_id == batch_id)
    )
    return state


def cancelled_batches(conn: sa.Connection, batch_ids: Iterable[str]) -> set[str]:
    """Which of these batches are cancelled (on purpose, by `cancel`)."""
    query = sa.select(batches.c.batch_id).where(
        batches.c.batch_id.in_(sorted(set(batch_ids))), batches.c.state == "cancelled"
    )
    return set(conn.scalars(query))


def set_state(conn: sa.Connection, batch_id: str, state: BatchState) -> bool:
    """Set the batch's state once every chunk transaction in flight has ended (the exclusive
    side of `require_active`); False if it already was `state` (or the batch has no row)."""
    if conn.dialect.name == "postgresql":
        conn.execute(EXCLUSIVE_LOCK, {"ns": LOCK_NAMESPACE, "batch_id": batch_id})
    changed = conn.execute(
        batches.update()
        .where(batches.c.batch_id == batch_id, batches.c.state != state)
        .values(state=state, state_changed_at=batch_list.now(conn))
    )
    return changed.rowcount == 1


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
