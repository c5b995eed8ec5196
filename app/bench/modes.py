"""The benchmark's modes: what each measures and how it is tuned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.dbos_gateway import IsolationLevel

ModeName = Literal["raw", "exp7", "per-message", "batched"]


@dataclass(frozen=True)
class Mode:
    name: ModeName
    description: str
    chunk_size: int
    chunk_concurrency: int = 8
    polling_interval_sec: float = 0.05
    # None: the service's own choice (READ COMMITTED on Postgres, SERIALIZABLE on SQLite).
    isolation: IsolationLevel | None = None
    per_message: bool = False


MODES: dict[ModeName, Mode] = {
    "raw": Mode(
        "raw",
        "plain multi-row inserts + counter upserts, one client, no DBOS (the ceiling)",
        chunk_size=1000,
    ),
    "exp7": Mode(
        "exp7",
        "exp7's shape: a queued workflow per message, SERIALIZABLE, DBOS's default 1 s polling",
        chunk_size=1,
        chunk_concurrency=10,
        polling_interval_sec=1.0,
        isolation="SERIALIZABLE",
        per_message=True,
    ),
    "per-message": Mode(
        "per-message",
        "a queued workflow per message, READ COMMITTED, 50 ms polling, 32 at once",
        chunk_size=1,
        chunk_concurrency=32,
        per_message=True,
    ),
    "batched": Mode(
        "batched",
        "2,000-message chunk workflows, one transaction each, 4 at once",
        chunk_size=2000,
        chunk_concurrency=4,
    ),
}
