"""The one door to DBOS's records: the client on the system database, every read of DBOS's
tables (workflows, steps, results), with typed results, and the one write the product makes to
them (`move_to_version`, for `upgrade`).

Everything else in the product uses public `dbos` names only; the few private ones it needs live
here alone, and tests/unit/test_dbos_gateway.py fails loudly if DBOS moves them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypedDict

import sqlalchemy as sa
from dbos import (
    DBOS,
    DBOSClient,
    EnqueueOptions,
    StepInfo,
    WorkflowStatus,
    _dbos,  # private: DBOS has no public way to unregister an instance
)
from dbos import error as dbos_error
from dbos._core import prepare_enqueued_workflow  # private: DBOS's own batch enqueue (Kafka's)
from dbos._sys_db import (  # private: that enqueue's insert; DBOS's wait through an outage
    SystemDatabase,
    db_retry,
)

from dbos_publishers._config import APP_NAME, DatabaseUrl
from dbos_publishers._errors import ConflictError
from dbos_publishers._legacy import install_module_aliases
from dbos_publishers.store._database import reported, system_tables_exist

# Every read of DBOS's records passes here: records written before the layout moved unpickle.
install_module_aliases()

ACTIVE_STATUSES = ("PENDING", "ENQUEUED")
TERMINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
DEAD_STATUSES = ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")  # ended, unpublished
QUEUE_THREAD = "(queue_thread)"  # how Python names a thread running DBOS's queue_thread
CLIENT_POOL_SIZE = 2  # a client reads one thing at a time; DBOS's default pool is 20

# DBOS 3.4 does not export these two types; they are spelled out here (structurally identical)
# so no module imports dbos._datasource. The gateway test checks they still match DBOS's own.
IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"]


class DatasourceOptions(TypedDict, total=False):
    name: str | None
    isolation_level: IsolationLevel | None


class WorkflowConflictError(ConflictError):
    """A workflow id is taken by a different workflow (another publisher's batch)."""


@contextmanager
def client(system_db: DatabaseUrl) -> Iterator[DBOSClient]:
    """A DBOS client for one unit of work (a CLI command, a lab poll), closed afterwards."""
    dbos_client = DBOSClient(
        system_database_url=system_db.raw,
        application_name=APP_NAME,
        system_database_pool_size=CLIENT_POOL_SIZE,
        retry_connection_errors=False,
    )
    try:
        with reported(system_db, "cannot reach", connection_only=True):
            yield dbos_client
    finally:
        dbos_client.destroy()


def active_workflows(dbos_client: DBOSClient) -> list[WorkflowStatus]:
    """PENDING and ENQUEUED workflows of this application."""
    return dbos_client.list_workflows(
        status=list(ACTIVE_STATUSES), load_input=False, load_output=False
    )


def active_and_dead_at(
    system_db: DatabaseUrl,
) -> tuple[list[WorkflowStatus], list[WorkflowStatus]]:
    """PENDING/ENQUEUED workflows, and those that ended without succeeding (ERROR, CANCELLED,
    out of recovery attempts), in one read; none before DBOS's tables exist."""
    if not system_tables_exist(system_db):
        return [], []
    with client(system_db) as dbos_client:
        return active_and_dead(dbos_client)


def active_and_dead(dbos_client: DBOSClient) -> tuple[list[WorkflowStatus], list[WorkflowStatus]]:
    """The same through a client the caller owns (the API's)."""
    found = dbos_client.list_workflows(
        status=[*ACTIVE_STATUSES, *DEAD_STATUSES], load_input=False, load_output=False
    )
    active = [wf for wf in found if wf.status in ACTIVE_STATUSES]
    return active, [wf for wf in found if wf.status in DEAD_STATUSES]


def active_workflows_at(system_db: DatabaseUrl) -> list[WorkflowStatus]:
    """The same from a short-lived client; none before DBOS's tables exist."""
    if not system_tables_exist(system_db):
        return []
    with client(system_db) as dbos_client:
        return active_workflows(dbos_client)


def workflows(
    dbos_client: DBOSClient, workflow_ids: Sequence[str], *, with_output: bool = False
) -> list[WorkflowStatus]:
    """The named workflows that exist (inputs never loaded)."""
    if not workflow_ids:
        return []
    return dbos_client.list_workflows(
        workflow_ids=list(workflow_ids), load_input=False, load_output=with_output
    )


def workflow_family(dbos_client: DBOSClient, parent_id: str) -> list[WorkflowStatus]:
    """A workflow and its children named `<parent>/...` (a batch and its chunks), parent first,
    the children in the order they were created (a window's chunks, inserted in one statement
    in the same millisecond, by id: in chunk order)."""
    found = workflows(dbos_client, [parent_id])
    if not found:
        return []
    children = dbos_client.list_workflows(
        workflow_id_prefix=f"{parent_id}/", load_input=False, load_output=False
    )
    return [*found, *sorted(children, key=lambda wf: (wf.created_at or 0, wf.workflow_id))]


def workflows_under(
    dbos_client: DBOSClient, prefix: str, *, with_output: bool = False
) -> list[WorkflowStatus]:
    """The workflows whose ids start with `prefix` (a chunk's retries: `<chunk>/retry-`)."""
    return dbos_client.list_workflows(
        workflow_id_prefix=prefix, load_input=False, load_output=with_output
    )


def cancel(dbos_client: DBOSClient, workflow_ids: Sequence[str]) -> None:
    """Cancel the workflows (one transaction; SUCCESS and ERROR ones stay as they are). A
    cancelled workflow loses its owner, so its execution still running writes nothing more."""
    if workflow_ids:
        dbos_client.cancel_workflows(list(workflow_ids))


def resume(dbos_client: DBOSClient, workflow_ids: Sequence[str], queue_name: str) -> None:
    """Put cancelled workflows back on `queue_name`, to run from their last checkpoint."""
    if workflow_ids:
        dbos_client.resume_workflows(list(workflow_ids), queue_name=queue_name)


def workflow_input(dbos_client: DBOSClient, workflow_id: str) -> tuple[Any, ...] | None:
    """The positional arguments a workflow was started with (None: no such workflow)."""
    found = dbos_client.list_workflows(workflow_ids=[workflow_id], load_output=False)
    if not found:
        return None
    recorded = found[0].input
    return tuple(recorded["args"]) if recorded is not None else ()


def steps(dbos_client: DBOSClient, workflow_id: str) -> list[StepInfo]:
    return dbos_client.list_workflow_steps(workflow_id)


def enqueue(dbos_client: DBOSClient, options: EnqueueOptions, *args: Any) -> None:
    """Enqueue a workflow; the same id again attaches to the first, a different one conflicts."""
    try:
        dbos_client.enqueue(options, *args)
    except dbos_error.DBOSConflictingWorkflowError:
        raise WorkflowConflictError(
            f"workflow id {options.get('workflow_id')!r} belongs to a different workflow"
        ) from None


def enqueue_children(
    workflow: Any, calls: Sequence[tuple[str, tuple[Any, ...]]], queue_name: str
) -> None:
    """Enqueue `workflow(*args)` under each (id, args) on `queue_name`, all in one system-database
    transaction, as children of the calling workflow (call it from a step).

    DBOS's own batch path (its Kafka consumer's: `prepare_enqueued_workflow`, then
    `init_workflows`): an id already taken is skipped, so a step re-run after a crash between
    its commit and its checkpoint enqueues nothing twice. One transaction per window of chunks
    where `Queue.enqueue` inside a workflow costs a transaction and a checkpoint per child."""
    dbos = _dbos._get_dbos_instance()
    parent = DBOS.workflow_id
    statuses = []
    for workflow_id, args in calls:
        status = prepare_enqueued_workflow(
            dbos, workflow, args, {}, queue_name=queue_name, workflow_id=workflow_id
        )
        status["parent_workflow_id"] = parent  # as a child enqueued from its workflow
        statuses.append(status)
    rows_sent_as_many: Any = _RowsSentAsMany(dbos._sys_db)  # duck-typed SystemDatabase
    SystemDatabase.init_workflows(rows_sent_as_many, statuses)


class _RowsSentAsMany:
    """DBOS's SystemDatabase, but inserting rows as one executemany per table: `init_workflows`
    builds its rows as it always does, and sends them as a multi-row VALUES statement that
    SQLAlchemy and psycopg parse afresh each time, about 0.8 ms of CPU per row (a 512-chunk
    window: 0.5 s); as an executemany of one cached single-row statement: 50 ms."""

    def __init__(self, sys_db: SystemDatabase) -> None:
        self._sys_db = sys_db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sys_db, name)

    def _insert_rows(
        self, conn: sa.Connection, build: Any, rows: list[dict[str, Any]], **_: Any
    ) -> list[Any]:
        table = build(rows[:1]).table  # the table of DBOS's own statement, built, not run
        statement = self._sys_db.dialect.insert(table).on_conflict_do_nothing(
            index_elements=self._sys_db._key_conflict("workflow_uuid")
        )
        conn.execute(statement, rows)
        return []  # no RETURNING: nobody reads which ids were new


