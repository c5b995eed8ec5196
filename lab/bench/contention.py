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

from dbos_publishers._config import DatabaseUrl
from dbos_publishers.store._database import make_engine

SAMPLE_INTERVAL_SEC = 0.02
# Backends of this database inside a chunk transaction, by what they run now: the ledger COPY
# (or INSERT), a counter upsert, or the datasource's checkpoint of the chunk's result.
CHUNK_BACKENDS = sa.text(
    """
    SELECT coalesce(wait_event_type, '') AS wait_type, coalesce(wait_event, '') AS wait_event,
           query ILIKE '%counter%' AS on_counters
    FROM pg_stat_activity
    WHERE datname = current_database()
      AND pid <> pg_backend_pid()
      AND xact_start IS NOT NULL
      AND (query ILIKE '%ledger%' OR query ILIKE '%counter%'
           OR query ILIKE '%datasource_outputs%')
    """
)


@dataclass
class LockSamples:
    queries: int = 0  # the sampler's own transactions (taken out of commits/msg)
    samples: int = 0  # samples with at least one chunk transaction running
    in_transaction: int = 0  # chunk-transaction observations, summed over samples
    waiting: int = 0  # of those, waiting on a lock
    on_counters: int = 0  # of those, in a counter upsert (row locks; the rest is mostly `extend`)
    samples_with_wait: int = 0
    by_event: Counter[str] = field(default_factory=Counter)  # wait_event of the lock waits

    def add(self, rows: list[tuple[str, str, bool]]) -> None:
        self.queries += 1
        if not rows:
            return
        waits = [(event, counters) for kind, event, counters in rows if kind == "Lock"]
        self.samples += 1
        self.in_transaction += len(rows)
        self.waiting += len(waits)
        self.on_counters += sum(1 for _, counters in waits if counters)
        self.samples_with_wait += bool(waits)
        self.by_event.update(event for event, _ in waits)

    def report(self) -> dict[str, Any]:
        """`lock_wait_share`: the share of chunk-transaction observations waiting on a lock;
        `counter_wait_share`: those waiting in a counter upsert (counter contention);
        `lock_wait_any`: the share of samples in which at least one chunk transaction waited."""
        return {
            "samples": self.samples,
            "lock_wait_share": _share(self.waiting, self.in_transaction),
            "counter_wait_share": _share(self.on_counters, self.in_transaction),
            "lock_wait_any": _share(self.samples_with_wait, self.samples),
            "waits_by_event": dict(self.by_event),
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


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
                found.add([(k, e, bool(c)) for k, e, c in autocommit.execute(CHUNK_BACKENDS)])

    thread = threading.Thread(target=sample, name="bench-lock-sampler", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        engine.dispose()
