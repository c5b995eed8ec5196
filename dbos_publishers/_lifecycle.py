"""A batch's lifecycle after it was submitted: cancel it (exactly), resume it, retry its failed
chunks (exactly once), from the CLI and the HTTP API.

Cancel, in this order:
1. the batch's state becomes 'cancelled' in the application database (`batch_records.set_state`
   waits for the chunk transactions in flight). From that commit on, every chunk transaction of
   the batch rolls back having written nothing, and its chunk waits (`chunk_held`);
2. DBOS cancels the batch workflow first (so it enqueues and collects nothing more), then every
   chunk workflow of it still PENDING or ENQUEUED.
A crash between the two publishes nothing more; cancel run again does what is left of step 2.

Resume: the state back to 'active', then DBOS resumes the cancelled chunks (on the chunk queue)
and only then the batch (on the batch queue), so the batch never collects a chunk that is still
cancelled as a failure.

Retry: each chunk workflow of a finished batch that ended ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED
gets one new workflow `<chunk id>/retry-<n>` with the chunk's recorded input: n is one more than
its earlier retries, and none is enqueued while one is running or has succeeded, so a second
retry enqueues nothing (and the ledger's primary key refuses any message twice anyway). Summaries
merge the retries' outcomes when they are read (`merged_summary`): the batch workflow's own
result stays what DBOS recorded.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any, Literal

import sqlalchemy as sa
import structlog
from dbos import DBOSClient, EnqueueOptions, WorkflowStatus

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _ids as ids
from dbos_publishers._config import BATCH_ID, CLI, ConfigError, DatabaseUrl, Settings
from dbos_publishers._dbos_gateway import ACTIVE_STATUSES
from dbos_publishers._errors import NotFoundError, StateError
from dbos_publishers._failpoints import failpoint
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._logs import ALWAYS
from dbos_publishers._publisher import CHUNK_WORKFLOW, PUBLISHER_CLASS_NAME
from dbos_publishers._queues import BATCH_QUEUE, CHUNK_QUEUE
from dbos_publishers._wire import BatchSummary
from dbos_publishers.store import _batch_list as batch_list
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._batch_records import PlannedBatch
from dbos_publishers.store._database import (
    app_tables_exist,
    require_reachable,
    short_lived_engine,
    system_tables_exist,
)

# Printed at any log level: a CLI's logs stay at WARNING, and an audit line must still be there.
audit = structlog.get_logger(ALWAYS)

Action = Literal["cancel", "resume", "retry"]
ACTIONS: tuple[Action, ...] = ("cancel", "resume", "retry")
DONE: dict[Action, str] = {
    "cancel": "batch_cancelled",
    "resume": "batch_resumed",
    "retry": "batch_retried",
}
FAILED = ("ERROR", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")  # a chunk that retry re-drives
FINISHED = ("SUCCESS", "ERROR")  # DBOS neither cancels nor resumes these
STOPPABLE = (*ACTIVE_STATUSES, "DELAYED")

failpoints.declare(
    "cancel.after_state",
    "`cancel`, after the batch's state committed, before DBOS cancels its workflows",
)


class BatchNotFoundError(NotFoundError):
    """No batch workflow has this id."""


class BatchStateError(StateError):
    """The batch is not in a state the action applies to; the message says which it is in."""


@dataclass(frozen=True)
class LifecycleResult:
    batch_id: str
    action: Action
    state: str  # the batch's state afterwards: active | cancelled
    workflows: list[str]  # what this call cancelled, resumed or enqueued
    published: int  # the batch's ledger rows afterwards

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def act(settings: Settings, action: Action, batch_id: str) -> LifecycleResult:
    """One action from a short-lived client (the CLI)."""
    if not BATCH_ID.fullmatch(batch_id):
        raise ConfigError(f"batch id {batch_id!r} is invalid (letters, digits, . _ -)")
    require_reachable(settings.system_db)
    require_reachable(settings.app_db)
    if not system_tables_exist(settings.system_db):
        raise BatchNotFoundError(f"no batch with id {batch_id!r} (no work was ever submitted)")
    with dbos_gateway.client(settings.system_db) as client:
        return apply(settings, client, action, batch_id, by=f"cli {local_user()}")


def local_user() -> str:
    """Who acts from this process, as an audit line names them: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def apply(
    settings: Settings, client: DBOSClient, action: Action, batch_id: str, *, by: str
) -> LifecycleResult:
    """Apply `action` and log it once at info, with who asked (`by`), what and how much: the one
    line an audit or an alert looks for (the workflows it stopped end quietly, not as errors)."""
    batch = _batch_workflow(client, batch_id)
    match action:
        case "cancel":
            workflows = _cancel(settings, client, batch)
        case "resume":
            workflows = _resume(settings, client, batch)
        case "retry":
            workflows = _retry(client, batch)
    with short_lived_engine(settings.app_db) as engine, engine.begin() as conn:
        if action == "retry" and workflows:
            batch_list.record_event(conn, batch_id, "retried", f"{len(workflows)} chunks")
        state = batch_records.batch_state(conn, batch_id) or "active"
        published = ledger.batch_published(conn, batch_id)
    audit.info(
        DONE[action], batch_id=batch_id, by=by, workflows=len(workflows), published=published
    )
    return LifecycleResult(batch_id, action, state, workflows, published)


