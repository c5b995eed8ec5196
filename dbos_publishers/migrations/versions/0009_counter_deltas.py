"""counter_deltas: chunks insert what they add to the counters; the views add folded and unfolded

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Every chunk transaction used to upsert the one local counter row of its (publisher, topic) and the
one global row of its topic: a transaction that stalled holding them (a frozen, hung or cut-off
worker) stopped every chunk of those topics on every worker. A chunk now inserts one delta row;
a worker folds deltas into the counter rows (store._counters.fold_deltas). The counter views add
the deltas not folded yet, so they read the same values as before at every snapshot.
Downgrade folds every delta first, so the rows alone hold the counts again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PUBLISHER_COUNTERS = """
CREATE VIEW publisher_counters AS
WITH c AS (
  SELECT publisher, topic, sum(value) AS value
  FROM (SELECT publisher, topic, value FROM local_counters
        UNION ALL SELECT publisher, topic, amount FROM counter_deltas) AS parts
  GROUP BY publisher, topic
)
SELECT k.publisher, k.topic,
       COALESCE(c.value, 0) AS local_counter,
       COALESCE(l.n, 0) AS ledger_rows,
       COALESCE(c.value, 0) = COALESCE(l.n, 0) AS consistent
FROM (SELECT publisher, topic FROM c UNION SELECT publisher, topic FROM ledger) AS k
LEFT JOIN c ON c.publisher = k.publisher AND c.topic = k.topic
LEFT JOIN (SELECT publisher, topic, count(*) AS n FROM ledger GROUP BY publisher, topic) AS l
       ON l.publisher = k.publisher AND l.topic = k.topic
"""

TOPIC_COUNTERS = """
CREATE VIEW topic_counters AS
WITH d AS (SELECT topic, sum(amount) AS n FROM counter_deltas GROUP BY topic),
g AS (
  SELECT topic, sum(value) AS value
  FROM (SELECT topic, value FROM global_counters UNION ALL SELECT topic, n FROM d) AS parts
  GROUP BY topic
),
s AS (
  SELECT topic, sum(value) AS total
  FROM (SELECT topic, value FROM local_counters UNION ALL SELECT topic, n FROM d) AS parts
  GROUP BY topic
),
l AS (SELECT topic, count(*) AS n FROM ledger GROUP BY topic)
SELECT k.topic,
       COALESCE(g.value, 0) AS global_counter,
       COALESCE(s.total, 0) AS sum_of_locals,
       COALESCE(l.n, 0) AS ledger_rows,
       COALESCE(g.value, 0) = COALESCE(s.total, 0)
         AND COALESCE(s.total, 0) = COALESCE(l.n, 0) AS consistent
FROM (SELECT topic FROM g UNION SELECT topic FROM s UNION SELECT topic FROM l) AS k
LEFT JOIN g ON g.topic = k.topic
LEFT JOIN s ON s.topic = k.topic
LEFT JOIN l ON l.topic = k.topic
"""

# As revision 0002 created them (the counter rows alone).
PUBLISHER_COUNTERS_0002 = """
CREATE VIEW publisher_counters AS
SELECT k.publisher, k.topic,
       COALESCE(c.value, 0) AS local_counter,
       COALESCE(l.n, 0) AS ledger_rows,
       COALESCE(c.value, 0) = COALESCE(l.n, 0) AS consistent
FROM (SELECT publisher, topic FROM local_counters
      UNION SELECT publisher, topic FROM ledger) AS k
LEFT JOIN local_counters AS c ON c.publisher = k.publisher AND c.topic = k.topic
LEFT JOIN (SELECT publisher, topic, count(*) AS n FROM ledger GROUP BY publisher, topic) AS l
       ON l.publisher = k.publisher AND l.topic = k.topic
"""

TOPIC_COUNTERS_0002 = """
CREATE VIEW topic_counters AS
SELECT k.topic,
       COALESCE(g.value, 0) AS global_counter,
       COALESCE(s.total, 0) AS sum_of_locals,
       COALESCE(l.n, 0) AS ledger_rows,
       COALESCE(g.value, 0) = COALESCE(s.total, 0)
         AND COALESCE(s.total, 0) = COALESCE(l.n, 0) AS consistent
FROM (SELECT topic FROM global_counters UNION SELECT topic FROM local_counters
      UNION SELECT topic FROM ledger) AS k
LEFT JOIN global_counters AS g ON g.topic = k.topic
LEFT JOIN (SELECT topic, sum(value) AS total FROM local_counters GROUP BY topic) AS s
       ON s.topic = k.topic
LEFT JOIN (SELECT topic, count(*) AS n FROM ledger GROUP BY topic) AS l ON l.topic = k.topic
"""

# Downgrade: every delta into the counter rows, then the table goes. (`WHERE true`: SQLite's
# parser needs a WHERE before an upsert's ON CONFLICT in INSERT ... SELECT.)
FOLD_LOCAL = """
INSERT INTO local_counters (publisher, topic, value)
SELECT publisher, topic, sum(amount) FROM counter_deltas WHERE true GROUP BY publisher, topic
ON CONFLICT (publisher, topic) DO UPDATE SET value = local_counters.value + excluded.value
"""
FOLD_GLOBAL = """
INSERT INTO global_counters (topic, value)
SELECT topic, sum(amount) FROM counter_deltas WHERE true GROUP BY topic
ON CONFLICT (topic) DO UPDATE SET value = global_counters.value + excluded.value
"""


def _views(publisher_counters: str, topic_counters: str) -> None:
    op.execute("DROP VIEW IF EXISTS publisher_counters")
    op.execute("DROP VIEW IF EXISTS topic_counters")
    op.execute(publisher_counters)
    op.execute(topic_counters)


def upgrade() -> None:
    op.create_table(
        "counter_deltas",
        sa.Column(
            "delta_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("publisher", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_counter_deltas_positive"),
        sa.PrimaryKeyConstraint("delta_id", name="pk_counter_deltas"),
    )
    _views(PUBLISHER_COUNTERS, TOPIC_COUNTERS)


def downgrade() -> None:
    op.execute(FOLD_LOCAL)
    op.execute(FOLD_GLOBAL)
    _views(PUBLISHER_COUNTERS_0002, TOPIC_COUNTERS_0002)
    op.drop_table("counter_deltas")
