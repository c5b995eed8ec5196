"""views for the batch lifecycle: batch totals and percent in batch_progress and batch_workflows;
stuck_work reports only work that is really stuck, with a reason

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

batch_progress now starts from the batches table (its total, state and percent), keeping batches
published before that table existed (no total: percent is NULL). The DBOS-joined views are
defined in app/views.py; when DBOS's tables are not here yet, the first upgrade to head after
they are (`dbos migrate`, the service's start) creates them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from alembic.script import ScriptDirectory

from dbos_publishers.store._views import BATCH_WORKFLOWS, STUCK_WORK, dbos_tables_here

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH_PROGRESS = """
CREATE VIEW batch_progress AS
SELECT k.batch_id,
       COALESCE(b.publisher, l.publisher) AS publisher,
       COALESCE(b.topic, l.topic) AS topic,
       COALESCE(b.state, 'active') AS state,
       b.messages,
       COALESCE(l.published, 0) AS published,
       round(100.0 * COALESCE(l.published, 0) / b.messages, 1) AS percent,
       b.chunks,
       COALESCE(l.chunks_committed, 0) AS chunks_committed,
       b.planned_at,
       l.first_published_at,
       l.last_published_at
FROM (SELECT batch_id FROM batches UNION SELECT batch_id FROM ledger) AS k
LEFT JOIN batches AS b ON b.batch_id = k.batch_id
LEFT JOIN (SELECT batch_id, min(publisher) AS publisher, min(topic) AS topic,
                  count(*) AS published,
                  count(DISTINCT chunk_workflow_id) AS chunks_committed,
                  min(published_at) AS first_published_at,
                  max(published_at) AS last_published_at
           FROM ledger GROUP BY batch_id) AS l ON l.batch_id = k.batch_id
"""


def _drop() -> None:
    for name in ("batch_workflows", "stuck_work", "batch_progress"):  # dependents first
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    _drop()
    op.execute(BATCH_PROGRESS)
    if dbos_tables_here(op.get_bind()):
        op.execute(BATCH_WORKFLOWS)
        op.execute(STUCK_WORK)


def downgrade() -> None:
    _drop()
    config = op.get_context().config
    assert config is not None
    previous = ScriptDirectory.from_config(config).get_revision("0002")
    assert previous is not None
    op.execute(previous.module.BATCH_PROGRESS)
    if dbos_tables_here(op.get_bind()):
        op.execute(previous.module.BATCH_WORKFLOWS)
        op.execute(previous.module.STUCK_WORK)