def _batch_workflow(client: DBOSClient, batch_id: str) -> WorkflowStatus:
    found = dbos_gateway.workflows(client, [batch_workflow_id(batch_id)])
    if not found:
        raise BatchNotFoundError(f"no batch with id {batch_id!r}")
    return found[0]


def _batch_id(batch: WorkflowStatus) -> str:
    return ids.batch_of(batch.workflow_id)


# ---- cancel ---------------------------------------------------------------------------------


def _cancel(settings: Settings, client: DBOSClient, batch: WorkflowStatus) -> list[str]:
    batch_id = _batch_id(batch)
    if batch.status in FINISHED:
        raise BatchStateError(f"batch {batch_id!r} already ended {batch.status}: nothing to cancel")
    with short_lived_engine(settings.app_db) as engine, engine.begin() as conn:
        if batch_records.batch_state(conn, batch_id) is None:  # cancelled before it was planned
            batch_records.ensure_batch(conn, _unplanned(settings, client, batch))
        if batch_records.set_state(conn, batch_id, "cancelled"):
            batch_list.record_event(conn, batch_id, "cancelled", _so_far(conn, batch_id))
    failpoint("cancel.after_state")
    stopped = [batch.workflow_id] if batch.status != "CANCELLED" else []
    dbos_gateway.cancel(client, stopped)
    family = dbos_gateway.workflow_family(client, batch.workflow_id)[1:]
    chunks = [wf.workflow_id for wf in family if wf.status in STOPPABLE]
    dbos_gateway.cancel(client, chunks)
    return stopped + chunks


def _so_far(conn: sa.Connection, batch_id: str) -> str:
    return f"{ledger.batch_published(conn, batch_id)} published so far"


def _unplanned(settings: Settings, client: DBOSClient, batch: WorkflowStatus) -> PlannedBatch:
    """The row of a batch still queued: its request, and its publisher's chunk size if the
    publisher is declared here (the plan, if it ever runs, records the real one)."""
    args = dbos_gateway.workflow_input(client, batch.workflow_id) or ({},)
    request: dict[str, Any] = args[0]
    declared = {d.name: d.chunk_size for d in settings.publishers}
    count = int(request["count"])
    return PlannedBatch(
        batch_id=_batch_id(batch),
        publisher=str(batch.config_name),
        topic=str(request["topic"]),
        messages=count,
        chunk_size=declared.get(str(batch.config_name), count),
    )


# ---- resume ---------------------------------------------------------------------------------


def _resume(settings: Settings, client: DBOSClient, batch: WorkflowStatus) -> list[str]:
    batch_id = _batch_id(batch)
    with short_lived_engine(settings.app_db) as engine, engine.begin() as conn:
        state = batch_records.batch_state(conn, batch_id)
        if state != "cancelled" and batch.status != "CANCELLED":
            raise BatchStateError(
                f"batch {batch_id!r} is not cancelled (its workflow is {batch.status}): "
                "nothing to resume"
            )
        if batch_records.set_state(conn, batch_id, "active"):
            batch_list.record_event(conn, batch_id, "resumed", _so_far(conn, batch_id))
    family = dbos_gateway.workflow_family(client, batch.workflow_id)[1:]
    chunks = [wf.workflow_id for wf in family if wf.status == "CANCELLED"]
    dbos_gateway.resume(client, chunks, CHUNK_QUEUE)  # before the batch collects them
    resumed = [batch.workflow_id] if batch.status == "CANCELLED" else []
    dbos_gateway.resume(client, resumed, BATCH_QUEUE)
    return chunks + resumed


# ---- retry ----------------------------------------------------------------------------------


def _retry(client: DBOSClient, batch: WorkflowStatus) -> list[str]:
    batch_id = _batch_id(batch)
    if batch.status not in FINISHED:
        hint = "resume it first" if batch.status == "CANCELLED" else "wait until it ends"
        raise BatchStateError(
            f"batch {batch_id!r} is {batch.status}: retry re-drives the failed chunks of a "
            f"finished batch ({hint})"
        )
    family = dbos_gateway.workflow_family(client, batch.workflow_id)[1:]
    failed = [wf for wf in family if ids.is_chunk(wf.workflow_id) and wf.status in FAILED]
    if not failed:
        raise BatchStateError(f"batch {batch_id!r} has no failed chunks to retry")
    enqueued = []
    for chunk in failed:
        retries = [wf for wf in family if wf.workflow_id.startswith(chunk.workflow_id + "/")]
        if any(wf.status not in FAILED for wf in retries):
            continue  # a retry of it is running or has succeeded
        workflow_id = ids.retry_workflow_id(chunk.workflow_id, len(retries) + 1)
        _enqueue_retry(client, chunk, workflow_id)
        enqueued.append(workflow_id)
    return enqueued


