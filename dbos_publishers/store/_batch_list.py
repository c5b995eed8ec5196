"""The batch list and a batch's history: the batches table beside its ledger rows, newest first,
filtered and paged by a cursor, and the lifecycle events (no DBOS import; the caller owns the
transaction).

A batch's state is read from what the application database recorded: `queued` (submitted, not
planned), `running` (planned), `succeeded` / `failed` (its last step ran: all its messages in the
ledger, or not), `cancelled`. A retry that publishes the rest turns `failed` into `succeeded`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa

from dbos_publishers._errors import BadInputError, NotFoundError
from dbos_publishers.store._schema import batch_events, batches, ledger

ListedState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
LISTED_STATES: tuple[str, ...] = get_args(ListedState)
MAX_PAGE = 500
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class BatchFilter:
    """Which batches a page lists; `after` is the cursor: the last batch id of the page before."""

    publisher: str | None = None
    topic: str | None = None
    state: str | None = None
    since: datetime | None = None
    limit: int = DEFAULT_PAGE
    after: str | None = None
    search: str | None = None  # a part of the batch id

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in LISTED_STATES:
            raise BadInputError(f"state {self.state!r} is not one of {', '.join(LISTED_STATES)}")
        if not 0 < self.limit <= MAX_PAGE:
            raise BadInputError(f"limit must be between 1 and {MAX_PAGE}, not {self.limit}")


@dataclass(frozen=True)
class BatchRow:
    """One batch as the list shows it; times are aware (UTC)."""

    batch_id: str
    publisher: str
    topic: str
    state: str
    messages: int
    published: int
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None

    @property
    def failed(self) -> int:
        """Messages a finished batch did not publish (0 until it finishes)."""
        return self.messages - self.published if self.state == "failed" else 0

    @property
    def ended_at(self) -> datetime | None:
        return self.cancelled_at if self.state == "cancelled" else self.finished_at

    def duration_sec(self, now: datetime) -> float | None:
        """Started to finished (or cancelled), or to `now` while it runs."""
        if self.started_at is None:
            return None
        return max(0.0, ((self.ended_at or now) - self.started_at).total_seconds())

    def rate(self, now: datetime) -> float | None:
        """Messages published per second of its duration."""
        duration = self.duration_sec(now)
        return round(self.published / duration, 1) if duration else None

    def to_json(self, now: datetime) -> dict[str, Any]:
        duration = self.duration_sec(now)
        return {
            "batch_id": self.batch_id,
            "publisher": self.publisher,
            "topic": self.topic,
            "state": self.state,
            "messages": self.messages,
            "published": self.published,
            "failed": self.failed,
            "submitted": _iso(self.submitted_at),
            "started": _iso(self.started_at),
            "finished": _iso(self.ended_at),
            "duration_sec": None if duration is None else round(duration, 3),
            "msg_per_sec": self.rate(now),
        }


@dataclass(frozen=True)
class BatchEvent:
    event: str
    at: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "at": _iso(self.at), "detail": self.detail}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="milliseconds")


def aware(at: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes, in UTC (CURRENT_TIMESTAMP)."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _published() -> sa.ScalarSelect[Any]:
    return (
        sa.select(sa.func.count())
        .select_from(ledger)
        .where(ledger.c.batch_id == batches.c.batch_id)
        .scalar_subquery()
    )


def _state(published: sa.ScalarSelect[Any]) -> sa.Case[Any]:
    b = batches.c
    return sa.case(
        (b.state == "cancelled", "cancelled"),
        (b.finished_at.is_not(None) & (published >= b.messages), "succeeded"),
        (b.finished_at.is_not(None), "failed"),
        (b.started_at.is_not(None), "running"),
        else_="queued",
    )


def _rows_query() -> tuple[sa.Select[Any], sa.Case[Any]]:
    b, published = batches.c, _published()
    state = _state(published)
    columns = (b.batch_id, b.publisher, b.topic, b.messages, b.planned_at, b.started_at)
    query = sa.select(
        *columns,
        b.finished_at,
        b.state_changed_at,
        published.label("published"),
        state.label("listed_state"),
    )
    return query, state


def list_batches(conn: sa.Connection, wanted: BatchFilter) -> tuple[list[BatchRow], str | None]:
    """One page, newest first, and the cursor of the next page (None: this is the last)."""
    query, state = _rows_query()
    query = _filtered(query, state, wanted)
    if wanted.since is not None:
        query = query.where(batches.c.planned_at >= _bound_time(conn, wanted.since))
    if wanted.after is not None:
        query = query.where(_before(conn, wanted.after))
    query = query.order_by(batches.c.planned_at.desc(), batches.c.batch_id.desc())
    rows = [_row(r) for r in conn.execute(query.limit(wanted.limit + 1))]
    more = len(rows) > wanted.limit
    rows = rows[: wanted.limit]
    return rows, rows[-1].batch_id if more else None


def _filtered(query: sa.Select[Any], state: sa.Case[Any], wanted: BatchFilter) -> sa.Select[Any]:
    b = batches.c
    if wanted.publisher is not None:
        query = query.where(b.publisher == wanted.publisher)
    if wanted.topic is not None:
        query = query.where(b.topic == wanted.topic)
    if wanted.state is not None:
        query = query.where(state == wanted.state)
    if wanted.search:
        query = query.where(b.batch_id.contains(wanted.search, autoescape=True))
    return query


def _bound_time(conn: sa.Connection, at: datetime) -> datetime:
    """SQLite compares the text it stored: naive UTC, as CURRENT_TIMESTAMP writes it."""
    at = at.astimezone(UTC)
    return at.replace(tzinfo=None) if conn.dialect.name == "sqlite" else at


def _before(conn: sa.Connection, cursor: str) -> sa.ColumnElement[bool]:
    """Rows after the cursor's in newest-first order, compared with its stored time (never a
    time formatted here: SQLite stores text whose format a bound datetime does not share)."""
    b = batches.c
    if conn.scalar(sa.select(b.batch_id).where(b.batch_id == cursor)) is None:
        raise NotFoundError(f"cursor {cursor!r} names no batch (pass the `next` of a page)")
    at = sa.select(b.planned_at).where(b.batch_id == cursor).scalar_subquery()
    return sa.or_(b.planned_at < at, sa.and_(b.planned_at == at, b.batch_id < cursor))


def batch_row(conn: sa.Connection, batch_id: str) -> BatchRow | None:
    """One batch as the list shows it, None if it was never recorded."""
    query, _state_column = _rows_query()
    row = conn.execute(query.where(batches.c.batch_id == batch_id)).first()
    return _row(row) if row is not None else None


def _row(row: sa.Row[Any]) -> BatchRow:
    submitted = aware(row.planned_at)
    assert submitted is not None  # NOT NULL
    return BatchRow(
        batch_id=row.batch_id,
        publisher=row.publisher,
        topic=row.topic,
        state=row.listed_state,
        messages=int(row.messages),
        published=int(row.published),
        submitted_at=submitted,
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        cancelled_at=aware(row.state_changed_at),
    )


def now(conn: sa.Connection) -> sa.ColumnElement[Any]:
    """The database's time; on SQLite to the millisecond (CURRENT_TIMESTAMP has whole seconds,
    too coarse for a batch's duration)."""
    if conn.dialect.name == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")
    return sa.func.now()


