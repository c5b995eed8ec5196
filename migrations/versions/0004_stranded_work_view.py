"""stranded_work: pending work of an application version no live worker runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Like batch_workflows and stuck_work (0002) it joins DBOS's workflow_status table, so it exists
only on Postgres when the system tables share this database (dbos schema) at migration time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PENDING or ENQUEUED work of a version that no live worker (alive, lease unexpired) runs, while
# workers of another version do: DBOS there neither recovers nor dequeues it. Version-less work
# is not stranded (the latest version dequeues it), nor is anything while no worker runs at all.
STRANDED_WORK = """
CREATE VIEW stranded_work AS
WITH live AS (
    SELECT app_version FROM workers
    WHERE state = 'alive' AND heartbeat_at + lease_ttl_sec >= extract(epoch FROM clock_timestamp())
)
SELECT w.workflow_uuid AS workflow_id, w.status, w.name, w.config_name AS publisher,
       w.queue_name, w.application_version AS app_version, w.executor_id,
       to_timestamp(w.updated_at / 1000.0) AS updated_at,
       CAST('python -m app upgrade' AS text) AS resolve
FROM dbos.workflow_status AS w
WHERE w.status IN ('PENDING', 'ENQUEUED')
  AND w.application_version IS NOT NULL
  AND w.application_version NOT IN (SELECT app_version FROM live)
  AND EXISTS (SELECT 1 FROM live)
"""


def _dbos_tables_here() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and sa.inspect(bind).has_table(
        "workflow_status", schema="dbos"
    )


def upgrade() -> None:
    if _dbos_tables_here():
        op.execute(STRANDED_WORK)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS stranded_work")
