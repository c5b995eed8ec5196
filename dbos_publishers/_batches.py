"""Submitting batches from outside the service (CLI, tests) through DBOS's client."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSClient, EnqueueOptions

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import BATCH_ID, TOPIC_NAME, ConfigError, Settings
from dbos_publishers._errors import ConflictError, StateError
from dbos_publishers._failpoints import failpoint
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._publisher import BATCH_WORKFLOW, PUBLISHER_CLASS_NAME
from dbos_publishers._queues import BATCH_QUEUE
from dbos_publishers._wire import BatchRequest, BatchSummary
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store import _leases as leases
from dbos_publishers.store._batch_records import PlannedBatch
from dbos_publishers.store._database import (
    require_reachable,
    short_lived_engine,
    sqlite_file_missing,
    system_tables_exist,
)
from dbos_publishers.store._schema import batch_events, worker_publishers

MAX_BATCH_MESSAGES = 100_000_000


@dataclass(frozen=True)
class Submission:
    publisher: str
    request: BatchRequest

    @property
    def workflow_id(self) -> str:
        return batch_workflow_id(self.request["batch_id"])


def validate(
    settings: Settings,
    publisher: str,
    *,
    count: int,
    topic: str,
    batch_id: str | None,
    messages: list[str] | None = None,
) -> Submission:
    """Check a batch before anything is written; raises ConfigError naming what is wrong."""
    settings.publisher(publisher)
    if messages is not None and count != len(messages):
        raise ConfigError(f"count {count} does not match the {len(messages)} messages given")
    if not 0 < count <= MAX_BATCH_MESSAGES:
        raise ConfigError(f"count must be between 1 and {MAX_BATCH_MESSAGES}, not {count}")
    if not TOPIC_NAME.fullmatch(topic):
        raise ConfigError(
            f"topic {topic!r} is invalid (lowercase letter or digit first, then a-z 0-9 . _ -, "
            "at most 64 characters)"
        )
    batch_id = batch_id if batch_id is not None else uuid.uuid4().hex
    if not BATCH_ID.fullmatch(batch_id):
        raise ConfigError(
            f"batch id {batch_id!r} is invalid (letters, digits, . _ -; at most 80 characters)"
        )
    request = BatchRequest(batch_id=batch_id, topic=topic, count=count, messages=messages)
    return Submission(publisher=publisher, request=request)


class PublisherNotServedError(StateError):
    """Workers are running, and none of them declares the batch's publisher."""


def require_served(settings: Settings, publisher: str) -> None:
    """Refuse a batch that would wait unserved: live workers, none declaring its publisher (one
    added to the publishers file since they started). With no live worker at all it is accepted:
    it waits durably for a service (and `publish --wait` says none picked it up)."""
    if sqlite_file_missing(settings.app_db):
        return
    with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
        if not sa.inspect(conn).has_table(worker_publishers.name):
            return
        live = leases.live_declarations(conn)
    if not live or any(not names or publisher in names for names in live.values()):
        return
    declared = sorted(set().union(*live.values()))
    raise PublisherNotServedError(
        f"no running worker declares publisher {publisher!r} (they run: {', '.join(declared)}); "
        "restart the workers so they read the publishers file again"
    )


class BatchEndedError(StateError):
    """A waited-for batch ended without a summary: ERROR, CANCELLED, or out of recovery attempts."""


class BatchConflictError(ConflictError):
    """The batch id is taken by a different batch."""


def submit(settings: Settings, submission: Submission) -> None:
    """Enqueue the batch workflow from a short-lived client (the CLI)."""
    require_reachable(settings.system_db)
    require_served(settings, submission.publisher)
    if not system_tables_exist(settings.system_db):
        # The service has never run here: create DBOS's tables so the work can wait durably.
        DBOS.migrate(settings.system_db.raw)
    with dbos_gateway.client(settings.system_db) as client:
        enqueue(client, submission)
    record_submission(settings, submission)


def record_submission(settings: Settings, submission: Submission) -> None:
    """The batch's row (queued) and its `submitted` event, once enqueued, so the batch list
    shows it before it starts. Skipped where the application tables do not exist yet (the plan
    records the row then)."""
    if sqlite_file_missing(settings.app_db):
        return
    request = submission.request
    planned = PlannedBatch(
        batch_id=request["batch_id"],
        publisher=submission.publisher,
        topic=request["topic"],
        messages=request["count"],
        chunk_size=settings.publisher(submission.publisher).chunk_size,  # the plan sets its own
    )
    with short_lived_engine(settings.app_db) as engine, engine.begin() as conn:
        if sa.inspect(conn).has_table(batch_events.name):  # else not migrated to 0008 yet
            batch_records.record_submitted(conn, planned)


def enqueue(client: DBOSClient, submission: Submission) -> None:
    """Enqueue the batch workflow; the same batch id again attaches to the first submission."""
    failpoint("batch.submit")
    options: EnqueueOptions = {
        "workflow_name": BATCH_WORKFLOW,
        "queue_name": BATCH_QUEUE,
        "class_name": PUBLISHER_CLASS_NAME,
        "instance_name": submission.publisher,
        "workflow_id": submission.workflow_id,
    }
    try:
        dbos_gateway.enqueue(client, options, submission.request)
    except dbos_gateway.WorkflowConflictError:
        raise BatchConflictError(
            f"batch id {submission.request['batch_id']!r} already belongs to another publisher"
        ) from None
    _refuse_changed_batch(client, submission)


def _refuse_changed_batch(client: DBOSClient, submission: Submission) -> None:
    """A batch id is an idempotency key: reusing it for a different batch is a mistake."""
    args = dbos_gateway.workflow_input(client, submission.workflow_id) or ()
    if not args or args[0] != submission.request:
        raise BatchConflictError(
            f"batch id {submission.request['batch_id']!r} was already submitted with a different "
            "topic, count or messages"
        )


def outcome(client: DBOSClient, workflow_id: str) -> dict[str, Any]:
    """Wait for the batch workflow's result (at once if it has ended), its retried chunks
    merged in."""
    try:
        summary: BatchSummary = dbos_gateway.wait_result(client, workflow_id)
    except Exception as exc:  # whatever the workflow raised, or DBOS's own ending
        found = dbos_gateway.workflows(client, [workflow_id])
        ended = found[0].status if found else "unknown"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BatchEndedError(f"workflow {workflow_id} ended {ended}: {reason}") from None
    return lifecycle.merged_summary(client, summary)
