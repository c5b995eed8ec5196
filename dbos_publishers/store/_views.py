"""The SQL views for people that join DBOS's own tables (Postgres, both in one database), and the
one place that creates them when they are missing.

They can exist only once DBOS's tables and ours are both there, which `alembic upgrade head` run
before `dbos migrate` does not give: so every upgrade to head (alembic, `dbos migrate`, the
service's start) calls `create_missing`, which creates what is missing and issues no DDL when
nothing is (a service role without CREATE rights passes through it). A migration that changes a
definition drops the view and creates it from here, as 0006 does.

stuck_work lists only work that is really stuck, with a reason; a workflow is stuck when
- 'recovery attempts exhausted': MAX_RECOVERY_ATTEMPTS_EXCEEDED (dead until someone acts);
- 'queue not moving': ENQUEUED for over STUCK_MINUTES while its queue dequeued nothing and no
  workflow completed anywhere in that time (chunks waiting behind a healthy batch are not);
- 'pending, idle': PENDING and not updated for STUCK_MINUTES; a batch workflow (which only
  waits on its chunks) only when none of its chunks completed in that time either.
"""

from __future__ import annotations

import sqlalchemy as sa

STUCK_MINUTES = 5

# state: as `batches` lists it (0008): a finished batch is no longer 'active'; recoveries: the
# starts after the first (DBOS's recovery_attempts counts the first start too).
BATCH_WORKFLOWS = """
CREATE VIEW batch_workflows AS
SELECT substr(w.workflow_uuid, 7) AS batch_id, w.config_name AS publisher, w.status,
       CASE WHEN p.state = 'cancelled' OR w.status = 'CANCELLED' THEN 'cancelled'
            WHEN w.status = 'SUCCESS' AND p.published >= p.messages THEN 'succeeded'
            WHEN w.status IN ('SUCCESS', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED') THEN 'failed'
            WHEN w.status = 'ENQUEUED' THEN 'queued'
            ELSE 'running' END AS state,
       p.messages, COALESCE(p.published, 0) AS published, p.percent,
       p.chunks, COALESCE(p.chunks_committed, 0) AS chunks_committed,
       GREATEST(COALESCE(w.recovery_attempts, 1) - 1, 0) AS recoveries, w.executor_id,
       to_timestamp(w.created_at / 1000.0) AS submitted_at,
       to_timestamp(w.updated_at / 1000.0) AS updated_at
FROM dbos.workflow_status AS w
LEFT JOIN batch_progress AS p ON p.batch_id = substr(w.workflow_uuid, 7)
WHERE w.name = 'publish_batch'
"""

STUCK_WORK = f"""
CREATE VIEW stuck_work AS
WITH cutoff AS (
    SELECT ((extract(epoch FROM now()) - {STUCK_MINUTES * 60}) * 1000)::bigint AS ms
)
SELECT w.workflow_uuid AS workflow_id, w.status, w.name, w.config_name AS publisher,
       w.queue_name, w.executor_id, w.recovery_attempts,
       CASE w.status WHEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' THEN 'recovery attempts exhausted'
                     WHEN 'ENQUEUED' THEN 'queue not moving'
                     ELSE 'pending, idle' END AS reason,
       to_timestamp(w.created_at / 1000.0) AS created_at,
       now() - to_timestamp(w.updated_at / 1000.0) AS idle_for
FROM dbos.workflow_status AS w, cutoff
WHERE w.status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
   OR (w.status = 'ENQUEUED' AND w.created_at < cutoff.ms
       AND NOT EXISTS (SELECT 1 FROM dbos.workflow_status AS q
                       WHERE q.started_at_epoch_ms > cutoff.ms AND q.queue_name = w.queue_name)
       AND NOT EXISTS (SELECT 1 FROM dbos.workflow_status AS d WHERE d.completed_at > cutoff.ms))
   OR (w.status = 'PENDING' AND w.updated_at < cutoff.ms
       AND NOT EXISTS (SELECT 1 FROM dbos.workflow_status AS c
                       WHERE c.completed_at > cutoff.ms AND c.parent_workflow_id = w.workflow_uuid))
"""

# PENDING or ENQUEUED work of a version that no live worker (alive, lease unexpired) runs, while
# workers of another version do: DBOS there neither recovers nor dequeues it. Version-less work
# is not stranded (the latest version dequeues it), nor is anything while no worker runs at all.
# `resolve` is the command `status` and /workers name too (ops._fleet_view.RESOLVE).
STRANDED_WORK = """
CREATE VIEW stranded_work AS
WITH live AS (
    SELECT app_version FROM workers
    WHERE state = 'alive' AND heartbeat_at + lease_ttl_sec >= extract(epoch FROM clock_timestamp())
)
SELECT w.workflow_uuid AS workflow_id, w.status, w.name, w.config_name AS publisher,
       w.queue_name, w.application_version AS app_version, w.executor_id,
       to_timestamp(w.updated_at / 1000.0) AS updated_at,
       CAST('dbos-publishers upgrade' AS text) AS resolve
FROM dbos.workflow_status AS w
WHERE w.status IN ('PENDING', 'ENQUEUED')
  AND w.application_version IS NOT NULL
  AND w.application_version NOT IN (SELECT app_version FROM live)
  AND EXISTS (SELECT 1 FROM live)
"""

JOINING_DBOS = {
    "batch_workflows": BATCH_WORKFLOWS,
    "stuck_work": STUCK_WORK,
    "stranded_work": STRANDED_WORK,
}


def dbos_tables_here(conn: sa.Connection) -> bool:
    """Whether DBOS's tables live in this (Postgres) database, in the dbos schema."""
    return conn.dialect.name == "postgresql" and sa.inspect(conn).has_table(
        "workflow_status", schema="dbos"
    )


def create_missing(conn: sa.Connection) -> list[str]:
    """Create the DBOS-joined views this database lacks, once DBOS's tables and ours (the
    batches table and the batch_progress view they read) are both here; their names."""
    if not dbos_tables_here(conn):
        return []
    inspector = sa.inspect(conn)
    present = set(inspector.get_view_names())
    if "batch_progress" not in present or not inspector.has_table("batches"):
        return []
    missing = [name for name in JOINING_DBOS if name not in present]
    for name in missing:
        conn.execute(sa.text(JOINING_DBOS[name]))
    return missing
