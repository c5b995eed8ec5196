"""The local and global counters: what a chunk transaction adds, and how the additions are folded.

A chunk inserts one `counter_deltas` row in its own transaction, beside its ledger rows: an
insert touches no row another transaction holds, so a chunk transaction that stalls (a frozen,
hung or cut-off worker) never makes another chunk wait. A counter's value is its folded row in
`local_counters` / `global_counters` plus the deltas not folded yet; the views and the readers
here add the two in one statement, so every snapshot is exact. `fold_deltas` moves deltas into
the folded rows in one transaction (deleted and added together), by one worker at a time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dbos_publishers.store._schema import counter_deltas, global_counters, local_counters

FOLD_LIMIT = 50_000  # deltas folded per call: one transaction of bounded size
FOLD_LOCK = sa.text("SELECT pg_try_advisory_xact_lock(:ns, 0)")
FOLD_NAMESPACE = 0x636F756E  # "coun"
# A fold never waits on a lock: chunk transactions touch no folded row, and a second worker's
# fold skips its turn. The bound covers a release before deltas still upserting the rows.
FOLD_LOCK_TIMEOUT = sa.text("SET LOCAL lock_timeout = '1s'")


def bump_counters(conn: sa.Connection, publisher: str, topic: str, amount: int) -> None:
    """Add `amount` to the local counter of (publisher, topic) and to the topic's global counter,
    in the caller's transaction: one inserted delta row that both counters read."""
    conn.execute(counter_deltas.insert().values(publisher=publisher, topic=topic, amount=amount))


def fold_deltas(conn: sa.Connection, limit: int = FOLD_LIMIT) -> int:
    """Move up to `limit` deltas into the folded counter rows, in the caller's transaction; returns
    how many deltas moved (0 when another worker is folding). A delta is deleted and added in the
    same transaction, so no reader ever sees it in both places or in neither."""
    if conn.dialect.name == "postgresql":
        if not conn.scalar(FOLD_LOCK, {"ns": FOLD_NAMESPACE}):
            return 0
        conn.execute(FOLD_LOCK_TIMEOUT)
    oldest = sa.select(counter_deltas.c.delta_id).order_by(counter_deltas.c.delta_id).limit(limit)
    moved = conn.execute(
        counter_deltas.delete()
        .where(counter_deltas.c.delta_id.in_(oldest.scalar_subquery()))
        .returning(counter_deltas.c.publisher, counter_deltas.c.topic, counter_deltas.c.amount)
    ).all()
    local: Counter[tuple[str, str]] = Counter()
    for publisher, topic, amount in moved:
        local[publisher, topic] += int(amount)
    topics: Counter[str] = Counter()
    for (publisher, topic), amount in sorted(local.items()):
        _upsert_add(conn, local_counters, {"publisher": publisher, "topic": topic}, amount)
        topics[topic] += amount
    for topic, amount in sorted(topics.items()):
        _upsert_add(conn, global_counters, {"topic": topic}, amount)
    return len(moved)


def pending_deltas(conn: sa.Connection) -> int:
    """How many deltas wait to be folded (a backlog that only grows says nobody folds)."""
    return int(conn.scalar(sa.select(sa.func.count()).select_from(counter_deltas)) or 0)


def local_counter_values(conn: sa.Connection) -> list[tuple[str, str, int]]:
    """(publisher, topic, value) of every local counter, folded and not: no ledger scan."""
    parts = sa.union_all(
        sa.select(local_counters.c.publisher, local_counters.c.topic, local_counters.c.value),
        sa.select(counter_deltas.c.publisher, counter_deltas.c.topic, counter_deltas.c.amount),
    ).subquery()
    query = (
        sa.select(parts.c.publisher, parts.c.topic, sa.func.sum(parts.c.value))
        .group_by(parts.c.publisher, parts.c.topic)
        .order_by(parts.c.publisher, parts.c.topic)
    )
    return [(p, t, int(v)) for p, t, v in conn.execute(query)]


def _upsert_add(conn: sa.Connection, table: sa.Table, key: dict[str, Any], amount: int) -> None:
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**key, value=amount)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={"value": table.c.value + stmt.excluded.value}
    )
    conn.execute(stmt)
