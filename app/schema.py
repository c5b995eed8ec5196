"""The application tables, defined once; this MetaData is alembic's target."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per published message; the primary key is what makes a duplicate impossible.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("message_id", sa.String(128), primary_key=True),
    sa.Column("batch_id", sa.String(80), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("publisher", sa.String(40), nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("chunk_workflow_id", sa.String(200), nullable=False),
    sa.Column(
        "published_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Index(None, "publisher", "topic"),
    sa.Index(None, "batch_id"),
)

local_counters = sa.Table(
    "local_counters",
    metadata,
    sa.Column("publisher", sa.String(40), primary_key=True),
    sa.Column("topic", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.CheckConstraint("value >= 0", name="non_negative"),
)

global_counters = sa.Table(
    "global_counters",
    metadata,
    sa.Column("topic", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.CheckConstraint("value >= 0", name="non_negative"),
)
