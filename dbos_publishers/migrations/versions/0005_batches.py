"""batches: one row per planned batch (its total, for progress) and its state (for cancel)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(80), nullable=False),
        sa.Column("publisher", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.Column("chunk_size", sa.Integer, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), server_default="active", nullable=False),
        sa.Column(
            "planned_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('active', 'cancelled')", name="ck_batches_state"),
        sa.CheckConstraint(
            "messages > 0 AND chunk_size > 0 AND chunks > 0", name="ck_batches_positive"
        ),
        sa.PrimaryKeyConstraint("batch_id", name="pk_batches"),
    )


def downgrade() -> None:
    op.drop_table("batches")