def wait_result(dbos_client: DBOSClient, workflow_id: str, *, poll_sec: float = 0.2) -> Any:
    """Block until the workflow ends; its result, or the error it ended with, re-raised."""
    return dbos_client.retrieve_workflow(workflow_id).get_result(polling_interval_sec=poll_sec)


def wait_until_terminal(
    dbos_client: DBOSClient, workflow_id: str, *, timeout_sec: float, poll_sec: float = 0.2
) -> WorkflowStatus | None:
    """The workflow's status once it is no longer active; None if it still is at the deadline."""
    deadline = time.monotonic() + timeout_sec
    while True:
        found = workflows(dbos_client, [workflow_id], with_output=True)
        if found and found[0].status in TERMINAL_STATUSES:
            return found[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_sec)


def still_active(workflow_ids: Sequence[str]) -> list[str]:
    """Of these workflows (in this process's DBOS), those not ended yet, in one read: their ids
    only, where `DBOS.list_workflows` builds a whole status per row (a batch reads its window
    several times a second while it waits). Through a database outage it waits and reads again,
    as DBOS's own reads do, instead of failing the batch's step."""
    sys_db = _dbos._get_dbos_instance()._sys_db
    table = sys_db.tables.workflow_status
    query = sa.select(table.c.workflow_uuid).where(
        table.c.workflow_uuid.in_(list(workflow_ids)),
        table.c.status.in_([*ACTIVE_STATUSES, "DELAYED"]),
    )

    @db_retry(sys_db=sys_db)
    def read() -> list[str]:
        with sys_db.engine.connect() as conn:
            return list(conn.scalars(query))

    return read()


