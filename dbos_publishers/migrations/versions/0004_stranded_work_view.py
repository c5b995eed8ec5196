"""stranded_work: pending work of an application version no live worker runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Like batch_workflows and stuck_work (0002) it joins DBOS's workflow_status table, so it exists
only on Postgres when the system tables share this database (dbos schema); its definition lives
in app/views.py, which also creates it if DBOS's tables come later.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbos_publishers.store._views import STRANDED_WORK, dbos_tables_here

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if dbos_tables_here(op.get_bind()):
        op.execute(STRANDED_WORK)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS stranded_work")