def record_event(conn: sa.Connection, batch_id: str, event: str, detail: str = "") -> None:
    """One lifecycle event, in the caller's transaction (the one that made it happen)."""
    values = {"batch_id": batch_id, "event": event, "detail": detail, "at": now(conn)}
    conn.execute(batch_events.insert().values(**values))


def events(conn: sa.Connection, batch_id: str) -> list[BatchEvent]:
    """A batch's lifecycle events, oldest first."""
    e = batch_events.c
    query = sa.select(e.event, e.at, e.detail).where(e.batch_id == batch_id).order_by(e.event_id)
    return [BatchEvent(r.event, aware(r.at) or r.at, r.detail) for r in conn.execute(query)]


def committed_chunks(conn: sa.Connection, batch_id: str) -> set[str]:
    """The chunk workflow ids whose rows the ledger holds for this batch: committed, whatever
    their workflow's status says afterwards."""
    query = sa.select(ledger.c.chunk_workflow_id).where(ledger.c.batch_id == batch_id).distinct()
    return set(conn.scalars(query))


@dataclass(frozen=True)
class BatchTiming:
    publisher: str
    state: str
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None  # finished, or cancelled


def batch_timings(conn: sa.Connection) -> list[BatchTiming]:
    """Every batch's publisher, state and times (the metrics' batch gauges and histograms)."""
    query, _state = _rows_query()
    rows = [_row(r) for r in conn.execute(query)]
    return [
        BatchTiming(r.publisher, r.state, r.submitted_at, r.started_at, r.ended_at) for r in rows
    ]


def event_counts(conn: sa.Connection) -> dict[tuple[str, str], int]:
    """(publisher, event) -> how many were recorded: monotonic, as events are never deleted."""
    e, b = batch_events.c, batches.c
    query = (
        sa.select(b.publisher, e.event, sa.func.count())
        .select_from(batch_events.join(batches, b.batch_id == e.batch_id))
        .group_by(b.publisher, e.event)
    )
    return {(publisher, event): int(n) for publisher, event, n in conn.execute(query)}