def ended_results(workflow_ids: Sequence[str]) -> dict[str, Any]:
    """Each ended workflow's result, or the exception `get_result` would raise for it, in one
    read (in this process's DBOS; inside a step, nothing is recorded)."""
    found = DBOS.list_workflows(workflow_ids=list(workflow_ids), load_input=False)
    return {wf.workflow_id: _result(wf) for wf in found if wf.status in TERMINAL_STATUSES}


def _result(wf: WorkflowStatus) -> Any:
    if wf.status == "SUCCESS":
        return wf.output
    if wf.status == "CANCELLED":
        return dbos_error.DBOSAwaitedWorkflowCancelledError(wf.workflow_id)
    if wf.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
        return dbos_error.DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(wf.workflow_id)
    return wf.error if wf.error is not None else RuntimeError(f"{wf.workflow_id} ended {wf.status}")


def current_instance() -> object | None:
    """The DBOS instance this process constructed, if any (tests restore what a command built)."""
    return _dbos._dbos_global_instance


def forget_instances() -> None:
    """Drop configured instances from DBOS's registry after DBOS.destroy(), so one process can
    build the runtime again (in-process tests); the registered workflow functions stay."""
    registry = _dbos._dbos_global_registry
    if registry is not None:
        registry.instance_info_map.clear()


