"""Lab variants that break an invariant on purpose, so tests and scenarios can show the checks
catch them. Never declare these in a real service."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar

import sqlalchemy as sa
import structlog
from dbos import DBOS

from dbos_publishers._failpoints import failpoint
from dbos_publishers.contrib.events import EventPublisher
from dbos_publishers.contrib.webhook import WebhookPublisher
from dbos_publishers.store import _counters as counters
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._ledger import LedgerEntry

log = structlog.get_logger()


class CounterOutsideTransactionPublisher(EventPublisher):
    """Writes the ledger in the datasource transaction but bumps the counters in a separate,
    plain step: a crash after that step's commit and before its checkpoint re-runs it."""

    def write_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        ledger.insert_entries(self.datasource.sql_session().connection(), entries)
        return len(entries)

    def _commit_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        published = super()._commit_chunk(entries)
        DBOS.run_step({"name": "bump_counters"}, self._bump_outside, entries[0], published)
        return published

    def _bump_outside(self, first: LedgerEntry, amount: int) -> None:
        engine: sa.Engine = self.datasource.engine
        with engine.begin() as conn:
            counters.bump_counters(conn, first.publisher, first.topic, amount)
        log.info("step_committed")  # as the datasource does, so scenarios can count commits
        failpoint("chunk.after_commit")


class InMemoryBufferPublisher(EventPublisher):
    """Acknowledges a chunk once it sits in an in-memory buffer and writes the buffer every
    FLUSH_EVERY chunks (exp7 kept its counters in memory): a crash loses what was buffered,
    and the checkpointed acknowledgements mean nothing ever re-sends it."""

    FLUSH_EVERY = 4
    _buffer: ClassVar[list[LedgerEntry]] = []
    _chunks: ClassVar[int] = 0
    _lock = threading.Lock()

    def _commit_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        return int(DBOS.run_step({"name": "buffer_chunk"}, self._buffered, entries))

    def _buffered(self, entries: Sequence[LedgerEntry]) -> int:
        with self._lock:
            InMemoryBufferPublisher._buffer += entries
            InMemoryBufferPublisher._chunks += 1
            if self._chunks % self.FLUSH_EVERY == 0:
                with self.datasource.engine.begin() as conn:
                    ledger.record_chunk(conn, self._buffer)
                InMemoryBufferPublisher._buffer = []
        return len(entries)


class NoIdempotencyKeyPublisher(WebhookPublisher):
    """Sends no idempotency key, so a delivery repeated after a crash is applied twice."""

    def idempotency_key(self, entry: LedgerEntry) -> str | None:
        return None


# Every bound TransactionBounds sets that could end a stalled chunk transaction (0: none).
UNBOUNDED = ("idle_in_transaction_session_timeout", "lock_timeout", "statement_timeout")


class UnboundedEventPublisher(EventPublisher):
    """Lifts the bounds on its own chunk transaction as its first statement: idle in a
    transaction, a lock wait and a statement, which the chunk connections set from the lease TTL.
    A worker frozen, hung or cut off inside a chunk then keeps that transaction open past its
    lease (until it thaws, is killed, or its link's keepalives give up). For the fleet/*
    scenarios' broken variants: their session check reports it."""

    def write_chunk(self, entries: Sequence[LedgerEntry]) -> int:
        conn = self.datasource.sql_session().connection()
        for setting in UNBOUNDED:
            conn.execute(sa.text(f"SET LOCAL {setting} = 0"))
        return super().write_chunk(entries)
