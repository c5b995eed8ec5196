"""How often chunk transactions wait on a lock (Postgres): sampled from a side connection while a
measurement runs, for counter contention (the local and global counter rows every chunk bumps)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.config import DatabaseUrl
from app.database import make_engine

SAMPLE_INTERVAL_SEC = 0.02
# Backends of this database inside a chunk transaction, by what they run now: the ledger COPY
# (or INSERT), a counter upsert, or the datasource's checkpoint of the chunk's result.
CHUNK_BACKENDS = sa.text(
    """
    SELECT coalesce(wait_event_type, '') AS wait_type, coalesce(wait_event, '') AS wait_event
    FROM pg_stat_activity
    WHERE datname = current_database()
      AND pid <> pg_backend_pid()
      AND xact_start IS NOT NULL
      AND (query ILIKE '%ledger%' OR query ILIKE '%_counters%'
           OR query ILIKE '%datasource_outputs%')
    """
)


@dataclass
class LockSamples:
    queries: int = 0  # the sampler's own transactions (taken out of commits/msg)
    samples: int = 0  # samples with at least one chunk transaction running
    in_transaction: int = 0  # chunk-transaction observations, summed over samples
    waiting: int = 0  # of those, waiting on a lock
    samples_with_wait: int = 0
    by_event: Counter[str] = field(default_factory=Counter)  # wait_event of the lock waits

    def add(self, rows: list[tuple[str, str]]) -> None:
        self.queries += 1
        if not rows:
            return
        waits = [event for kind, event in rows if kind == "Lock"]
        self.samples += 1
        self.in_transaction += len(rows)
        self.waiting += len(waits)
        self.samples_with_wait += bool(waits)
        self.by_event.update(waits)

    def report(self) -> dict[str, Any]:
        """`lock_wait_share`: the share of chunk-transaction observations waiting on a lock;
        `lock_wait_any`: the share of samples in which at least one chunk transaction waited."""
        return {
            "samples": self.samples,
            "lock_wait_share": round(self.waiting / self.in_transaction, 3)
            if self.in_transaction
            else None,
            "lock_wait_any": round(self.samples_with_wait / self.samples, 3)
            if self.samples
            else None,
            "waits_by_event": dict(self.by_event),
        }


@contextmanager
def lock_sampler(url: DatabaseUrl, *, enabled: bool = True) -> Iterator[LockSamples]:
    """Sample while the block runs (Postgres; SQLite has no such view: nothing is sampled)."""
    found = LockSamples()
    if url.backend != "postgresql" or not enabled:
        yield found
        return
    stop = threading.Event()
    engine = make_engine(url, pool_size=1, max_overflow=0)

    def sample() -> None:
        with engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            while not stop.wait(SAMPLE_INTERVAL_SEC):
                found.add([(kind, event) for kind, event in autocommit.execute(CHUNK_BACKENDS)])

    thread = threading.Thread(target=sample, name="bench-lock-sampler", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        engine.dispose()
