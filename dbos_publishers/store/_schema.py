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

# One row per committed chunk, inserted by its transaction beside its ledger rows: what the chunk
# adds to its (publisher, topic) local counter and its topic's global counter. Insert-only, so
# concurrent chunks never wait on one another; a worker folds the rows into `local_counters` and
# `global_counters` (store._counters.fold_deltas), and every read adds what is not folded yet.
counter_deltas = sa.Table(
    "counter_deltas",
    metadata,
    sa.Column(
        "delta_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("publisher", sa.String(40), nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.CheckConstraint("amount > 0", name="positive"),
)

# One row per batch, written by the batch workflow's first step (`plan_batch`, a datasource
# transaction): what was asked (messages, chunk size), so progress has a total, and its state,
# which the chunk transaction reads so that nothing of a cancelled batch is published.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(80), primary_key=True),
    sa.Column("publisher", sa.String(40), nullable=False),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("messages", sa.BigInteger, nullable=False),
    sa.Column("chunk_size", sa.Integer, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    sa.Column(
        "planned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
    # Set by the plan transaction and by the batch workflow's last step (0008): a row written at
    # submission has neither yet (queued), a finished batch has both.
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('active', 'cancelled')", name="state"),
    sa.CheckConstraint("messages > 0 AND chunk_size > 0 AND chunks > 0", name="positive"),
    sa.Index(None, "planned_at", "batch_id"),
)

# A batch's lifecycle, one row per event, each written in the transaction that made it happen
# (submission, plan, cancel, resume, retry, the batch's last step): what `inspect` shows.
BATCH_EVENTS = ("submitted", "started", "cancelled", "resumed", "retried", "finished")
batch_events = sa.Table(
    "batch_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(80), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("detail", sa.String(400), nullable=False, server_default=""),
    sa.CheckConstraint(f"event IN {BATCH_EVENTS}", name="event"),
    sa.Index(None, "batch_id", "event_id"),
)

# One row per worker process that ever ran against this database: its lease (a heartbeat that
# expires) and how it ended. Times are epoch seconds from the database's clock, so workers on
# machines with skewed clocks still agree on who has expired.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(32), primary_key=True),
    sa.Column("executor_id", sa.String(128), nullable=False),
    sa.Column("app_version", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("process_token", sa.String(128), nullable=False),  # boot id + pid + start time
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
    sa.Column("lease_ttl_sec", sa.Double, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("taken_over_by", sa.String(32), nullable=True),
    sa.Column("taken_over_at", sa.Double, nullable=True),
    sa.CheckConstraint("state IN ('alive', 'stopped', 'dead', 'taken_over')", name="state"),
    sa.Index(None, "executor_id"),
)

# The publishers each worker declared when it joined (0008): a submission for a publisher that no
# live worker declares would wait unserved, so it is refused.
worker_publishers = sa.Table(
    "worker_publishers",
    metadata,
    sa.Column("worker_id", sa.String(32), primary_key=True),
    sa.Column("publisher", sa.String(40), primary_key=True),
)

# One row per takeover: which worker claimed whose work, and how many workflows it recovered.
takeovers = sa.Table(
    "takeovers",
    metadata,
    sa.Column("takeover_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("worker_id", sa.String(32), nullable=False),
    sa.Column("executor_id", sa.String(128), nullable=False),
    sa.Column("by_worker_id", sa.String(32), nullable=False),
    sa.Column("by_executor_id", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),  # expired | stopped | exited
    sa.Column("lease_expired_at", sa.Double, nullable=False),
    sa.Column("claimed_at", sa.Double, nullable=False),
    sa.Column("workflows", sa.Integer, nullable=True),  # set once recovery has run
)

# The workflows each takeover put back on their queues (what `inspect` marks as taken over).
takeover_workflows = sa.Table(
    "takeover_workflows",
    metadata,
    sa.Column("takeover_id", sa.Integer, primary_key=True),
    sa.Column("workflow_id", sa.String(255), primary_key=True),
    sa.Index(None, "workflow_id"),
)

# The counter views (created by migration 0002), described here so queries read them by name:
# the view definitions are the one place the counters' agreement with the ledger is written.
# A MetaData of their own, so alembic's autogenerate never tries to create them as tables.
views = sa.MetaData()

publisher_counters = sa.Table(
    "publisher_counters",
    views,
    sa.Column("publisher", sa.String(40)),
    sa.Column("topic", sa.String(64)),
    sa.Column("local_counter", sa.BigInteger),
    sa.Column("ledger_rows", sa.BigInteger),
    sa.Column("consistent", sa.Boolean),
)

topic_counters = sa.Table(
    "topic_counters",
    views,
    sa.Column("topic", sa.String(64)),
    sa.Column("global_counter", sa.BigInteger),
    sa.Column("sum_of_locals", sa.BigInteger),
    sa.Column("ledger_rows", sa.BigInteger),
    sa.Column("consistent", sa.Boolean),
)
