"""views for people: counters beside the ledger, recent rows, batch progress, stuck work

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

The batch_workflows and stuck_work views join DBOS's own workflow_status table, so they exist
only on Postgres when the system tables share this database (dbos schema) at migration time:
`dbos migrate` and `python -m app serve` create DBOS's tables before running this.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STUCK_PENDING_MINUTES = 5

PUBLISHER_COUNTERS = """
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

TOPIC_COUNTERS = """
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

RECENT_LEDGER = """
CREATE VIEW recent_ledger AS
SELECT message_id, batch_id, position, publisher, topic, published_at, chunk_workflow_id
FROM ledger ORDER BY published_at DESC, message_id DESC LIMIT 100
"""

BATCH_PROGRESS = """
CREATE VIEW batch_progress AS
SELECT batch_id, publisher, topic,
       count(*) AS published,
       count(DISTINCT chunk_workflow_id) AS chunks_committed,
       min(published_at) AS first_published_at,
       max(published_at) AS last_published_at
FROM ledger GROUP BY batch_id, publisher, topic
"""

# Postgres, with DBOS's tables in this database only.
BATCH_WORKFLOWS = """
CREATE VIEW batch_workflows AS
SELECT substr(w.workflow_uuid, 7) AS batch_id, w.config_name AS publisher, w.status,
       w.recovery_attempts, w.executor_id,
       to_timestamp(w.created_at / 1000.0) AS submitted_at,
       to_timestamp(w.updated_at / 1000.0) AS updated_at,
       COALESCE(p.published, 0) AS published,
       COALESCE(p.chunks_committed, 0) AS chunks_committed
FROM dbos.workflow_status AS w
LEFT JOIN (SELECT batch_id, sum(published) AS published, sum(chunks_committed) AS chunks_committed
           FROM batch_progress GROUP BY batch_id) AS p
       ON p.batch_id = substr(w.workflow_uuid, 7)
WHERE w.name = 'publish_batch'
"""

STUCK_WORK = f"""
CREATE VIEW stuck_work AS
SELECT w.workflow_uuid AS workflow_id, w.status, w.name, w.config_name AS publisher,
       w.queue_name, w.executor_id, w.recovery_attempts,
       to_timestamp(w.created_at / 1000.0) AS created_at,
       now() - to_timestamp(w.updated_at / 1000.0) AS idle_for
FROM dbos.workflow_status AS w
WHERE w.status IN ('ENQUEUED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
   OR (w.status = 'PENDING'
       AND w.updated_at < (extract(epoch FROM now()) - {STUCK_PENDING_MINUTES * 60}) * 1000)
"""

PORTABLE = {
    "publisher_counters": PUBLISHER_COUNTERS,
    "topic_counters": TOPIC_COUNTERS,
    "recent_ledger": RECENT_LEDGER,
    "batch_progress": BATCH_PROGRESS,
}
WITH_DBOS = {"batch_workflows": BATCH_WORKFLOWS, "stuck_work": STUCK_WORK}


def _dbos_tables_here() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and sa.inspect(bind).has_table(
        "workflow_status", schema="dbos"
    )


def upgrade() -> None:
    for ddl in PORTABLE.values():
        op.execute(ddl)
    if _dbos_tables_here():
        for ddl in WITH_DBOS.values():
            op.execute(ddl)


def downgrade() -> None:
    for name in reversed([*PORTABLE, *WITH_DBOS]):
        op.execute(f"DROP VIEW IF EXISTS {name}")
