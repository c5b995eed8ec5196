"""`batches` and GET /batches: the batch list, newest first, filtered and paged by a cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dbos_publishers._config import BATCH_ID, CLI, Settings
from dbos_publishers._errors import BadInputError
from dbos_publishers.ops._tables import render as render_tables
from dbos_publishers.ops._tables import table
from dbos_publishers.store import _batch_list as batch_list
from dbos_publishers.store._batch_list import BatchFilter, BatchRow
from dbos_publishers.store._database import (
    require_reachable,
    short_lived_engine,
    sqlite_file_missing,
)
from dbos_publishers.store._schema import batch_events

AGO = re.compile(r"(?P<n>\d+)(?P<unit>[smhd])")
MINUTE = 60
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
HEADERS = [
    "batch",
    "publisher",
    "topic",
    "state",
    "messages>",
    "published>",
    "failed>",
    "started",
    "finished",
    "duration>",
    "msg/s>",
]


@dataclass(frozen=True)
class BatchPage:
    rows: list[BatchRow]
    next: str | None  # the cursor of the next page
    now: datetime

    def to_json(self) -> dict[str, Any]:
        return {"batches": [row.to_json(self.now) for row in self.rows], "next": self.next}


def parse_since(text: str, now: datetime) -> datetime:
    """`30m`, `2h`, `7d`, `90s` before `now`, or an ISO 8601 time (UTC unless it says)."""
    if match := AGO.fullmatch(text):
        return now - timedelta(**{UNITS[match["unit"]]: int(match["n"])})
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadInputError(
            f"since {text!r} is neither a duration (30m, 2h, 7d) nor an ISO 8601 time"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def batch_filter(
    *,
    publisher: str | None = None,
    topic: str | None = None,
    state: str | None = None,
    since: str | None = None,
    limit: int = batch_list.DEFAULT_PAGE,
    after: str | None = None,
    search: str | None = None,
) -> BatchFilter:
    """The filter from text as typed (CLI) or sent (query string); one line for what is wrong."""
    if after is not None and not BATCH_ID.fullmatch(after):
        raise BadInputError(f"cursor {after!r} is not a batch id (pass the `next` of a page)")
    when = parse_since(since, datetime.now(UTC)) if since is not None else None
    return BatchFilter(publisher, topic, state, when, limit, after, search)


def gather(settings: Settings, wanted: BatchFilter) -> BatchPage:
    """One page of the list (empty where no batch was ever recorded; a SQLite file that does not
    exist is not created by a read)."""
    if sqlite_file_missing(settings.app_db):
        return BatchPage([], None, datetime.now(UTC))
    require_reachable(settings.app_db)
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        if not _recorded(conn):
            return BatchPage([], None, datetime.now(UTC))
        rows, cursor = batch_list.list_batches(conn, wanted)
    return BatchPage(rows, cursor, datetime.now(UTC))


def _recorded(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table(batch_events.name)


def _when(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    whole = int(seconds)
    return f"{seconds:.1f}s" if whole < MINUTE else f"{whole // MINUTE}m{whole % MINUTE:02d}s"


def cells(row: BatchRow, now: datetime) -> list[object]:
    return [
        row.batch_id,
        row.publisher,
        row.topic,
        row.state,
        row.messages,
        row.published,
        row.failed,
        _when(row.started_at),
        _when(row.ended_at),
        _duration(row.duration_sec(now)),
        row.rate(now),
    ]


def render(page: BatchPage) -> str:
    if not page.rows:
        return "no batches match"
    return render_tables(table(HEADERS, [cells(row, page.now) for row in page.rows]))


def next_hint(page: BatchPage) -> str | None:
    """What to type for the next page (on stderr: stdout carries only the table)."""
    return None if page.next is None else f"more: {CLI} batches ... --after {page.next}"
