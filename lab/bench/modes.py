"""The benchmark's modes: what each measures and how it is tuned.

Three kinds: `reference` rows (the same work without the framework: `ceiling` with no DBOS at all,
`dbos-raw*` with plain DBOS queued workflows) and the product's own rows (`batched`,
`per-message`, `exp7`). Each product row is read against the references of its own shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dbos_publishers._dbos_gateway import IsolationLevel
from dbos_publishers._declarations import CHUNK_PREFETCH, read_publishers_file
from lab.paths import REFERENCE_PUBLISHERS_FILE

ModeName = Literal[
    "ceiling",
    "dbos-raw",
    "batched",
    "batched-shipped",
    "dbos-raw-per-message",
    "per-message",
    "exp7",
]
Runner = Literal["ceiling", "dbos-raw", "product"]
CHUNK_SIZE = 2000


def shipped_chunk_size() -> int:
    """The chunk size the reference service ships (`publishers.toml`, [defaults] chunk_size):
    the benchmark reports it beside its own, so a default slower than the benchmark shows."""
    defaults = read_publishers_file(REFERENCE_PUBLISHERS_FILE).get("defaults", {})
    assert isinstance(defaults, dict)
    return int(defaults["chunk_size"])


# Measured here (2,000 messages, Postgres, both shapes in the same round): 16 at once ran 66-73
# msg/s, 8 ran 62-65, 32 ran 50; more threads than that only queue on the GIL.
PER_MESSAGE_CONCURRENCY = 16


@dataclass(frozen=True)
class Mode:
    name: ModeName
    description: str
    runner: Runner
    chunk_size: int
    # Chunk-sized modes follow `--chunk-concurrency`; the per-message shapes keep their own.
    chunk_concurrency: int | None = None
    # Chunk workflows per transaction slot (`[queues] chunk_prefetch`).
    chunk_prefetch: int = CHUNK_PREFETCH
    polling_interval_sec: float = 0.05
    # None: the service's own choice (READ COMMITTED on Postgres, SERIALIZABLE on SQLite).
    isolation: IsolationLevel | None = None

    @property
    def per_message(self) -> bool:
        return self.chunk_size == 1

    @property
    def reference(self) -> bool:
        return self.runner != "product"


MODES: dict[ModeName, Mode] = {
    "ceiling": Mode(
        "ceiling",
        "no DBOS: the same ledger rows and counter upserts (the product's own code), one "
        "transaction per 2,000-message chunk, N connections in parallel (1 on SQLite)",
        "ceiling",
        chunk_size=CHUNK_SIZE,
    ),
    "dbos-raw": Mode(
        "dbos-raw",
        "plain DBOS: a queued workflow per 2,000-message chunk enqueued by a DBOSClient, running "
        "the same datasource transaction; no Publisher, no batch workflow; N at once",
        "dbos-raw",
        chunk_size=CHUNK_SIZE,
    ),
    "batched": Mode(
        "batched",
        "the product: batch workflows fanning out 2,000-message chunk workflows, N chunk "
        "transactions at once (DBOS runs 2N chunk workflows)",
        "product",
        chunk_size=CHUNK_SIZE,
    ),
    "batched-shipped": Mode(
        "batched-shipped",
        "the product as shipped: `batched` at publishers.toml's default chunk size "
        f"({shipped_chunk_size():,} messages), N chunk transactions at once",
        "product",
        chunk_size=shipped_chunk_size(),
    ),
    "dbos-raw-per-message": Mode(
        "dbos-raw-per-message",
        "plain DBOS: a queued workflow per message enqueued by a DBOSClient, the same "
        "datasource transaction, 16 at once, 50 ms polling",
        "dbos-raw",
        chunk_size=1,
        chunk_concurrency=PER_MESSAGE_CONCURRENCY,
    ),
    "per-message": Mode(
        "per-message",
        "the product, a chunk workflow per message: READ COMMITTED, 50 ms polling, 16 "
        "transactions at once",
        "product",
        chunk_size=1,
        chunk_concurrency=PER_MESSAGE_CONCURRENCY,
        chunk_prefetch=1,  # measured: see CHUNK_PREFETCH
    ),
    "exp7": Mode(
        "exp7",
        "exp7's shape: a queued workflow per message, SERIALIZABLE, DBOS's default 1 s polling",
        "product",
        chunk_size=1,
        chunk_concurrency=10,
        chunk_prefetch=1,  # exp7 ran 10 workflows at once
        polling_interval_sec=1.0,
        isolation="SERIALIZABLE",
    ),
}
