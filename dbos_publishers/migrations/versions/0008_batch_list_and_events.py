"""batch list and history: when a batch started and finished, and its lifecycle events; the
publishers each worker declares

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

`batches` gains `started_at` (the plan transaction) and `finished_at` (the batch workflow's last
step) and an index for the newest-first list; `batch_events` records submitted, started,
cancelled, resumed, retried and finished, each in the transaction that made it happen. Batches
planned before this revision: started when planned, finished when the ledger holds all their
messages (the time of the last one); the others show as running until they end.
`batch_workflows` says the batch's state as the list does (a finished batch is no longer
'active') and `recoveries` (starts after the first) instead of DBOS's `recovery_attempts`.
`worker_publishers`: the publishers a worker declared when it joined (a worker of an earlier
release declared none here: it counts as serving every publisher).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dbos_publishers.store._views import BATCH_WORKFLOWS, dbos_tables_here

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = "('submitted', 'started', 'cancelled', 'resumed', 'retried', 'finished')"
BACKFILL_STARTED = "UPDATE batches SET started_at = planned_at"
BACKFILL_FINISHED = """
UPDATE batches SET finished_at = (
    SELECT max(l.published_at) FROM ledger AS l WHERE l.batch_id = batches.batch_id)
WHERE messages = (SELECT count(*) FROM ledger AS l WHERE l.batch_id = batches.batch_id)
"""


# batch_workflows as 0006 defined it, for the downgrade.
BEFORE = """
CREATE VIEW batch_workflows AS
SELECT substr(w.workflow_uuid, 7) AS batch_id, w.config_name AS publisher, w.status,
       p.state, p.messages, COALESCE(p.published, 0) AS published, p.percent,
       p.chunks, COALESCE(p.chunks_committed, 0) AS chunks_committed,
       w.recovery_attempts, w.executor_id,
       to_timestamp(w.created_at / 1000.0) AS submitted_at,
       to_timestamp(w.updated_at / 1000.0) AS updated_at
FROM dbos.workflow_status AS w
LEFT JOIN batch_progress AS p ON p.batch_id = substr(w.workflow_uuid, 7)
WHERE w.name = 'publish_batch'
"""


def _recreate_batch_workflows(definition: str) -> None:
    op.execute("DROP VIEW IF EXISTS batch_workflows")
    if dbos_tables_here(op.get_bind()):
        op.execute(definition)


def upgrade() -> None:
    _recreate_batch_workflows(BATCH_WORKFLOWS)
    op.add_column("batches", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("batches", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_batches_planned_at_batch_id", "batches", ["planned_at", "batch_id"])
    op.execute(BACKFILL_STARTED)
    op.execute(BACKFILL_FINISHED)
    op.create_table(
        "batch_events",
        sa.Column("event_id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(80), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("detail", sa.String(400), server_default="", nullable=False),
        sa.CheckConstraint(f"event IN {EVENTS}", name="ck_batch_events_event"),
        sa.PrimaryKeyConstraint("event_id", name="pk_batch_events"),
    )
    op.create_index("ix_batch_events_batch_id_event_id", "batch_events", ["batch_id", "event_id"])
    op.create_table(
        "worker_publishers",
        sa.Column("worker_id", sa.String(32), nullable=False),
        sa.Column("publisher", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", "publisher", name="pk_worker_publishers"),
    )


def downgrade() -> None:
    _recreate_batch_workflows(BEFORE)
    op.drop_table("worker_publishers")
    op.drop_index("ix_batch_events_batch_id_event_id", table_name="batch_events")
    op.drop_table("batch_events")
    op.drop_index("ix_batches_planned_at_batch_id", table_name="batches")
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+): a batch-mode rebuild would break the views.
    op.drop_column("batches", "finished_at")
    op.drop_column("batches", "started_at")