@contextmanager
def instances_off_the_record() -> Iterator[None]:
    """Configured instances constructed inside are left out of DBOS's registry (`doctor`
    constructs each publisher to see that it can, beside any the process already holds)."""
    registry = _dbos._get_or_create_dbos_registry()
    saved, registry.instance_info_map = registry.instance_info_map, {}
    try:
        yield
    finally:
        registry.instance_info_map = saved


def pending_executors(app_version: str) -> set[str]:
    """The executors PENDING workflows of this application version run under (PENDING work is
    what a process has dequeued: a few per worker, never the queues' backlog). Needs a launched
    DBOS."""
    pending = DBOS.list_workflows(
        status="PENDING", app_version=app_version, load_input=False, load_output=False
    )
    return {wf.executor_id for wf in pending if wf.executor_id is not None}


def recover_executor(executor_id: str) -> list[str]:
    """Re-enqueue a dead executor's PENDING workflows of this application version on their own
    queues (any live worker then runs them); returns their ids. Needs a launched DBOS.

    DBOS 3.4 has no public call for this (its hosted Conductor does it); the re-enqueue is a
    guarded UPDATE (PENDING and still that executor's), so a repeat recovers nothing twice."""
    return [handle.workflow_id for handle in DBOS._recover_pending_workflows([executor_id])]


def move_to_version(
    dbos_client: DBOSClient, workflow_id: str, from_version: str, to_version: str
) -> bool:
    """Put one PENDING or ENQUEUED workflow of `from_version` back on its queue under
    `to_version`, so that version's queue runners dequeue it; False when it no longer matches
    (it ended, or was moved already). One guarded UPDATE in its own transaction.

    What DBOS's own recovery does (`reenqueue_for_recovery`: ENQUEUED, no owner, its own queue
    or DBOS's internal one), plus the version, which DBOS 3.4 has no public call to change. A
    stale execution still running it is fenced by DBOS's ownership check at its next write."""
    from dbos._utils import INTERNAL_QUEUE_NAME  # noqa: PLC0415 - private, like the rest here

    sys_db = dbos_client._sys_db
    table = sys_db.tables.workflow_status
    with sys_db.engine.begin() as conn:
        moved = conn.execute(
            sa.update(table)
            .where(*sys_db._wf(table, workflow_id))
            .where(table.c.status.in_(ACTIVE_STATUSES))
            .where(table.c.application_version == from_version)
            .where(sys_db._name_filter(table.c.application_name, APP_NAME))
            .values(
                status="ENQUEUED",
                application_version=to_version,
                owner_xid=None,
                started_at_epoch_ms=None,
                updated_at=sys_db._now_ms_sql(),
                queue_name=sa.func.coalesce(table.c.queue_name, INTERNAL_QUEUE_NAME),
            )
        )
    return moved.rowcount == 1


def stopped_queue_threads() -> list[str]:
    """DBOS's queue runner threads that have stopped (none while it dispatches work)."""
    instance = _dbos._dbos_global_instance
    if instance is None or not instance._launched:
        return []
    return [
        t.name for t in instance._background_threads if QUEUE_THREAD in t.name and not t.is_alive()
    ]


def migrate_datasource_tables(app_db: DatabaseUrl) -> None:
    """Create DBOS's datasource checkpoint tables in the application database (what the
    datasource does itself at launch), for a process that needs them before any launch."""
    from dbos._datasource_migration import migrate_datasource_database  # noqa: PLC0415 - private

    schema = None if app_db.backend == "sqlite" else "dbos"
    migrate_datasource_database(app_db.raw, schema, None)
