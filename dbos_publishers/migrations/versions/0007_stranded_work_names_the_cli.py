"""stranded_work names `dbos-publishers upgrade`, the command every service has

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

The view's `resolve` column said `python -m app upgrade`, the reference service's own spelling;
`status` and /workers now name the console script the wheel installs, and the view says the same.
Recreated only where it exists (Postgres, DBOS's tables in this database).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from dbos_publishers.store._views import STRANDED_WORK, dbos_tables_here

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = "dbos-publishers upgrade", "python -m app upgrade"


def _recreate(definition: str) -> None:
    op.execute("DROP VIEW IF EXISTS stranded_work")
    if dbos_tables_here(op.get_bind()):
        op.execute(definition)


def upgrade() -> None:
    _recreate(STRANDED_WORK)


def downgrade() -> None:
    _recreate(STRANDED_WORK.replace(*BEFORE))
