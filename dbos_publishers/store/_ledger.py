"""The ledger and its counters: the SQL that records a chunk and the SQL that reads state back.

Everything here takes an explicit connection and knows nothing about DBOS; the caller decides
which transaction it runs in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

import psycopg
import sqlalchemy as sa

from dbos_publishers.store import _counters as counters
from dbos_publishers.store._schema import ledger, publisher_counters, topic_counters


class LedgerEntry(NamedTuple):
    """One ledger row, in column order (so it can be streamed to COPY as it is)."""

    message_id: str
    batch_id: str
    position: int
    publisher: str
    topic: str
    payload: str
    chunk_workflow_id: str


def message_id(batch_id: str, position: int) -> str:
    """The deterministic id of the message at `position` (0-based) of a batch."""
    return f"{batch_id}:{position}"


# COPY's text format: these four characters in a value must be escaped (NUL cannot be stored).
_COPY_SPECIALS = "\\\t\n\r"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


class ChunkEntries(Sequence[LedgerEntry]):
    """A chunk's ledger entries held as columns: the chunk's constants and one payload per
    message, from `start` on.

    Nothing is built per row until someone asks: the chunk transaction streams `copy_text()` to
    COPY in one pass, and a `LedgerEntry` exists only for a hook that indexes or iterates.
    """

    def __init__(
        self,
        *,
        batch_id: str,
        publisher: str,
        topic: str,
        chunk_workflow_id: str,
        start: int,
        payloads: Sequence[str],
    ) -> None:
        self.batch_id = batch_id
        self.publisher = publisher
        self.topic = topic
        self.chunk_workflow_id = chunk_workflow_id
        self.start = start
        self.payloads = payloads

    def __len__(self) -> int:
        return len(self.payloads)

    @overload
    def __getitem__(self, index: int) -> LedgerEntry: ...
    @overload
    def __getitem__(self, index: slice) -> list[LedgerEntry]: ...
    def __getitem__(self, index: int | slice) -> LedgerEntry | list[LedgerEntry]:
        if isinstance(index, slice):
            return [self._entry(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("chunk entry index out of range")
        return self._entry(index)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return (self._entry(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence, like a list

    def _entry(self, index: int) -> LedgerEntry:
        position = self.start + index
        return LedgerEntry(
            message_id(self.batch_id, position),
            self.batch_id,
            position,
            self.publisher,
            self.topic,
            self.payloads[index],
            self.chunk_workflow_id,
        )

    def copy_text(self) -> str:
        """Every row in COPY's text format, built in one pass (the same rows `LedgerEntry`
        would give, escaped where a value needs it)."""
        payloads: Sequence[str] = self.payloads
        joined = "".join(payloads)  # four scans in C instead of four per payload
        if any(special in joined for special in _COPY_SPECIALS):
            payloads = [_copy_value(p) for p in payloads]
        batch = _copy_value(self.batch_id)
        # The message id is message_id(batch_id, position), spelled inline: no call per row.
        tail = f"\t{_copy_value(self.publisher)}\t{_copy_value(self.topic)}\t"
        workflow = f"\t{_copy_value(self.chunk_workflow_id)}\n"
        return "".join(
            f"{batch}:{position}\t{batch}\t{position}{tail}{payload}{workflow}"
            for position, payload in enumerate(payloads, self.start)
        )


COPY_LEDGER = sa.text(
    "COPY ledger (message_id, batch_id, position, publisher, topic, payload, chunk_workflow_id) "
    "FROM STDIN"
)


def insert_entries(conn: sa.Connection, entries: Sequence[LedgerEntry]) -> None:
    """Insert ledger rows in the caller's transaction; a message id seen before is an error.

    Postgres gets COPY (about 3x cheaper per row than a multi-row INSERT from Python); SQLite
    gets one executemany."""
    if conn.dialect.name == "postgresql":
        copy_entries(conn, entries)
    else:
        insert_rows(conn, entries)


def copy_entries(conn: sa.Connection, entries: Sequence[LedgerEntry]) -> None:
    if isinstance(entries, ChunkEntries):
        text = entries.copy_text()
        _copy(conn, lambda copy: copy.write(text))
    else:
        _copy(conn, lambda copy: _write_rows(copy, entries))


def _write_rows(copy: psycopg.Copy, entries: Sequence[LedgerEntry]) -> None:
    for entry in entries:
        copy.write_row(entry)


def _copy(conn: sa.Connection, write: Callable[[psycopg.Copy], object]) -> None:
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(str(COPY_LEDGER)) as copy:
            write(copy)
    except psycopg.Error as exc:
        # Wrapped as SQLAlchemy would, so callers (and DBOS's retry of transient errors) see
        # IntegrityError, OperationalError... exactly as for a statement run through SQLAlchemy.
        raise sa.exc.DBAPIError.instance(
            str(COPY_LEDGER), None, exc, psycopg.Error, dialect=conn.dialect
        ) from exc


def insert_rows(conn: sa.Connection, entries: Sequence[LedgerEntry]) -> None:
    """Plain multi-row INSERT: SQLite's way to write a chunk's rows (it has no COPY)."""
    conn.execute(
        ledger.insert(),
        [
            {
                "message_id": e.message_id,
                "batch_id": e.batch_id,
                "position": e.position,
                "publisher": e.publisher,
                "topic": e.topic,
                "payload": e.payload,
                "chunk_workflow_id": e.chunk_workflow_id,
            }
            for e in entries
        ],
    )


def record_chunk(conn: sa.Connection, entries: Sequence[LedgerEntry]) -> int:
    """Record a chunk's messages and move both counters by the same amount, in the caller's tx
    (one delta row: see store._counters)."""
    if not entries:
        return 0
    insert_entries(conn, entries)
    first = entries[0]
    counters.bump_counters(conn, first.publisher, first.topic, len(entries))
    return len(entries)


@dataclass(frozen=True)
class CounterRow:
    publisher: str
    topic: str
    local_counter: int
    ledger_rows: int


@dataclass(frozen=True)
class TopicRow:
    topic: str
    global_counter: int
    sum_of_locals: int
    ledger_rows: int


def publisher_counts(conn: sa.Connection) -> list[CounterRow]:
    """Local counters beside ledger row counts, for every (publisher, topic) either side knows
    (the `publisher_counters` view)."""
    v = publisher_counters
    query = sa.select(v.c.publisher, v.c.topic, v.c.local_counter, v.c.ledger_rows).order_by(
        v.c.publisher, v.c.topic
    )
    return [CounterRow(p, t, int(c), int(n)) for p, t, c, n in conn.execute(query)]


def topic_counts(conn: sa.Connection) -> list[TopicRow]:
    """Global counters beside the sum of local counters and the ledger rows, per topic (the
    `topic_counters` view)."""
    v = topic_counters
    query = sa.select(v.c.topic, v.c.global_counter, v.c.sum_of_locals, v.c.ledger_rows).order_by(
        v.c.topic
    )
    return [TopicRow(t, int(g), int(s), int(n)) for t, g, s, n in conn.execute(query)]


def batch_published(conn: sa.Connection, batch_id: str) -> int:
    """How many of a batch's messages are in the ledger (an index count, no rows fetched)."""
    query = sa.select(sa.func.count()).select_from(ledger).where(ledger.c.batch_id == batch_id)
    return int(conn.scalar(query) or 0)


def batch_positions(conn: sa.Connection, batch_id: str) -> list[int]:
    """The positions of a batch's messages present in the ledger, in order."""
    query = sa.select(ledger.c.position).where(ledger.c.batch_id == batch_id)
    return sorted(int(p) for (p,) in conn.execute(query))


def row_count(conn: sa.Connection) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(ledger)) or 0)
