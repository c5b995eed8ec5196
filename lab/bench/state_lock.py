"""What the chunk transaction's batch-state check costs on Postgres, per way of locking it:
`python -m lab.bench.state_lock [POSTGRES_URL]`.

Eight threads commit chunk-like transactions (50 rows each) of one batch, with no check, with
the shared advisory lock and a plain read (what `batch_records.require_active` does under READ
COMMITTED), and with `SELECT state ... FOR SHARE`. It prints milliseconds per transaction and
the multixacts each way created (`next_multixact_id`, read after a CHECKPOINT) on a scratch
database it drops afterwards.
"""

from __future__ import annotations

import sys
import threading
import time

import sqlalchemy as sa

from dbos_publishers.store._batch_records import LOCK_NAMESPACE
from dbos_publishers.store._database import make_engine, short_lived_engine
from lab.scratch import scratch_databases

THREADS = 8
TRANSACTIONS = 300  # per thread
ROUNDS = 3
CHECKS = {
    "none": [],
    "advisory lock + read": [
        f"SELECT pg_advisory_xact_lock_shared({LOCK_NAMESPACE}, hashtext('b'))",
        "SELECT state FROM batches WHERE batch_id = 'b'",
    ],
    "FOR SHARE": ["SELECT state FROM batches WHERE batch_id = 'b' FOR SHARE"],
}
SETUP = [
    "CREATE TABLE batches (batch_id text PRIMARY KEY, state text NOT NULL)",
    "INSERT INTO batches VALUES ('b', 'active')",
    "CREATE TABLE ledger (id bigserial PRIMARY KEY, batch_id text, payload text)",
]
ROWS = [{"batch_id": "b", "payload": "x" * 40}] * 50


def _chunks(engine: sa.Engine, check: list[str]) -> None:
    with engine.connect() as conn:
        for _ in range(TRANSACTIONS):
            with conn.begin():
                for statement in check:
                    conn.execute(sa.text(statement))
                conn.execute(
                    sa.text("INSERT INTO ledger (batch_id, payload) VALUES (:batch_id, :payload)"),
                    ROWS,
                )


def _multixacts(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("CHECKPOINT"))
        return int(conn.scalar(sa.text("SELECT next_multixact_id FROM pg_control_checkpoint()")))


def _round(engine: sa.Engine, check: list[str]) -> tuple[float, int]:
    before = _multixacts(engine)
    started = time.perf_counter()
    threads = [threading.Thread(target=_chunks, args=(engine, check)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed_ms = 1000 * (time.perf_counter() - started) / TRANSACTIONS
    return elapsed_ms, _multixacts(engine) - before


def main(url: str) -> None:
    with scratch_databases("postgresql", url, "statelock") as (_, db):
        with short_lived_engine(db) as engine, engine.begin() as conn:
            for statement in SETUP:
                conn.execute(sa.text(statement))
        engine = make_engine(db, pool_size=THREADS)
        try:
            for name, check in CHECKS.items():
                runs = [_round(engine, check) for _ in range(ROUNDS)]
                print(
                    f"{name:<22} ms per transaction (8 threads): "
                    f"{', '.join(f'{ms:.1f}' for ms, _ in runs)}; new multixacts per "
                    f"{THREADS * TRANSACTIONS} transactions: {', '.join(str(m) for _, m in runs)}"
                )
        finally:
            engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres")
