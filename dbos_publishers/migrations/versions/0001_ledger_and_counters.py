"""ledger, local counters and global counters

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(80), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("publisher", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("chunk_workflow_id", sa.String(200), nullable=False),
        sa.Column(
            "published_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("message_id", name="pk_ledger"),
    )
    op.create_index("ix_ledger_publisher_topic", "ledger", ["publisher", "topic"])
    op.create_index("ix_ledger_batch_id", "ledger", ["batch_id"])
    op.create_table(
        "local_counters",
        sa.Column("publisher", sa.String(40), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.CheckConstraint("value >= 0", name="ck_local_counters_non_negative"),
        sa.PrimaryKeyConstraint("publisher", "topic", name="pk_local_counters"),
    )
    op.create_table(
        "global_counters",
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.CheckConstraint("value >= 0", name="ck_global_counters_non_negative"),
        sa.PrimaryKeyConstraint("topic", name="pk_global_counters"),
    )


def downgrade() -> None:
    op.drop_table("global_counters")
    op.drop_table("local_counters")
    op.drop_index("ix_ledger_batch_id", table_name="ledger")
    op.drop_index("ix_ledger_publisher_topic", table_name="ledger")
    op.drop_table("ledger")
