"""workers (leases), takeovers and the workflows each took over

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(32), nullable=False),
        sa.Column("executor_id", sa.String(128), nullable=False),
        sa.Column("app_version", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("process_token", sa.String(128), nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
        sa.Column("lease_ttl_sec", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("taken_over_by", sa.String(32), nullable=True),
        sa.Column("taken_over_at", sa.Double, nullable=True),
        sa.CheckConstraint(
            "state IN ('alive', 'stopped', 'dead', 'taken_over')", name="ck_workers_state"
        ),
        sa.PrimaryKeyConstraint("worker_id", name="pk_workers"),
    )
    op.create_index("ix_workers_executor_id", "workers", ["executor_id"])
    op.create_table(
        "takeovers",
        sa.Column("takeover_id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("worker_id", sa.String(32), nullable=False),
        sa.Column("executor_id", sa.String(128), nullable=False),
        sa.Column("by_worker_id", sa.String(32), nullable=False),
        sa.Column("by_executor_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("lease_expired_at", sa.Double, nullable=False),
        sa.Column("claimed_at", sa.Double, nullable=False),
        sa.Column("workflows", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("takeover_id", name="pk_takeovers"),
    )
    op.create_table(
        "takeover_workflows",
        sa.Column("takeover_id", sa.Integer, nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("takeover_id", "workflow_id", name="pk_takeover_workflows"),
    )
    op.create_index("ix_takeover_workflows_workflow_id", "takeover_workflows", ["workflow_id"])


def downgrade() -> None:
    op.drop_index("ix_takeover_workflows_workflow_id", table_name="takeover_workflows")
    op.drop_table("takeover_workflows")
    op.drop_table("takeovers")
    op.drop_index("ix_workers_executor_id", table_name="workers")
    op.drop_table("workers")
