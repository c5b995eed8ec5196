"""Lab variants that break an invariant on purpose, so tests and scenarios can show the checks
catch them. Never declare these in a real service."""

from __future__ import annotations

import sqlalchemy as sa
from dbos import DBOS

from app import ledger
from app.failpoints import failpoint
from app.ledger import LedgerEntry
from app.publishers.events import EventPublisher


class CounterOutsideTransactionPublisher(EventPublisher):
    """Writes the ledger in the datasource transaction but bumps the counters in a separate,
    plain step: a crash after that step's commit and before its checkpoint re-runs it."""

    def write_chunk(self, entries: list[LedgerEntry]) -> int:
        ledger.insert_entries(self.datasource.sql_session().connection(), entries)
        return len(entries)

    def commit_chunk(self, entries: list[LedgerEntry]) -> int:
        published = super().commit_chunk(entries)
        DBOS.run_step({"name": "bump_counters"}, self._bump_outside, entries[0], published)
        return published

    def _bump_outside(self, first: LedgerEntry, amount: int) -> None:
        engine: sa.Engine = self.datasource.engine
        with engine.begin() as conn:
            ledger.bump_counters(conn, first.publisher, first.topic, amount)
        failpoint("chunk.after_commit")
