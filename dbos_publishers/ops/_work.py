"""Work still to do and work that ended unpublished, counted from DBOS's workflows for `status`,
the metrics and the dashboard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from dbos import WorkflowStatus

from dbos_publishers import _ids as ids
from dbos_publishers._config import DatabaseUrl
from dbos_publishers._dbos_gateway import ACTIVE_STATUSES
from dbos_publishers._queues import BATCH_QUEUE, CHUNK_QUEUE
from dbos_publishers.store import _batch_records as batch_records
from dbos_publishers.store._database import read_snapshot


def pending_work(active: Iterable[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of PENDING and ENQUEUED workflows per queue (publisher queues and recovery)."""
    counts: dict[str, Counter[str]] = {BATCH_QUEUE: Counter(), CHUNK_QUEUE: Counter()}
    for wf in active:
        counts.setdefault(wf.queue_name or "(no queue)", Counter())[wf.status] += 1
    return {queue: {s: c[s] for s in ACTIVE_STATUSES} for queue, c in sorted(counts.items())}


def dead_work(dead: Iterable[WorkflowStatus]) -> dict[str, dict[str, int]]:
    """Counts of workflows that ended without succeeding, per workflow (publish_batch,
    publish_chunk) and status: work that will not publish unless someone acts (`resume` or
    `retry`, or a new batch). Keyed by name: a cancelled workflow leaves its queue."""
    counts: dict[str, Counter[str]] = {}
    for wf in dead:
        counts.setdefault(wf.name, Counter())[wf.status] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}


LONG_CHUNK_SEC = 30.0  # a chunk commits in milliseconds and delivers in seconds
LONG_CHUNK_FIX = (
    "look in that worker's log for the chunk (a hang in deliver or write_chunk, a lock); stop "
    "the worker (SIGTERM, or Ctrl-C twice) and its work is taken over"
)


@dataclass(frozen=True)
class LongChunk:
    workflow_id: str
    executor_id: str
    running_sec: float


def long_chunks(
    app_db: DatabaseUrl, active: Iterable[WorkflowStatus], alive: set[str], now_ms: float
) -> list[LongChunk]:
    """Chunk workflows a live worker has run for longer than LONG_CHUNK_SEC: a publisher hung
    in its own code keeps its chunk PENDING and its worker alive, and no transaction shows it
    once Postgres ended the session. A cancelled batch's chunks wait on purpose: not counted."""
    since = now_ms - LONG_CHUNK_SEC * 1000
    found = [
        LongChunk(wf.workflow_id, wf.executor_id or "", (now_ms - started) / 1000)
        for wf in active
        if wf.status == "PENDING"
        and ids.is_chunk_or_retry(wf.workflow_id)
        and wf.executor_id in alive
        and (started := wf.dequeued_at or wf.updated_at or now_ms) < since
    ]
    return _not_cancelled(app_db, found)


def _not_cancelled(app_db: DatabaseUrl, found: list[LongChunk]) -> list[LongChunk]:
    if not found:
        return found
    batch_ids = {ids.batch_of(c.workflow_id) for c in found}
    with read_snapshot(app_db) as conn:
        states = {b: batch_records.batch_state(conn, b) for b in batch_ids}
    return [c for c in found if states[ids.batch_of(c.workflow_id)] != "cancelled"]