def _enqueue_retry(client: DBOSClient, chunk: WorkflowStatus, workflow_id: str) -> None:
    options: EnqueueOptions = {
        "workflow_name": CHUNK_WORKFLOW,
        "queue_name": CHUNK_QUEUE,
        "class_name": PUBLISHER_CLASS_NAME,
        "instance_name": str(chunk.config_name),
        "workflow_id": workflow_id,
    }
    dbos_gateway.enqueue(
        client, options, *(dbos_gateway.workflow_input(client, chunk.workflow_id) or ())
    )


# ---- reading ----------------------------------------------------------------------------------


def merged_summary(client: DBOSClient, summary: BatchSummary) -> dict[str, Any]:
    """The batch's summary with its retried chunks' outcomes merged in: a failed chunk whose
    retry succeeded leaves `failed_chunks` for `retried_chunks`, its messages counted published.
    A summary without failed chunks is returned as it is (no reads)."""
    merged: dict[str, Any] = dict(summary)
    if not summary["failed_chunks"]:
        return merged
    merged["failed_chunks"], retried = [], []
    for outcome in summary["failed_chunks"]:
        done = _succeeded_retry(client, outcome["workflow_id"])
        if done is None:
            merged["failed_chunks"].append(outcome)
            continue
        merged["published"] += done["published"]
        merged["failed"] -= done["published"]
        retried.append(done)
    if retried:
        merged["retried_chunks"] = retried
    return merged


def _succeeded_retry(client: DBOSClient, chunk_workflow_id: str) -> dict[str, Any] | None:
    prefix = ids.retry_prefix(chunk_workflow_id)
    for wf in dbos_gateway.workflows_under(client, prefix, with_output=True):
        if wf.status == "SUCCESS" and isinstance(wf.output, dict):
            return {**wf.output, "workflow_id": wf.workflow_id}
    return None


def batch_outcome(client: DBOSClient, batch_id: str) -> tuple[str | None, dict[str, Any] | None]:
    """A batch workflow's status (None: no such batch) and, once it succeeded, its summary with
    the retried chunks merged in, as `publish --wait`, the API and the lab show it."""
    found = dbos_gateway.workflows(client, [batch_workflow_id(batch_id)], with_output=True)
    if not found:
        return None, None
    if found[0].status != "SUCCESS" or found[0].output is None:
        return found[0].status, None
    return found[0].status, merged_summary(client, found[0].output)


def still_dead(settings: Settings, dead: list[WorkflowStatus]) -> list[WorkflowStatus]:
    """Dead work as `status`, the metrics and the dashboard count it: less what `retry` resolved
    and what `cancel` ended on purpose (a cancelled batch is a state someone chose)."""
    return without_cancelled(settings.app_db, without_retried(settings.system_db, dead))


def without_cancelled(app_db: DatabaseUrl, dead: list[WorkflowStatus]) -> list[WorkflowStatus]:
    """Dead work less the CANCELLED workflows of batches cancelled by `cancel` (their state in
    the application database says so; a workflow cancelled by other means stays dead)."""
    family = {
        ids.batch_of(wf.workflow_id)
        for wf in dead
        if wf.status == "CANCELLED" and ids.is_batch_family(wf.workflow_id)
    }
    if not family or not app_tables_exist(app_db):
        return dead
    with short_lived_engine(app_db) as engine, engine.connect() as conn:
        chosen = batch_records.cancelled_batches(conn, family)
    return [wf for wf in dead if not _cancelled_in(wf, chosen)]


def _cancelled_in(wf: WorkflowStatus, batch_ids: set[str]) -> bool:
    return (
        wf.status == "CANCELLED"
        and ids.is_batch_family(wf.workflow_id)
        and ids.batch_of(wf.workflow_id) in batch_ids
    )


def without_retried(system_db: DatabaseUrl, dead: list[WorkflowStatus]) -> list[WorkflowStatus]:
    """Dead work less the failed chunks (and failed retries of them) that a later retry has
    published or is running: `retry` resolved those, so `status` no longer counts them dead."""
    roots = {
        ids.retried_chunk(wf.workflow_id) for wf in dead if ids.is_chunk_or_retry(wf.workflow_id)
    }
    if not roots:
        return dead
    settled = ("SUCCESS", *ACTIVE_STATUSES)
    with dbos_gateway.client(system_db) as client:
        resolved = {
            root
            for root in roots
            if any(
                wf.status in settled
                for wf in dbos_gateway.workflows_under(client, ids.retry_prefix(root))
            )
        }
    return [wf for wf in dead if ids.retried_chunk(wf.workflow_id) not in resolved]


def render(result: LifecycleResult) -> str:
    batch, n = result.batch_id, len(result.workflows)
    match result.action:
        case "cancel":
            return (
                f"batch {batch} cancelled: {n} workflows stopped; {result.published} messages "
                f"were published before the cancel and none will be after it "
                f"(`{CLI} resume {batch}` continues it)"
            )
        case "resume":
            return (
                f"batch {batch} resumed: {n} workflows back on their queues; "
                f"{result.published} messages published so far"
            )
        case "retry":
            listed = ", ".join(result.workflows) or "none new (its retries are running or done)"
            return f"batch {batch}: failed chunks enqueued again: {listed}"
